import fc from 'fast-check';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterAll, describe, expect, it } from 'vitest';
import { Agent, type AgentIpcache } from '../../src/agent/agent.js';
import { kernelIpcacheContent } from '../../src/backend/ipcache-content.js';
import type { IpcacheDelta } from '../../src/engine/events.js';
import { backendLookup } from '../../src/backend/lookup.js';
import { MemoryBackend } from '../../src/backend/memory.js';
import { endpointMaps, sameEndpointMaps } from '../../src/harness/cluster-sync.js';
import type { WatchItem } from '../../src/k8s/watch.js';
import { cidrContainsIp, parseCidr, parseIp } from '../../src/model/cidr.js';
import { namespaceWithDefaults } from '../../src/model/cluster.js';
import { LOCAL_IDENTITY_FLAG, podIdentityLabels, securityLabels, type StackMode } from '../../src/model/identity.js';
import { labelSetKey } from '../../src/model/labels.js';
import { policyKeyString } from '../../src/model/policy-map.js';
import { fcReplay, fcRuns } from '../fc-knobs.js';

/*
 * Attack round 27e, the agent: random watch histories of namespaces, pods (local and remote, some with an
 * IPv6 address too), CiliumIdentity objects (readable, unreadable, deleted; `--identities external`),
 * CiliumCIDRGroups (with and without `--cidr-groups`), CiliumNetworkPolicies reading them and
 * ClusterNetworkPolicies at v1beta1, single- and dual-stack. After every flush the memory backend holds
 * the engine's maps; at the end every verdict of every local endpoint for every live pod address and some
 * outside addresses (the ipcache's identity, then the maps) equals a fresh agent's fed the final objects,
 * and, when no identity was ever unreadable (a stand-in keeps its last readable labels' pods, which a
 * fresh agent cannot know: docs/semantics.md), so do the maps entry by entry.
 */

const logger = pino({ level: process.env.DISTILL_LOG ?? 'silent' });
const RUNS = fcRuns(process.env.DISTILL_LONG ? 2000 : 40);
const NS = ['shop', 'ops'];
const PODS = ['p0', 'p1', 'p2'];
const APPS = ['web', 'db', 'api'];
const IDS = [300, 301, 302, 303, 304];
const OUTSIDE = ['8.8.8.8', '192.168.1.5', '10.1.2.3', '2001:db8::5', '203.0.113.1'];

type AOp =
  | { readonly k: 'ns'; readonly ns: number; readonly team: string | null }
  | { readonly k: 'pod'; readonly ns: number; readonly pod: number; readonly app: number; readonly local: boolean; readonly v6: boolean }
  | { readonly k: 'delPod'; readonly ns: number; readonly pod: number }
  | { readonly k: 'id'; readonly id: number; readonly ns: number; readonly app: number; readonly team: string | null }
  | { readonly k: 'badId'; readonly id: number }
  | { readonly k: 'delId'; readonly id: number }
  | { readonly k: 'group'; readonly g: number; readonly cidrs: readonly string[]; readonly env: string | null }
  | { readonly k: 'delGroup'; readonly g: number }
  | { readonly k: 'cnp'; readonly ns: number; readonly which: number }
  | { readonly k: 'delCnp'; readonly ns: number }
  | { readonly k: 'tier'; readonly which: number }
  | { readonly k: 'delTier' }
  | { readonly k: 'relist'; readonly kind: 'CiliumIdentity' | 'CiliumCIDRGroup'; readonly drop: number | null }
  | { readonly k: 'badGroup'; readonly g: number };

const team = fc.constantFrom('a', 'b', null);
const aop: fc.Arbitrary<AOp> = fc.oneof(
  { weight: 1, arbitrary: fc.record({ k: fc.constant('ns' as const), ns: fc.nat({ max: 1 }), team }) },
  { weight: 4, arbitrary: fc.record({ k: fc.constant('pod' as const), ns: fc.nat({ max: 1 }), pod: fc.nat({ max: 2 }), app: fc.nat({ max: 2 }), local: fc.boolean(), v6: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('delPod' as const), ns: fc.nat({ max: 1 }), pod: fc.nat({ max: 2 }) }) },
  { weight: 5, arbitrary: fc.record({ k: fc.constant('id' as const), id: fc.constantFrom(...IDS), ns: fc.nat({ max: 1 }), app: fc.nat({ max: 2 }), team }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('badId' as const), id: fc.constantFrom(...IDS) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('delId' as const), id: fc.constantFrom(...IDS) }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('group' as const), g: fc.nat({ max: 1 }), cidrs: fc.subarray(['8.8.8.0/24', '192.168.0.0/16', '0.0.0.0/0', '2001:db8::/32', '10.1.2.3/32'], { maxLength: 2 }), env: fc.constantFrom('prod', null) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('delGroup' as const), g: fc.nat({ max: 1 }) }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('cnp' as const), ns: fc.nat({ max: 1 }), which: fc.nat({ max: 3 }) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('delCnp' as const), ns: fc.nat({ max: 1 }) }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('tier' as const), which: fc.nat({ max: 4 }) }) },
  { weight: 1, arbitrary: fc.constant({ k: 'delTier' as const }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('relist' as const), kind: fc.constantFrom('CiliumIdentity' as const, 'CiliumCIDRGroup' as const), drop: fc.option(fc.nat({ max: 4 }), { nil: null }) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('badGroup' as const), g: fc.nat({ max: 1 }) }) },
);

const CNP_SPECS: readonly Record<string, unknown>[] = [
  { endpointSelector: {}, egress: [{ toCIDRSet: [{ cidrGroupRef: 'g0' }] }, { toEndpoints: [{ matchLabels: { app: 'db' } }] }], egressDeny: [{ toCIDRSet: [{ cidrGroupSelector: { matchLabels: { env: 'prod' } } }] }] },
  { endpointSelector: { matchLabels: { app: 'web' } }, ingress: [{ fromEntities: ['all'] }], ingressDeny: [{ fromEndpoints: [{ matchLabels: { app: 'api' } }] }], egress: [{ toEntities: ['world'] }] },
  { endpointSelector: {}, egress: [{ toEndpoints: [{ matchLabels: { 'reserved:world-ipv6': '' } }] }, { toCIDRSet: [{ cidrGroupRef: 'g1', except: ['192.168.1.0/24'] }] }], ingress: [{ fromEndpoints: [{}] }] },
  { endpointSelector: { matchLabels: { app: 'db' } }, ingress: [{ fromEndpoints: [{ matchLabels: { app: 'web' } }], toPorts: [{ ports: [{ port: '80', protocol: 'TCP' }] }] }] },
];
const TIER_SPECS: readonly Record<string, unknown>[] = [
  { tier: 'Admin', priority: 5, subject: { namespaces: {} }, egress: [{ action: 'Deny', to: [{ pods: { namespaceSelector: { matchLabels: { team: 'b' } }, podSelector: {} } }] }, { action: 'Accept', to: [{ pods: { namespaceSelector: {}, podSelector: { matchLabels: { app: 'db' } } } }] }] },
  { tier: 'Admin', priority: 5, subject: { pods: { namespaceSelector: { matchLabels: { team: 'a' } }, podSelector: {} } }, ingress: [{ action: 'Pass', from: [{ namespaces: {} }] }, { action: 'Deny', from: [{ pods: { namespaceSelector: {}, podSelector: { matchLabels: { app: 'api' } } } }] }] },
  { tier: 'Baseline', priority: 10, subject: { namespaces: {} }, ingress: [{ action: 'Deny', from: [{ namespaces: {} }] }], egress: [{ action: 'Deny', to: [{ namespaces: {} }], protocols: [{ tcp: { destinationPort: { number: 80 } } }] }] },
  // A networks peer and a named port: with identities from outside the agent reads these rules as the stand-in (2247).
  { tier: 'Admin', priority: 7, subject: { namespaces: {} }, egress: [{ action: 'Deny', to: [{ networks: ['8.8.8.0/24'] }] }, { action: 'Accept', to: [{ networks: ['192.168.0.0/16'] }, { namespaces: {} }] }] },
  { tier: 'Baseline', priority: 9, subject: { pods: { namespaceSelector: {}, podSelector: { matchLabels: { app: 'web' } } } }, egress: [{ action: 'Deny', to: [{ namespaces: {} }], protocols: [{ destinationNamedPort: 'http' }] }] },
];

function labelsOf(ns: string, app: string, t: string | null): Record<string, string> {
  return securityLabels(podIdentityLabels({ namespace: ns, labels: { app }, serviceAccount: 'default' }, namespaceWithDefaults(ns, t === null ? {} : { team: t }).labels));
}

/** The live objects (key → object) a history leaves, and the watch items that got there. */
class World {
  readonly live = new Map<string, Record<string, unknown>>();
  private rv = 1;
  unreadableSeen = false;
  /** A CiliumCIDRGroup event arrived: the agent knows groups are watched (a fresh agent fed no group needs `--cidr-groups` for that). */
  groupSeen = false;
  private item(type: 'ADDED' | 'MODIFIED' | 'DELETED', key: string, object: Record<string, unknown>): WatchItem {
    const meta = object.metadata as Record<string, unknown>;
    const o = { ...object, metadata: { ...meta, resourceVersion: String(this.rv++) } };
    if (type === 'DELETED') this.live.delete(key);
    else this.live.set(key, o);
    return { type, object: o };
  }
  private put(key: string, object: Record<string, unknown>): WatchItem {
    return this.item(this.live.has(key) ? 'MODIFIED' : 'ADDED', key, object);
  }
  private del(key: string): WatchItem | null {
    const o = this.live.get(key);
    return o ? this.item('DELETED', key, o) : null;
  }
  apply(o: AOp): WatchItem[] {
    if (o.k === 'relist') return this.relist(o.kind, o.drop);
    const item = this.one(o);
    return item ? [item] : [];
  }
  /** A watch that expired (410) and was listed again; `drop`: one object of the kind went meanwhile (no DELETED event). */
  private relist(kind: 'CiliumIdentity' | 'CiliumCIDRGroup', drop: number | null): WatchItem[] {
    const prefix = kind === 'CiliumIdentity' ? 'id/' : 'group/';
    const keys = [...this.live.keys()].filter((k) => k.startsWith(prefix));
    const gone = drop === null ? undefined : keys[drop % Math.max(keys.length, 1)];
    if (gone !== undefined) this.live.delete(gone);
    if (kind === 'CiliumCIDRGroup') this.groupSeen = true;
    const items = [...this.live].filter(([k]) => k.startsWith(prefix)).map(([, o]) => o);
    return [
      { type: 'ERROR', object: { kind: 'Status', apiVersion: 'v1', status: 'Failure', reason: 'Expired', code: 410 } },
      { type: 'LIST', itemKind: kind, apiVersion: kind === 'CiliumIdentity' ? 'cilium.io/v2' : 'cilium.io/v2alpha1', resourceVersion: String(this.rv++), items },
    ];
  }
  private one(o: Exclude<AOp, { k: 'relist' }>): WatchItem | null {
    switch (o.k) {
      case 'ns': {
        const name = NS[o.ns] as string;
        return this.put(`ns/${name}`, { apiVersion: 'v1', kind: 'Namespace', metadata: { name, ...(o.team ? { labels: { team: o.team } } : {}) } });
      }
      case 'pod': {
        const ns = NS[o.ns] as string;
        const ip = `10.0.${o.ns}.${o.pod + 2}`;
        const podIPs = o.v6 ? [{ ip }, { ip: `fd00::${o.ns}:${o.pod + 2}` }] : [{ ip }];
        return this.put(`pod/${ns}/${PODS[o.pod]}`, { apiVersion: 'v1', kind: 'Pod', metadata: { name: PODS[o.pod], namespace: ns, labels: { app: APPS[o.app] } }, spec: { nodeName: o.local ? 'n1' : 'n2', containers: [] }, status: { phase: 'Running', podIP: ip, podIPs } });
      }
      case 'delPod':
        return this.del(`pod/${NS[o.ns]}/${PODS[o.pod]}`);
      case 'id':
        return this.put(`id/${o.id}`, { apiVersion: 'cilium.io/v2', kind: 'CiliumIdentity', metadata: { name: String(o.id) }, 'security-labels': labelsOf(NS[o.ns] as string, APPS[o.app] as string, o.team) });
      case 'badId':
        this.unreadableSeen = true;
        return this.put(`id/${o.id}`, { apiVersion: 'cilium.io/v2', kind: 'CiliumIdentity', metadata: { name: String(o.id) }, 'security-labels': { 'bogus:app': 'x' } });
      case 'delId':
        return this.del(`id/${o.id}`);
      case 'group':
        this.groupSeen = true;
        return this.put(`group/g${o.g}`, { apiVersion: 'cilium.io/v2alpha1', kind: 'CiliumCIDRGroup', metadata: { name: `g${o.g}`, ...(o.env ? { labels: { env: o.env } } : {}) }, spec: { externalCIDRs: [...o.cidrs] } });
      case 'badGroup':
        this.groupSeen = true;
        return this.put(`group/g${o.g}`, { apiVersion: 'cilium.io/v2alpha1', kind: 'CiliumCIDRGroup', metadata: { name: `g${o.g}` }, spec: { externalCIDRs: ['not-a-cidr'] } });
      case 'delGroup': {
        const item = this.del(`group/g${o.g}`);
        if (item) this.groupSeen = true;
        return item;
      }
      case 'cnp': {
        const ns = NS[o.ns] as string;
        return this.put(`cnp/${ns}`, { apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name: 'mix', namespace: ns }, spec: CNP_SPECS[o.which] });
      }
      case 'delCnp':
        return this.del(`cnp/${NS[o.ns]}`);
      case 'tier':
        return this.put('tier', { apiVersion: 'policy.networking.k8s.io/v1beta1', kind: 'ClusterNetworkPolicy', metadata: { name: 'mix' }, spec: TIER_SPECS[o.which] });
      case 'delTier':
        return this.del('tier');
    }
  }
}

/** The CiliumIdentity list the identity watch starts with (the agent's first transaction waits for one). */
const identityList = (items: Record<string, unknown>[]): WatchItem => ({ type: 'LIST', itemKind: 'CiliumIdentity', apiVersion: 'cilium.io/v2', resourceVersion: '1', items });

/** The kernel ipcache as the agent writes it (deltas between the map phases, a sync at the first write). */
class MemIpcache implements AgentIpcache {
  readonly content = new Map<string, number>();
  apply(deltas: readonly IpcacheDelta[]): void {
    for (const d of deltas) {
      if (d.op === 'delete') this.content.delete(d.prefix);
      else this.content.set(d.prefix, d.identity);
    }
  }
  sync(wanted: ReadonlyMap<string, number>): number {
    this.content.clear();
    for (const [k, v] of wanted) this.content.set(k, v);
    return wanted.size;
  }
  close(): void {}
}

/** A flush and the ones the agent queues for the next event-loop turn while work is left (`queueFlush`). */
function drain(agent: Agent): void {
  agent.flush();
  for (let i = 0; i < 50 && !agent.mirror.idle; i++) agent.flush();
  expect(agent.mirror.idle, 'the agent has work left after 50 flushes').toBe(true);
}

function newAgent(stack: StackMode, cidrGroups: boolean): { agent: Agent; backend: MemoryBackend; ipcache: MemIpcache } {
  const backend = new MemoryBackend();
  const ipcache = new MemIpcache();
  const agent = new Agent({ node: 'n1', watch: [], backend, ipcache, logger, registry: new Registry(), identities: 'external', stack, ...(cidrGroups ? { cidrGroups: true } : {}) });
  return { agent, backend, ipcache };
}

/** Every local endpoint's verdict for every address (the agent's ipcache identity, then its maps) on a few probes. */
function verdicts(agent: Agent, backend: MemoryBackend, ipcache: MemIpcache, addresses: readonly string[]): string[] {
  const out: string[] = [];
  for (const ep of agent.engine.endpoints())
    for (const addr of addresses) {
      const id = kernelIdentity(ipcache, addr);
      expect(id, `${addr}: kernel ipcache vs engine`).toBe(agent.engine.identityOfIp(parseIp(addr)));
      for (const d of ['ingress', 'egress'] as const)
        for (const [proto, port] of [
          [6, 80],
          [17, 53],
          [6, 443],
        ] as const) {
          const hit = backendLookup(backend, ep, id, d, proto, port);
          out.push(`${ep} ${addr} ${d} ${proto}/${port} ${hit === undefined || hit.entry.deny ? 'deny' : 'allow'}`);
        }
    }
  return out;
}

/** The kernel ipcache's longest-prefix match (the agent writes a /0 per family). */
function kernelIdentity(ipcache: MemIpcache, addr: string): number {
  const ip = parseIp(addr);
  let best = -1;
  let id = -1;
  for (const [prefix, identity] of ipcache.content) {
    const c = parseCidr(prefix);
    if (c.prefixLength > best && cidrContainsIp(c, ip)) {
      best = c.prefixLength;
      id = identity;
    }
  }
  return id;
}

function podAddresses(world: World): string[] {
  const out: string[] = [];
  for (const o of world.live.values()) if (o.kind === 'Pod') for (const a of ((o.status as Record<string, unknown>).podIPs as { ip: string }[])) out.push(a.ip);
  return out;
}

/** A node-local number (CIDR identities: allocation order) by its labels, a cluster or reserved one as it is. */
const who = (agent: Agent, id: number): string => (id >= LOCAL_IDENTITY_FLAG ? labelSetKey(agent.engine.identityLabels(id) ?? []) : String(id));
const portFree = (agent: Agent, backend: MemoryBackend, eps: readonly string[]): string[] =>
  eps.flatMap((ep) => backend.dump(ep).map((r) => `${ep} ${who(agent, r.key.identity)} ${JSON.stringify({ ...r.key, identity: 0 })} ${r.entry.deny} ${r.entry.proxyPort === 0 ? 0 : 'P'} ${r.entry.precedence}`)).sort();
const ipcacheOf = (agent: Agent): string[] => agent.engine.ipcache().map((e) => `${e.prefix} ${who(agent, e.identity)}`);

const stats = { runs: 0, flushes: 0, refusals: 0, exactMaps: 0, verdicts: 0 };

describe('27e: the agent under identity, CIDR group, v1beta1 and stack histories vs a fresh agent', () => {
  it('backend = engine after every flush; at the end verdicts (and maps without unreadable ids) equal a fresh agent fed the final objects', () => {
    fc.assert(
      fc.property(fc.constantFrom<StackMode>('single', 'dual'), fc.boolean(), fc.array(fc.array(aop, { minLength: 1, maxLength: 5 }), { minLength: 2, maxLength: 12 }), (stack, cidrGroups, batches) => {
        stats.runs++;
        const world = new World();
        const { agent, backend, ipcache } = newAgent(stack, cidrGroups);
        const start = [identityList([]), world.apply({ k: 'ns', ns: 0, team: null }), world.apply({ k: 'ns', ns: 1, team: 'a' })];
        for (const item of start.flat()) agent.mirror.observe(item, 'test');
        drain(agent);
        for (const ops of batches) {
          for (const o of ops) {
            for (const item of world.apply(o)) agent.mirror.observe(item, 'test');
          }
          drain(agent);
          stats.flushes++;
          expect([...ipcache.content].sort()).toEqual([...kernelIpcacheContent(agent.engine)].sort());
          expect(sameEndpointMaps(new Map(agent.engine.endpoints().map((ep) => [ep, new Map(backend.dump(ep).map((r) => [policyKeyString(r.key), { key: r.key, entry: r.entry }]))])), endpointMaps(agent.engine))).toBe(true);
        }
        stats.refusals += agent.summary.refusals;
        const fresh = newAgent(stack, cidrGroups || world.groupSeen);
        const live = [...world.live.values()];
        fresh.agent.mirror.observe(identityList(live.filter((o) => o.kind === 'CiliumIdentity')), 'test');
        for (const o of live) if (o.kind !== 'CiliumIdentity') fresh.agent.mirror.observe({ type: 'ADDED', object: o }, 'test');
        drain(fresh.agent);
        expect(fresh.agent.engine.endpoints()).toEqual(agent.engine.endpoints());
        const addrs = [...podAddresses(world), ...OUTSIDE];
        const v = verdicts(agent, backend, ipcache, addrs);
        stats.verdicts += v.length;
        expect(v).toEqual(verdicts(fresh.agent, fresh.backend, fresh.ipcache, addrs));
        if (!world.unreadableSeen && agent.summary.refusals === 0) {
          stats.exactMaps++;
          expect(portFree(agent, backend, agent.engine.endpoints())).toEqual(portFree(fresh.agent, fresh.backend, agent.engine.endpoints()));
          expect(ipcacheOf(agent)).toEqual(ipcacheOf(fresh.agent));
          const kernelOf = (a: Agent, c: MemIpcache): string[] => [...c.content].map(([k, v]) => `${k} ${who(a, v)}`).sort();
          expect(kernelOf(agent, ipcache)).toEqual(kernelOf(fresh.agent, fresh.ipcache));
        }
        agent.stop?.();
        fresh.agent.stop?.();
      }),
      { numRuns: RUNS, ...fcReplay() },
    );
  }, 600_000);
});

afterAll(() => {
  process.stdout.write(`27e agent mix: ${JSON.stringify(stats)}\n`);
});
