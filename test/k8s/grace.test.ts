import { describe, expect, it } from 'vitest';
import type { EngineEvent } from '../../src/engine/events.js';
import { ClusterMirror } from '../../src/k8s/mirror.js';
import { WatchStreamParser } from '../../src/k8s/watch.js';

/**
 * A pod being deleted gracefully (`metadata.deletionTimestamp` set: the time the API server will
 * delete it) stays an endpoint until that time, then stops being one, on a fake clock.
 */
type Obj = Record<string, unknown>;
const T0 = Date.parse('2026-11-29T10:00:00Z');
const iso = (ms: number): string => new Date(ms).toISOString().replace('.000Z', 'Z');
const ns = (rv: number): Obj => ({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop', resourceVersion: String(rv) } });
const pod = (name: string, rv: number, deleteAt?: number): Obj => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name, namespace: 'shop', resourceVersion: String(rv), labels: { app: name }, ...(deleteAt !== undefined ? { deletionTimestamp: iso(deleteAt), deletionGracePeriodSeconds: 30 } : {}) },
  spec: { nodeName: 'node-a', containers: [{ name: 'c', image: 'i' }] },
  status: { phase: 'Running', podIP: `10.0.0.${name.charCodeAt(0)}` },
});
const ev = (type: string, object: Obj): string => JSON.stringify({ type, object });

function harness() {
  let now = T0;
  const mirror = new ClusterMirror({ nodeName: 'node-a', now: () => now });
  const parser = new WatchStreamParser('t');
  const step = (...lines: string[]): string[] => {
    for (const item of parser.push(lines.join('\n'))) mirror.observe(item, 't');
    const batch = mirror.flush();
    batch.commit();
    return (batch.events as EngineEvent[]).map((e) => `${e.type}${e.type === 'upsertPod' ? ` ${e.pod.name}` : e.type === 'deletePod' ? ` ${e.name}` : ''}`);
  };
  return { mirror, step, at: (ms: number) => void (now = ms) };
}

describe('deletion grace period', () => {
  it('keeps a terminating pod until its deletionTimestamp, then deletes it at the next flush', () => {
    const h = harness();
    expect(h.step(ev('ADDED', ns(1)), ev('ADDED', pod('web', 2)))).toEqual(['upsertNamespace', 'upsertPod web']);
    expect(h.step(ev('MODIFIED', pod('web', 3, T0 + 30_000)))).toEqual([]);
    expect(h.mirror.localEndpoints()).toEqual(['shop/web']);
    expect(h.mirror.nextDeadline()).toBe(T0 + 30_000);
    h.at(T0 + 29_999);
    expect(h.step()).toEqual([]);
    h.at(T0 + 30_000);
    expect(h.step()).toEqual(['deletePod web']);
    expect(h.mirror.nextDeadline()).toBeUndefined();
    expect(h.step(ev('DELETED', pod('web', 4, T0 + 30_000)))).toEqual([]);
  });
  it('adds a pod first seen while terminating, and drops one first seen past its deadline', () => {
    const h = harness();
    expect(h.step(ev('ADDED', ns(1)), ev('ADDED', pod('a', 2, T0 + 5_000)), ev('ADDED', pod('b', 3, T0 - 1)))).toEqual(['upsertNamespace', 'upsertPod a']);
    expect(h.mirror.nextDeadline()).toBe(T0 + 5_000);
  });
  it('deletes a pod past its deadline on a MODIFIED or a relist even before any timer', () => {
    const h = harness();
    h.step(ev('ADDED', ns(1)), ev('ADDED', pod('a', 2, T0 + 1_000)), ev('ADDED', pod('b', 3, T0 + 2_000)));
    h.at(T0 + 10_000);
    for (const item of new WatchStreamParser('m').push(ev('MODIFIED', pod('a', 4, T0 + 1_000)))) h.mirror.observe(item, 'm');
    const list = { apiVersion: 'v1', kind: 'PodList', metadata: { resourceVersion: '9' }, items: [pod('b', 3, T0 + 2_000)] };
    expect(h.step(JSON.stringify(list))).toEqual(['deletePod a', 'deletePod b']);
  });
  it('follows the earliest deadline, and forgets one when the pod goes away first', () => {
    const h = harness();
    h.step(ev('ADDED', ns(1)), ev('ADDED', pod('a', 2, T0 + 9_000)), ev('ADDED', pod('b', 3, T0 + 4_000)));
    expect(h.mirror.nextDeadline()).toBe(T0 + 4_000);
    expect(h.step(ev('DELETED', pod('b', 4, T0 + 4_000)))).toEqual(['deletePod b']);
    expect(h.mirror.nextDeadline()).toBe(T0 + 9_000);
    // A shortened grace period (the API allows only shortening) moves the deadline.
    expect(h.step(ev('MODIFIED', pod('a', 5, T0 + 1_000)))).toEqual([]);
    expect(h.mirror.nextDeadline()).toBe(T0 + 1_000);
  });
});
