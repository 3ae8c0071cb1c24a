import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { staleVeto } from '../../src/agent/agent.js';
import { Engine } from '../../src/engine/engine.js';
import { EngineEvent, MapCapacityError, TransactionVetoedError } from '../../src/engine/events.js';
import { ClusterState, namespaceWithDefaults } from '../../src/model/cluster.js';
import { podIdentityLabels, securityLabels } from '../../src/model/identity.js';
import { datapathLookup, maskedPortEnd } from '../../src/model/policy-map.js';
import type { MapSnapshot } from '../../src/engine/events.js';
import { applyToModel, INITIAL_CLUSTER, needsIdentitySplits, Op, opWithNodes, tierHeavyOp, toEventSharedAddress } from '../engine/gen.js';
import { fcReplay, fcRuns } from '../fc-knobs.js';

/*
 * Finding 2370 (docs/attack-findings-27x.md): agent.ts `staleVeto` lets a Kubernetes-only transaction commit while
 * identity events wait only if it admits none of their numbers more than before. Its claim, checked against a
 * recompute: a transaction it lets through leaves every such number, at every decision point of every local map (each
 * entry's first and last port and the ports just outside, before and after, every protocol for ANY), denied wherever it
 * was denied before (a new endpoint counts as denying before). Histories as 27x's placement property (tiers, CCNPs,
 * entities `all`, ranges, L7 and DNS redirects, nodes), with external numbers 256..259 given to pods' labels.
 */
const ID = fc.integer({ min: 256, max: 259 });
type IdOp = { readonly k: 'id'; readonly id: number; readonly pod: number };
const idOp: fc.Arbitrary<IdOp> = fc.record({ k: fc.constant('id' as const), id: ID, pod: fc.nat({ max: 50 }) });

function podLabels(state: ClusterState, n: number): Readonly<Record<string, string>> | undefined {
  const pods = [...state.pods.values()];
  const p = pods[n % Math.max(pods.length, 1)];
  if (!p) return undefined;
  const nsLabels = state.namespaces.get(p.namespace)?.labels ?? namespaceWithDefaults(p.namespace, {}).labels;
  return securityLabels(podIdentityLabels(p, nsLabels));
}

const ALL_PROTOCOLS = [1, 6, 17, 58, 132];

function points(maps: readonly (MapSnapshot | undefined)[], d: 'ingress' | 'egress'): [number, number][] {
  const out = new Map<string, [number, number]>();
  for (const m of maps)
    for (const r of m?.values() ?? []) {
      if (r.key.direction !== d) continue;
      const end = r.key.portPrefixLen === 0 ? 65535 : maskedPortEnd(r.key.port, r.key.portPrefixLen);
      for (const proto of r.key.protocol === 0 ? ALL_PROTOCOLS : [r.key.protocol])
        for (const port of [r.key.port - 1, r.key.port, end, end + 1]) if (port >= 0 && port <= 65535) out.set(`${proto}/${port}`, [proto, port]);
    }
  return [...out.values()];
}

describe('27x: the stale veto lets through only transactions that admit no waiting number more', () => {
  it('after a transaction it lets through, every waiting number is denied wherever it was denied before', () => {
    const stats = { passed: 0, vetoed: 0, probes: 0 };
    const k8sOp = fc.oneof({ weight: 3, arbitrary: tierHeavyOp }, { weight: 2, arbitrary: opWithNodes }).filter((o) => !needsIdentitySplits(o));
    const step = fc.tuple(fc.array(idOp, { maxLength: 2 }), fc.array(k8sOp, { minLength: 1, maxLength: 4 }), fc.subarray([256, 257, 258, 259], { minLength: 1 }));
    fc.assert(
      fc.property(fc.array(step, { minLength: 2, maxLength: 12 }), (steps) => {
        const e = new Engine({ identitySource: 'external', mapCapacity: 400 });
        let state = INITIAL_CLUSTER;
        for (const [ids, ops, staleIds] of steps) {
          // The identities first, as a committed transaction of their own.
          const idEvents: EngineEvent[] = [];
          for (const o of ids) {
            const labels = podLabels(state, o.pod);
            if (labels) idEvents.push({ type: 'upsertIdentity', id: o.id, labels });
          }
          if (idEvents.length > 0) {
            try {
              e.apply(idEvents);
              for (const ev of idEvents) state = applyToModel(state, ev);
            } catch (err) {
              if (!(err instanceof MapCapacityError)) throw err;
            }
          }
          const events: EngineEvent[] = [];
          let next: ClusterState | null = state;
          for (const o of ops as Op[]) {
            const ev = toEventSharedAddress(o);
            try {
              next = applyToModel(next, ev);
            } catch {
              next = null;
              break;
            }
            events.push(ev);
          }
          if (next === null || events.length === 0) continue;
          const stale = new Set(staleIds.filter((id) => e.identityLabels(id) !== undefined));
          if (stale.size === 0) {
            try {
              e.apply(events);
              state = next;
            } catch (err) {
              if (!(err instanceof MapCapacityError)) throw err;
            }
            continue;
          }
          const before = new Map(e.endpoints().map((ep) => [ep, e.mapState(ep)]));
          const old = new Map<string, boolean>();
          for (const [ep, m] of before)
            for (const d of ['ingress', 'egress'] as const)
              for (const [proto, port] of points([m], d))
                for (const x of stale) {
                  const v = e.lookup(ep, x, d, proto, port);
                  old.set(`${ep} ${x} ${d} ${proto}/${port}`, v !== undefined && !v.entry.deny);
                }
          try {
            e.apply(events, staleVeto(stale));
          } catch (err) {
            if (err instanceof TransactionVetoedError) {
              stats.vetoed++;
              continue;
            }
            if (err instanceof MapCapacityError) continue;
            throw err;
          }
          stats.passed++;
          state = next;
          for (const ep of e.endpoints()) {
            const m = e.mapState(ep);
            for (const d of ['ingress', 'egress'] as const)
              for (const [proto, port] of points([m, before.get(ep)], d))
                for (const x of stale) {
                  stats.probes++;
                  const v = e.lookup(ep, x, d, proto, port);
                  const admits = v !== undefined && !v.entry.deny;
                  if (!admits) continue;
                  // Admitted now: it must have been admitted before (a lookup at a point the old map did not split is
                  // the old map's verdict there, recomputed from the old snapshot's keys).
                  const was = old.get(`${ep} ${x} ${d} ${proto}/${port}`) ?? (before.has(ep) ? oldVerdict(before.get(ep) as MapSnapshot, x, d, proto, port) : false);
                  expect(was, `${ep} ${d} ${proto}/${port} admits stale ${x} now, not before: ${JSON.stringify(v)}`).toBe(true);
                }
          }
        }
      }),
      { numRuns: fcRuns(60), ...fcReplay(2370) },
    );
    expect(stats.passed).toBeGreaterThan(10);
    expect(stats.vetoed).toBeGreaterThan(5);
    expect(stats.probes).toBeGreaterThan(100);
  }, 1_800_000);
});


function oldVerdict(m: MapSnapshot, x: number, d: 'ingress' | 'egress', proto: number, port: number): boolean {
  const v = datapathLookup(m, x, d, proto, port);
  return v !== undefined && !v.entry.deny;
}
