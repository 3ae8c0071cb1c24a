import fc from 'fast-check';
import { datapathPasses } from '../../src/model/policy-map.js';
import { afterAll, describe, expect, it } from 'vitest';
import { ClusterState } from '../../src/model/cluster.js';
import { LookupResult, policyKeyString, PolicyEntry } from '../../src/model/policy-map.js';
import { FlowProtocol, PROTOCOL_NUMBER } from '../../src/model/ports.js';
import { Engine } from '../../src/engine/engine.js';
import { ChangeSet, EngineError, EngineEvent, MapCapacityError } from '../../src/engine/events.js';
import { entryEquals } from '../../src/engine/map-deltas.js';
import { endpointMaps, sameEndpointMaps, initialEvents, l7RowKey, L7Tables, l7Tables, l7TablesDiffSize } from '../../src/harness/cluster-sync.js';
import { decideDirection } from '../../src/naive/evaluator.js';
import { endpointAddress, resolveEndpoint } from '../../src/model/flow.js';
import { l7PolicyKey } from '../../src/model/l7.js';
import { applyToModel, EXTERNALS, INITIAL_CLUSTER, normalizedMaps, Op, opWithNodes, PROBE_PORTS, prng, REQUESTS, toEvent, trackLocality, modelAfter } from './gen.js';
import { fcRuns } from '../fc-knobs.js';

const LONG = Boolean(process.env.DISTILL_LONG);
const RUNS = fcRuns(LONG ? 3000 : 300);
const FELIX_RUNS = fcRuns(LONG ? 5000 : 500);
const FLOWS_PER_TXN = 24;
const L7_FLOWS_PER_TXN = 16;
const PROTOCOL_NAME: Record<number, string> = Object.fromEntries(Object.entries(PROTOCOL_NUMBER).map(([n, v]) => [v, n]));
/** Long runs take minutes; the default per-test timeout is for `npm test`. */
const TIMEOUT = LONG || process.env.DISTILL_RUNS ? 60 * 60_000 : undefined;
/** `npm test` must exercise at least this many engine transactions across the properties. */
const MIN_TRANSACTIONS = 10_000;
let transactions = 0;

function apply(engine: Engine, events: readonly EngineEvent[]): ChangeSet {
  transactions++;
  return engine.apply(events);
}

type Maps = Map<string, Map<string, LookupResult>>;

let ipcacheDeltaCount = 0;

/** Applies ipcache deltas, checking each against the state it claims to change. */
function applyIpcacheDeltas(before: ReadonlyMap<string, number>, cs: ChangeSet): Map<string, number> {
  const out = new Map(before);
  for (const d of cs.ipcache) {
    expect(out.get(d.prefix)).toBe(d.op === 'delete' ? d.identity : d.previous);
    if (d.op === 'delete') out.delete(d.prefix);
    else out.set(d.prefix, d.identity);
  }
  return out;
}

function mapDiffSize<K, V>(a: ReadonlyMap<K, V>, b: ReadonlyMap<K, V>): number {
  let n = 0;
  for (const [k, v] of b) if (a.get(k) !== v) n++;
  for (const k of a.keys()) if (!b.has(k)) n++;
  return n;
}


/** The exact diff size between two snapshots (endpoints that vanish are dropped as a whole). */
function exactDiffSize(before: Maps, after: Maps): number {
  let n = 0;
  for (const [ep, m] of after) {
    const b = before.get(ep) ?? new Map<string, LookupResult>();
    for (const [ks, r] of m) if (!entryEquals(b.get(ks)?.entry, r.entry)) n++;
    for (const ks of b.keys()) if (!m.has(ks)) n++;
  }
  return n;
}

function applyDeltas(before: Maps, cs: ChangeSet): Maps {
  const out: Maps = new Map([...before].map(([ep, m]) => [ep, new Map(m)]));
  for (const ep of cs.endpointsRemoved) out.delete(ep);
  for (const ep of cs.endpointsAdded) out.set(ep, new Map());
  const seen = new Set<string>();
  for (const d of cs.deltas) {
    const ks = policyKeyString(d.key);
    expect(seen.has(`${d.endpoint} ${ks}`), `key ${ks} of ${d.endpoint} appears twice in one change set`).toBe(false);
    seen.add(`${d.endpoint} ${ks}`);
    const m = out.get(d.endpoint);
    expect(m, `delta for unknown endpoint ${d.endpoint}`).toBeDefined();
    if (d.op === 'upsert') {
      expect(entryEquals(m!.get(ks)?.entry, d.entry), `upsert of an unchanged value ${ks}`).toBe(false);
      expect(d.previous, `upsert's previous value of ${ks}`).toEqual(m!.get(ks)?.entry);
      m!.set(ks, { key: d.key, entry: d.entry });
    } else {
      expect(m!.has(ks), `delete of an absent key ${ks}`).toBe(true);
      m!.delete(ks);
    }
  }
  return out;
}


function engineState(engine: Engine): string {
  const redirects = engine.endpoints().map((ep) => [ep, engine.redirects(ep)]);
  // The ipcache too: a refused batch must leave each IP two pods claim with its owner.
  return JSON.stringify({ maps: normalizedMaps(engine), sizes: engine.sizes(), ids: engine.identities(), redirects, ipcache: engine.ipcache() });
}

type Tables = L7Tables;

/** Every endpoint's L7 tables; every row's redirect must have a proxy port. */
function tables(engine: Engine): Tables {
  for (const ep of engine.endpoints()) {
    for (const row of engine.l7Table(ep)) expect(row.redirect.proxyPort, `${ep}: row of a redirect without a proxy port`).toBeGreaterThanOrEqual(10000);
  }
  return l7Tables(engine);
}

/** Applies the L7 deltas, refusing no-op, duplicate and dangling ones; returns the new tables. */
function applyL7Deltas(before: Tables, cs: ChangeSet): Tables {
  const out = new Map([...before].map(([ep, m]) => [ep, new Map(m)]));
  for (const ep of cs.endpointsRemoved) out.delete(ep);
  for (const ep of cs.endpointsAdded) out.set(ep, new Map());
  const seen = new Set<string>();
  for (const d of cs.l7Deltas) {
    const k = l7RowKey(d.redirect, d.peer, d.portRange);
    expect(seen.has(`${d.endpoint} ${k}`), `L7 row ${k} of ${d.endpoint} appears twice in one change set`).toBe(false);
    seen.add(`${d.endpoint} ${k}`);
    const m = out.get(d.endpoint);
    expect(m, `L7 delta for unknown endpoint ${d.endpoint}`).toBeDefined();
    if (d.op === 'upsert') {
      expect(m!.get(k), `L7 upsert of an unchanged row ${k}`).not.toBe(l7PolicyKey(d.policy));
      expect(d.previous === undefined ? undefined : l7PolicyKey(d.previous)).toBe(m!.get(k));
      m!.set(k, l7PolicyKey(d.policy));
    } else {
      expect(m!.get(k), `L7 delete of an absent row ${k}`).toBe(l7PolicyKey(d.policy));
      m!.delete(k);
    }
  }
  return out;
}

/** Sampled flows: the datapath lookup on the engine's map vs the naive evaluator. */
function checkFlows(engine: Engine, state: ClusterState, seed: number): void {
  const endpoints = engine.endpoints();
  if (endpoints.length === 0) return;
  const peers = [...state.pods.keys(), ...EXTERNALS.map((e) => e.name), ...[...(state.nodes?.keys() ?? [])].map((n) => `node:${n}`)];
  // Nodes share one identity per kind: the engine cannot split them by a ClusterNetworkPolicy's
  // networks CIDR, so with one in force it is only required never to be more permissive.
  const networksInForce = [...state.policies.values()].some((p) => p.tiered?.rules.some((r) => r.peers.some((x) => x.kind === 'networks')));
  const rnd = prng(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)] as T;
  // Random flows, then flows aimed at the redirected ports (so proxies really get requests).
  const redirected = endpoints.flatMap((ep) => engine.redirects(ep).map((r) => ({ ep, r })));
  for (let i = 0; i < FLOWS_PER_TXN + L7_FLOWS_PER_TXN; i++) {
    const aimed = i >= FLOWS_PER_TXN ? (redirected.length > 0 ? pick(redirected) : undefined) : undefined;
    if (i >= FLOWS_PER_TXN && !aimed) break;
    const ep = aimed ? aimed.ep : pick(endpoints);
    const peerName = pick(peers);
    const direction = aimed ? aimed.r.direction : rnd() < 0.5 ? 'ingress' : 'egress';
    const { protocol, port } = aimed ? { protocol: PROTOCOL_NAME[aimed.r.protocol] as FlowProtocol, port: aimed.r.port } : pick(PROBE_PORTS);
    const request = pick(REQUESTS);
    const subject = resolveEndpoint(state, ep);
    const peer = resolveEndpoint(state, peerName);
    if (subject.kind !== 'pod') throw new Error('endpoint is not a pod');
    const naive = decideDirection(state, subject, direction, peer, protocol, port, request);
    const peerId = peer.kind === 'pod' ? engine.identityOfPod(peer.name)! : engine.identityOfIp(endpointAddress(peer));
    const hit = engine.lookup(ep, peerId, direction, PROTOCOL_NUMBER[protocol], port);
    const { allowed: l4Allowed, proxied } = datapathPasses(hit?.entry, protocol);
    // A redirected request goes to the proxy on the entry's port, which decides from its L7 table.
    const verdict = proxied && request ? engine.l7Verdict(ep, hit!.entry.proxyPort, peerId, request, port) : undefined;
    const l7 = verdict && request ? { ...verdict, allowedBy: engine.l7AllowedBy(ep, hit!.entry.proxyPort, peerId, request, port) } : undefined;
    if (proxied && request) l7Checked++;
    const allowed = l7 ? l7.allowed : l4Allowed;
    if (peer.kind === 'node') nodeFlows++;
    if (peer.kind === 'node' && networksInForce) {
      if (allowed) expect({ ep, peerName, direction, protocol, port, request, allowed: naive.allowed }).toEqual({ ep, peerName, direction, protocol, port, request, allowed: true });
      continue;
    }
    expect({ ep, peerName, direction, protocol, port, request, allowed, proxied, l7 }).toEqual({
      ep,
      peerName,
      direction,
      protocol,
      port,
      request,
      allowed: naive.allowed,
      proxied: naive.proxied,
      l7: naive.l7,
    });
  }
}

/** Does key `o` cover every packet key `i` covers (identity aside)? */
function covers(o: LookupResult['key'], i: LookupResult['key']): boolean {
  if (o.direction !== i.direction) return false;
  if (o.protocol === 0) return true;
  if (o.protocol !== i.protocol || i.portPrefixLen < o.portPrefixLen) return false;
  const shift = 16 - o.portPrefixLen;
  return o.portPrefixLen === 0 || i.port >> shift === o.port >> shift;
}

/** Cilium's insertion rules hold in every map: nothing the datapath could never pick is kept. */
function checkMinimal(engine: Engine): void {
  for (const ep of engine.endpoints()) {
    const entries = [...engine.mapState(ep).values()];
    for (const e of entries) {
      for (const o of entries) {
        if (o === e || (o.key.identity !== e.key.identity && o.key.identity !== 0)) continue;
        if (covers(o.key, e.key) && o.entry.precedence > e.entry.precedence) {
          throw new Error(`${ep}: ${policyKeyString(e.key)} is hidden by broader ${policyKeyString(o.key)} of higher precedence`);
        }
      }
      if (e.key.identity !== 0) {
        const w = engine.mapState(ep).get(policyKeyString({ ...e.key, identity: 0 }));
        if (w && entryEquals(w.entry, e.entry)) throw new Error(`${ep}: ${policyKeyString(e.key)} duplicates the identity-0 entry`);
      }
    }
  }
}

/** Replays a failure fast-check printed: DISTILL_SEED=<seed> DISTILL_PATH=<path>. */
const REPLAY = process.env.DISTILL_SEED ? { seed: Number(process.env.DISTILL_SEED), ...(process.env.DISTILL_PATH ? { path: process.env.DISTILL_PATH } : {}) } : {};

const transaction = fc.array(opWithNodes, { minLength: 1, maxLength: 3 });
/** Redirected flows with a request the property compared (L7 verdicts must really be exercised). */
let l7Checked = 0;
/** Sampled flows with a node as the peer. */
let nodeFlows = 0;
let l7DeltaCount = 0;

describe('engine vs naive evaluator, after every transaction', () => {
  it('map state = fresh engine on the final state; deltas = exact diff; sampled flows = oracle; bad batches change nothing', () => {
    fc.assert(
      fc.property(fc.array(transaction, { minLength: 5, maxLength: 40 }), fc.nat(), (txns: Op[][], seed) => {
        const engine = new Engine();
        let state = INITIAL_CLUSTER;
        const local = new Map<string, boolean>();
        let maps: Maps = new Map();
        let l7: Tables = new Map();
        let ipcache = new Map<string, number>();
        txns.forEach((ops, ti) => {
          const events = ops.map(toEvent);
          const next = modelAfter(state, events);
          if (next === null) {
            // The model refuses the batch: the engine must refuse it too and keep its state.
            const before = engineState(engine);
            expect(() => apply(engine, events)).toThrow(EngineError);
            expect(engineState(engine)).toBe(before);
            return;
          }
          const cs = apply(engine, events);
          for (const e of events) trackLocality(local, next, e);
          state = next;
          // (b) deltas turn the old maps into the new ones, and there are exactly as many as changes.
          const now = endpointMaps(engine);
          expect(sameEndpointMaps(applyDeltas(maps, cs), now)).toBe(true);
          expect(cs.deltas.length).toBe(exactDiffSize(maps, now));
          expect(new Set(engine.endpoints())).toEqual(new Set([...local].filter(([, l]) => l).map(([k]) => k)));
          maps = now;
          // (b') the same for the L7 tables: deltas apply cleanly and are exactly the changes.
          const l7Now = tables(engine);
          expect(applyL7Deltas(l7, cs)).toEqual(l7Now);
          expect(cs.l7Deltas.length).toBe(l7TablesDiffSize(l7, l7Now));
          l7DeltaCount += cs.l7Deltas.length;
          l7 = l7Now;
          // (b'') the ipcache deltas are exactly the changes of the whole ipcache.
          const ipcacheNow = new Map(engine.ipcache().map((e) => [e.prefix, e.identity]));
          expect(applyIpcacheDeltas(ipcache, cs)).toEqual(ipcacheNow);
          expect(cs.ipcache.length).toBe(mapDiffSize(ipcache, ipcacheNow));
          ipcacheDeltaCount += cs.ipcache.length;
          ipcache = ipcacheNow;
          checkMinimal(engine);
          // (a) a fresh engine fed the final state computes the same map states.
          const fresh = new Engine();
          // Not counted: it is the reference here, not the engine under test.
          fresh.apply(initialEvents(state, (p) => local.get(`${p.namespace}/${p.name}`) ?? false));
          expect(normalizedMaps(engine)).toEqual(normalizedMaps(fresh));
          // (c) sampled flows agree with the oracle.
          checkFlows(engine, state, seed + ti);
        });
        // Deleting everything leaves no endpoint and no identity but the reserved ones.
        const teardown: EngineEvent[] = [...state.namespaces.keys()].map((name) => ({ type: 'deleteNamespace', name }));
        for (const p of state.policies.values()) if (p.ref.namespace === undefined || !state.namespaces.has(p.ref.namespace)) teardown.push({ type: 'deletePolicy', ref: p.ref });
        for (const p of state.pods.values()) if (!state.namespaces.has(p.namespace)) teardown.push({ type: 'deletePod', namespace: p.namespace, name: p.name });
        apply(engine, teardown);
        expect(engine.endpoints()).toEqual([]);
        expect(engine.sizes()).toMatchObject({ identities: 10, localIdentities: 0, selectors: 0, subjectSelectors: 0, mapStates: 0 });
      }),
      { numRuns: RUNS, ...REPLAY },
    );
  }, TIMEOUT);
});

/**
 * A namespace relabel re-identifies p2 in place, then the same transaction replaces p2 (now local) and
 * overflows a map: the rollback must give the live record its old identity, not the replaced one
 * (found merging perf14ns: the ipcache kept a freed identity). The second ccnp had no rule section, which
 * Cilium refuses (finding 713): it is written as a rule that allows and isolates nothing, as it was read.
 */
const NS_RELABEL_THEN_POD_REPLACED: [Op[][], number] = [[[{"k":"policy","manifest":{"apiVersion":"cilium.io/v2","kind":"CiliumClusterwideNetworkPolicy","metadata":{"name":"ccnp"},"specs":[{"endpointSelector":{},"egress":[{"toPorts":[{"ports":[{"port":"80","protocol":"TCP"}]}]}],"enableDefaultDeny":{"egress":false}}]}}],[{"k":"pod","ns":"n2","name":"p2","labels":{},"ports":0,"local":false}],[{"k":"ns","name":"n2","labels":{"team":"a"}},{"k":"pod","ns":"n2","name":"p2","labels":{},"ports":0,"local":true}],[{"k":"node","name":"n1","ips":0,"local":false}],[{"k":"node","name":"n1","ips":0,"local":false}],[{"k":"delPolicy","kind":"ClusterNetworkPolicy","ns":"n0","name":"cnp-t0"}],[{"k":"policy","manifest":{"apiVersion":"cilium.io/v2","kind":"CiliumClusterwideNetworkPolicy","metadata":{"name":"ccnp"},"specs":[{"endpointSelector":{"matchExpressions":[{"key":"app","operator":"In","values":["web"]}]},"ingress":[{}],"enableDefaultDeny":{"ingress":false}}]}}],[{"k":"ns","name":"n0","labels":{}}]],3];

describe('map capacity', () => {
  it('a transaction that would overflow any map is refused whole; the engine is exactly as before, identity numbers included', () => {
    let refused = 0;
    fc.assert(
      fc.property(fc.array(transaction, { minLength: 5, maxLength: 30 }), fc.integer({ min: 3, max: 12 }), (txns: Op[][], capacity) => {
        const engine = new Engine({ mapCapacity: capacity });
        let state = INITIAL_CLUSTER;
        const local = new Map<string, boolean>();
        let maps: Maps = new Map();
        for (const ops of txns) {
          const events = ops.map(toEvent);
          const before = engineState(engine);
          let cs: ChangeSet;
          try {
            cs = apply(engine, events);
          } catch (err) {
            if (!(err instanceof MapCapacityError) && !(err instanceof EngineError)) throw err;
            if (err instanceof MapCapacityError) {
              refused++;
              expect(err.needed).toBeGreaterThan(capacity);
            }
            expect(engineState(engine)).toBe(before);
            continue;
          }
          for (const e of events) state = applyToModel(state, e);
          for (const e of events) trackLocality(local, state, e);
          const now = endpointMaps(engine);
          expect(sameEndpointMaps(applyDeltas(maps, cs), now)).toBe(true);
          for (const m of now.values()) expect(m.size).toBeLessThanOrEqual(capacity);
          maps = now;
        }
        const fresh = new Engine({ mapCapacity: capacity });
        fresh.apply(initialEvents(state, (p) => local.get(`${p.namespace}/${p.name}`) ?? false));
        expect(normalizedMaps(engine)).toEqual(normalizedMaps(fresh));
      }),
      { numRuns: fcRuns(LONG ? 1000 : 100), examples: [NS_RELABEL_THEN_POD_REPLACED] },
    );
    // The property must have exercised refusals, not just accepted everything.
    expect(refused).toBeGreaterThan(20);
  }, TIMEOUT);
});

describe('Felix-style equivalences: the same final state by different routes gives the same maps', () => {
  it('one event per transaction = one batch = every event twice = rebuilt from the final state (both orders)', () => {
    fc.assert(
      fc.property(fc.array(opWithNodes, { minLength: 3, maxLength: 30 }), (ops: Op[]) => {
        // Keep the events the model accepts, in order: a valid history.
        let state = INITIAL_CLUSTER;
        const local = new Map<string, boolean>();
        const events: EngineEvent[] = [];
        for (const o of ops) {
          const e = toEvent(o);
          try {
            state = applyToModel(state, e);
          } catch {
            continue;
          }
          events.push(e);
          trackLocality(local, state, e);
        }
        fc.pre(events.length > 0);
        const isLocal = (p: { namespace: string; name: string }): boolean => local.get(`${p.namespace}/${p.name}`) ?? false;

        const split = new Engine();
        let splitDeltas = endpointMaps(split);
        for (const e of events) splitDeltas = applyDeltas(splitDeltas, apply(split, [e]));
        const expected = normalizedMaps(split);
        expect(sameEndpointMaps(splitDeltas, endpointMaps(split))).toBe(true);
        let splitTables: Tables = new Map();
        const replay = new Engine();
        for (const e of events) splitTables = applyL7Deltas(splitTables, apply(replay, [e]));
        expect(splitTables).toEqual(tables(replay));

        const squashed = new Engine();
        const cs = apply(squashed, events);
        expect(normalizedMaps(squashed)).toEqual(expected);
        expect(sameEndpointMaps(applyDeltas(new Map(), cs), endpointMaps(squashed))).toBe(true);

        const twice = new Engine();
        for (const e of events) {
          apply(twice, [e]);
          const before = engineState(twice);
          try {
            const again = apply(twice, [e]);
            expect(again.deltas).toEqual([]);
            expect(again.l7Deltas).toEqual([]);
          } catch (err) {
            // Only a repeated delete may be refused, and it changes nothing.
            expect(err).toBeInstanceOf(EngineError);
            expect(e.type.startsWith('delete')).toBe(true);
          }
          expect(engineState(twice)).toBe(before);
        }
        expect(normalizedMaps(twice)).toEqual(expected);

        const rebuilt = new Engine();
        apply(rebuilt, initialEvents(state, isLocal));
        expect(normalizedMaps(rebuilt)).toEqual(expected);

        const reversed = new Engine();
        for (const e of initialEvents(state, isLocal).reverse()) apply(reversed, [e]);
        expect(normalizedMaps(reversed)).toEqual(expected);
      }),
      { numRuns: FELIX_RUNS },
    );
  }, TIMEOUT);
});

afterAll(() => {
  // Not a timing assertion: a floor on how much the properties above exercised.
  if (transactions < MIN_TRANSACTIONS) throw new Error(`only ${transactions} engine transactions ran; at least ${MIN_TRANSACTIONS} are required`);
  // Floors on the L7 part: requests judged by proxies, and L7 table deltas checked.
  if (l7Checked < 300) throw new Error(`only ${l7Checked} redirected requests were compared with the oracle`);
  if (l7DeltaCount < 300) throw new Error(`only ${l7DeltaCount} L7 table deltas were checked`);
  if (nodeFlows < 100) throw new Error(`only ${nodeFlows} flows with a node peer were compared with the oracle`);
  process.stdout.write(`engine properties: ${transactions} transactions, ${l7Checked} redirected requests, ${nodeFlows} node flows, ${l7DeltaCount} L7 deltas, ${ipcacheDeltaCount} ipcache deltas\n`);
});

export type { PolicyEntry };
