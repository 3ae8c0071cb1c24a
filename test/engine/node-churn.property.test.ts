import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.js';
import { ChangeSet, EngineEvent, MapCapacityError } from '../../src/engine/events.js';
import { applyEventToCluster, comparableMaps, diffEndpointMaps, EndpointMaps, endpointMaps, initialEvents, sameEndpointMaps } from '../../src/harness/cluster-sync.js';
import { cidrContainsIp, parseIp } from '../../src/model/cidr.js';
import { ClusterState, EMPTY_CLUSTER, nodeAddressRole, type NodeAddressRole, type NodeHold, upsertExternal } from '../../src/model/cluster.js';
import { endpointAddress, resolveEndpoint } from '../../src/model/flow.js';
import { PROTOCOL_NUMBER } from '../../src/model/ports.js';
import { labelSetKey } from '../../src/model/labels.js';
import { policyKeyString } from '../../src/model/policy-map.js';
import { decideDirection } from '../../src/naive/evaluator.js';
import { addressRoles } from './gen.js';
import { parseManifest } from '../../src/policy/manifest.js';
import type { Policy } from '../../src/model/rules.js';

/*
 * Node churn (finding 562, docs/attack-findings-14k.md): nodes relabelled, deleted and re-added,
 * readdressed (an address moving between nodes, onto a pod's address and off it, health
 * addresses), the agent's own node changing, while pods move onto the addresses nodes leave,
 * under CiliumNetworkPolicy and CiliumClusterwideNetworkPolicy toNodes/fromNodes (read with
 * enable-node-selector-labels) and toEntities/fromEntities remote-node, host, cluster, world and
 * all, and ClusterNetworkPolicy `nodes` and `networks` peers whose networks hold none, some or all
 * of a node role's addresses (the cover of finding 442). What the other node properties
 * (test/cnp-nodes-engine.test.ts, tiers-networks-nodes.property.test.ts) do not check, checked
 * here after every transaction:
 *  - the incremental engine's maps equal a fresh engine's, and its ipcache (identities by labels);
 *  - the map deltas and ipcache deltas are exactly the change of the whole state;
 *  - every pod-to-pod, pod-to-node-address, node-address-to-pod and world flow equals the oracle,
 *    but where a networks peer splits the destination's node role (the engine denies, finding 442);
 *  - a transaction whose commit fails (the fault hook, an internal error: the engine rebuilds) or
 *    is refused (a full map: the undo log) leaves the engine exactly as before: maps with their
 *    identity numbers, ipcache, identities and labels, every candidate address's identity, the
 *    explain output (policyOf, enforcedBy, contributors, selectors), sizes and counters; the
 *    same batch then applied yields exactly the diff from the state before.
 */
const NODES = ['n0', 'n1', 'n2'];
const NODE_IPS = ['172.18.0.1', '172.18.0.2', '10.244.0.12', 'fd00::1'];
const HEALTH = ['10.244.9.1', '172.18.0.3'];
const DB_IPS = ['10.244.0.11', '10.244.0.12', '172.18.0.2'];
// No address both pods may claim: two pods claiming one address is history-dependent by design
// (docs/semantics.md "Two pods claiming one address"), which a fresh engine cannot reproduce.
const FAR_IPS = ['10.244.1.5', '10.244.0.13', '172.18.0.1'];
const OUTSIDE = '198.51.100.7';
const CANDIDATES = [...new Set([...NODE_IPS, ...HEALTH, ...DB_IPS, ...FAR_IPS, '10.244.0.10', OUTSIDE])];
const PROBES: readonly { port: number; protocol: 'TCP' | 'UDP' }[] = [{ port: 22, protocol: 'TCP' }, { port: 80, protocol: 'TCP' }, { port: 53, protocol: 'UDP' }];
const ENTITIES = ['remote-node', 'host', 'cluster', 'world', 'all'];
const KEYS = ['os', 'pool'] as const;
const VALUES = ['a', 'b'] as const;
/** Commit points (src/engine/commit.ts) where the fault hook fails a transaction. */
const COMMIT_POINTS = new Set(['settle', 'emit', 'releasePorts']);
const CAPACITY = 256;
const RUNS = Number(process.env.DISTILL_NODE_CHURN_RUNS ?? 200);
const SEED = process.env.DISTILL_SEED ? Number(process.env.DISTILL_SEED) : Date.now() % 2 ** 31;

type Json = Record<string, unknown>;
type Op =
  | { k: 'node'; name: string; ips: string[]; local: boolean; health: string[]; labels: Record<string, string>; failClosed: NodeHold | false }
  | { k: 'delNode'; name: string }
  | { k: 'pod'; name: 'db' | 'far'; ip: string }
  | { k: 'policy'; manifest: Json }
  | { k: 'delPolicy'; name: string };
type Failure = { k: 'none' } | { k: 'fault'; nth: number } | { k: 'refuse' };

const labels = fc.dictionary(fc.constantFrom(...KEYS), fc.constantFrom(...VALUES), { maxKeys: 2 });
const nodeSelector: fc.Arbitrary<Json> = fc.oneof(
  fc.constant({}),
  labels.map((m) => ({ matchLabels: m })),
  fc.record({ key: fc.constantFrom(...KEYS), operator: fc.constantFrom('Exists', 'DoesNotExist', 'In', 'NotIn'), v: fc.constantFrom(...VALUES) }).map(({ key, operator, v }) => ({ matchExpressions: [{ key, operator, ...(operator === 'In' || operator === 'NotIn' ? { values: [v] } : {}) }] })),
);
const toPorts = fc.constantFrom([], [{ ports: [{ port: '22', protocol: 'TCP' }] }], [{ ports: [{ port: '53', protocol: 'UDP' }, { port: '80', protocol: 'TCP' }] }]);
const withPorts = (r: Json, ports: readonly Json[]): Json => (ports.length > 0 ? { ...r, toPorts: ports } : r);
/** A Cilium rule's peers: nodes or entities (one kind per rule, as Cilium requires). */
const ciliumRule = (nodes: string, entities: string): fc.Arbitrary<Json> =>
  fc.tuple(fc.oneof(fc.array(nodeSelector, { minLength: 1, maxLength: 2 }).map((s) => ({ [nodes]: s })), fc.subarray(ENTITIES, { minLength: 1, maxLength: 2 }).map((e) => ({ [entities]: e }))), toPorts).map(([r, p]) => withPorts(r, p));
const ciliumRules = (nodes: string, entities: string): fc.Arbitrary<Json[]> => fc.array(ciliumRule(nodes, entities), { maxLength: 2 });
const ciliumOp: fc.Arbitrary<Op> = fc
  .record({
    kind: fc.constantFrom('CiliumNetworkPolicy', 'CiliumClusterwideNetworkPolicy'),
    name: fc.constantFrom('c1', 'c2'),
    endpointSelector: fc.constantFrom({}, { matchLabels: { app: 'web' } }, { matchLabels: { app: 'db' } }),
    egress: ciliumRules('toNodes', 'toEntities'),
    egressDeny: ciliumRules('toNodes', 'toEntities'),
    ingress: ciliumRules('fromNodes', 'fromEntities'),
    ingressDeny: ciliumRules('fromNodes', 'fromEntities'),
  })
  // Cilium 1.19 refuses a rule with no section at all (Rule.Sanitize; finding 713): not generated.
  .filter(({ egress, egressDeny, ingress, ingressDeny }) => egress.length + egressDeny.length + ingress.length + ingressDeny.length > 0)
  .map(({ kind, name, endpointSelector, ...lists }) => ({
    k: 'policy',
    manifest: { apiVersion: 'cilium.io/v2', kind, metadata: { name, ...(kind === 'CiliumNetworkPolicy' ? { namespace: 'b' } : {}) }, spec: { endpointSelector, ...Object.fromEntries(Object.entries(lists).filter(([, l]) => l.length > 0)) } },
  }));
const NETWORKS = [['0.0.0.0/0', '::/0'], ['172.18.0.0/24'], ['10.244.0.0/16'], ['198.51.100.0/24']];
const tierPeer: fc.Arbitrary<Json> = fc.oneof(
  { weight: 3, arbitrary: nodeSelector.map((s) => ({ nodes: s })) },
  { weight: 2, arbitrary: fc.constantFrom(...NETWORKS).map((networks) => ({ networks })) },
  { weight: 1, arbitrary: fc.constant({ pods: { namespaceSelector: {}, podSelector: { matchLabels: { app: 'db' } } } }) },
);
const tierRule = fc.record({
  action: fc.constantFrom('Accept', 'Deny', 'Pass'),
  to: fc.array(tierPeer, { minLength: 1, maxLength: 2 }),
  protocols: fc.constantFrom([], [{ tcp: { destinationPort: { number: 22 } } }], [{ udp: { destinationPort: { number: 53 } } }, { tcp: { destinationPort: { range: { start: 79, end: 81 } } } }]),
}).map(({ protocols, ...r }) => (protocols.length > 0 ? { ...r, protocols } : r));
const tierOp: fc.Arbitrary<Op> = fc
  .record({ name: fc.constantFrom('t1', 't2'), tier: fc.constantFrom('Admin', 'Baseline'), priority: fc.integer({ min: 1, max: 3 }), egress: fc.array(tierRule, { minLength: 1, maxLength: 3 }), subject: fc.constantFrom({ namespaces: {} }, { pods: { namespaceSelector: {}, podSelector: { matchLabels: { app: 'web' } } } }) })
  .map(({ name, tier, priority, egress, subject }) => ({ k: 'policy', manifest: { apiVersion: 'policy.networking.k8s.io/v1alpha2', kind: 'ClusterNetworkPolicy', metadata: { name }, spec: { tier, priority, subject, egress } } }));
const nodeOp: fc.Arbitrary<Op> = fc
  // failClosed: held by the agent (findings 2432, remote: its addresses 255; 2541, local: its labels unknown; 2730, local: on every port).
  .record({ name: fc.constantFrom(...NODES), ips: fc.subarray(NODE_IPS, { minLength: 1, maxLength: 2 }), local: fc.boolean(), health: fc.subarray(HEALTH, { maxLength: 1 }), labels, failClosed: fc.oneof({ weight: 6, arbitrary: fc.constant<NodeHold | false>(false) }, { weight: 2, arbitrary: fc.constant<NodeHold | false>(true) }, { weight: 1, arbitrary: fc.constant<NodeHold | false>('allPorts') }, { weight: 1, arbitrary: fc.constant<NodeHold | false>('addresses') }) })
  .map((n) => ({ k: 'node', ...n }));
const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 5, arbitrary: nodeOp },
  { weight: 2, arbitrary: fc.constantFrom(...NODES).map((name): Op => ({ k: 'delNode', name })) },
  { weight: 2, arbitrary: fc.oneof(fc.constantFrom(...DB_IPS).map((ip): Op => ({ k: 'pod', name: 'db', ip })), fc.constantFrom(...FAR_IPS).map((ip): Op => ({ k: 'pod', name: 'far', ip }))) },
  { weight: 2, arbitrary: ciliumOp },
  { weight: 2, arbitrary: tierOp },
  { weight: 1, arbitrary: fc.constantFrom('c1', 'c2', 't1', 't2').map((name): Op => ({ k: 'delPolicy', name })) },
);
const failure: fc.Arbitrary<Failure> = fc.oneof({ weight: 3, arbitrary: fc.constant<Failure>({ k: 'none' }) }, { weight: 2, arbitrary: fc.integer({ min: 1, max: 6 }).map((nth): Failure => ({ k: 'fault', nth })) }, { weight: 1, arbitrary: fc.constant<Failure>({ k: 'refuse' }) });
const txn = fc.tuple(fc.array(op, { minLength: 1, maxLength: 3 }), failure);

const pod = (ns: string, name: string, ip: string, local: boolean): EngineEvent => ({ type: 'upsertPod', local, pod: { namespace: ns, name, labels: { app: name }, ip: parseIp(ip), serviceAccount: 'default', ports: [] } });
const SETUP: EngineEvent[] = [{ type: 'upsertNamespace', name: 'a', labels: {} }, { type: 'upsertNamespace', name: 'b', labels: {} }, pod('a', 'web', '10.244.0.10', true), pod('b', 'db', '10.244.0.11', true), pod('a', 'far', '10.244.1.5', false)];
const LOCAL = new Map([['a/web', true], ['b/db', true], ['a/far', false]]);

function parse(manifest: Json): Policy | null {
  try {
    return parseManifest(manifest, 'p.yaml', { nodeSelectorLabels: true });
  } catch {
    return null;
  }
}

function toEvents(o: Op, s: ClusterState): EngineEvent[] {
  switch (o.k) {
    case 'node':
      return [{ type: 'upsertNode', name: o.name, ips: o.ips.map(parseIp), local: o.local, labels: o.labels, ...(o.health.length > 0 ? { health: o.health.map(parseIp) } : {}), ...(o.failClosed === false ? {} : { failClosed: o.failClosed !== true && !o.local ? true : o.failClosed }) }];
    case 'delNode':
      return s.nodes?.has(o.name) ? [{ type: 'deleteNode', name: o.name }] : [];
    case 'pod':
      return [o.name === 'db' ? pod('b', 'db', o.ip, true) : pod('a', 'far', o.ip, false)];
    case 'policy': {
      const p = parse(o.manifest);
      return p ? [{ type: 'upsertPolicy', policy: p }] : [];
    }
    case 'delPolicy': {
      const p = [...s.policies.values()].find((x) => x.ref.name === o.name);
      return p ? [{ type: 'deletePolicy', ref: p.ref }] : [];
    }
  }
}

/** A policy that cannot fit web's map (CAPACITY entries): the transaction holding it is refused. */
const POISON = parseManifest(
  { apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name: 'poison', namespace: 'a' }, spec: { endpointSelector: { matchLabels: { app: 'web' } }, ingress: Array.from({ length: 8 }, (_, i) => ({ fromEntities: ['all'], toPorts: [{ ports: Array.from({ length: 40 }, (_, j) => ({ port: String(1000 + 40 * i + j), protocol: 'TCP' })) }] })) } },
  'poison.yaml',
);

/**
 * Does a ClusterNetworkPolicy rule's networks hold some but not all addresses of `role` (where the engine fails closed,
 * finding 442)? An address a held node gives 255 counts as outside (the engine's cover, findings 3060, 3061).
 */
function splitsRole(s: ClusterState, role: NodeAddressRole | undefined): boolean {
  if (role === undefined) return false;
  const ips = [...addressRoles(s)].filter(([, r]) => r === role).map(([t]) => parseIp(t));
  const held = (text: string): boolean => {
    const holders = [...(s.nodes?.values() ?? [])].filter((n) => nodeAddressRole(n, text) === role);
    if (role === 'remote-node') return holders[0]?.failClosed !== undefined;
    return (role === 'health' || role === 'ingress') && holders.some((n) => n.failClosed !== undefined && (!n.local || n.failClosed === 'addresses'));
  };
  return [...s.policies.values()].some((p) =>
    (p.tiered?.rules ?? []).some((r) => {
      const cidrs = r.peers.flatMap((x) => (x.kind === 'networks' ? x.cidrs : []));
      const inside = ips.filter((ip) => !held(ip.text) && cidrs.some((c) => cidrContainsIp(c, ip))).length;
      return inside > 0 && inside < ips.length;
    }),
  );
}

/** Each local endpoint's peers: the other pods by name, then every node, pod and outside address. */
function peers(s: ClusterState, ep: string): string[] {
  return [...new Set([...[...s.pods.keys()].filter((p) => p !== ep), ...addressRoles(s).keys(), ...[...s.pods.values()].map((p) => p.ip.text), 'outside'])];
}

/** Everything observable, with real identity numbers: what a failed transaction must leave as it was. */
function exactState(e: Engine): string {
  const endpoints = e.endpoints().map((ep) => {
    const map = [...e.mapState(ep).values()];
    return {
      ep,
      map: map.map((r) => `${policyKeyString(r.key)} ${JSON.stringify(r.entry)}`).sort(),
      contributors: map.map((r) => `${policyKeyString(r.key)} ${e.contributors(ep, r.key).map((c) => JSON.stringify(c)).sort().join(' ')}`).sort(),
      // Sorted: the lists' order follows insertion, which a rollback does not keep (finding 620).
      policyOf: e.policyOf(ep).map((r) => JSON.stringify(r)).sort(),
      enforced: [e.enforcedBy(ep, 'ingress').map((r) => JSON.stringify(r)).sort(), e.enforcedBy(ep, 'egress').map((r) => JSON.stringify(r)).sort()],
    };
  });
  const ids = e.identities().map((id) => `${id} ${labelSetKey(e.identityLabels(id) ?? [])}`);
  const at = CANDIDATES.map((t) => `${t}=${e.identityOfIp(parseIp(t))}`);
  return JSON.stringify({ endpoints, ids, at, ipcache: e.ipcache(), selectors: e.selectors(), sizes: e.sizes(), stats: e.stats() });
}

/** The ipcache with identities named by their labels (two engines number labelled node identities apart). */
function namedIpcache(e: Engine): string[] {
  return e.ipcache().map((x) => `${x.prefix} ${labelSetKey(e.identityLabels(x.identity) ?? [])}`).sort();
}

function applyIpcacheDeltas(before: ReadonlyMap<string, number>, cs: ChangeSet): Map<string, number> {
  const out = new Map(before);
  for (const d of cs.ipcache) {
    expect(out.get(d.prefix), `ipcache delta ${JSON.stringify(d)}`).toBe(d.op === 'delete' ? d.identity : d.previous);
    if (d.op === 'delete') out.delete(d.prefix);
    else out.set(d.prefix, d.identity);
  }
  return out;
}

function applyDeltas(before: EndpointMaps, cs: ChangeSet): EndpointMaps {
  const out: EndpointMaps = new Map([...before].map(([ep, m]) => [ep, new Map(m)]));
  for (const ep of cs.endpointsRemoved) out.delete(ep);
  for (const ep of cs.endpointsAdded) out.set(ep, new Map());
  for (const d of cs.deltas) {
    const m = out.get(d.endpoint);
    expect(m, `delta for unknown endpoint ${d.endpoint}`).toBeDefined();
    const ks = policyKeyString(d.key);
    if (d.op === 'upsert') {
      expect(d.previous, `previous of ${ks}`).toEqual(m?.get(ks)?.entry);
      m?.set(ks, { key: d.key, entry: d.entry });
    } else {
      expect(m?.has(ks), `delete of absent ${ks}`).toBe(true);
      m?.delete(ks);
    }
  }
  return out;
}

const counts = { steps: 0, flows: 0, failClosed: 0, faults: 0, anyFaults: 0, refusals: 0, nodeEvents: 0 };

describe('node churn: incremental engine, fresh engine, oracle, exact deltas, failed commits', () => {
  it('agree after every transaction; a failed or refused commit holding node changes leaves the engine exactly as before', () => {
    fc.assert(
      fc.property(fc.array(txn, { minLength: 1, maxLength: 8 }), (txns) => {
        let armed: { nth: number; calls: number; fired: boolean } | null = null;
        const engine = new Engine({
          mapCapacity: CAPACITY,
          faultHook: (point) => {
            if (armed === null || !COMMIT_POINTS.has(point)) return;
            if (++armed.calls === armed.nth) {
              armed.fired = true;
              throw new Error(`injected at ${point}`);
            }
          },
        });
        let state = upsertExternal(EMPTY_CLUSTER, { name: 'outside', ip: parseIp(OUTSIDE) });
        state = SETUP.reduce(applyEventToCluster, state);
        engine.apply(SETUP);
        let maps = endpointMaps(engine);
        let ipcache = new Map(engine.ipcache().map((x) => [x.prefix, x.identity]));
        for (const [ops, fail] of txns) {
          let events: EngineEvent[] = [];
          let next = state;
          for (const o of ops) {
            const es = toEvents(o, next);
            next = es.reduce(applyEventToCluster, next);
            events = [...events, ...es];
          }
          if (events.length === 0) continue;
          const nodeEvents = events.some((e) => e.type === 'upsertNode' || e.type === 'deleteNode');
          if (nodeEvents) counts.nodeEvents++;
          const before = exactState(engine);
          if (fail.k === 'refuse') {
            let refused = false;
            try {
              engine.apply([...events, { type: 'upsertPolicy', policy: POISON }]);
            } catch (e) {
              expect(e).toBeInstanceOf(MapCapacityError);
              refused = true;
            }
            if (!refused) {
              // A deny of everything made the poison's allows redundant: it fit. Take it out again.
              engine.apply([{ type: 'deletePolicy', ref: POISON.ref }]);
              check(engine, next, maps, ipcache, null);
              state = next;
              maps = endpointMaps(engine);
              ipcache = new Map(engine.ipcache().map((x) => [x.prefix, x.identity]));
              continue;
            }
            expect(exactState(engine), 'after a refused transaction').toBe(before);
            if (nodeEvents) counts.refusals++;
          } else if (fail.k === 'fault') {
            armed = { nth: fail.nth, calls: 0, fired: false };
            let threw = false;
            try {
              engine.apply(events);
            } catch (e) {
              threw = true;
              expect(String(e)).toMatch(/injected at/);
            }
            const fired = armed.fired;
            armed = null;
            expect(threw).toBe(fired);
            if (fired) {
              expect(exactState(engine), 'after a failed commit').toBe(before);
              counts.anyFaults++;
              if (nodeEvents) counts.faults++;
            } else {
              // The transaction committed: check it as any other.
              check(engine, next, maps, ipcache, null);
              state = next;
              maps = endpointMaps(engine);
              ipcache = new Map(engine.ipcache().map((x) => [x.prefix, x.identity]));
              continue;
            }
          }
          const cs = engine.apply(events);
          check(engine, next, maps, ipcache, cs);
          state = next;
          maps = endpointMaps(engine);
          ipcache = new Map(engine.ipcache().map((x) => [x.prefix, x.identity]));
        }
      }),
      { numRuns: RUNS, seed: SEED },
    );
    expect(counts.flows).toBeGreaterThan(20_000);
    expect(counts.faults).toBeGreaterThan(20);
    expect(counts.refusals).toBeGreaterThan(20);
    expect(counts.failClosed).toBeLessThan(counts.flows / 10);
  }, 600_000);
});

function check(engine: Engine, state: ClusterState, maps: EndpointMaps, ipcache: ReadonlyMap<string, number>, cs: ChangeSet | null): void {
  counts.steps++;
  const now = endpointMaps(engine);
  const ipcacheNow = new Map(engine.ipcache().map((x) => [x.prefix, x.identity]));
  if (cs) {
    expect(sameEndpointMaps(applyDeltas(maps, cs), now), 'map deltas reach the new maps').toBe(true);
    expect(cs.deltas.length, 'map deltas are the exact diff').toBe(diffEndpointMaps(maps, now).length);
    expect(applyIpcacheDeltas(ipcache, cs)).toEqual(ipcacheNow);
  }
  const fresh = new Engine({ mapCapacity: CAPACITY });
  fresh.apply(initialEvents(state, (p) => LOCAL.get(`${p.namespace}/${p.name}`) ?? false));
  expect(comparableMaps(engine), 'incremental against fresh').toEqual(comparableMaps(fresh));
  expect(namedIpcache(engine), 'ipcache against fresh').toEqual(namedIpcache(fresh));
  const roles = addressRoles(state);
  for (const ep of engine.endpoints()) {
    const subject = resolveEndpoint(state, ep);
    if (subject.kind !== 'pod') throw new Error(`endpoint ${ep} is not a pod`);
    for (const peerName of peers(state, ep)) {
      const peer = resolveEndpoint(state, peerName);
      const peerId = state.pods.has(peerName) ? (engine.identityOfPod(peerName) as number) : engine.identityOfIp(endpointAddress(peer));
      for (const direction of ['ingress', 'egress'] as const) {
        for (const { protocol, port } of PROBES) {
          const hit = engine.lookup(ep, peerId, direction, PROTOCOL_NUMBER[protocol], port);
          const got = hit !== undefined && !hit.entry.deny ? 'allow' : 'deny';
          const want = decideDirection(state, subject, direction, peer, protocol, port).allowed ? 'allow' : 'deny';
          counts.flows++;
          if (got === 'deny' && want === 'allow' && direction === 'egress' && splitsRole(state, roles.get(peerName))) {
            counts.failClosed++;
            continue;
          }
          expect(`${ep} ${direction} ${peerName} ${port}/${protocol} ${got}`, 'engine against the oracle').toBe(`${ep} ${direction} ${peerName} ${port}/${protocol} ${want}`);
        }
      }
    }
  }
}

afterAll(() => {
  process.stdout.write(`node churn (seed ${SEED}): ${JSON.stringify(counts)}\n`);
});
