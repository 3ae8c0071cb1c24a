import { describe, expect, it } from 'vitest';
import type { EngineEvent } from '../src/engine/events.js';
import { ClusterMirror } from '../src/k8s/mirror.js';
import { WatchStreamParser } from '../src/k8s/watch.js';

/** Attack round 11b: time as hostile input (docs/attack-findings-11b.md). */
type Obj = Record<string, unknown>;
const T0 = Date.parse('2026-11-29T10:00:00Z');
const iso = (ms: number): string => new Date(ms).toISOString().replace('.000Z', 'Z');
const ns = (rv: number): Obj => ({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop', resourceVersion: String(rv) } });
const pod = (name: string, rv: number, deleteAt?: number, app = name): Obj => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name, namespace: 'shop', resourceVersion: String(rv), labels: { app }, ...(deleteAt !== undefined ? { deletionTimestamp: iso(deleteAt), deletionGracePeriodSeconds: 30 } : {}) },
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

describe('11b-1: the wall clock stepping back (NTP) never brings back a pod whose deletion time passed', () => {
  it('a MODIFIED after the step keeps the pod deleted', () => {
    const h = harness();
    expect(h.step(ev('ADDED', ns(1)), ev('ADDED', pod('web', 2, T0 + 30_000)))).toEqual(['upsertNamespace', 'upsertPod web']);
    h.at(T0 + 31_000);
    expect(h.step()).toEqual(['deletePod web']);
    h.at(T0 - 3_600_000);
    expect(h.step(ev('MODIFIED', pod('web', 3, T0 + 30_000, 'web2')))).toEqual([]);
    expect(h.mirror.localEndpoints()).toEqual([]);
  });
  it('a relist after the step keeps it deleted too', () => {
    const h = harness();
    h.step(ev('ADDED', ns(1)), ev('ADDED', pod('web', 2, T0 + 30_000)));
    h.at(T0 + 31_000);
    expect(h.step()).toEqual(['deletePod web']);
    h.at(T0);
    const list = { apiVersion: 'v1', kind: 'PodList', metadata: { resourceVersion: '9' }, items: [pod('web', 4, T0 + 30_000)] };
    expect(h.step(JSON.stringify(list))).toEqual([]);
    expect(h.mirror.localEndpoints()).toEqual([]);
  });
});
