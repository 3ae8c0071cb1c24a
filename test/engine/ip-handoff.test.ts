import { describe, expect, it } from 'vitest';
import { Engine, type EngineOptions } from '../../src/engine/engine.js';
import { EngineEvent, MapCapacityError } from '../../src/engine/events.js';
import { applyEventToCluster, comparableIpcache } from '../../src/harness/cluster-sync.js';
import { parseIp } from '../../src/model/cidr.js';
import { ClusterState, EMPTY_CLUSTER, ipOwner, namespaceWithDefaults, Pod, upsertExternal } from '../../src/model/cluster.js';
import { podIdentityLabels, securityLabels } from '../../src/model/identity.js';
import { resolveEndpoint } from '../../src/model/flow.js';
import { labelSetKey } from '../../src/model/labels.js';
import { datapathPasses } from '../../src/model/policy-map.js';
import type { Policy } from '../../src/model/rules.js';
import { decideDirection } from '../../src/naive/evaluator.js';
import { parseManifest } from '../../src/policy/manifest.js';
import { freshEngine, ownerDepartures } from './fresh-engine.js';
import { normalizedMaps } from './gen.js';

/*
 * The hand-off of a pod address that several pods claim (finding 1622, docs/attack-findings-23f.md
 * 1735), with a toFQDNs answer or a toCIDR /32 at that address. Cilium 1.19:
 * - a CiliumEndpoint write is `IPCache.Upsert(ip, ..., source.CustomResource)` under the bare address:
 *   equal sources, so the last write owns the entry (pkg/k8s/watchers/cilium_endpoint.go
 *   `endpointUpdated`; pkg/source/source.go `AllowOverwrite`);
 * - the owner dropping the address or deleted is `DeleteOnMetadataMatch(ip, CustomResource, ns, name)`:
 *   it deletes the entry only if it names that pod; nothing re-upserts the other claimants (one entry
 *   per address, `ipToK8sMetadata`), they take it back only when their own CEP is written again;
 * - an FQDN or CIDR identity comes through the metadata layer under the key `IP/32`; the endpoint
 *   entry shadows it ("Endpoint IP identities take precedence over CIDR identities", `upsertLocked`),
 *   and deleting the endpoint entry revives it ("Removal of endpoint IP revives shadowed CIDR to
 *   identity mapping", pkg/ipcache/ipcache.go `deleteLocked`; read at 18cde1cf and later, the 1.19
 *   text is not in the index).
 * So the expected owner of each step below is written from these rules, not from distill's output;
 * the oracle (`ipOwner`) must agree, the engine's identity and verdict must follow it, and a fresh
 * engine told which addresses were left (`ownerDepartures`) must equal the incremental one.
 */
const NS = 'prod';
const nsEvent: EngineEvent = { type: 'upsertNamespace', name: NS, labels: {} };
const mkPod = (name: string, ip: string, labels: Record<string, string> = { app: name }): Pod => ({ namespace: NS, name, labels, ip: parseIp(ip), serviceAccount: 'default', ports: [] });
const add = (p: Pod, local = false): EngineEvent => ({ type: 'upsertPod', pod: p, local });
const del = (name: string): EngineEvent => ({ type: 'deletePod', namespace: NS, name });
const cnp = (name: string, spec: object): Policy => parseManifest({ apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name, namespace: NS }, spec }, `${name}.yaml`, { fqdn: true });
const client = 'client';
const dnsPolicy = cnp('dns', { endpointSelector: { matchLabels: { app: client } }, egress: [{ toEndpoints: [{}], toPorts: [{ ports: [{ port: '53', protocol: 'ANY' }], rules: { dns: [{ matchPattern: '*' }] } }] }] });
const egressTo = (peer: object): Policy => cnp('to-shared', { endpointSelector: { matchLabels: { app: client } }, egress: [{ ...peer, toPorts: [{ ports: [{ port: '443', protocol: 'TCP' }] }] }] });

type Peer = 'fqdn' | 'cidr';
interface Family {
  readonly shared: string;
  readonly other: (i: number) => string;
  readonly client: string;
  readonly plen: number;
}
const V4: Family = { shared: '10.244.0.3', other: (i) => `10.244.1.${i + 10}`, client: '10.244.0.2', plen: 32 };
const V6: Family = { shared: 'fd00::a:3', other: (i) => `fd00::b:${i + 10}`, client: 'fd00::a:2', plen: 128 };

/** An engine with the local client, its DNS rule and its egress rule to the shared address (by name or by /32). */
class Handoff {
  readonly engine: Engine;
  state: ClusterState = EMPTY_CLUSTER;
  private readonly local = new Map<string, boolean>();

  constructor(
    readonly f: Family,
    readonly peer: Peer,
    options: EngineOptions = {},
  ) {
    this.engine = new Engine(options);
    const to = peer === 'fqdn' ? { toFQDNs: [{ matchName: 'a.example.com' }] } : { toCIDR: [`${f.shared}/${f.plen}`] };
    this.apply([nsEvent, add(mkPod(client, f.client), true), { type: 'upsertPolicy', policy: dnsPolicy }, { type: 'upsertPolicy', policy: egressTo(to) }]);
  }

  pod(name: string, labels?: Record<string, string>): Pod {
    return mkPod(name, this.f.shared, labels);
  }

  /** A pod of another namespace at the shared address. */
  podIn(namespace: string, name: string): Pod {
    return { ...this.pod(name), namespace };
  }

  moved(name: string, i: number): EngineEvent {
    return add(mkPod(name, this.f.other(i)));
  }

  answer(): EngineEvent {
    return { type: 'dnsResponse', endpoint: `${NS}/${client}`, name: 'a.example.com', ips: [parseIp(this.f.shared)], ttl: 3600 };
  }

  apply(events: EngineEvent[]): void {
    this.engine.apply(events);
    this.state = events.reduce(applyEventToCluster, this.state);
    for (const e of events) if (e.type === 'upsertPod') this.local.set(`${e.pod.namespace}/${e.pod.name}`, e.local ?? false);
  }

  /** After a step: `owner` (a pod of NS by name, another's by key, or null for none) is the oracle's and the engine's, and a fresh engine agrees. */
  check(owner: string | null, step: string): void {
    const key = owner === null ? undefined : owner.includes('/') ? owner : `${NS}/${owner}`;
    expect({ step, oracle: ipOwner(this.state, this.f.shared) }).toEqual({ step, oracle: key });
    const id = this.engine.identityOfIp(parseIp(this.f.shared));
    if (key !== undefined) expect({ step, id }).toEqual({ step, id: this.engine.identityOfPod(key) });
    else expect({ step, labels: labelSetKey(this.engine.identityLabels(id) ?? []) }).toEqual({ step, labels: expect.stringContaining(this.peer === 'fqdn' ? 'fqdn:a.example.com' : `cidr:${this.f.shared}/${this.f.plen}`) });
    // Port 443 to the address: allowed by the rule while it is the FQDN/CIDR identity, denied while a pod owns it.
    const probe = upsertExternal(this.state, { name: 'probe', ip: parseIp(this.f.shared) });
    const subject = resolveEndpoint(probe, `${NS}/${client}`);
    if (subject.kind !== 'pod') throw new Error('client is not a pod');
    const oracle = decideDirection(probe, subject, 'egress', resolveEndpoint(probe, 'probe'), 'TCP', 443, undefined).allowed;
    const engine = datapathPasses(this.engine.lookup(`${NS}/${client}`, id, 'egress', 6, 443)?.entry, 'TCP').allowed;
    expect({ step, engine, oracle }).toEqual({ step, engine: key === undefined, oracle: key === undefined });
    const fresh = freshEngine(this.engine, this.state, this.local);
    expect({ step, ipcache: comparableIpcache(fresh) }).toEqual({ step, ipcache: comparableIpcache(this.engine) });
    expect({ step, maps: normalizedMaps(fresh) }).toEqual({ step, maps: normalizedMaps(this.engine) });
  }
}

/** 1622's history: b joins a's address with the DNS answer in one transaction, then b (the owner) moves off it. */
function history1622(f: Family, peer: Peer): Handoff {
  const h = new Handoff(f, peer);
  h.apply([add(h.pod('a'))]);
  h.check('a', 'a claims');
  h.apply([add(h.pod('b')), ...(peer === 'fqdn' ? [h.answer()] : [])]);
  h.check('b', 'b claims, with the answer');
  h.apply([h.moved('b', 0)]);
  h.check(null, 'b, the owner, moves off');
  return h;
}

describe('an address whose owner leaves it while another pod claims it (1622)', () => {
  for (const [fname, f] of [['IPv4', V4], ['IPv6', V6]] as const) {
    for (const peer of ['fqdn', 'cidr'] as const) {
      it(`${fname}, ${peer}: the FQDN/CIDR identity is revived; a write of the other claimant takes the address back`, () => {
        const h = history1622(f, peer);
        h.apply([add(h.pod('a', { app: 'a', v: '2' }))]);
        h.check('a', 'a written again');
        h.apply([del('a')]);
        h.check(null, 'a, the owner, deleted: no claimant');
      });
    }
  }

  it('without the departures a fresh engine hands the address to the remaining claimant (the old harness: 1622 was this)', () => {
    const h = history1622(V4, 'fqdn');
    expect(ownerDepartures(h.state)).toHaveLength(2);
    const fresh = freshEngine(h.engine, { ...h.state, unownedIps: new Set() }, new Map([[`${NS}/${client}`, true]]));
    expect(fresh.identityOfIp(parseIp(V4.shared))).toBe(fresh.identityOfPod(`${NS}/a`));
    expect(comparableIpcache(fresh)).not.toEqual(comparableIpcache(h.engine));
  });

  it('a non-owner leaving changes nothing', () => {
    const h = new Handoff(V4, 'fqdn');
    h.apply([add(h.pod('a')), add(h.pod('b')), h.answer()]);
    h.check('b', 'a then b');
    h.apply([h.moved('a', 0)]);
    h.check('b', 'a moves off');
    h.apply([del('b')]);
    h.check(null, 'b deleted');
  });

  it('the remaining claimant relabelled in the transaction the owner leaves takes the address, in either order', () => {
    for (const order of ['leave first', 'relabel first'] as const) {
      const h = new Handoff(V4, 'fqdn');
      h.apply([add(h.pod('a')), add(h.pod('b')), h.answer()]);
      const relabel = add(h.pod('a', { app: 'a', v: '2' }));
      h.apply(order === 'leave first' ? [h.moved('b', 0), relabel] : [relabel, h.moved('b', 0)]);
      h.check('a', order);
    }
  });
});

/*
 * Finding 1736 (docs/attack-findings-23f.md, decided in 24f): a re-identified claimant writes its addresses again.
 * Cilium 1.19: a namespace relabel reaches each endpoint of the namespace (pkg/k8s/watchers/namespace.go
 * `namespaceUpdater.update` -> `ep.ModifyIdentityLabels`, only when the filtered labels changed); a new identity
 * triggers the endpoint's CiliumEndpoint sync (pkg/endpoint/endpoint.go `identityLabelsChanged`: "Trigger the
 * sync-to-k8s-ciliumendpoint controller to sync the new endpoint's identity"), which patches the CEP's status
 * when the model changed (pkg/k8s/watchers/endpointsynchronizer.go `RunK8sCiliumEndpointSync`); every agent's
 * CEP watcher then calls `endpointUpdated` for the changed object, which `IPCache.Upsert`s each address with
 * `source.CustomResource`, no local-node filter (pkg/k8s/watchers/cilium_endpoint.go), and `upsertLocked`
 * overwrites an entry of the same source whoever it named (pkg/ipcache/ipcache.go, `AllowOverwrite`). So the
 * re-identified pod owns the address, whether the owner left it or still claims it (last writer wins), local
 * or remote alike. Pods of one relabel are written in their write order (distill's choice: Cilium's order is
 * each CEP controller's timing).
 */
describe('a claimant re-identified by a namespace relabel writes its addresses (1736)', () => {
  for (const [fname, f] of [['IPv4', V4], ['IPv6', V6]] as const) {
    for (const peer of ['fqdn', 'cidr'] as const) {
      it(`${fname}, ${peer}: the remaining claimant takes the address back; the same labels again write nothing`, () => {
        const h = history1622(f, peer);
        h.apply([{ type: 'upsertNamespace', name: NS, labels: {} }]);
        h.check(null, 'namespace re-sent with the same labels');
        h.apply([{ type: 'upsertNamespace', name: NS, labels: { team: 'x' } }]);
        h.check('a', 'namespace relabelled');
        h.apply([del('a')]);
        h.check(null, 'a, the owner, deleted');
      });
    }
  }

  const team = (labels: Record<string, string> = {}): EngineEvent => ({ type: 'upsertNamespace', name: 'team', labels });

  it('a non-owner claimant takes the address from an owner that still claims it; the owner re-identified keeps it', () => {
    const h = new Handoff(V4, 'fqdn');
    h.apply([team(), add(h.podIn('team', 'x')), add(h.pod('y')), h.answer()]);
    h.check('y', 'x then y');
    h.apply([team({ v: '1' })]);
    h.check('team/x', 'team relabelled: x written again');
    h.apply([team({ v: '2' })]);
    h.check('team/x', 'team relabelled again: x, the owner, keeps it');
    h.apply([{ type: 'upsertNamespace', name: NS, labels: { v: '1' } }]);
    h.check('y', 'prod relabelled: y written again');
    h.apply([del('y')]);
    h.check(null, 'y, the owner, deleted');
  });

  for (const order of [['x1', 'x2'], ['x2', 'x1']]) {
    it(`two claimants of one relabel: the later written (${order[1]}) takes it, from an owner outside and from none`, () => {
      const h = new Handoff(V4, 'fqdn');
      h.apply([team(), ...order.map((n) => add(h.podIn('team', n))), add(h.pod('y')), h.answer()]);
      h.check('y', 'written in order, then y');
      h.apply([team({ v: '1' })]);
      h.check(`team/${order[1]}`, 'team relabelled');
      h.apply([add(h.pod('y', { app: 'y', v: '2' }))]);
      h.check('y', 'y written again');
      h.apply([h.moved('y', 0)]);
      h.check(null, 'y, the owner, moves off: both team pods still claim it');
      h.apply([team({ v: '2' })]);
      h.check(`team/${order[1]}`, 'team relabelled again: the relabel kept their order');
    });
  }

  it('a refused relabel is undone: the owner outside keeps the address, and the write order stays', () => {
    const fillers = Array.from({ length: 30 }, (_, i) => add(mkPod(`f${i}`, `10.244.2.${i + 1}`, { filler: String(i) })));
    const toFillers = cnp('to-fillers', { endpointSelector: { matchLabels: { app: client } }, egress: [{ toEndpoints: [{ matchExpressions: [{ key: 'filler', operator: 'Exists' }] }] }] });
    const h = new Handoff(V4, 'fqdn', { mapCapacity: 24 });
    h.apply([{ type: 'upsertPolicy', policy: toFillers }, team(), add(h.podIn('team', 'x1')), add(h.podIn('team', 'x2')), add(h.pod('y')), h.answer()]);
    h.check('y', 'x1, x2, then y');
    const before = comparableIpcache(h.engine);
    // The refused transaction re-writes x1 (now the later of the two) and relabels team: undone, x2 is the later again.
    expect(() => h.engine.apply([add({ ...h.podIn('team', 'x1'), labels: { app: 'x1', v: '2' } }), team({ v: '1' }), ...fillers])).toThrow(MapCapacityError);
    expect(comparableIpcache(h.engine)).toEqual(before);
    h.check('y', 'refused: x1 re-written, team relabelled, fillers');
    h.apply([team({ v: '1' })]);
    h.check('team/x2', 'team relabelled for real: x2 was written last');
  });

  it('a rebuild after an internal error keeps the write order (the pod table keeps pods in first-written order)', () => {
    let armed = false;
    const h = new Handoff(V4, 'fqdn', {
      faultHook: (point) => {
        if (armed && point === 'event') throw new TypeError('injected');
      },
    });
    h.apply([team(), add(h.podIn('team', 'x1')), add(h.podIn('team', 'x2')), add(h.pod('y')), h.answer()]);
    h.apply([add({ ...h.podIn('team', 'x1'), labels: { app: 'x1', v: '2' } }), add(h.pod('y', { app: 'y', v: '2' }))]);
    h.check('y', 'x2, x1 re-written, then y');
    armed = true;
    expect(() => h.engine.apply([add(mkPod('other', '10.244.3.1'))])).toThrow(TypeError);
    armed = false;
    h.check('y', 'rebuilt');
    h.apply([team({ v: '1' })]);
    h.check('team/x1', 'team relabelled: x1 was written last');
  });
});

/*
 * Re-identifications that are no write (docs/semantics.md "Pods as endpoints", attack findings 24f):
 * - identity events: the ipcache takes a pod's number from its CiliumEndpoint (`endpointUpdated`: `id =
 *   endpoint.Identity.ID`, pkg/k8s/watchers/cilium_endpoint.go); a CiliumIdentity (or kvstore key) arriving or
 *   going writes no CiliumEndpoint. distill's re-identification on them (pending -> a number, the lowest of two
 *   numbers for one label set) is this agent learning numbers, not the pod's endpoint changing identity;
 * - network splits: derived labels of distill's own encoding of `networks` peers (src/engine/network-splits.ts),
 *   which no Cilium identity carries: nothing patches a CiliumEndpoint for them.
 * The oracle has neither (identity numbers and splits are not in the cluster model), so it keeps the address left.
 */
describe('re-identifications that write nothing', () => {
  it('identity events: a claimant getting its number, or another one, does not take the address back', () => {
    const e = new Engine({ identitySource: 'external' });
    let s: ClusterState = EMPTY_CLUSTER;
    const apply = (events: EngineEvent[]): void => {
      e.apply(events);
      s = events.reduce(applyEventToCluster, s);
    };
    const a = mkPod('a', V4.shared);
    const b = mkPod('b', V4.shared);
    const idEvent = (id: number, p: Pod): EngineEvent => ({ type: 'upsertIdentity', id, labels: securityLabels(podIdentityLabels(p, namespaceWithDefaults(NS, {}).labels)) });
    apply([nsEvent, idEvent(301, b), add(a), add(b)]);
    expect(e.identityOfIp(parseIp(V4.shared))).toBe(301);
    apply([{ ...add(mkPod('b', '10.244.1.10')) }]);
    const left = e.identityOfIp(parseIp(V4.shared));
    expect(ipOwner(s, V4.shared)).toBeUndefined();
    apply([idEvent(300, a)]);
    expect(e.identityOfPod(`${NS}/a`)).toBe(300);
    expect(e.identityOfIp(parseIp(V4.shared))).toBe(left);
    apply([idEvent(280, a)]);
    expect(e.identityOfPod(`${NS}/a`)).toBe(280);
    apply([{ type: 'deleteIdentity', id: 280 }]);
    expect(e.identityOfPod(`${NS}/a`)).toBe(300);
    expect(e.identityOfIp(parseIp(V4.shared))).toBe(left);
    expect(ipOwner(s, V4.shared)).toBeUndefined();
  });

  it('a network split: the remaining claimant split from a pod of its labels does not take the address back', () => {
    const h = history1622(V4, 'fqdn');
    const split = parseManifest({ apiVersion: 'policy.networking.k8s.io/v1alpha2', kind: 'ClusterNetworkPolicy', metadata: { name: 'nets' }, spec: { tier: 'Admin', priority: 5, subject: { namespaces: { matchLabels: { role: 'subject' } } }, egress: [{ action: 'Accept', to: [{ networks: ['10.244.0.0/24'] }] }] } }, 'nets.yaml');
    h.apply([{ type: 'upsertNamespace', name: 'subj', labels: { role: 'subject' } }, add({ ...mkPod('s', '10.244.5.1'), namespace: 'subj' }, true), add(mkPod('c', '10.244.1.20', { app: 'a' }))]);
    h.check(null, 'c shares a\'s labels');
    expect(h.engine.identityOfPod(`${NS}/a`)).toBe(h.engine.identityOfPod(`${NS}/c`));
    h.apply([{ type: 'upsertPolicy', policy: split }]);
    expect(h.engine.identityOfPod(`${NS}/a`)).not.toBe(h.engine.identityOfPod(`${NS}/c`));
    h.check(null, 'a split from c by the networks peer');
    h.apply([{ type: 'deletePolicy', ref: split.ref }]);
    expect(h.engine.identityOfPod(`${NS}/a`)).toBe(h.engine.identityOfPod(`${NS}/c`));
    h.check(null, 'the split undone');
  });
});

describe('three claimants leaving in every order', () => {
  const perms = (xs: readonly string[]): string[][] => (xs.length <= 1 ? [[...xs]] : xs.flatMap((x) => perms(xs.filter((y) => y !== x)).map((rest) => [x, ...rest])));
  for (const order of perms(['a', 'b', 'c'])) {
    it(`${order.join(', ')} (alternately deleted and moved off)`, () => {
      const h = new Handoff(V4, 'fqdn');
      h.apply([add(h.pod('a')), add(h.pod('b')), add(h.pod('c')), h.answer()]);
      // c was written last: it owns the entry until it leaves; after that no pod does.
      let owner: string | null = 'c';
      order.forEach((name, i) => {
        h.apply([i % 2 === 0 ? del(name) : h.moved(name, i)]);
        if (name === owner) owner = null;
        h.check(owner, `${name} leaves`);
      });
    });
  }
});

describe('a node address several pods claim', () => {
  for (const local of [true, false]) {
    it(`the ${local ? 'local' : 'remote'} node keeps its address whichever claimant leaves`, () => {
      const h = new Handoff(V4, 'fqdn');
      h.apply([{ type: 'upsertNode', name: 'n1', ips: [parseIp(V4.shared)], local }, add(h.pod('a')), add(h.pod('b')), h.answer()]);
      const nodeId = local ? 1 : 6;
      expect(h.engine.identityOfIp(parseIp(V4.shared))).toBe(nodeId);
      h.apply([h.moved('b', 0)]);
      expect(h.engine.identityOfIp(parseIp(V4.shared))).toBe(nodeId);
      const fresh = freshEngine(h.engine, h.state, new Map([[`${NS}/${client}`, true]]));
      expect(comparableIpcache(fresh)).toEqual(comparableIpcache(h.engine));
      expect(normalizedMaps(fresh)).toEqual(normalizedMaps(h.engine));
    });
  }
});

describe('a refused transaction between the claims and the departure', () => {
  const fillers = Array.from({ length: 30 }, (_, i) => add(mkPod(`f${i}`, `10.244.2.${i + 1}`, { filler: String(i) })));
  const toFillers = cnp('to-fillers', { endpointSelector: { matchLabels: { app: client } }, egress: [{ toEndpoints: [{ matchExpressions: [{ key: 'filler', operator: 'Exists' }] }] }] });

  it('undo restores the write order: the earlier claimant re-written in the refused transaction does not own the address after', () => {
    const h = new Handoff(V4, 'fqdn', { mapCapacity: 24 });
    h.apply([{ type: 'upsertPolicy', policy: toFillers }, add(h.pod('a')), add(h.pod('b')), h.answer()]);
    h.check('b', 'a then b');
    const before = comparableIpcache(h.engine);
    expect(() => h.engine.apply([add(h.pod('a', { app: 'a', v: '2' })), h.moved('b', 0), ...fillers])).toThrow(MapCapacityError);
    expect(comparableIpcache(h.engine)).toEqual(before);
    h.check('b', 'refused: a re-written, b moved, fillers');
    h.apply([h.moved('b', 0)]);
    h.check(null, 'b moves off for real');
  });

  it('undo restores a departure: the refused transaction\'s owner leaving is undone', () => {
    const h = new Handoff(V4, 'fqdn', { mapCapacity: 24 });
    h.apply([{ type: 'upsertPolicy', policy: toFillers }, add(h.pod('a')), add(h.pod('b')), h.answer(), h.moved('b', 0)]);
    h.check(null, 'b left');
    expect(() => h.engine.apply([add(h.pod('a', { app: 'a', v: '2' })), ...fillers])).toThrow(MapCapacityError);
    h.check(null, 'refused: a re-written, fillers');
    h.apply([add(h.pod('a', { app: 'a', v: '2' }))]);
    h.check('a', 'a re-written for real');
  });
});
