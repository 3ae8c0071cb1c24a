import {
  ClusterState,
  deleteNamespace,
  deletePod,
  deletePolicy,
  namespaceWithDefaults,
  Pod,
  podKey,
  upsertNamespace,
  upsertPod,
  ipOwner,
  upsertExternal,
  upsertPolicy,
  upsertNode,
  deleteNode,
  upsertCidrGroup,
  deleteCidrGroup,
  nodeEndpointsOf,
  setApiServer,
} from '../model/cluster.js';
import type { IpAddress } from '../model/cidr.js';
import type { DnsServer } from '../model/fqdn-events.js';
import { labelSetKey } from '../model/labels.js';
import { advanceDnsClock, DnsCacheEntry, DnsCacheState, droppedCount, EMPTY_DNS_CACHE, entryKey, withoutAnswersOf, withoutPodAnswers } from '../model/fqdn.js';
import { applyDnsAnswer } from '../naive/dns-learning.js';
import { LookupResult, policyKeyString } from '../model/policy-map.js';
import { diffMaps, entryEquals } from '../engine/map-deltas.js';
import { l7PolicyKey } from '../model/l7.js';
import type { Engine } from '../engine/engine.js';
import type { EngineEvent, L7PortRange, MapDelta, RedirectInfo } from '../engine/events.js';

/** Which pods are the node's own endpoints. */
export type LocalityRule = (pod: Pod) => boolean;

export const ALL_LOCAL: LocalityRule = () => true;

/**
 * The events that turn the engine's view of `from` into `to`: what a Kubernetes watch would
 * deliver. Objects are compared by reference: the cluster model is immutable, so an unchanged
 * object is the same object. O(cluster) — for scenarios and tests, not for the agent's path.
 */
export function clusterEvents(from: ClusterState, to: ClusterState, isLocal: LocalityRule = ALL_LOCAL): EngineEvent[] {
  const events: EngineEvent[] = [];
  for (const [name, ns] of to.namespaces) {
    if (from.namespaces.get(name) !== ns) events.push({ type: 'upsertNamespace', name, labels: ns.labels });
  }
  // A pod whose answers were dropped between the two states was deleted (or left the node) and is
  // back: another endpoint, with none of the old one's DNS history.
  const recreated = new Set<string>();
  for (const [key, pod] of from.pods) {
    const back = to.pods.has(key) && droppedCount(from.dns, key) !== droppedCount(to.dns, key);
    if (back) recreated.add(key);
    if (!to.pods.has(key) || back) events.push({ type: 'deletePod', namespace: pod.namespace, name: pod.name });
  }
  for (const [key, p] of from.policies) {
    if (!to.policies.has(key)) events.push({ type: 'deletePolicy', ref: p.ref });
  }
  for (const [key, pod] of to.pods) {
    if (from.pods.get(key) !== pod || recreated.has(key)) events.push({ type: 'upsertPod', pod, local: isLocal(pod) });
  }
  for (const [key, p] of to.policies) {
    if (from.policies.get(key) !== p) events.push({ type: 'upsertPolicy', policy: p });
  }
  for (const name of from.namespaces.keys()) {
    if (!to.namespaces.has(name)) events.push({ type: 'deleteNamespace', name });
  }
  for (const name of from.nodes?.keys() ?? []) {
    if (!to.nodes?.has(name)) events.push({ type: 'deleteNode', name });
  }
  for (const [name, n] of to.nodes ?? []) {
    if (from.nodes?.get(name) !== n) events.push({ type: 'upsertNode', name, ips: n.ips, local: n.local, ...nodeEndpointsOf(n), ...(n.labels ? { labels: n.labels } : {}), ...(n.failClosed ? { failClosed: n.failClosed } : {}) });
  }
  for (const name of from.cidrGroups?.keys() ?? []) {
    if (!to.cidrGroups?.has(name)) events.push({ type: 'deleteCidrGroup', name });
  }
  for (const [name, group] of to.cidrGroups ?? []) {
    if (from.cidrGroups?.get(name) !== group) events.push({ type: 'upsertCidrGroup', group });
  }
  // Known addresses never become unknown again (the engine keeps the last set).
  if (to.apiServer !== undefined && (to.apiServer !== from.apiServer || to.apiServerHeld !== from.apiServerHeld)) events.push({ type: 'setApiServer', addresses: to.apiServer, ...(to.apiServerHeld ? { held: to.apiServerHeld } : {}) });
  events.push(...dnsEvents(from.dns, to.dns, recreated));
  return events;
}

/**
 * The DNS events that take the engine's cache from `from` to `to` (both as the oracle holds them):
 * each answer new or refreshed in `to`, at the time it was learnt (its TTL as it was granted, so
 * the engine's minTtl adds nothing), with the server it came from, then the clock to `to.now`.
 * Answers the oracle did not learn are not in `to`: this path tests what the engine makes of
 * learnt answers, and that it learns them too (judged with the server, after every other change
 * between `from` and `to`: the scenario runner diffs the states before and after each answer,
 * `EngineDecider.syncThrough`, so no change made after an answer is seen before it, finding 1875).
 * The engine's learning decision in event order is tested where raw events feed both
 * (test/engine/fqdn.test.ts).
 */
function dnsEvents(from: DnsCacheState | undefined, to: DnsCacheState | undefined, recreated: ReadonlySet<string>): EngineEvent[] {
  if (!to) return [];
  const before = new Map((from?.entries ?? []).map((e) => [entryKey(e), e]));
  const fresh = to.entries.filter((e) => {
    const old = before.get(entryKey(e));
    return !old || old.expiresAt !== e.expiresAt || old.learntAt !== e.learntAt || recreated.has(e.endpoint);
  });
  const groups = new Map<string, DnsCacheEntry[]>();
  for (const e of [...fresh].sort((a, b) => a.learntAt - b.learntAt)) {
    const k = `${e.learntAt} ${e.expiresAt} ${e.endpoint} ${e.name} ${e.server ? `${e.server.ip.text} ${e.server.port} ${e.server.protocol ?? 'UDP'}` : ''}`;
    groups.set(k, [...(groups.get(k) ?? []), e]);
  }
  const out: EngineEvent[] = [];
  let now = from?.now ?? 0;
  for (const g of groups.values()) {
    const first = g[0] as DnsCacheEntry;
    if (first.learntAt > now) out.push({ type: 'advanceTime', seconds: first.learntAt - now });
    now = Math.max(now, first.learntAt);
    out.push({ type: 'dnsResponse', endpoint: first.endpoint, name: first.name, ips: g.map((e) => e.ip), ttl: first.expiresAt - first.learntAt, ...(first.server ? { server: first.server } : {}) });
  }
  if (to.now > now) out.push({ type: 'advanceTime', seconds: to.now - now });
  return out;
}

/** Every event needed to build `state` from nothing. */
export function initialEvents(state: ClusterState, isLocal: LocalityRule = ALL_LOCAL): EngineEvent[] {
  return clusterEvents({ namespaces: new Map(), pods: new Map(), externals: new Map(), policies: new Map() }, state, isLocal);
}

/** The model side of an event: what the naive evaluator and full recomputes see. Throws like the engine. */
export function applyEventToCluster(s: ClusterState, e: EngineEvent): ClusterState {
  switch (e.type) {
    case 'upsertNamespace':
      return upsertNamespace(s, namespaceWithDefaults(e.name, e.labels));
    case 'deleteNamespace': {
      const gone = deleteNamespace(s, e.name);
      const after = gone.remotePods ? { ...gone, remotePods: new Set([...gone.remotePods].filter((k) => gone.pods.has(k))) } : gone;
      const dns = withoutAnswersOf(after.dns, (endpoint) => !after.pods.has(endpoint));
      return dns ? { ...after, dns } : after;
    }
    case 'upsertPod':
      return withLocality(upsertPod(s, e.pod), podKey(e.pod), e.local ?? false);
    case 'deletePod': {
      const after = withLocality(deletePod(s, `${e.namespace}/${e.name}`), `${e.namespace}/${e.name}`, true);
      const dns = withoutPodAnswers(after.dns, `${e.namespace}/${e.name}`);
      return dns ? { ...after, dns } : after;
    }
    case 'upsertPolicy':
      return upsertPolicy(s, e.policy);
    case 'deletePolicy':
      return deletePolicy(s, e.ref);
    case 'upsertIdentity':
    case 'deleteIdentity':
    case 'upsertEndpoint':
    case 'deleteEndpoint':
      // Identity numbers (and the CiliumEndpoints naming them) are not part of the cluster model: the oracle decides by labels.
      return s;
    case 'dnsResponse':
      return e.server ? answerFromServer(s, e.endpoint, e.name, e.ips, e.ttl, e.server) : applyDnsAnswer(s, e.endpoint, e.name, e.ips, e.ttl);
    case 'advanceTime':
      return { ...s, dns: advanceDnsClock(s.dns ?? EMPTY_DNS_CACHE, e.seconds) };
    case 'upsertNode':
      return upsertNode(s, { name: e.name, ips: e.ips, local: e.local ?? false, ...nodeEndpointsOf(e), ...(e.labels ? { labels: e.labels } : {}), ...(e.failClosed ? { failClosed: e.failClosed } : {}) });
    case 'deleteNode':
      return deleteNode(s, e.name);
    case 'setApiServer':
      return setApiServer(s, e.addresses, e.held);
    case 'upsertCidrGroup':
      return upsertCidrGroup(s, e.group);
    case 'deleteCidrGroup':
      return deleteCidrGroup(s, e.name);
  }
}

/**
 * `pod`'s locality recorded in the model (`remotePods`). A pod that is not local has no endpoint on
 * this node: the DNS history of its queries goes with the endpoint (Cilium's per-endpoint
 * `DNSHistory`, collected only from this agent's endpoints, pkg/fqdn/namemanager/gc.go `doGC`).
 */
function withLocality(s: ClusterState, pod: string, local: boolean): ClusterState {
  if (local && s.remotePods?.has(pod) !== true) return s;
  const remotePods = new Set(s.remotePods);
  if (local) remotePods.delete(pod);
  else remotePods.add(pod);
  const dns = local ? s.dns : withoutPodAnswers(s.dns, pod);
  return { ...s, remotePods, ...(dns ? { dns } : {}) };
}

/**
 * The oracle's side of an answer from a server known by address: the query is the flow to the pod
 * holding that address, else to an external with it (one named by the address if the model has
 * none; only the DNS cache of the result is kept).
 */
function answerFromServer(s: ClusterState, endpoint: string, name: string, ips: readonly IpAddress[], ttl: number, server: DnsServer): ClusterState {
  const text = server.ip.text;
  const holdsIt = ipOwner(s, text) !== undefined;
  const external = holdsIt ? undefined : [...s.externals.values()].find((x) => x.ip.text === text);
  const withServer = holdsIt || external ? s : upsertExternal(s, { name: text, ip: server.ip });
  const after = applyDnsAnswer(withServer, endpoint, name, ips, ttl, { to: external?.name ?? text, port: server.port, ...(server.protocol ? { protocol: server.protocol } : {}) });
  return after === withServer ? s : { ...s, ...(after.dns ? { dns: after.dns } : {}) };
}

/** Which pods are local, as the events said; call after applying `e` to `state`. */
export function trackLocality(local: Map<string, boolean>, state: ClusterState, e: EngineEvent): void {
  if (e.type === 'upsertPod') local.set(podKey(e.pod), e.local ?? false);
  if (e.type === 'deletePod' || e.type === 'deleteNamespace') for (const k of [...local.keys()]) if (!state.pods.has(k)) local.delete(k);
}

/**
 * Every endpoint's map state and L7 tables with identities replaced by their labels and proxy
 * ports by the redirect they serve, so engines that numbered identities or allocated proxy ports
 * differently (different histories) can be compared.
 */
export function comparableMaps(engine: Engine): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  const who = (id: number): string => (id === 0 ? '*' : labelSetKey(engine.identityLabels(id) ?? []));
  for (const ep of engine.endpoints()) {
    const parserOfPort = new Map(engine.redirects(ep).map((r) => [r.proxyPort, r.parser]));
    const maps = [...engine.mapState(ep).values()].map(({ key, entry }) => {
      const verdict = entry.deny ? 'deny' : entry.proxyPort === 0 ? 'allow' : `redirect(${parserOfPort.get(entry.proxyPort) ?? `unallocated port ${entry.proxyPort}`})`;
      return `${who(key.identity)} ${policyKeyString({ ...key, identity: 0 }).slice(2)} ${verdict}:${entry.precedence}`;
    });
    const tables = engine.l7Table(ep).map((row) => {
      const r = row.redirect;
      const range = row.portRange ? ` ${row.portRange.port}-${row.portRange.endPort}` : '';
      return `L7 ${r.direction}/${r.protocol}/${r.port}/${r.parser}${range} ${who(row.peer)} ${l7PolicyKey(row.policy)}`;
    });
    out[ep] = [...maps, ...tables].sort();
  }
  return out;
}

/**
 * The ipcache with identities replaced by their labels (see `comparableMaps`): `prefix labels`, by
 * prefix. `skip`: addresses left out (`replay`'s verification passes those whose owner left them).
 */
export function comparableIpcache(engine: Engine, skip: ReadonlySet<string> = new Set()): string[] {
  const who = (id: number): string => labelSetKey(engine.identityLabels(id) ?? []);
  return engine
    .ipcache()
    .filter(({ prefix }) => !skip.has(prefix.slice(0, prefix.lastIndexOf('/'))))
    .map(({ prefix, identity }) => `${prefix} ${who(identity)}`);
}

/** Every endpoint's L7 rows: `direction/protocol/port/portPrefixLen/parser/proxyPort|peer[|port-endPort]` → policy key. */
export type L7Tables = Map<string, ReadonlyMap<string, string>>;

export function l7RowKey(redirect: RedirectInfo, peer: number, portRange?: L7PortRange): string {
  const range = portRange ? `|${portRange.port}-${portRange.endPort}` : '';
  return `${redirect.direction}/${redirect.protocol}/${redirect.port}/${redirect.portPrefixLen ?? 16}/${redirect.parser}/${redirect.proxyPort}|${peer}${range}`;
}

export function l7Tables(engine: Engine): L7Tables {
  const out: L7Tables = new Map();
  for (const ep of engine.endpoints()) out.set(ep, new Map(engine.l7Table(ep).map((row) => [l7RowKey(row.redirect, row.peer, row.portRange), l7PolicyKey(row.policy)])));
  return out;
}

/** How many L7 rows differ between two snapshots (a vanished endpoint's table goes whole). */
export function l7TablesDiffSize(before: L7Tables, after: L7Tables): number {
  let n = 0;
  for (const [ep, rows] of after) {
    const b = before.get(ep) ?? new Map<string, string>();
    for (const [k, v] of rows) if (b.get(k) !== v) n++;
    for (const k of b.keys()) if (!rows.has(k)) n++;
  }
  return n;
}

/** Every endpoint's map, keyed by endpoint then by policy key string. */
export type EndpointMaps = Map<string, Map<string, LookupResult>>;

/** A copy of every local endpoint's map as the kernel would hold it. */
export function endpointMaps(engine: Engine): EndpointMaps {
  return new Map(engine.endpoints().map((ep) => [ep, new Map(engine.mapState(ep))]));
}

/** Whether two snapshots hold the same endpoints with the same entries. */
export function sameEndpointMaps(a: ReadonlyMap<string, ReadonlyMap<string, LookupResult>>, b: ReadonlyMap<string, ReadonlyMap<string, LookupResult>>): boolean {
  if (a.size !== b.size) return false;
  for (const [ep, m] of a) {
    const o = b.get(ep);
    if (!o || o.size !== m.size) return false;
    for (const [ks, r] of m) if (!entryEquals(o.get(ks)?.entry, r.entry)) return false;
  }
  return true;
}

/** The exact deltas between two snapshots (an endpoint that vanishes is removed as a whole, with no deletes). */
export function diffEndpointMaps(before: EndpointMaps, after: EndpointMaps): MapDelta[] {
  const empty = new Map<string, LookupResult>();
  return [...after].flatMap(([ep, m]) => diffMaps(ep, before.get(ep) ?? empty, m));
}
