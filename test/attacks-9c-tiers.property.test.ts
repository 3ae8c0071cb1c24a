import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Engine } from '../src/engine/engine.js';
import { EngineError } from '../src/engine/events.js';
import { initialEvents } from '../src/harness/cluster-sync.js';
import type { ClusterState } from '../src/model/cluster.js';
import { endpointAddress, resolveEndpoint } from '../src/model/flow.js';
import { PROTOCOL_NUMBER } from '../src/model/ports.js';
import { DIRECTIONS } from '../src/model/rules.js';
import { decideDirection } from '../src/naive/evaluator.js';
import { EXTERNALS, INITIAL_CLUSTER, modelAfter, normalizedMaps, Op, PROBE_PORTS, prng, tierHeavyOp, toEvent, trackLocality } from './engine/gen.js';

/*
 * Round 9c (docs/attack-findings-9c.md), incremental paths the tiers property's generator does not
 * take: its ClusterNetworkPolicies keep disjoint priorities per name, so a policy never moves into or
 * out of a same-priority group by a priority change, and a pod never moves between namespaces in
 * one transaction. Here any ClusterNetworkPolicy upsert may take priority 1, 4 or 20 (shared across
 * names and with the group names), and a transaction may move a pod (delete + add under the same
 * name in another namespace) while Pass rules apply. After every transaction the incremental engine
 * equals a fresh one, and sampled flows through the engine's map equal the oracle.
 */
const RUNS = process.env.DISTILL_LONG ? 1000 : 60;
const SAMPLED = 30;

const collidingPriority: fc.Arbitrary<Op> = fc.tuple(tierHeavyOp, fc.constantFrom<number | null>(null, 1, 4, 20)).map(([o, p]) => {
  if (p === null || o.k !== 'policy' || o.manifest.kind !== 'ClusterNetworkPolicy') return o;
  return { ...o, manifest: { ...o.manifest, spec: { ...(o.manifest.spec as Record<string, unknown>), priority: p } } };
});
const NS = ['n0', 'n1', 'n2'];
const move: fc.Arbitrary<Op[]> = fc
  .record({ from: fc.constantFrom(...NS), to: fc.constantFrom(...NS), pod: tierHeavyOp.filter((o) => o.k === 'pod') })
  .map(({ from, to, pod }) => (pod.k === 'pod' ? [{ k: 'delPod', ns: from, name: pod.name }, { ...pod, ns: to }] : []));
const txn: fc.Arbitrary<Op[]> = fc.oneof({ weight: 4, arbitrary: fc.array(collidingPriority, { minLength: 1, maxLength: 3 }) }, { weight: 1, arbitrary: move });

let checked = 0;
function checkFlow(engine: Engine, state: ClusterState, ep: string, peerName: string, direction: 'ingress' | 'egress', probe: (typeof PROBE_PORTS)[number]): void {
  const subject = resolveEndpoint(state, ep);
  const peer = resolveEndpoint(state, peerName);
  if (subject.kind !== 'pod') throw new Error(`${ep} is not a pod`);
  const naive = decideDirection(state, subject, direction, peer, probe.protocol, probe.port, undefined);
  const peerId = peer.kind === 'pod' ? (engine.identityOfPod(peer.name) as number) : engine.identityOfIp(endpointAddress(peer));
  const hit = engine.lookup(ep, peerId, direction, PROTOCOL_NUMBER[probe.protocol], probe.port);
  const allowed = hit !== undefined && !hit.entry.deny;
  checked++;
  expect({ ep, peerName, direction, ...probe, allowed }).toEqual({ ep, peerName, direction, ...probe, allowed: naive.allowed });
}

describe('ClusterNetworkPolicy priorities colliding and changing across names, pods moving namespaces', () => {
  it('incremental = fresh engine, and flows = oracle, after every transaction', () => {
    fc.assert(
      fc.property(fc.array(txn, { minLength: 4, maxLength: 20 }), fc.nat(), (txns: Op[][], seed) => {
        const engine = new Engine();
        let state = INITIAL_CLUSTER;
        const local = new Map<string, boolean>();
        const rnd = prng(seed);
        const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)] as T;
        for (const ops of txns) {
          const events = ops.map(toEvent);
          const next = modelAfter(state, events);
          if (next === null) {
            expect(() => engine.apply(events)).toThrow(EngineError);
            continue;
          }
          engine.apply(events);
          for (const e of events) trackLocality(local, next, e);
          state = next;
          const fresh = new Engine();
          fresh.apply(initialEvents(state, (p) => local.get(`${p.namespace}/${p.name}`) ?? false));
          expect(normalizedMaps(engine)).toEqual(normalizedMaps(fresh));
          const endpoints = engine.endpoints();
          const peers = [...state.pods.keys(), ...EXTERNALS.map((e) => e.name)];
          for (let i = 0; endpoints.length > 0 && i < SAMPLED; i++) checkFlow(engine, state, pick(endpoints), pick(peers), pick(DIRECTIONS), pick(PROBE_PORTS));
        }
      }),
      { numRuns: RUNS, ...(process.env.DISTILL_SEED ? { seed: Number(process.env.DISTILL_SEED), ...(process.env.DISTILL_PATH ? { path: process.env.DISTILL_PATH } : {}) } : {}) },
    );
    expect(checked).toBeGreaterThan(RUNS * SAMPLED);
  }, 20 * 60_000);
});
