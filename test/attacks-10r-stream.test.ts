import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseWatchItem, WatchStreamParser, type WatchItem } from '../src/k8s/watch.js';
import { apiPages, feedHarness, netpol } from './k8s/paged-wire.js';

type Obj = Record<string, unknown>;

/** The items and the List header the stream parser reports for `text`, cut into chunks at `cuts`. */
function streamed(text: string, cuts: number[]): { items: unknown[]; list: WatchItem } {
  const p = new WatchStreamParser('s');
  const at = [...new Set([0, ...cuts.map((c) => Math.min(c, text.length)), text.length])].sort((a, b) => a - b);
  const out = at.slice(1).flatMap((end, i) => p.push(text.slice(at[i], end)));
  p.end();
  const items: unknown[] = [];
  for (const it of out) if (it.type === 'LIST_ITEM') items[it.index] = it.object;
  const list = out[out.length - 1]!;
  if (list.type === 'LIST') list.items.forEach((o, i) => (items[list.indexes?.[i] ?? i] = o));
  return { items, list };
}

const item = fc.record({ kind: fc.option(fc.constantFrom('Pod', 'NetworkPolicy', '"}]', 'items'), { nil: undefined }), metadata: fc.record({ name: fc.string() }), spec: fc.jsonValue({ maxDepth: 3 }) }, { requiredKeys: ['metadata'] });
const list = fc.record({
  kind: fc.constantFrom('PodList', 'List', 'NetworkPolicyList'),
  apiVersion: fc.constantFrom('v1', 'networking.k8s.io/v1'),
  metadata: fc.record({ resourceVersion: fc.string(), continue: fc.string(), note: fc.constantFrom('"items":[{"kind":"Pod"}]', '\\', '}') }, { requiredKeys: [] }),
  items: fc.array(item, { maxLength: 5 }),
  extra: fc.jsonValue({ maxDepth: 2 }),
}, { requiredKeys: ['kind', 'items'] });

describe('the streaming List reader agrees with JSON.parse (review 10r)', () => {
  it('any key order, escaped "items" key, indentation and chunking: items and header as JSON.parse reads them', () => {
    fc.assert(
      fc.property(list, fc.boolean(), fc.constantFrom(0, 2), fc.array(fc.nat(), { maxLength: 12 }), fc.func(fc.integer()), (l, escapeKey, indent, cuts, order) => {
        const keys = Object.keys(l).sort((a, b) => order(a) - order(b));
        const ordered = Object.fromEntries(keys.map((k) => [k, (l as Obj)[k]]));
        let text = JSON.stringify(ordered, null, indent);
        if (escapeKey) text = text.replace(/"items":/, '"\\u0069tems":');
        const want = JSON.parse(text) as Obj;
        const { items, list: got } = streamed(text, cuts);
        expect(items).toEqual(want.items);
        const whole = parseWatchItem(want, 's');
        expect(got.type).toBe('LIST');
        if (got.type !== 'LIST' || whole.type !== 'LIST') return;
        expect({ k: got.itemKind, a: got.apiVersion, rv: got.resourceVersion, c: got.continue }).toEqual({ k: whole.itemKind, a: whole.apiVersion, rv: whole.resourceVersion, c: whole.continue });
      }),
      { numRuns: 400 },
    );
  });

  it('a List cut at every byte boundary reads the same items', () => {
    const text = JSON.stringify({ kind: 'PodList', apiVersion: 'v1', metadata: { resourceVersion: '7', continue: 'x' }, items: [{ metadata: { name: 'a"}]\\' } }, { kind: 'Pod', metadata: { name: '\u00e9' } }] });
    const want = (JSON.parse(text) as Obj).items;
    for (let i = 0; i <= text.length; i++) for (let j = i; j <= text.length; j += 7) expect(streamed(text, [i, j]).items).toEqual(want);
  });
});

describe('finding 281: pages without a resourceVersion cannot be told from a List started over', () => {
  const ns: Obj = { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop', resourceVersion: '1' } };
  const ev = (type: string, object: Obj): string => JSON.stringify({ type, object });
  const page = (objs: Obj[], cont?: string): string => JSON.stringify({ kind: 'NetworkPolicyList', apiVersion: 'networking.k8s.io/v1', metadata: cont === undefined ? {} : { continue: cont }, items: objs });

  it('a first page, then a whole List (started over, no resourceVersion): the union is not applied as a relist', () => {
    const h = feedHarness();
    h.feed([ev('ADDED', ns), ev('ADDED', netpol('a', 2, 'a')), ev('ADDED', netpol('gone', 3, 'gone'))].join('\n'));
    h.flush();
    // Page 1 of a List that lists `gone`; the List starts over (its token expired, `gone` deleted
    // meanwhile) and a whole List without `gone` follows. Merged, `gone` would stay in force.
    h.feed(page([netpol('gone', 3, 'gone')], 'page-1'));
    h.feed(page([netpol('a', 2, 'a')]));
    expect(h.mirror.counts.relists).toBe(0);
    expect(h.mirror.streamsAwaitingRelist()).toEqual(['s']);
    expect(h.flush()).toEqual([]);
  });

  it('pages with the same resourceVersion are still one List', () => {
    const h = feedHarness();
    h.feed([ev('ADDED', ns), ev('ADDED', netpol('gone', 3, 'gone'))].join('\n'));
    h.flush();
    for (const p of apiPages('NetworkPolicy', 'networking.k8s.io/v1', [netpol('a', 2, 'a'), netpol('b', 4, 'b')], 1, '20')) h.feed(p);
    expect(h.mirror.counts.relists).toBe(1);
    expect(h.flush().map((e) => e.type).sort()).toEqual(['deletePolicy', 'upsertPolicy', 'upsertPolicy']);
  });
});
