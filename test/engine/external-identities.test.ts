import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.js';
import { ChangeSet, EngineError, EngineEvent, MapCapacityError } from '../../src/engine/events.js';
import { endpointMaps, EndpointMaps, diffEndpointMaps } from '../../src/harness/cluster-sync.js';
import { parseIp } from '../../src/model/cidr.js';
import { ClusterState, namespaceWithDefaults, Pod } from '../../src/model/cluster.js';
import { LOCAL_IDENTITY_FLAG, podIdentityLabels, RESERVED_IDENTITIES, securityLabels, UNALLOCATED_POD_IDENTITY } from '../../src/model/identity.js';
import { labelSetKey, NAMESPACE_NAME_LABEL } from '../../src/model/labels.js';
import { parseManifestFile } from '../../src/policy/manifest.js';
import { applyToModel, INITIAL_CLUSTER, needsIdentitySplits, op, Op, toEvent } from './gen.js';
import { fcReplay, fcRuns } from '../fc-knobs.js';
import { poison } from './poison.js';

const ns: EngineEvent = { type: 'upsertNamespace', name: 'prod', labels: {} };
const mkPod = (name: string, labels: Record<string, string>, ip: string): Pod => ({ namespace: 'prod', name, labels, ip: parseIp(ip), serviceAccount: 'default', ports: [] });
const web = mkPod('web', { app: 'web' }, '10.244.0.10');
const client = mkPod('client', { app: 'client' }, '10.244.0.11');
const labelsOf = (p: Pod): Record<string, string> => securityLabels(podIdentityLabels(p, { [NAMESPACE_NAME_LABEL]: p.namespace }));
const identity = (id: number, p: Pod): EngineEvent => ({ type: 'upsertIdentity', id, labels: labelsOf(p) });
const [allowClient] = parseManifestFile(
  `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: allow, namespace: prod}
spec:
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: client}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
`,
  'allow.yaml',
);
const policy: EngineEvent = { type: 'upsertPolicy', policy: allowClient! };
const keys = (e: Engine, ep: string): string[] => [...e.mapState(ep).keys()].sort();

describe('external identities', () => {
  it('refuses identity events on an engine that allocates its own identities', () => {
    const e = new Engine();
    expect(() => e.apply([identity(4242, web)])).toThrow(/identitySource: 'external'/);
  });

  it('validates identity events: cluster range, labels with a cluster source, existence', () => {
    const e = new Engine({ identitySource: 'external' });
    expect(() => e.apply([{ type: 'upsertIdentity', id: 7, labels: { 'k8s:app': 'x' } }])).toThrow(EngineError);
    expect(() => e.apply([{ type: 'upsertIdentity', id: 1 << 24, labels: { 'k8s:app': 'x' } }])).toThrow(/not a cluster identity/);
    expect(() => e.apply([{ type: 'upsertIdentity', id: 300, labels: { 'reserved:host': '' } }])).toThrow(/not a cluster identity source/);
    expect(() => e.apply([{ type: 'upsertIdentity', id: 300, labels: { app: 'x' } }])).toThrow(/no source/);
    expect(() => e.apply([{ type: 'upsertIdentity', id: 300, labels: {} }])).toThrow(/must not be empty/);
    expect(() => e.apply([{ type: 'deleteIdentity', id: 300 }])).toThrow(/does not exist/);
    expect(e.identities()).toEqual(Object.values(RESERVED_IDENTITIES).sort((a, b) => a - b));
  });

  it('a pod whose identity is not known yet is an endpoint in default deny, and a peer without one matches nothing', () => {
    const e = new Engine({ identitySource: 'external' });
    const cs = e.apply([ns, { type: 'upsertPod', pod: web, local: true }, { type: 'upsertPod', pod: client }, policy]);
    expect(cs.endpointsAdded).toEqual(['prod/web']);
    expect(keys(e, 'prod/web')).toEqual([]);
    expect(e.identityOfPod('prod/web')).toBe(UNALLOCATED_POD_IDENTITY);
    expect(e.identityOfPod('prod/client')).toBe(UNALLOCATED_POD_IDENTITY);
    // The web pod's identity arrives: its policy applies, keyed by the cluster's numbers; the
    // client has none yet, so nothing allows it, and its address's number is denied both ways (finding 2002).
    const known = e.apply([identity(40000, web)]);
    expect(e.identityOfPod('prod/web')).toBe(40000);
    // Held only on egress, the direction with an identity-0 allow (the default allow): web's ingress admits no number
    // its selectors do not name, so 255 is dropped there without an entry (finding 2132).
    expect(keys(e, 'prod/web')).toEqual(['0/egress/0/0/0', '1/ingress/0/0/0', `${UNALLOCATED_POD_IDENTITY}/egress/0/0/0`]);
    expect(e.lookup('prod/web', UNALLOCATED_POD_IDENTITY, 'ingress', 6, 80)).toBeUndefined();
    expect(known.ipcache).toEqual([{ op: 'upsert', prefix: '10.244.0.10/32', identity: 40000, previous: UNALLOCATED_POD_IDENTITY }]);
    const both = e.apply([identity(51234, client)]);
    expect(keys(e, 'prod/web')).toEqual(['0/egress/0/0/0', '1/ingress/0/0/0', '51234/ingress/6/80/16']);
    // No pod lacks an id any more: the unallocated number's denies go.
    expect(both.deltas.map((d) => [d.op, d.key.identity]).sort()).toEqual([['delete', UNALLOCATED_POD_IDENTITY], ['upsert', 51234]]);
    // Deleted: the client matches nothing again (its number denied), the web pod is back in default deny.
    e.apply([{ type: 'deleteIdentity', id: 51234 }]);
    expect(keys(e, 'prod/web')).toEqual(['0/egress/0/0/0', '1/ingress/0/0/0', `${UNALLOCATED_POD_IDENTITY}/egress/0/0/0`]);
    e.apply([{ type: 'deleteIdentity', id: 40000 }]);
    expect(keys(e, 'prod/web')).toEqual([]);
  });

  it('an identity known before any pod is a peer at once (as Cilium selects every cluster identity)', () => {
    const e = new Engine({ identitySource: 'external' });
    e.apply([ns, identity(40000, web), identity(51234, client), { type: 'upsertPod', pod: web, local: true }, policy]);
    expect(keys(e, 'prod/web')).toEqual(['0/egress/0/0/0', '1/ingress/0/0/0', '51234/ingress/6/80/16']);
  });

  it('duplicate ids for one label set: the lowest wins, and deleting it moves pods to the next', () => {
    const e = new Engine({ identitySource: 'external' });
    e.apply([ns, identity(700, web), identity(600, web), { type: 'upsertPod', pod: web, local: true }]);
    expect(e.identityOfPod('prod/web')).toBe(600);
    e.apply([{ type: 'deleteIdentity', id: 600 }]);
    expect(e.identityOfPod('prod/web')).toBe(700);
    // Relabelling an id moves its pods too.
    e.apply([identity(700, client)]);
    expect(e.identityOfPod('prod/web')).toBe(UNALLOCATED_POD_IDENTITY);
  });

  it('the maps depend on the events received, never on their order (a restart writes nothing)', () => {
    const events = [ns, identity(40000, web), identity(51234, client), { type: 'upsertPod', pod: web, local: true } as EngineEvent, { type: 'upsertPod', pod: client } as EngineEvent, policy];
    const reference = new Engine({ identitySource: 'external' });
    reference.apply(events);
    const want = endpointMaps(reference);
    fc.assert(
      fc.property(fc.shuffledSubarray(events.slice(1), { minLength: events.length - 1, maxLength: events.length - 1 }), fc.boolean(), (order, oneByOne) => {
        const e = new Engine({ identitySource: 'external' });
        if (oneByOne) for (const ev of [ns, ...order]) e.apply([ev]);
        else e.apply([ns, ...order]);
        expect(diffEndpointMaps(want, endpointMaps(e))).toEqual([]);
      }),
      { numRuns: fcRuns(60), ...fcReplay() },
    );
  });
});

/** What the kernel and the proxy see: map entries with numbers, the ipcache, each pod's identity. */
function kernelState(e: Engine): unknown {
  return { maps: [...endpointMaps(e)].map(([ep, m]) => [ep, [...m.keys()].sort()]), ipcache: e.ipcache(), pods: ['prod/web', 'prod/client'].map((p) => e.identityOfPod(p)) };
}

/*
 * Finding 1925: an identity event in a refused transaction. The undo log ran the pods'
 * re-identifications back before the identity table's own undo, so each pod took what the table
 * still said (the transaction's identity) and nothing moved it once the table was restored.
 */
describe('a refused transaction with identity events changes nothing (1925)', () => {
  const overflow = poison(6);
  const setup = (): [Engine, Engine] => {
    const e = new Engine({ identitySource: 'external', mapCapacity: 160 });
    const twin = new Engine({ identitySource: 'external', mapCapacity: 160 });
    const start: EngineEvent[] = [ns, { type: 'upsertPod', pod: web, local: true }, { type: 'upsertPod', pod: client }, policy, identity(300, client), identity(301, client)];
    e.apply(start);
    twin.apply(start);
    return [e, twin];
  };
  const refused = (e: Engine, twin: Engine, events: EngineEvent[]): void => {
    const before = kernelState(e);
    expect(() => e.apply([...events, overflow])).toThrow(MapCapacityError);
    expect(kernelState(e)).toEqual(before);
    // And the next transaction: the engine agrees with one that never saw the refusal.
    e.apply(events);
    twin.apply(events);
    expect(kernelState(e)).toEqual(kernelState(twin));
  };

  it('an identity for a pending pod: it stays init (default deny, ipcache 0), not allowed by a default allow', () => {
    const [e, twin] = setup();
    refused(e, twin, [identity(400, web)]);
    expect(e.identityOfPod('prod/web')).toBe(400);
  });

  it('an identity deleted: its pods keep it, and the next lowest for their labels stays unused', () => {
    const [e, twin] = setup();
    e.apply([identity(400, web)]);
    twin.apply([identity(400, web)]);
    refused(e, twin, [{ type: 'deleteIdentity', id: 300 }]);
    expect(e.identityOfPod('prod/client')).toBe(301);
  });

  it('an identity number reused for other labels: the pods of both label sets keep their identities', () => {
    const [e, twin] = setup();
    e.apply([identity(400, web)]);
    twin.apply([identity(400, web)]);
    refused(e, twin, [identity(300, web)]);
    expect([e.identityOfPod('prod/web'), e.identityOfPod('prod/client')]).toEqual([300, 301]);
  });

  it('a number moved to another pod\'s labels while its pods take another: undone, they keep the policy that isolates them', () => {
    // The undo gives 400 back to the web pod's labels: the other (local) pod must leave it first, or
    // the web pod joins that pod's local identity 400 (by number) and takes its map: a default allow.
    const [e, twin] = setup();
    const other = mkPod('other', { app: 'other' }, '10.244.0.12');
    e.apply([identity(400, web)]);
    twin.apply([identity(400, web)]);
    refused(e, twin, [{ type: 'upsertPod', pod: other, local: true }, identity(400, other), identity(260, web)]);
    expect(keys(e, 'prod/web')).toEqual(['0/egress/0/0/0', '1/ingress/0/0/0', '300/ingress/6/80/16', '301/ingress/6/80/16']);
  });
});

/** Identity events drawn against the current cluster: an id from a small pool for some pod's labels, or a delete. */
type IdOp = { readonly k: 'id'; readonly id: number; readonly pod: number } | { readonly k: 'delId'; readonly id: number };
const idOp: fc.Arbitrary<IdOp> = fc.oneof(
  fc.record({ k: fc.constant('id' as const), id: fc.integer({ min: 256, max: 263 }), pod: fc.nat({ max: 50 }) }),
  fc.record({ k: fc.constant('delId' as const), id: fc.integer({ min: 256, max: 263 }) }),
);

function identityEvent(o: IdOp, state: ClusterState, known: ReadonlySet<number>): EngineEvent | null {
  if (o.k === 'delId') return known.has(o.id) ? { type: 'deleteIdentity', id: o.id } : null;
  const pods = [...state.pods.values()];
  const p = pods[o.pod % Math.max(pods.length, 1)];
  if (!p) return null;
  const nsLabels = state.namespaces.get(p.namespace)?.labels ?? namespaceWithDefaults(p.namespace, {}).labels;
  return { type: 'upsertIdentity', id: o.id, labels: securityLabels(podIdentityLabels(p, nsLabels)) };
}

/**
 * Every endpoint's entries with cluster identities by number (they must match exactly) and
 * node-local CIDR identities by labels (their numbers depend on allocation order, as on a node),
 * proxy ports as "proxy".
 */
function byClusterNumbers(e: Engine): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const ep of e.endpoints()) {
    out[ep] = [...e.mapState(ep).values()]
      .map(({ key, entry }) => {
        const who = key.identity >= LOCAL_IDENTITY_FLAG ? labelSetKey(e.identityLabels(key.identity) ?? []) : String(key.identity);
        // Proxy ports, like CIDR identities, are this node's own allocations (lowest free at the time).
        return `${who}/${key.direction}/${key.protocol}/${key.port}/${key.portPrefixLen} ${entry.deny}/${entry.proxyPort === 0 ? 0 : 'proxy'}/${entry.precedence}`;
      })
      .sort();
  }
  return out;
}

function applyDeltas(before: EndpointMaps, cs: ChangeSet, after: EndpointMaps): void {
  const next: EndpointMaps = new Map([...before].map(([ep, m]) => [ep, new Map(m)]));
  for (const ep of cs.endpointsRemoved) next.delete(ep);
  for (const ep of cs.endpointsAdded) next.set(ep, new Map());
  for (const d of cs.deltas) {
    const m = next.get(d.endpoint) as Map<string, unknown>;
    const k = `${d.key.identity}/${d.key.direction}/${d.key.protocol}/${d.key.port}/${d.key.portPrefixLen}`;
    if (d.op === 'delete') m.delete(k);
    else m.set(k, { key: d.key, entry: d.entry });
  }
  expect(diffEndpointMaps(next, after)).toEqual([]);
  expect(diffEndpointMaps(after, next)).toEqual([]);
}

describe('external identities, random churn', () => {
  it('deltas = exact diff; pending endpoints have empty maps; the end state = a fresh engine fed it in another order', () => {
    let transactions = 0;
    fc.assert(
      fc.property(fc.array(fc.array(fc.oneof({ weight: 3, arbitrary: op.filter((o) => !needsIdentitySplits(o)).map((o): Op | IdOp => o) }, { weight: 2, arbitrary: idOp.map((o): Op | IdOp => o) }), { minLength: 1, maxLength: 4 }), { minLength: 5, maxLength: 30 }), (txns) => {
        const e = new Engine({ identitySource: 'external' });
        let state = INITIAL_CLUSTER;
        const known = new Map<number, EngineEvent>();
        const localPods = new Map<string, boolean>();
        let maps: EndpointMaps = new Map();
        for (const ops of txns) {
          const events: EngineEvent[] = [];
          let next: ClusterState | null = state;
          const knownNext = new Map(known);
          for (const o of ops) {
            const ev = o.k === 'id' || o.k === 'delId' ? identityEvent(o, next, new Set(knownNext.keys())) : toEvent(o);
            if (!ev) continue;
            try {
              next = applyToModel(next, ev);
            } catch {
              next = null;
              break;
            }
            events.push(ev);
            if (ev.type === 'upsertIdentity') knownNext.set(ev.id, ev);
            if (ev.type === 'deleteIdentity') knownNext.delete(ev.id);
          }
          if (next === null || events.length === 0) continue;
          const cs = e.apply(events);
          transactions++;
          state = next;
          known.clear();
          for (const [id, ev] of knownNext) known.set(id, ev);
          for (const ev of events) if (ev.type === 'upsertPod') localPods.set(`${ev.pod.namespace}/${ev.pod.name}`, ev.local ?? false);
          const now = endpointMaps(e);
          applyDeltas(maps, cs, now);
          maps = now;
          for (const ep of e.endpoints()) if (e.identityOfPod(ep) === UNALLOCATED_POD_IDENTITY) expect(e.mapState(ep).size).toBe(0);
        }
        // A fresh engine fed the final state, pods before identities, computes the same maps.
        const fresh = new Engine({ identitySource: 'external' });
        const podEvents: EngineEvent[] = [...state.pods.values()].map((p) => ({ type: 'upsertPod', pod: p, local: localPods.get(`${p.namespace}/${p.name}`) ?? false }));
        fresh.apply([
          ...[...state.namespaces.values()].map((n): EngineEvent => ({ type: 'upsertNamespace', name: n.name, labels: n.labels })),
          ...podEvents,
          ...[...state.policies.values()].map((policy): EngineEvent => ({ type: 'upsertPolicy', policy })),
          ...[...known.values()].reverse(),
        ]);
        expect(byClusterNumbers(fresh)).toEqual(byClusterNumbers(e));
      }),
      { numRuns: Number(process.env.EXT_RUNS ?? 60) },
    );
    expect(transactions).toBeGreaterThan(300);
  }, 120_000);
});
