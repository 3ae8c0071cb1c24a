import { DEFAULT_ALLOW_LOCALHOST } from '../model/localhost.js';
import { DEFAULT_DNS_CACHE_OPTIONS } from '../model/fqdn.js';
import type { ClusterState } from '../model/cluster.js';
import type { IpAddress } from '../model/cidr.js';
import { DEFAULT_STACK_MODE, type IdentityId } from '../model/identity.js';
import { PROTOCOL_NUMBER } from '../model/ports.js';
import type { Direction, RuleOrigin } from '../model/rules.js';
import { combineSides, DirectionDecision, Flow, FlowDecision, FlowEndpoint, resolveEndpoint, endpointAddress } from '../model/flow.js';
import { datapathPasses, type PolicyEntry } from '../model/policy-map.js';
import type { Engine } from '../engine/engine.js';
import type { ChangeSet, EngineEvent } from '../engine/events.js';
import { ALL_LOCAL, clusterEvents, LocalityRule } from './cluster-sync.js';

/** Where an address's identity comes from: by default the engine's ipcache; a kernel ipcache plugs in here. */
export type IpLookup = (ip: IpAddress) => IdentityId;

export function peerIdentity(engine: Engine, ep: FlowEndpoint, ipLookup?: IpLookup): IdentityId {
  if (ep.kind === 'pod') {
    // A pod the flow names by address is looked up by that address, as the datapath does (ipcache).
    const id = ipLookup ? ipLookup(ep.address ?? ep.pod.ip) : ep.address ? engine.identityOfIp(ep.address) : engine.identityOfPod(ep.name);
    if (id === undefined) throw new Error(`engine does not know pod ${ep.name}`);
    return id;
  }
  return (ipLookup ?? ((ip: IpAddress) => engine.identityOfIp(ip)))(endpointAddress(ep));
}

/**
 * Where verdicts are read from: by default the engine's own map states; a kernel backend plugs in
 * its real LPM lookups here (`src/backend/reconcile.ts`).
 */
export type VerdictLookup = (endpoint: string, peer: IdentityId, direction: Direction, protocol: number, port: number) => PolicyEntry | undefined;

/** One side of a flow, decided by the datapath lookup in the endpoint's policy map. */
function decideSide(engine: Engine, endpoint: string, direction: Direction, peer: IdentityId, flow: Flow, verdictLookup?: VerdictLookup): DirectionDecision {
  const protocol = PROTOCOL_NUMBER[flow.protocol];
  const hit = engine.lookup(endpoint, peer, direction, protocol, flow.port);
  const entry = verdictLookup ? verdictLookup(endpoint, peer, direction, protocol, flow.port) : hit?.entry;
  const { allowed: l4Allowed, proxied } = datapathPasses(entry, flow.protocol);
  // A redirected request is judged by the proxy listening on the entry's port, from its L7 table.
  const verdict = proxied && entry && flow.request ? engine.l7Verdict(endpoint, entry.proxyPort, peer, flow.request, flow.port) : undefined;
  if (proxied && entry && flow.request && !verdict) throw new Error(`${endpoint}: ${direction} entry redirects to proxy port ${entry.proxyPort}, which is none of its redirects`);
  const l7 = verdict && flow.request && entry ? { ...verdict, allowedBy: engine.l7AllowedBy(endpoint, entry.proxyPort, peer, flow.request, flow.port) } : undefined;
  const allowed = l7 ? l7.allowed : l4Allowed;
  const allowedBy: RuleOrigin[] = [];
  const deniedBy: RuleOrigin[] = [];
  const redirectedBy: RuleOrigin[] = [];
  if (hit) {
    for (const c of engine.contributors(endpoint, hit.key)) {
      if (c.origin === null || c.entry.precedence !== hit.entry.precedence) continue;
      if (c.entry.deny) deniedBy.push(c.origin);
      else allowedBy.push(c.origin);
      if (c.entry.proxyPort !== 0) redirectedBy.push(c.origin);
    }
  }
  // A ClusterNetworkPolicy rule's entry decided: its tier, policy, priority and rule name (one rule per precedence).
  const tier = [...deniedBy, ...allowedBy].find((o) => o.tier !== undefined)?.tier;
  return { direction, enforcedBy: engine.enforcedBy(endpoint, direction), allowedBy, deniedBy, redirectedBy, allowed, proxied, ...(l7 ? { l7 } : {}), ...(tier ? { tier } : {}) };
}

/**
 * Decides a flow the way the kernel would: the source's egress map and the destination's ingress
 * map, each with the peer's identity. The reasons are the rules behind the winning entry.
 */
export function engineDecision(engine: Engine, state: ClusterState, flow: Flow, verdictLookup?: VerdictLookup, ipLookup?: IpLookup): FlowDecision {
  const src = resolveEndpoint(state, flow.from);
  const dst = resolveEndpoint(state, flow.to);
  const egress = src.kind === 'pod' ? decideSide(engine, src.name, 'egress', peerIdentity(engine, dst, ipLookup), flow, verdictLookup) : undefined;
  const ingress = dst.kind === 'pod' ? decideSide(engine, dst.name, 'ingress', peerIdentity(engine, src, ipLookup), flow, verdictLookup) : undefined;
  return combineSides(egress, ingress);
}

/**
 * A scenario flow decider backed by an engine: each time the scenario's cluster state changes,
 * the difference is fed to the engine as events, then flows are answered from its map states.
 */
export class EngineDecider {
  private last: ClusterState = { namespaces: new Map(), pods: new Map(), externals: new Map(), policies: new Map() };

  constructor(
    readonly engine: Engine,
    private readonly isLocal: LocalityRule = ALL_LOCAL,
    /** Called with each transaction's change set (e.g. to write it to a kernel backend). */
    private readonly onChange?: (cs: ChangeSet) => void,
    private readonly verdictLookup?: VerdictLookup,
    /** Resolves peers' addresses (e.g. through the kernel's ipcache) instead of the engine's. */
    private readonly ipLookup?: IpLookup,
  ) {}

  sync(state: ClusterState): void {
    this.syncThrough([state]);
  }

  /**
   * Brings the engine to the last of `states` through each of them in order, in one transaction:
   * the differences between consecutive states, so a DNS answer is judged by the rules in force at
   * its place among a scenario step's changes (the runner's trail; attack finding 1875), not after
   * all of them.
   */
  syncThrough(states: readonly ClusterState[]): void {
    const events: EngineEvent[] = [];
    let from = this.last;
    for (const s of states) {
      if (s === from) continue;
      this.checkOptions(s);
      for (const e of clusterEvents(from, s, this.isLocal)) events.push(e);
      from = s;
    }
    if (events.length > 0) {
      const cs = this.engine.apply(events);
      this.onChange?.(cs);
    }
    this.last = from;
  }

  /**
   * The options are fixed per engine: a scenario pinning others needs an engine built with them. An
   * engine judging a step's DNS answers with another `maxIpsPerHostname` keeps an address the
   * scenario evicted (attack finding 1900: the testbed's engine, built without `dnsProxy`).
   */
  private checkOptions(state: ClusterState): void {
    const wanted = state.allowLocalhost ?? DEFAULT_ALLOW_LOCALHOST;
    if (wanted !== this.engine.allowLocalhost) throw new Error(`the scenario sets allowLocalhost: ${wanted}, the engine was built with ${this.engine.allowLocalhost}`);
    const stack = state.stack ?? DEFAULT_STACK_MODE;
    if (stack !== this.engine.stack) throw new Error(`the scenario sets stack: ${stack}, the engine was built with ${this.engine.stack}`);
    const dns = state.dns?.options ?? DEFAULT_DNS_CACHE_OPTIONS;
    const has = this.engine.dnsOptions();
    if (dns.minTtl !== has.minTtl || dns.maxIpsPerHostname !== has.maxIpsPerHostname) {
      throw new Error(`the scenario sets dnsProxy {minTtl: ${dns.minTtl}, maxIpsPerHostname: ${dns.maxIpsPerHostname}}, the engine was built with {minTtl: ${has.minTtl}, maxIpsPerHostname: ${has.maxIpsPerHostname}}`);
    }
  }

  readonly decide = Object.assign(
    (state: ClusterState, flow: Flow): FlowDecision => {
      this.checkOptions(state);
      this.sync(state);
      return engineDecision(this.engine, state, flow, this.verdictLookup, this.ipLookup);
    },
    { syncThrough: (states: readonly ClusterState[]): void => this.syncThrough(states) },
  );
}
