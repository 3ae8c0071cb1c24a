import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.js';
import { ChangeSet, EngineError, EngineEvent, MapCapacityError } from '../../src/engine/events.js';
import { comparableIpcache, endpointMaps, initialEvents, sameEndpointMaps } from '../../src/harness/cluster-sync.js';
import { parseCidr, parseIp } from '../../src/model/cidr.js';
import { cidrGroupNameKey, CidrGroup } from '../../src/model/cidr-group.js';
import { ClusterState, namespaceWithDefaults } from '../../src/model/cluster.js';
import { endpointAddress, resolveEndpoint } from '../../src/model/flow.js';
import { podIdentityLabels, securityLabels, type StackMode, UNALLOCATED_POD_IDENTITY } from '../../src/model/identity.js';
import { labelSetKey } from '../../src/model/labels.js';
import { datapathLookup, LookupResult, policyKeyString } from '../../src/model/policy-map.js';
import { PROTOCOL_NUMBER } from '../../src/model/ports.js';
import { decideDirection } from '../../src/naive/evaluator.js';
import { parseManifest } from '../../src/policy/manifest.js';
import { applyChangeSet } from '../../src/backend/backend.js';
import { MemoryBackend } from '../../src/backend/memory.js';
import { fcReplay, fcRuns } from '../fc-knobs.js';
import { applyToModel, INITIAL_CLUSTER, needsIdentitySplits, normalizedMaps, op, Op, PROBE_PORTS, toEvent, trackLocality } from './gen.js';
import { Kernel } from './kernel-view.js';
import { poison, UNPOISON } from './poison.js';

/*
 * Attack round 27e: session 26's newest engine inputs mixed in one history. Identities from outside
 * (numbers 256..261 for some pod's labels, turned unreadable under their last labels, none or a pod's,
 * deleted), so pods go pending (255) and back; the stack mode (single: world 2, dual: world-ipv4 9 /
 * world-ipv6 10), pods with an IPv6 address too; CiliumCIDRGroups and policies reading them; tier
 * policies at v1alpha2 and v1beta1; transactions plain, refused (a policy overflowing every map of
 * capacity 160) or failing after 1..60 fault points. After a refused or failed transaction: everything
 * observable exactly as before. After each accepted one: the kernel built from the change sets alone
 * equals the engine's maps and ipcache; every flow between a local endpoint and every pod and external
 * is the oracle's where both sides have readable identities, and denied where the peer's number is a
 * stand-in or 255 (docs/semantics.md, stand-ins and the unallocated number); a stand-in's or pending
 * endpoint is never more open than the oracle; and a fresh engine given the final state in one batch
 * has the same maps and ipcache (history-free).
 */

const RUNS = fcRuns(process.env.DISTILL_LONG ? 3000 : 40);
const REPLAY = fcReplay();
const POISON = poison(6);
class InjectedFault extends Error {}

type IdOp =
  | { readonly k: 'id'; readonly id: number; readonly pod: number }
  | { readonly k: 'delId'; readonly id: number }
  | { readonly k: 'cover'; readonly from: number }
  | { readonly k: 'bad'; readonly id: number; readonly how: 'last' | 'none' | 'pod'; readonly pod: number };
type GroupOp = { readonly k: 'group'; readonly name: string; readonly cidrs: readonly string[]; readonly labels: [string, string][] } | { readonly k: 'delGroup'; readonly name: string } | { readonly k: 'gpolicy'; readonly manifest: Record<string, unknown> };
type V6Op = { readonly k: 'v6'; readonly o: Op & { k: 'pod' } };
type Beta = { readonly k: 'beta'; readonly o: Op & { k: 'policy' } };
type MixOp = Op | IdOp | GroupOp | V6Op | Beta;

const ID = fc.integer({ min: 256, max: 261 });
const idOp: fc.Arbitrary<MixOp> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ k: fc.constant('id' as const), id: ID, pod: fc.nat({ max: 50 }) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('delId' as const), id: ID }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('cover' as const), from: fc.integer({ min: 256, max: 300 }) }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('bad' as const), id: ID, how: fc.constantFrom('last' as const, 'none' as const, 'pod' as const), pod: fc.nat({ max: 50 }) }) },
);

const PREFIXES = ['10.0.0.0/8', '10.244.1.0/24', '10.1.2.3/32', '192.168.0.0/16', '8.8.8.0/24', '0.0.0.0/0', '2001:db8::/32', '2001:db8::5/128', 'fd00::/8'];
const GROUPS = ['g1', 'g2'];
const groupItem = fc.oneof(
  fc.record({ cidrGroupRef: fc.constantFrom(...GROUPS, 'missing') }),
  fc.record({ cidrGroupSelector: fc.constantFrom({ matchLabels: { env: 'prod' } }, { matchExpressions: [{ key: 'env', operator: 'Exists' }] }) }),
  fc.record({ cidrGroupRef: fc.constantFrom(...GROUPS), except: fc.constantFrom(['10.1.0.0/16'], ['2001:db8::/64']) }),
);
const gRule = (dir: 'to' | 'from') => fc.oneof({ weight: 4, arbitrary: fc.record({ [`${dir}CIDRSet`]: fc.array(groupItem, { minLength: 1, maxLength: 2 }) }) }, { weight: 1, arbitrary: fc.constantFrom({ [`${dir}Entities`]: ['world'] }, { [`${dir}Endpoints`]: [{ matchLabels: { 'reserved:world-ipv4': '' } }] }, { [`${dir}Endpoints`]: [{ matchLabels: { 'reserved:world-ipv6': '' } }] }, { [`${dir}Endpoints`]: [{ matchLabels: { 'reserved:world': '' } }] }, { [`${dir}Entities`]: ['all'] }) });
const groupOp: fc.Arbitrary<MixOp> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ k: fc.constant('group' as const), name: fc.constantFrom(...GROUPS), cidrs: fc.subarray(PREFIXES, { maxLength: 3 }), labels: fc.constantFrom<[string, string][]>([], [['env', 'prod']], [['env', 'dev']]) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('delGroup' as const), name: fc.constantFrom(...GROUPS) }) },
  {
    weight: 3,
    arbitrary: fc
      .record({
        name: fc.constantFrom('cg-a', 'cnp-a'),
        ns: fc.constantFrom('n0', 'n1'),
        spec: fc.record({ endpointSelector: fc.constantFrom({}, { matchLabels: { app: 'web' } }), egress: fc.array(gRule('to'), { maxLength: 2 }), egressDeny: fc.array(gRule('to'), { maxLength: 1 }), ingress: fc.array(gRule('from'), { maxLength: 1 }), ingressDeny: fc.array(gRule('from'), { maxLength: 1 }) }),
      })
      .filter(({ spec }) => [spec.egress, spec.egressDeny, spec.ingress, spec.ingressDeny].some((l) => l.length > 0))
      .map(({ name, ns, spec }) => ({ k: 'gpolicy' as const, manifest: { apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name, namespace: ns }, spec } })),
  },
);

function parsesBeta(m: Record<string, unknown>): boolean {
  try {
    parseManifest({ ...m, apiVersion: 'policy.networking.k8s.io/v1beta1' }, 'mix#1');
    return true;
  } catch {
    return false;
  }
}
const base = op.filter((o) => !needsIdentitySplits(o));
const mixOp: fc.Arbitrary<MixOp> = fc.oneof(
  { weight: 6, arbitrary: base.map((o): MixOp => o) },
  { weight: 4, arbitrary: idOp },
  { weight: 3, arbitrary: groupOp },
  { weight: 1, arbitrary: base.filter((o): o is Op & { k: 'pod' } => o.k === 'pod').map((o): MixOp => ({ k: 'v6', o })) },
  { weight: 1, arbitrary: base.filter((o): o is Op & { k: 'policy' } => o.k === 'policy' && o.manifest.kind === 'ClusterNetworkPolicy' && parsesBeta(o.manifest)).map((o): MixOp => ({ k: 'beta', o })) },
);

interface Known {
  readonly ids: Map<number, { labels: Readonly<Record<string, string>>; unreadable: boolean }>;
}

function podLabels(state: ClusterState, n: number): Readonly<Record<string, string>> | undefined {
  const pods = [...state.pods.values()];
  const p = pods[n % Math.max(pods.length, 1)];
  if (!p) return undefined;
  const nsLabels = state.namespaces.get(p.namespace)?.labels ?? namespaceWithDefaults(p.namespace, {}).labels;
  return securityLabels(podIdentityLabels(p, nsLabels));
}

/** Identities for every pod label set that has none (each pod's node allocated one), numbers from `from` on, skipping known ones. */
function cover(from: number, state: ClusterState, known: Known): EngineEvent[] {
  const have = new Set([...known.ids.values()].filter((v) => !v.unreadable).map((v) => labelKey(v.labels)));
  const out: EngineEvent[] = [];
  let id = from;
  for (let i = 0; i < state.pods.size; i++) {
    const labels = podLabels(state, i);
    if (!labels || have.has(labelKey(labels))) continue;
    while (known.ids.has(id)) id++;
    have.add(labelKey(labels));
    out.push({ type: 'upsertIdentity', id: id++, labels });
  }
  return out;
}
const labelKey = (l: Readonly<Record<string, string>>): string => JSON.stringify(Object.entries(l).sort());

function toMixEvents(o: MixOp, state: ClusterState, known: Known): EngineEvent[] {
  if (o.k === 'cover') return cover(o.from, state, known);
  const e = toMixEvent(o, state, known);
  return e ? [e] : [];
}

function toMixEvent(o: Exclude<MixOp, { k: 'cover' }>, state: ClusterState, known: Known): EngineEvent | null {
  switch (o.k) {
    case 'delId':
      return known.ids.has(o.id) ? { type: 'deleteIdentity', id: o.id } : null;
    case 'id': {
      const labels = podLabels(state, o.pod);
      return labels ? { type: 'upsertIdentity', id: o.id, labels } : null;
    }
    case 'bad': {
      const labels = o.how === 'last' ? (known.ids.get(o.id)?.labels ?? {}) : o.how === 'none' ? {} : podLabels(state, o.pod);
      return labels ? { type: 'upsertIdentity', id: o.id, labels, unreadable: true } : null;
    }
    case 'group': {
      const group: CidrGroup = { name: o.name, labels: new Map([...o.labels, [cidrGroupNameKey(o.name), '']]), cidrs: o.cidrs.map(parseCidr) };
      return { type: 'upsertCidrGroup', group };
    }
    case 'delGroup':
      return { type: 'deleteCidrGroup', name: o.name };
    case 'gpolicy':
      return { type: 'upsertPolicy', policy: parseManifest(o.manifest, 'mix#1', { cidrGroups: true }) };
    case 'v6': {
      const e = toEvent(o.o);
      if (e.type !== 'upsertPod') return e;
      const last = e.pod.ip.text.split('.').slice(2).join(':');
      return { ...e, pod: { ...e.pod, ips: [e.pod.ip, parseIp(`fd00:10:244::${last}`)] } };
    }
    case 'beta':
      return { type: 'upsertPolicy', policy: parseManifest({ ...o.o.manifest, apiVersion: 'policy.networking.k8s.io/v1beta1' }, 'mix#1') };
    default:
      return toEvent(o);
  }
}

/** Everything observable of the engine, exactly. */
function exactState(engine: Engine): string {
  const endpoints = engine.endpoints().map((ep) => ({
    ep,
    map: [...engine.mapState(ep).values()].map((r) => `${policyKeyString(r.key)} ${JSON.stringify(r.entry)}`).sort(),
    l7: engine.l7Table(ep).map((r) => JSON.stringify(r)).sort(),
    redirects: engine.redirects(ep),
    id: engine.identityOfPod(ep),
  }));
  const ids = engine.identities().map((id) => `${id} ${labelSetKey(engine.identityLabels(id) ?? [])}`);
  return JSON.stringify({ endpoints, ids, ipcache: engine.ipcache(), sizes: engine.sizes() });
}

const stats = { txns: 0, refused: 0, faults: 0, flows: 0, standInFlows: 0, pendingFlows: 0, exactFlows: 0, freshRefused: 0, midFlows: 0, points: new Map<string, number>() };

function checkFlows(engine: Engine, kernel: Kernel, state: ClusterState, standIns: ReadonlySet<number>, probes: typeof PROBE_PORTS, step: string): void {
  const peers = [...state.pods.keys(), ...state.externals.keys()];
  for (const ep of engine.endpoints()) {
    const subject = resolveEndpoint(state, ep);
    if (subject.kind !== 'pod') throw new Error(`${ep} is not a pod`);
    const own = engine.identityOfPod(ep);
    const ownClosed = own === undefined || own === UNALLOCATED_POD_IDENTITY || standIns.has(own);
    // A stand-in's endpoint and a pending one (reserved init as a subject) have empty maps: default deny both ways.
    if (own !== undefined && (standIns.has(own) || own === UNALLOCATED_POD_IDENTITY)) expect(engine.mapState(ep).size, `${step}: ${ep} of ${own}`).toBe(0);
    const map = kernel.maps.get(ep) ?? new Map<string, LookupResult>();
    for (const peerName of peers) {
      const peer = resolveEndpoint(state, peerName);
      const addrs = peer.kind === 'pod' ? (peer.pod.ips ?? [peer.pod.ip]) : [endpointAddress(peer)];
      for (const addr of addrs) {
        const id = kernel.identityOf(addr);
        const peerClosed = id === UNALLOCATED_POD_IDENTITY || standIns.has(id) || (peer.kind === 'pod' && id === 0);
        for (const direction of ['ingress', 'egress'] as const)
          for (const { protocol, port } of probes) {
            const naive = decideDirection(state, subject, direction, peer, protocol, port, undefined);
            const hit = datapathLookup(map, id, direction, PROTOCOL_NUMBER[protocol], port);
            const allowed = hit !== undefined && !hit.entry.deny;
            stats.flows++;
            const got = { step, ep, own, peerName, addr: addr.text, id, direction, protocol, port, allowed };
            if (peerClosed) {
              stats.pendingFlows++;
              expect(got).toEqual({ ...got, allowed: false });
            } else if (ownClosed) {
              stats.standInFlows++;
              if (allowed) expect(got).toEqual({ ...got, allowed: naive.allowed });
            } else {
              stats.exactFlows++;
              expect(got).toEqual({ ...got, allowed: naive.allowed });
            }
          }
      }
    }
  }
}

/**
 * Between the write plan's phases (where the agent writes the ipcache, backend.ts `applyChangeSet`) a map
 * allows a peer identity only what both the old and the new maps allow it.
 */
function checkBetweenPhases(backend: MemoryBackend, old: ReadonlyMap<string, ReadonlyMap<string, LookupResult>>, next: ReadonlyMap<string, ReadonlyMap<string, LookupResult>>, ids: ReadonlySet<number>, step: string): void {
  const peers = new Set([0, 1, 2, 9, 10, UNALLOCATED_POD_IDENTITY, ...ids]);
  for (const [ep, after] of next) {
    const mid = new Map(backend.dump(ep).map((r) => [policyKeyString(r.key), { key: r.key, entry: r.entry }]));
    const before = old.get(ep) ?? new Map<string, LookupResult>();
    for (const id of peers)
      for (const direction of ['ingress', 'egress'] as const)
        for (const { protocol, port } of PROBE_PORTS) {
          const pass = (m: ReadonlyMap<string, LookupResult>): boolean => {
            const hit = datapathLookup(m, id, direction, PROTOCOL_NUMBER[protocol], port);
            return hit !== undefined && !hit.entry.deny;
          };
          stats.midFlows++;
          if (pass(mid)) expect({ step, ep, id, direction, protocol, port, old: pass(before), new: pass(after) }).toEqual({ step, ep, id, direction, protocol, port, old: true, new: true });
        }
  }
}

function identityEvents(known: Known): EngineEvent[] {
  return [...known.ids].map(([id, v]) => ({ type: 'upsertIdentity', id, labels: v.labels, ...(v.unreadable ? { unreadable: true } : {}) }));
}

const PROBES = PROBE_PORTS.filter((p) => [80, 53, 443].includes(p.port) && p.protocol !== 'SCTP');

describe('27e: external identities, stand-ins, 255, stack modes, CIDR groups and v1beta1 under refusals and faults', () => {
  for (const stack of ['single', 'dual'] as const satisfies readonly StackMode[]) {
    it(`${stack} stack: kernel from change sets = engine = oracle = a fresh engine; refused and failed transactions change nothing`, () => {
      fc.assert(
        fc.property(fc.array(fc.tuple(fc.array(mixOp, { minLength: 1, maxLength: 6 }), fc.constantFrom('plain', 'plain', 'poison', 'fault'), fc.integer({ min: 1, max: 60 })), { minLength: 3, maxLength: 14 }), (txns) => {
          const hook = { at: 0, calls: 0, fired: false };
          const faultHook = (point: string): void => {
            if (point.startsWith('rebuild:') || hook.at === 0) return;
            if (++hook.calls === hook.at) {
              hook.fired = true;
              stats.points.set(point, (stats.points.get(point) ?? 0) + 1);
              throw new InjectedFault(point);
            }
          };
          const options = { identitySource: 'external' as const, mapCapacity: 160, stack };
          const engine = new Engine({ ...options, faultHook });
          const kernel = new Kernel(stack);
          const backend = new MemoryBackend({ capacity: 256 });
          let state: ClusterState = { ...INITIAL_CLUSTER, stack };
          const known: Known = { ids: new Map() };
          const local = new Map<string, boolean>();
          txns.forEach(([ops, how, at], ti) => {
            const events: EngineEvent[] = [];
            let next: ClusterState | null = state;
            const knownNext: Known = { ids: new Map(known.ids) };
            for (const o of ops) {
              for (const ev of toMixEvents(o, next, knownNext)) {
              try {
                next = applyToModel(next, ev);
              } catch {
                next = null;
                break;
              }
              events.push(ev);
              if (ev.type === 'upsertIdentity') knownNext.ids.set(ev.id, { labels: ev.labels, unreadable: ev.unreadable === true });
              if (ev.type === 'deleteIdentity') knownNext.ids.delete(ev.id);
              }
              if (next === null) break;
            }
            if (next === null || events.length === 0) return;
            const before = exactState(engine);
            const sets: ChangeSet[] = [];
            if (how !== 'plain') {
              Object.assign(hook, { at: how === 'fault' ? at : 0, calls: 0, fired: false });
              try {
                sets.push(engine.apply(how === 'poison' ? [...events, POISON] : events));
                // No local endpoint: the poison fits; take it out again.
                if (how === 'poison') sets.push(engine.apply([UNPOISON]));
              } catch (err) {
                if (err instanceof InjectedFault) stats.faults++;
                else if (err instanceof MapCapacityError) stats.refused++;
                else if (!(err instanceof EngineError && how === 'poison')) throw err;
                expect(exactState(engine), `${ti}: state after a refused/failed transaction`).toBe(before);
              }
              hook.at = 0;
            }
            if (sets.length === 0) {
              try {
                sets.push(engine.apply(events));
              } catch (err) {
                if (!(err instanceof MapCapacityError)) throw err;
                stats.refused++;
                expect(exactState(engine)).toBe(before);
                return;
              }
            }
            stats.txns++;
            for (const cs of sets) {
              const old = new Map([...kernel.maps].map(([ep, m]) => [ep, new Map(m)]));
              const oldIds = new Set(kernel.ipcache.values());
              kernel.feed(cs);
              applyChangeSet(backend, cs, () => checkBetweenPhases(backend, old, kernel.maps, new Set([...oldIds, ...kernel.ipcache.values(), ...known.ids.keys(), ...knownNext.ids.keys()]), `txn ${ti}`));
            }
            state = next;
            for (const e of events) trackLocality(local, state, e);
            known.ids.clear();
            for (const [k, v] of knownNext.ids) known.ids.set(k, v);
            expect(sameEndpointMaps(kernel.maps, endpointMaps(engine)), `${ti}: kernel maps`).toBe(true);
            expect(kernel.ipcache, `${ti}: kernel ipcache`).toEqual(new Map(engine.ipcache().map((e) => [e.prefix, e.identity])));
            const standIns = new Set([...known.ids].filter(([, v]) => v.unreadable).map(([k]) => k));
            checkFlows(engine, kernel, state, standIns, [PROBES[ti % PROBES.length] as (typeof PROBES)[number]], `txn ${ti}`);
            const fresh = new Engine(options);
            try {
              fresh.apply([...identityEvents(known), ...initialEvents(state, (p) => local.get(`${p.namespace}/${p.name}`) ?? false)]);
            } catch (err) {
              if (!(err instanceof MapCapacityError)) throw err;
              stats.freshRefused++;
              throw new Error(`${ti}: a fresh engine refuses the state the engine accepted: ${String(err)}`);
            }
            expect(normalizedMaps(engine), `${ti}: maps vs fresh`).toEqual(normalizedMaps(fresh));
            expect(comparableIpcache(engine), `${ti}: ipcache vs fresh`).toEqual(comparableIpcache(fresh));
          });
        }),
        { numRuns: RUNS, ...REPLAY },
      );
    }, 600_000);
  }
});

afterAll(() => {
  process.stdout.write(`27e mix: ${JSON.stringify({ ...stats, points: Object.fromEntries(stats.points) })}\n`);
});
