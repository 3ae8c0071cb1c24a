import { describe, expect, it } from 'vitest';
import type { EngineEvent } from '../../src/engine/events.js';
import { ClusterMirror } from '../../src/k8s/mirror.js';
import { WatchStreamParser, type WatchItem } from '../../src/k8s/watch.js';
import { apiPages, feedHarness, kubectlList, netpol, pod, type Obj } from './paged-wire.js';

/*
 * Paged Lists as the API server sends them (`limit`/`continue`, apimachinery ListMeta: every page
 * but the last has metadata.continue) and Lists read item by item: one relist each, applied only
 * once the last page's closing brace is read.
 */

const ns: Obj = { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop', resourceVersion: '1' } };
const ev = (type: string, object: Obj): string => JSON.stringify({ type, object });
const types = (events: readonly EngineEvent[]): string[] => events.map((e) => `${e.type}:${'pod' in e ? e.pod.name : 'policy' in e ? e.policy.ref.name : 'ref' in e ? e.ref.name : 'name' in e ? e.name : ''}`);

describe('paged Lists (API server wire format, client-go tools/pager)', () => {
  it('three pages are one relist: nothing reaches a flush before the last page, then the unlisted are deleted', () => {
    const h = feedHarness();
    h.feed([ev('ADDED', ns), ev('ADDED', netpol('a', 2, 'a')), ev('ADDED', netpol('b', 3, 'b')), ev('ADDED', netpol('gone', 4, 'gone'))].join('\n'));
    h.flush();
    const pages = apiPages('NetworkPolicy', 'networking.k8s.io/v1', [netpol('a', 12, 'a2'), netpol('b', 3, 'b'), netpol('c', 13, 'c')], 1, '20');
    expect(pages).toHaveLength(3);
    expect(JSON.parse(pages[0]!)).toMatchObject({ kind: 'NetworkPolicyList', apiVersion: 'networking.k8s.io/v1', metadata: { resourceVersion: '20', continue: 'page-1', remainingItemCount: 2 } });
    h.feed(pages[0]!);
    expect(h.flush()).toEqual([]);
    h.feed(pages[1]!);
    expect(h.flush()).toEqual([]);
    expect(h.mirror.listsInProgress()).toEqual(['s']);
    expect(h.mirror.counts.relists).toBe(0);
    h.feed(pages[2]!);
    expect(h.mirror.listsInProgress()).toEqual([]);
    expect(h.mirror.counts.relists).toBe(1);
    expect(types(h.flush()).sort()).toEqual(['deletePolicy:gone', 'upsertPolicy:a', 'upsertPolicy:c']);
  });

  it('the API documentation\'s example: the last page has an empty `continue`', () => {
    const h = feedHarness();
    h.feed([ev('ADDED', ns), ev('ADDED', pod('old', 2, '10.9.9.9'))].join('\n'));
    h.flush();
    const bare = (o: Obj): Obj => ({ metadata: o.metadata, spec: o.spec, status: o.status });
    h.feed(JSON.stringify({ kind: 'PodList', apiVersion: 'v1', metadata: { resourceVersion: '10245', continue: 'ENCODED_CONTINUE_TOKEN', remainingItemCount: 1 }, items: [bare(pod('p1', 3, '10.0.0.1'))] }));
    expect(h.flush()).toEqual([]);
    h.feed(JSON.stringify({ kind: 'PodList', apiVersion: 'v1', metadata: { resourceVersion: '10245', continue: '' }, items: [bare(pod('p2', 4, '10.0.0.2'))] }));
    expect(types(h.flush()).sort()).toEqual(['deletePod:old', 'upsertPod:p1', 'upsertPod:p2']);
  });

  it('pages split anywhere across chunks give the same relist', () => {
    const objs = Array.from({ length: 23 }, (_, i) => pod(`p${i}`, 10 + i, `10.0.0.${i + 1}`));
    const text = apiPages('Pod', 'v1', objs, 5, '50').join('\n');
    for (const size of [1, 7, 100, text.length]) {
      const h = feedHarness();
      h.feed(ev('ADDED', ns));
      h.feed(ev('ADDED', pod('old', 2, '10.9.9.9')));
      h.flush();
      for (let i = 0; i < text.length; i += size) h.feed(text.slice(i, i + size));
      const got = types(h.flush());
      expect(got.filter((t) => t.startsWith('upsertPod'))).toHaveLength(23);
      expect(got.filter((t) => t.startsWith('deletePod'))).toEqual(['deletePod:old']);
    }
  });

  it('a page sequence cut short by the end of the stream deletes nothing, applies nothing and leaves the stream awaiting a relist', () => {
    const h = feedHarness();
    h.feed([ev('ADDED', ns), ev('ADDED', netpol('a', 2, 'a'))].join('\n'));
    h.flush();
    const pages = apiPages('NetworkPolicy', 'networking.k8s.io/v1', [netpol('b', 12, 'b'), netpol('c', 13, 'c')], 1, '20');
    h.feed(pages[0]!);
    h.mirror.endStream('s');
    expect(h.flush()).toEqual([]);
    expect(h.mirror.streamsAwaitingRelist()).toEqual(['s']);
    expect(h.warnings.some((w) => w.startsWith('List cut short'))).toBe(true);
  });

  it('an ERROR 410 (continue token expired) mid-paging drops the pages; the full List client-go then makes is the relist', () => {
    const h = feedHarness();
    h.feed([ev('ADDED', ns), ev('ADDED', netpol('a', 2, 'a')), ev('ADDED', netpol('gone', 3, 'gone'))].join('\n'));
    h.flush();
    const pages = apiPages('NetworkPolicy', 'networking.k8s.io/v1', [netpol('a', 2, 'a'), netpol('b', 12, 'b')], 1, '20');
    h.feed(pages[0]!);
    const expired = { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: 'The provided continue parameter is too old to display a consistent list result.', reason: 'Expired', code: 410 };
    h.feed(JSON.stringify({ type: 'ERROR', object: expired }));
    expect(h.flush()).toEqual([]);
    expect(h.mirror.streamsAwaitingRelist()).toEqual(['s']);
    h.feed(apiPages('NetworkPolicy', 'networking.k8s.io/v1', [netpol('a', 2, 'a'), netpol('b', 12, 'b')], 500, '30')[0]!);
    expect(h.mirror.streamsAwaitingRelist()).toEqual([]);
    expect(types(h.flush()).sort()).toEqual(['deletePolicy:gone', 'upsertPolicy:b']);
  });
});

describe('Lists read item by item', () => {
  it('a kubectl List (items before kind) larger than the value bound is one relist; each item is bounded', () => {
    const objs = Array.from({ length: 50 }, (_, i) => pod(`p${i}`, 10 + i, `10.0.1.${i + 1}`));
    // `kubectl get namespaces,pods -o json`: one List of both kinds.
    const text = kubectlList([ns, ...objs], '99');
    const bound = 2000;
    expect(text.length).toBeGreaterThan(bound * 5);
    const h = feedHarness(bound);
    for (let i = 0; i < text.length; i += 333) h.feed(text.slice(i, i + 333));
    expect(h.items.filter((it) => it.type === 'LIST_ITEM')).toHaveLength(51);
    expect(types(h.flush()).filter((t) => t.startsWith('upsertPod'))).toHaveLength(50);
    const big = pod('big', 5, '10.0.2.1', 'x'.repeat(bound));
    const one = kubectlList([big], '100');
    const h2 = feedHarness(bound);
    // As a file or socket delivers it: in chunks (the bound counts what is kept across chunks).
    expect(() => {
      for (let i = 0; i < one.length; i += 100) h2.feed(one.slice(i, i + 100));
    }).toThrow(`s#1 items[0]: one List item is over ${bound} bytes`);
  });

  it('a List truncated mid-way relists nothing: nothing is deleted or added', () => {
    const h = feedHarness();
    h.feed([ev('ADDED', ns), ev('ADDED', netpol('a', 2, 'a'))].join('\n'));
    h.flush();
    const text = kubectlList([netpol('b', 12, 'b')], '20');
    h.feed(text.slice(0, text.length - 3));
    expect(() => h.parser.end()).toThrow('the stream ended inside a JSON value');
    h.mirror.endStream('s');
    expect(h.flush()).toEqual([]);
    expect(h.mirror.streamsAwaitingRelist()).toEqual(['s']);
  });

  it('kind-less items before the List kind (a typed List whose kind comes last) wait for it, and are read as its kind', () => {
    const h = feedHarness();
    h.feed(ev('ADDED', ns));
    h.flush();
    const bare = (o: Obj): Obj => Object.fromEntries(Object.entries(o).filter(([k]) => k !== 'kind' && k !== 'apiVersion'));
    h.feed(`{"items":[${JSON.stringify(bare(pod('p', 3, '10.0.3.1')))}],"apiVersion":"v1","kind":"PodList","metadata":{"resourceVersion":"7"}}`);
    const list = h.items.find((it): it is Extract<WatchItem, { type: 'LIST' }> => it.type === 'LIST');
    expect(list?.items).toHaveLength(1);
    expect(list?.indexes).toEqual([0]);
    expect(types(h.flush())).toEqual(['upsertPod:p']);
  });

  it('the API server order (kind before items) streams even kind-less items', () => {
    const h = feedHarness();
    h.feed(ev('ADDED', ns));
    h.flush();
    h.feed(apiPages('Pod', 'v1', [pod('p', 3, '10.0.3.1'), pod('q', 4, '10.0.3.2')], 500, '7')[0]!);
    expect(h.items.filter((it) => it.type === 'LIST_ITEM').map((it) => (it.type === 'LIST_ITEM' ? it.list : undefined))).toEqual([
      { itemKind: 'Pod', apiVersion: 'v1' },
      { itemKind: 'Pod', apiVersion: 'v1' },
    ]);
    expect(types(h.flush()).sort()).toEqual(['upsertPod:p', 'upsertPod:q']);
  });

  it('a watch event is still read whole; its object may hold an items field', () => {
    const p = new WatchStreamParser('w');
    const object = { ...netpol('a', 2, 'a'), items: [1, 2] };
    const got = p.push(ev('ADDED', object));
    expect(got).toEqual([{ type: 'ADDED', object }]);
    const m = new ClusterMirror({ nodeName: 'n' });
    for (const it of got) m.observe(it, 'w');
    expect(m.listsInProgress()).toEqual([]);
  });
});
