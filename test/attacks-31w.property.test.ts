import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Engine } from '../src/engine/engine.js';
import type { EngineEvent } from '../src/engine/events.js';
import { ClusterMirror } from '../src/k8s/mirror.js';
import { WatchStreamParser } from '../src/k8s/watch.js';
import { iso, type Obj } from './k8s/pod-lifecycle.js';

/**
 * Review 31w (3200): remote pods sharing addresses, some expired (held at 255), changed one at a time; at random the
 * change comes with two new pods at addresses of their own and the first batch is refused (the mirror retries in
 * halves). An address owned in the engine before the change and in a fresh engine fed the cluster after it stays owned
 * after every batch committed in between (no world entry where both the cluster before and after have an endpoint);
 * after it the engine equals the fresh one. One change per step: a step of several objects split by the halving is
 * finding 2916 (30s, not fixed). Two live pods at one address (the last writer's, finding 524) stay uncompared.
 */
const T0 = Date.parse('2026-12-03T10:00:00Z');
const NAMES = ['a', 'b', 'c', 'd'] as const;
interface PodSpec { name: string; ips: readonly string[]; app: string; deleteIn: number | undefined }
const podObj = (p: PodSpec, rv: number, now: number): Obj => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name: p.name, namespace: 'shop', resourceVersion: String(rv), labels: { app: p.app }, ...(p.deleteIn !== undefined ? { deletionTimestamp: iso(now + p.deleteIn), deletionGracePeriodSeconds: 30 } : {}) },
  spec: { nodeName: 'node-b', containers: [{ name: 'c', image: 'i' }] },
  status: { phase: 'Running', podIPs: p.ips.map((ip) => ({ ip })), podIP: p.ips[0] },
});
const podArb = fc.record({
  name: fc.constantFrom(...NAMES),
  ips: fc.constantFrom<readonly string[]>(['10.0.0.9'], ['10.0.0.10'], ['10.0.0.9', 'fd00::9'], ['10.0.0.11']),
  app: fc.constantFrom('web', 'db'),
  deleteIn: fc.option(fc.constantFrom(0, 30_000), { nil: undefined }),
});
type Change = { op: 'put'; pod: PodSpec } | { op: 'delete'; name: string } | { op: 'tick' };
const changeArb: fc.Arbitrary<Change> = fc.oneof(
  { weight: 5, arbitrary: podArb.map((pod): Change => ({ op: 'put', pod })) },
  { weight: 2, arbitrary: fc.constantFrom(...NAMES).map((name): Change => ({ op: 'delete', name })) },
  { weight: 1, arbitrary: fc.constant<Change>({ op: 'tick' }) },
);
const burstArb = fc.record({ changes: fc.tuple(changeArb), refuse: fc.boolean() });
const ns: Obj = { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop', resourceVersion: '1' } };

function endpoints(server: ReadonlyMap<string, Obj>, now: number): { live: Map<string, number>; contested: boolean } {
  const live = new Map<string, number>();
  let contested = false;
  for (const o of server.values()) {
    const del = (o.metadata as Obj).deletionTimestamp;
    const expired = typeof del === 'string' && Date.parse(del) <= now;
    for (const e of ((o.status as Obj).podIPs as Obj[]) ?? []) {
      const ip = String(e.ip);
      if (!expired && (live.get(ip) ?? 0) > 0) contested = true;
      if (!expired) live.set(ip, (live.get(ip) ?? 0) + 1);
    }
  }
  return { live, contested };
}

function fresh(server: ReadonlyMap<string, Obj>, now: number, rv: number): Set<string> {
  const m = new ClusterMirror({ nodeName: 'node-a', now: () => now });
  const e = new Engine();
  for (const item of new WatchStreamParser('f').push(`${JSON.stringify({ type: 'ADDED', object: ns })}\n${JSON.stringify({ apiVersion: 'v1', kind: 'PodList', metadata: { resourceVersion: String(rv) }, items: [...server.values()] })}\n`)) m.observe(item, 'f');
  const b = m.flush();
  e.apply(b.events as EngineEvent[]);
  b.commit();
  return new Set(e.ipcache().map((r) => r.prefix));
}

function run(bursts: readonly { changes: readonly Change[]; refuse: boolean }[]): number {
  let now = T0;
  let rv = 1;
  let checked = 0;
  const mirror = new ClusterMirror({ nodeName: 'node-a', now: () => now });
  const parser = new WatchStreamParser('t');
  const engine = new Engine();
  const server = new Map<string, Obj>();
  const owned = (): Set<string> => new Set(engine.ipcache().map((r) => r.prefix));
  const flushAll = (refuseFirst: boolean, check: (after: Set<string>) => void): void => {
    let refused = !refuseFirst;
    for (let i = 0; i < 40 && !mirror.idle; i++) {
      const b = mirror.flush();
      if (!refused && b.events.length >= 2) {
        refused = true;
        b.rollback();
        continue;
      }
      engine.apply(b.events as EngineEvent[]);
      b.commit();
      check(owned());
    }
    expect(mirror.idle).toBe(true);
  };
  for (const item of parser.push(JSON.stringify({ type: 'ADDED', object: ns }) + '\n')) mirror.observe(item, 't');
  flushAll(false, () => {});
  let contested = false;
  let fillers = 0;
  for (const burst of bursts) {
    const before = owned();
    const lines: string[] = [];
    for (let i = 0; burst.refuse && i < 2; i++) {
      const filler = podObj({ name: `f${++fillers}`, ips: [`10.1.0.${fillers}`], app: 'web', deleteIn: undefined }, ++rv, now);
      server.set(`f${fillers}`, filler);
      lines.push(JSON.stringify({ type: 'ADDED', object: filler }));
    }
    for (const c of burst.changes) {
      if (c.op === 'tick') now += 40_000;
      else if (c.op === 'delete') {
        const old = server.get(c.name);
        if (old === undefined) continue;
        server.delete(c.name);
        lines.push(JSON.stringify({ type: 'DELETED', object: { ...old, metadata: { ...(old.metadata as Obj), resourceVersion: String(++rv) } } }));
      } else {
        const prev = server.get(c.pod.name);
        const obj = podObj(c.pod, ++rv, now);
        const prevDelete = prev ? (prev.metadata as Obj).deletionTimestamp : undefined;
        if (typeof prevDelete === 'string') (obj.metadata as Obj).deletionTimestamp = prevDelete;
        server.set(c.pod.name, obj);
        lines.push(JSON.stringify({ type: prev ? 'MODIFIED' : 'ADDED', object: obj }));
      }
    }
    contested ||= endpoints(server, now).contested;
    for (const item of parser.push(lines.map((l) => l + '\n').join(''))) mirror.observe(item, 't');
    const after = fresh(server, now, rv);
    flushAll(burst.refuse, (mid) => {
      if (contested) return;
      for (const p of before) if (after.has(p)) expect(mid.has(p), `${p} owned before and after, world in between`).toBe(true);
    });
    if (contested) continue;
    expect([...owned()].sort()).toEqual([...after].sort());
    checked++;
  }
  return checked;
}

describe('31w: expired pods and their claimants under refused batches', () => {
  it('an address owned before and after a burst is never world in between', () => {
    let checked = 0;
    fc.assert(
      fc.property(fc.array(burstArb, { minLength: 1, maxLength: 15 }), (bursts) => {
        checked += run(bursts);
      }),
      { numRuns: 300, ...(process.env.DISTILL_SEED ? { seed: Number(process.env.DISTILL_SEED) } : {}) },
    );
    expect(checked).toBeGreaterThan(300);
  });
});
