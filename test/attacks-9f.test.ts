import { describe, expect, it } from 'vitest';
import { ClusterMirror } from '../src/k8s/mirror.js';
import { WatchStreamParser } from '../src/k8s/watch.js';
import type { EngineEvent } from '../src/engine/events.js';

type Obj = Record<string, unknown>;
const ns = (name: string, rv: number): Obj => ({ apiVersion: 'v1', kind: 'Namespace', metadata: { name, resourceVersion: String(rv), labels: { 'kubernetes.io/metadata.name': name } } });
const pod = (name: string, rv: number): Obj => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name, namespace: 'shop', resourceVersion: String(rv), labels: { app: 'web' } },
  spec: { nodeName: 'node-b', containers: [{ name: 'c', image: 'i' }] },
  status: { phase: 'Running', podIP: `10.1.${(rv >> 8) & 255}.${rv & 255}` },
});
const ev = (type: string, object: Obj): string => JSON.stringify({ type, object });

function harness(maxTombstones?: number) {
  const mirror = new ClusterMirror({ nodeName: 'node-a', ...(maxTombstones === undefined ? {} : { maxTombstones }) });
  const parser = new WatchStreamParser('pods');
  const step = (...lines: string[]): EngineEvent[] => {
    for (const item of parser.push(lines.join('\n'))) mirror.observe(item, 'pods');
    const batch = mirror.flush();
    batch.commit();
    return batch.events as EngineEvent[];
  };
  return { mirror, step };
}

describe('200. deleted objects are not kept forever', () => {
  it('20,000 pods created and deleted (unique names, as a ReplicaSet names them) leave at most maxTombstones states', () => {
    const h = harness(1000);
    h.step(ev('ADDED', ns('shop', 1)));
    let rv = 2;
    for (let i = 0; i < 20_000; i++) {
      h.step(ev('ADDED', pod(`web-${i}`, rv++)));
      h.step(ev('DELETED', pod(`web-${i}`, rv++)));
    }
    // The namespace, plus at most 1,000 deleted pods (before: 20,001, one per pod ever deleted).
    expect(h.mirror.size).toBe(1001);
    // The default bound holds too.
    const d = harness();
    d.step(ev('ADDED', ns('shop', 1)));
    for (let i = 0; i < 12_000; i++) d.step(ev('ADDED', pod(`p-${i}`, 2 * i + 2)), ev('DELETED', pod(`p-${i}`, 2 * i + 3)));
    expect(d.mirror.size).toBe(10_001);
  });
  it('a recently deleted object still drops a replayed older event; a live object is never forgotten', () => {
    const h = harness(2);
    expect(h.step(ev('ADDED', ns('shop', 1)), ev('ADDED', pod('live', 2)), ev('ADDED', pod('a', 3))).map((e) => e.type)).toContain('upsertPod');
    h.step(ev('DELETED', pod('a', 4)), ev('ADDED', pod('b', 5)), ev('DELETED', pod('b', 6)));
    expect(h.step(ev('MODIFIED', pod('a', 3)))).toEqual([]);
    expect(h.mirror.counts.stale).toBe(1);
    for (let i = 0; i < 50; i++) h.step(ev('ADDED', pod(`x-${i}`, 100 + 2 * i)), ev('DELETED', pod(`x-${i}`, 101 + 2 * i)));
    expect(h.mirror.size).toBe(4);
    // 'live' still drops its own older event.
    expect(h.step(ev('MODIFIED', pod('live', 2)))).toEqual([]);
    expect(h.mirror.counts.stale).toBe(2);
  });
  it('a relist deletes what it no longer lists and bounds those states as well', () => {
    const h = harness(10);
    h.step(ev('ADDED', ns('shop', 1)), ...Array.from({ length: 100 }, (_, i) => ev('ADDED', pod(`r-${i}`, 2 + i))));
    const list = JSON.stringify({ apiVersion: 'v1', kind: 'PodList', metadata: { resourceVersion: '500' }, items: [pod('r-0', 2)] });
    const deletes = h.step(list).filter((e) => e.type === 'deletePod');
    expect(deletes.length).toBe(99);
    expect(h.mirror.size).toBe(1 + 1 + 10);
  });
});

describe('201. a value spread over many chunks', () => {
  it('is read whole, and the size bound counts the value, not the stream', () => {
    const big = JSON.stringify({ type: 'ADDED', object: ns('a'.repeat(300_000), 1) });
    const p = new WatchStreamParser('s', big.length);
    const items = [];
    for (let round = 0; round < 3; round++) for (let i = 0; i < big.length; i += 1000) items.push(...p.push(big.slice(i, i + 1000)));
    p.end();
    expect(items.map((it) => (it.type === 'LIST' ? '' : (it.object.metadata as Obj).name))).toEqual(Array(3).fill('a'.repeat(300_000)));
    const small = new WatchStreamParser('s', big.length / 2);
    expect(() => {
      for (let i = 0; i < big.length; i += 1000) small.push(big.slice(i, i + 1000));
    }).toThrow(`s#1: one JSON value is over ${big.length / 2} bytes`);
  });
});
