import fc from 'fast-check';
import { datapathPasses } from '../../src/model/policy-map.js';
import { afterAll, describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.js';
import { ChangeSet, EngineError, EngineEvent } from '../../src/engine/events.js';
import { comparableIpcache, endpointMaps, sameEndpointMaps } from '../../src/harness/cluster-sync.js';
import type { ClusterState } from '../../src/model/cluster.js';
import { resolveEndpoint, endpointAddress } from '../../src/model/flow.js';
import { STACK_MODES } from '../../src/model/identity.js';
import { labelSetKey } from '../../src/model/labels.js';
import { datapathLookup, LookupResult, policyKeyString } from '../../src/model/policy-map.js';
import { PROTOCOL_NUMBER } from '../../src/model/ports.js';
import { decideDirection } from '../../src/naive/evaluator.js';
import { checkAllFlows, peerAt } from './all-flows.js';
import { freshEngine } from './fresh-engine.js';
import { Kernel } from './kernel-view.js';
import { ALL_INITIAL, AllOp, allOp, hasBad, SETUP, toEvents } from './gen-all.js';
import { modelAfter, normalizedMaps, PROBE_PORTS, prng, REQUESTS, trackLocality } from './gen.js';
import { learnt, learntByOracle } from './learnt.js';
import { fcRuns } from '../fc-knobs.js';

/*
 * Every feature at once (attack round 9d): hostile histories from gen-all.ts, with refused batches
 * and faults injected at random points. After every transaction: the engine's own verdicts for all
 * flows (all-flows.ts) and the kernel's (policy maps and ipcache built only from the change sets,
 * the peer's identity by longest-prefix match on its address) agree with the oracle on the model,
 * and the engine's map states equal a fresh engine's built from that model.
 */
const LONG = Boolean(process.env.DISTILL_LONG);
const RUNS = fcRuns(LONG ? 100_000 : 40);
const TIMEOUT = LONG || process.env.DISTILL_RUNS ? 60 * 60_000 : 120_000;
const REPLAY = process.env.DISTILL_SEED ? { seed: Number(process.env.DISTILL_SEED), ...(process.env.DISTILL_PATH ? { path: process.env.DISTILL_PATH } : {}) } : {};
/** Probes at the end of a history (every probe in long runs). */
const STEP_PROBES = PROBE_PORTS.filter((p) => [80, 81, 53, 443, 8].includes(p.port) && p.protocol !== 'SCTP');

class InjectedFault extends Error {}

/** Everything observable of the engine, exactly (as faults.test.ts). */
function exactState(engine: Engine): string {
  const endpoints = engine.endpoints().map((ep) => ({
    ep,
    map: [...engine.mapState(ep).values()].map((r) => `${policyKeyString(r.key)} ${JSON.stringify(r.entry)}`).sort(),
    l7: engine.l7Table(ep).map((r) => JSON.stringify(r)).sort(),
    redirects: engine.redirects(ep),
  }));
  const ids = engine.identities().map((id) => `${id} ${labelSetKey(engine.identityLabels(id) ?? [])}`);
  return JSON.stringify({ endpoints, ids, ipcache: engine.ipcache(), sizes: engine.sizes(), dns: engine.dnsCacheFile() });
}

/** Every address a flow can name: pods', externals', nodes' and their health endpoints'. */
function addresses(state: ClusterState): string[] {
  const out = new Set<string>();
  for (const p of state.pods.values()) out.add(p.ip.text);
  for (const x of state.externals.values()) out.add(x.ip.text);
  for (const n of state.nodes?.values() ?? []) for (const ip of [...n.ips, ...(n.health ?? [])]) out.add(ip.text);
  return [...out];
}

const stats = { txns: 0, refused: 0, faults: 0, kernelFlows: 0, engineFlows: 0, l7: 0, nodeFlows: 0, learntFlows: 0 };

/** The kernel's verdicts for every endpoint × address × direction × probe (no probes: one random probe each) against the oracle. */
function checkKernelFlows(engine: Engine, kernel: Kernel, state: ClusterState, probes: typeof PROBE_PORTS, rnd: () => number, step: string): void {
  const networksInForce = [...state.policies.values()].some((p) => p.tiered?.rules.some((r) => r.peers.some((x) => x.kind === 'networks')));
  const learnt = new Set((state.dns?.entries ?? []).map((e) => e.ip.text));
  for (const ep of engine.endpoints()) {
    const subject = resolveEndpoint(state, ep);
    if (subject.kind !== 'pod') throw new Error(`${ep} is not a pod`);
    const map = kernel.maps.get(ep) ?? new Map<string, LookupResult>();
    for (const addr of addresses(state)) {
      const at = peerAt(state, addr);
      if (at === undefined) continue;
      const { peer } = at;
      const id = kernel.identityOf(endpointAddress(peer));
      for (const direction of ['ingress', 'egress'] as const) {
        for (const { protocol, port } of probes.length > 0 ? probes : [PROBE_PORTS[Math.floor(rnd() * PROBE_PORTS.length)] as (typeof PROBE_PORTS)[number]]) {
          const request = rnd() < 0.3 ? REQUESTS[Math.floor(rnd() * REQUESTS.length)] : undefined;
          const naive = decideDirection(at.state, subject, direction, peer, protocol, port, request);
          const hit = datapathLookup(map, id, direction, PROTOCOL_NUMBER[protocol], port);
          const { allowed: l4, proxied } = datapathPasses(hit?.entry, protocol);
          const verdict = proxied && hit && request ? engine.l7Verdict(ep, hit.entry.proxyPort, id, request, port) : undefined;
          if (verdict) stats.l7++;
          const allowed = verdict ? verdict.allowed : l4;
          stats.kernelFlows++;
          if (learnt.has(addr)) stats.learntFlows++;
          const got = { step, ep, addr, direction, protocol, port, request, allowed, proxied };
          if (peer.kind === 'node') {
            stats.nodeFlows++;
            // One identity per node kind: with a networks peer in force the engine may only be stricter.
            if (networksInForce) {
              if (allowed) expect({ ...got, oracle: naive.allowed }).toEqual({ ...got, oracle: true });
              continue;
            }
          }
          expect(got).toEqual({ ...got, allowed: naive.allowed, proxied: naive.proxied });
        }
      }
    }
  }
}

function faultHook(h: { at: number; calls: number; fired: string | null }): (point: string) => void {
  return (point) => {
    if (point.startsWith('rebuild:')) return;
    h.calls++;
    if (h.at > 0 && h.calls === h.at) {
      h.fired = point;
      throw new InjectedFault(`injected at ${point}`);
    }
  };
}

type Txn = [AllOp[], number];

function step(engine: Engine, hook: { at: number; calls: number; fired: string | null }, ops: AllOp[], at: number, state: ClusterState): { cs: ChangeSet | null; next: ClusterState | null; events: EngineEvent[] } {
  const events = ops.flatMap(toEvents);
  const next = hasBad(ops) ? null : modelAfter(state, events);
  const before = exactState(engine);
  Object.assign(hook, { at, calls: 0, fired: null });
  let cs: ChangeSet | null = null;
  try {
    cs = engine.apply(events);
  } catch (e) {
    if (hook.fired === null) {
      expect({ refusedByEngine: String(e), modelRefuses: next === null }).toEqual({ refusedByEngine: String(e), modelRefuses: true });
      expect(e).toBeInstanceOf(EngineError);
      stats.refused++;
    } else {
      expect(e).toBeInstanceOf(InjectedFault);
      stats.faults++;
    }
    expect(exactState(engine)).toBe(before);
  }
  hook.at = 0;
  if (next === null) {
    expect(cs, 'the engine accepted a batch the model refuses').toBeNull();
    return { cs: null, next, events };
  }
  return { cs: cs ?? engine.apply(events), next, events };
}

describe('every feature at once: engine and kernel view vs the oracle and a fresh engine', () => {
  // Dual-stack too (attack round 27e): outside addresses are world-ipv4 / world-ipv6 there, the engine's and the kernel's.
  it.each(STACK_MODES)('after every transaction (refused, faulted or not), %s-stack', (stack) => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.array(allOp, { minLength: 1, maxLength: 4 }), fc.oneof(fc.constant(0), fc.constant(0), fc.integer({ min: 1, max: 40 }))), { minLength: 3, maxLength: 20 }), fc.nat(), (txns: Txn[], seed) => {
        const hook = { at: 0, calls: 0, fired: null as string | null };
        const engine = new Engine({ faultHook: faultHook(hook), stack });
        const kernel = new Kernel(stack);
        const local = new Map<string, boolean>();
        const rnd = prng(seed);
        let state: ClusterState = stack === 'single' ? ALL_INITIAL : { ...ALL_INITIAL, stack };
        [[[...SETUP], 0] as Txn, ...txns].forEach(([ops, at], ti, all) => {
          const { cs, next, events } = step(engine, hook, ops, at, state);
          if (cs === null || next === null) return;
          stats.txns++;
          kernel.feed(cs);
          state = next;
          for (const e of events) trackLocality(local, state, e);
          expect(sameEndpointMaps(kernel.maps, endpointMaps(engine)), `${ti}: kernel maps`).toBe(true);
          expect(kernel.ipcache).toEqual(new Map(engine.ipcache().map((e) => [e.prefix, e.identity])));
          const fresh = freshEngine(engine, state, local, { stack });
          expect(normalizedMaps(engine)).toEqual(normalizedMaps(fresh));
          expect(comparableIpcache(engine)).toEqual(comparableIpcache(fresh));
          expect(learnt(engine)).toEqual(learntByOracle(state));
          const last = ti === all.length - 1;
          // Every (endpoint, address, direction) after every transaction: one probe each (the
          // engine's own view: one probe per transaction), every probe at the end of a history.
          const probes = last ? (LONG ? PROBE_PORTS : STEP_PROBES) : [PROBE_PORTS[(seed + ti) % PROBE_PORTS.length] as (typeof PROBE_PORTS)[number]];
          const networksInForce = [...state.policies.values()].some((p) => p.tiered?.rules.some((r) => r.peers.some((x) => x.kind === 'networks')));
          stats.engineFlows += checkAllFlows(engine, state, probes, `txn ${ti}`, (peer) => networksInForce && peer.kind === 'node').flows;
          checkKernelFlows(engine, kernel, state, last ? probes : [], rnd, `txn ${ti}`);
        });
      }),
      { numRuns: RUNS, ...REPLAY },
    );
  }, TIMEOUT);
});

afterAll(() => {
  process.stdout.write(`all features: ${JSON.stringify(stats)}\n`);
});

