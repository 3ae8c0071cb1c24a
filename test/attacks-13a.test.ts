import { describe, expect, it } from 'vitest';
import { Engine } from '../src/engine/engine.js';
import type { EngineEvent } from '../src/engine/events.js';
import { ClusterMirror } from '../src/k8s/mirror.js';
import { WatchStreamParser } from '../src/k8s/watch.js';

/** Attack round 13a: pod lifecycle over recorded watch streams (docs/attack-findings-13a.md). */
type Obj = Record<string, unknown>;
const T0 = Date.parse('2026-11-30T10:00:00Z');
const iso = (ms: number): string => new Date(ms).toISOString().replace('.000Z', 'Z');
const ns = (rv: number): Obj => ({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop', resourceVersion: String(rv) } });
interface PodOpts { ip?: string; phase?: string; deleteAt?: number; node?: string }
const pod = (name: string, rv: number, o: PodOpts = {}): Obj => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name, namespace: 'shop', resourceVersion: String(rv), labels: { app: name }, ...(o.deleteAt !== undefined ? { deletionTimestamp: iso(o.deleteAt), deletionGracePeriodSeconds: 30 } : {}) },
  spec: { nodeName: o.node ?? 'node-a', containers: [{ name: 'c', image: 'i' }] },
  status: { phase: o.phase ?? 'Running', ...(o.ip !== undefined ? { podIP: o.ip } : {}) },
});
const ev = (type: string, object: Obj): string => JSON.stringify({ type, object });

function harness() {
  let now = T0;
  const mirror = new ClusterMirror({ nodeName: 'node-a', now: () => now });
  const parser = new WatchStreamParser('t');
  const engine = new Engine();
  const step = (...lines: string[]): void => {
    for (const item of parser.push(lines.join('\n') + '\n')) mirror.observe(item, 't');
    const batch = mirror.flush();
    engine.apply(batch.events as EngineEvent[]);
    batch.commit();
  };
  /** Which pod owns `ip` in the engine's ipcache (by its identity's app label), or the raw identity. */
  const owner = (ip: string): string => {
    const e = engine.ipcache().find((x) => x.prefix === `${ip}/32`);
    if (e === undefined) return 'none';
    return engine.identityLabels(e.identity)?.find((l) => l.key === 'app')?.value ?? `#${e.identity}`;
  };
  return { mirror, engine, step, owner, at: (ms: number) => void (now = ms) };
}

describe('13a: a pod address taken over by a new pod while the old pod lingers (tried, held)', () => {
  it('520: a Succeeded pod keeping its IP while a new pod takes it in the same batch', () => {
    const h = harness();
    h.step(ev('ADDED', ns(1)), ev('ADDED', pod('old', 2, { ip: '10.0.0.9' })));
    expect(h.owner('10.0.0.9')).toBe('old');
    h.step(ev('MODIFIED', pod('old', 3, { ip: '10.0.0.9', phase: 'Succeeded' })), ev('ADDED', pod('new', 4, { ip: '10.0.0.9' })));
    expect(h.owner('10.0.0.9')).toBe('new');
  });
  it('521: a remote pod takes the address before the old pod turns Failed (separate batches)', () => {
    const h = harness();
    h.step(ev('ADDED', ns(1)), ev('ADDED', pod('old', 2, { ip: '10.0.0.9' })));
    h.step(ev('ADDED', pod('new', 4, { ip: '10.0.0.9', node: 'node-b' })));
    expect(h.owner('10.0.0.9')).toBe('new');
    h.step(ev('MODIFIED', pod('old', 5, { ip: '10.0.0.9', phase: 'Failed' })));
    expect(h.owner('10.0.0.9')).toBe('new');
    h.step(ev('DELETED', pod('old', 6, { ip: '10.0.0.9', phase: 'Failed' })));
    expect(h.owner('10.0.0.9')).toBe('new');
  });
  it('522: a terminating pod whose address a new pod takes before its deadline passes', () => {
    const h = harness();
    h.step(ev('ADDED', ns(1)), ev('ADDED', pod('old', 2, { ip: '10.0.0.9', deleteAt: T0 + 30_000 })));
    h.step(ev('ADDED', pod('new', 4, { ip: '10.0.0.9' })));
    h.at(T0 + 31_000);
    expect(h.owner('10.0.0.9')).toBe('new');
    h.step();
    expect(h.owner('10.0.0.9')).toBe('new');
    expect(h.mirror.localEndpoints()).toEqual(['shop/new']);
  });
  it('522 (2843): the same on a remote node: the old pod, held fail-closed past its deadline, does not take the address back', () => {
    const h = harness();
    h.step(ev('ADDED', ns(1)), ev('ADDED', pod('old', 2, { ip: '10.0.0.9', deleteAt: T0 + 30_000, node: 'node-b' })));
    h.step(ev('ADDED', pod('new', 4, { ip: '10.0.0.9', node: 'node-b' })));
    h.at(T0 + 31_000);
    h.step();
    expect(h.owner('10.0.0.9')).toBe('new');
    // Nor when a relist lists both (old still there, its finalizers pending).
    h.step(JSON.stringify({ apiVersion: 'v1', kind: 'PodList', metadata: { resourceVersion: '9' }, items: [pod('old', 2, { ip: '10.0.0.9', deleteAt: T0 + 30_000, node: 'node-b' }), pod('new', 4, { ip: '10.0.0.9', node: 'node-b' })] }));
    expect(h.owner('10.0.0.9')).toBe('new');
  });
  it('522 (2843): nor one that cannot be read, listed past its deadline beside the new pod', () => {
    const h = harness();
    h.step(ev('ADDED', ns(1)));
    h.at(T0 + 31_000);
    const unreadable = { ...pod('old', 2, { ip: '10.0.0.9', deleteAt: T0 + 30_000, node: 'node-b' }), metadata: { name: 'old', namespace: 'shop', resourceVersion: '2', labels: { 'bad key!': 'x' }, deletionTimestamp: iso(T0 + 30_000) } };
    h.step(JSON.stringify({ apiVersion: 'v1', kind: 'PodList', metadata: { resourceVersion: '9' }, items: [pod('new', 4, { ip: '10.0.0.9', node: 'node-b' }), unreadable] }));
    expect(h.owner('10.0.0.9')).toBe('new');
    // Alone, it is held fail-closed at its address.
    h.step(ev('DELETED', pod('new', 10, { ip: '10.0.0.9', node: 'node-b' })), ev('MODIFIED', { ...unreadable, metadata: { ...unreadable.metadata, resourceVersion: '11' } }));
    expect(h.owner('10.0.0.9')).toBe('#255');
  });
});
