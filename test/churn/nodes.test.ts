import { describe, expect, it } from 'vitest';
import { generateTrace } from '../../src/churn/profiles.js';
import { parseTrace } from '../../src/churn/trace.js';

/** Multi-node traces: a `node` on every pod with `--nodes`, local pods on node-0, nothing without it. */
describe('traces over nodes', () => {
  const pods = (text: string) => parseTrace(text, 't').items.flatMap((i) => (i.kind === 'event' && i.event.type === 'upsertPod' ? [{ local: i.event.local === true, node: i.node }] : []));

  it('--nodes K spreads pods over node-0..K-1; local means node-0; a pod keeps its node', () => {
    const text = generateTrace({ profile: 'small', seed: 3, nodes: 4 });
    const seen = pods(text);
    expect(seen.length).toBeGreaterThan(0);
    for (const p of seen) expect(p.local).toBe(p.node === 'node-0');
    expect(new Set(seen.map((p) => p.node))).toEqual(new Set(['node-0', 'node-1', 'node-2', 'node-3']));
    const byPod = new Map<string, string>();
    for (const i of parseTrace(text, 't').items) {
      if (i.kind !== 'event' || i.event.type !== 'upsertPod') continue;
      const key = `${i.event.pod.namespace}/${i.event.pod.name}`;
      if (i.event.local !== true) expect(byPod.get(key) ?? i.node).toBe(i.node);
      byPod.set(key, i.node!);
    }
  });

  it('without --nodes the trace has no node field (existing traces unchanged)', () => {
    expect(generateTrace({ profile: 'small', seed: 3 })).not.toContain('"node"');
    expect(pods(generateTrace({ profile: 'small', seed: 3 })).every((p) => p.node === undefined)).toBe(true);
  });

  it('a node name with "/" is refused, naming the line and field', () => {
    const text = `${JSON.stringify({ distillTrace: 1 })}\n${JSON.stringify({ type: 'upsertPod', pod: { namespace: 'a', name: 'p', ip: '10.0.0.1' }, node: 'x/y' })}\n`;
    expect(() => parseTrace(text, 't.jsonl')).toThrow(/node/);
    expect(() => generateTrace({ profile: 'small', seed: 1, nodes: 0 })).toThrow(/--nodes/);
  });
});
