import { describe, expect, it } from 'vitest';
import { parseTrace } from '../src/churn/trace.js';
import { WatchStreamParser } from '../src/k8s/watch.js';
import { parseManifestFile } from '../src/policy/manifest.js';
import { parseScenario } from '../src/scenario/format.js';

const flow = (n: number): string => '['.repeat(n) + ']'.repeat(n);
const policy = (description: string): string =>
  `apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: p, namespace: x}\nspec:\n  endpointSelector: {}\n  ingress: [{}]\n  description: ${description}\n`;

/** The message of what `read` throws and how long it took, ms. */
function timed(read: () => unknown): { ms: number; message: string } {
  const t0 = performance.now();
  try {
    read();
    return { ms: performance.now() - t0, message: 'accepted' };
  } catch (e) {
    return { ms: performance.now() - t0, message: e instanceof Error ? e.message : String(e) };
  }
}

describe('attack 33i', () => {
  it('3820. a flow `[[[…` 300,000 deep is refused without building its CST (7.5 s and 400 MB on the base; 2 MB: 29 s, 2.5 GB)', () => {
    for (const [name, read] of [
      ['yaml', () => parseManifestFile(`apiVersion: v1\nkind: List\nitems: ${flow(300_000)}\n`, 'f.yaml')],
      ['scenario', () => parseScenario(`pods: ${flow(300_000)}\n`, 's.yaml')],
    ] as const) {
      const r = timed(read);
      expect(r.message, name).toContain('more than 64 levels deep');
      expect(r.ms, name).toBeLessThan(1500);
    }
  });

  it('3822. the second value of a JSON stream `[[[…` 1,000,000 deep is refused while its end is looked for, not after JSON.parse', () => {
    const r = timed(() => parseManifestFile(`{"kind": "List", "apiVersion": "v1", "items": []}\n{"a": ${flow(1_000_000)}}\n`, 'f.json'));
    expect(r.message).toBe('f.json#2: nests arrays and objects more than 64 levels deep');
    expect(r.ms).toBeLessThan(1000);
    const at = (d: number): string => timed(() => parseManifestFile(`{"kind": "List", "apiVersion": "v1", "items": []}\n{"kind": "List", "apiVersion": "v1", "items": [], "a": ${flow(d)}}\n`, 'f.json')).message;
    expect(at(63)).not.toContain('levels deep');
    expect(at(64)).toBe('f.json#2: nests arrays and objects more than 64 levels deep');
  });

  it('3820. brackets in quoted, plain and block scalars are no nesting; 60 flow levels under the spec are read, 70 are not', () => {
    const deepText = '['.repeat(100_000);
    for (const description of [`'${deepText}'`, `"${deepText}"`, `|\n    ${deepText}`, `a${deepText}`]) {
      const [p] = parseManifestFile(policy(description), 'f.yaml');
      expect(p?.ref.name).toBe('p');
    }
    expect(timed(() => parseManifestFile(`${policy(flow(60))}`, 'f.yaml')).message).not.toContain('levels deep');
    expect(timed(() => parseManifestFile(`${policy(flow(70))}`, 'f.yaml')).message).toContain('more than 64 levels deep');
  });

  it('3821. a watch event or List item `[[[…` 2,000,000 deep is refused while scanned (3-4 s and 350 MB on the base; 20 MB: 17 s, 1.6 GB)', () => {
    const n = 2_000_000;
    const event = `{"type":"ADDED","object":{"apiVersion":"v1","kind":"Pod","metadata":{"name":"a","namespace":"x","resourceVersion":"1"},"spec":${flow(n)}}}\n`;
    const list = `{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"1"},"items":[{"apiVersion":"v1","kind":"Pod","metadata":{"name":"a"},"spec":${flow(n)}}]}\n`;
    for (const [name, text, where] of [['event', event, 's#1:'], ['list item', list, 's#1 items[0]:']] as const) {
      const r = timed(() => new WatchStreamParser('s').push(text));
      expect(r.message, name).toBe(`${where} nests arrays and objects more than 64 levels deep`);
      expect(r.ms, name).toBeLessThan(1000);
    }
    // The limit is where the parsed value's walk puts it: 64 levels in an item (2 more in its List) are read.
    const item = (d: number): string => `{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"1"},"items":[{"apiVersion":"v1","kind":"Pod","metadata":{"name":"a"},"spec":${flow(d)}}]}\n`;
    expect(new WatchStreamParser('s').push(item(63)).map((i) => i.type)).toEqual(['LIST_ITEM', 'LIST']);
    expect(timed(() => new WatchStreamParser('s').push(item(64))).message).toContain('more than 64 levels deep');
  });

  it('3823. a trace line `[[[…` 1,000,000 deep is refused by a scan before JSON.parse; strings are skipped', () => {
    const r = timed(() => parseTrace(`{"distillTrace":1}\n{"type":"upsertPolicy","manifest":${flow(1_000_000)}}\n`, 't.jsonl'));
    expect(r.message).toBe('t.jsonl:2: nests arrays and objects more than 64 levels deep');
    expect(r.ms).toBeLessThan(300);
    const quoted = timed(() => parseTrace(`{"distillTrace":1}\n{"type":"upsertPolicy","tag":"${'[\\"'.repeat(5000)}","manifest":${flow(10)}}\n`, 't.jsonl'));
    expect(quoted.message).not.toContain('levels deep');
  });
});
