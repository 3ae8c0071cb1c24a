import fc from 'fast-check';
import { datapathPasses } from '../../src/model/policy-map.js';
import { describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.js';
import { EngineError } from '../../src/engine/events.js';
import { initialEvents } from '../../src/harness/cluster-sync.js';
import type { ClusterState } from '../../src/model/cluster.js';
import { endpointAddress, resolveEndpoint } from '../../src/model/flow.js';
import { adminLevel, NP_TIER_LEVEL, precedenceLevel, tierPrecedence } from '../../src/model/policy-map.js';
import { PROTOCOL_NUMBER } from '../../src/model/ports.js';
import { DIRECTIONS } from '../../src/model/rules.js';
import { decideDirection } from '../../src/naive/evaluator.js';
import { EXTERNALS, INITIAL_CLUSTER, normalizedMaps, Op, PROBE_PORTS, prng, tierHeavyOp, toEvent, trackLocality, modelAfter } from './gen.js';
import { fcRuns } from '../fc-knobs.js';

/**
 * Histories dense in ClusterNetworkPolicies with Pass rules and same-priority groups (both tiers),
 * NetworkPolicy-tier changes under them, relabels and priority changes (issue 15): after every transaction the incremental engine equals
 * a fresh one, and flows decided through the engine's map agree with the oracle (sampled after
 * each transaction, every flow at the end of the history).
 */
const LONG = Boolean(process.env.DISTILL_LONG);
const RUNS = fcRuns(LONG ? 2000 : 150);
const TIMEOUT = LONG ? 60 * 60_000 : undefined;
const SAMPLED = 40;

/** Flows whose winning entry was a Pass band's (a copy of the lower tiers or the floor). */
let bandDecided = 0;
/**
 * Flows whose winning entry was a cell of a flattened same-priority group (gen.ts: priority 20; cells
 * take rule indices 5-24, the generated rules 0-2).
 */
let groupDecided = 0;
let checked = 0;

const isBandEntry = (p: number): boolean => precedenceLevel(p) > NP_TIER_LEVEL && p % 0x10000 < 0xff00;
const isGroupCell = (p: number): boolean =>
  (precedenceLevel(p) >= adminLevel(20, 24) && precedenceLevel(p) <= adminLevel(20, 5)) ||
  (precedenceLevel(p) >= precedenceLevel(tierPrecedence('Baseline', 20, 24, false)) && precedenceLevel(p) <= precedenceLevel(tierPrecedence('Baseline', 20, 5, false)));

function checkFlow(engine: Engine, state: ClusterState, ep: string, peerName: string, direction: 'ingress' | 'egress', probe: (typeof PROBE_PORTS)[number]): void {
  const subject = resolveEndpoint(state, ep);
  const peer = resolveEndpoint(state, peerName);
  if (subject.kind !== 'pod') throw new Error(`${ep} is not a pod`);
  const naive = decideDirection(state, subject, direction, peer, probe.protocol, probe.port, undefined);
  const peerId = peer.kind === 'pod' ? (engine.identityOfPod(peer.name) as number) : engine.identityOfIp(endpointAddress(peer));
  const hit = engine.lookup(ep, peerId, direction, PROTOCOL_NUMBER[probe.protocol], probe.port);
  const { allowed, proxied } = datapathPasses(hit?.entry, probe.protocol);
  checked++;
  if (hit && isBandEntry(hit.entry.precedence)) bandDecided++;
  if (hit && isGroupCell(hit.entry.precedence)) groupDecided++;
  expect({ ep, peerName, direction, ...probe, allowed, proxied }).toEqual({ ep, peerName, direction, ...probe, allowed: naive.allowed, proxied: naive.proxied });
}

function peersOf(state: ClusterState): string[] {
  return [...state.pods.keys(), ...EXTERNALS.map((e) => e.name)];
}

describe('Pass bands and same-priority groups: engine vs oracle on tier-dense histories', () => {
  it('incremental = fresh engine and flows = oracle after every transaction; every flow at the end', () => {
    fc.assert(
      fc.property(fc.array(fc.array(tierHeavyOp, { minLength: 1, maxLength: 3 }), { minLength: 4, maxLength: 25 }), fc.nat(), (txns: Op[][], seed) => {
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
          if (endpoints.length === 0) continue;
          for (let i = 0; i < SAMPLED; i++) checkFlow(engine, state, pick(endpoints), pick(peersOf(state)), pick(DIRECTIONS), pick(PROBE_PORTS));
        }
        for (const ep of engine.endpoints()) for (const peer of peersOf(state)) for (const d of DIRECTIONS) for (const probe of PROBE_PORTS) checkFlow(engine, state, ep, peer, d, probe);
      }),
      { numRuns: RUNS, ...(process.env.DISTILL_SEED ? { seed: Number(process.env.DISTILL_SEED), ...(process.env.DISTILL_PATH ? { path: process.env.DISTILL_PATH } : {}) } : {}) },
    );
    console.log(`tiers: ${checked} flows checked, ${bandDecided} decided by a Pass band entry, ${groupDecided} by a same-priority group cell`);
    // The histories must really reach Pass bands and flattened groups, not only Accept/Deny.
    expect(bandDecided).toBeGreaterThan(checked / 400);
    expect(groupDecided).toBeGreaterThan(checked / 400);
  }, TIMEOUT);
});
