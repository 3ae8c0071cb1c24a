import { isValidIp, parseIp } from '../model/cidr.js';
import { ClusterState, upsertExternal } from '../model/cluster.js';
import { DirectionDecision, familyMismatch, Flow, FlowEndpoint, resolveEndpoint, UnknownEndpointError } from '../model/flow.js';
import type { L7Request } from '../model/l7.js';
import { FlowProtocol, PROTOCOL_NUMBER } from '../model/ports.js';
import { LookupResult, maskedPortEnd } from '../model/policy-map.js';
import { RuleOrigin, uniqueOrigins } from '../model/rules.js';
import type { Engine } from '../engine/engine.js';
import { allowChain } from '../naive/reasons.js';
import { EngineDecider, peerIdentity } from '../harness/engine-decider.js';
import { l7Items, labelsOfEngine, portRange, PROTOCOL_NAMES } from '../backend/record-json.js';
import { ANY_IDENTITY } from '../model/identity.js';
import { formatOrigin, hubbleVerdict, portProto, renderMapRecords } from './format.js';

/** A trace peer that names no endpoint and is no IP address (the message names the option). */
export class UnknownPeerError extends Error {
  override readonly name = 'UnknownPeerError';
}

/** A pod or external by name, a pod by IP, or else a plain IP added as an external named by it. */
function resolvePeer(state: ClusterState, name: string, option: string): { state: ClusterState; name: string } {
  // What reach resolves (pods, externals, `node:<name>`, a pod's or node's address) is taken as is: the decider resolves it the same way.
  try {
    const ep = resolveEndpoint(state, name);
    // A pod given by its address is shown by its name.
    return { state, name: ep.kind === 'pod' && isValidIp(name) ? ep.name : name };
  } catch (e) {
    if (!(e instanceof UnknownEndpointError)) throw e;
  }
  let ip;
  try {
    ip = parseIp(name);
  } catch {
    throw new UnknownPeerError(`${option}: no pod or external named "${name}", and not an IP address (pods: namespace/name)`);
  }
  return { state: upsertExternal(state, { name, ip }), name };
}

export interface SideReport {
  endpoint: string;
  direction: string;
  verdict: string;
  /** The identity the other end has in this side's lookup (what the map is keyed on), with its labels. */
  peer: { identity: number; labels: string[] };
  entry: Record<string, unknown> | null;
  /** The entry as `cilium bpf policy get` shows it (text output only). */
  table?: string;
  defaultDeny: boolean;
  enforcedBy: string[];
  allowedBy: string[];
  deniedBy: string[];
  /**
   * ClusterNetworkPolicy Pass rules whose entry decided: the flow went on to the lower tiers. Dropped:
   * none allowed it; forwarded: none decided it, so the default allowed it (`allowedBy` then names
   * no rule for it: finding 2633).
   */
  passedBy: string[];
  redirectedBy: string[];
  /** The other rules the flow passes on, tier after tier, were `allowedBy` deleted (the oracle's `allowChain`), in tier order. */
  alsoAllowedBy: string[];
  /** `rules`: what the proxy applies to this peer on this port (the L7 table rows `maps dump` lists); `[]` with `allowAll`. */
  l7?: { parser: string; verdict: string; allowedBy: string[]; allowAll: boolean; rules: unknown[] };
  /**
   * The ClusterNetworkPolicy rules among the reasons, as `reach --explain` names them: `reason` is the
   * reason's text, then the rule's tier, priority, name and action (finding 2305). Absent when none.
   */
  tierRules?: TierRuleReport[];
}

interface TierRuleReport {
  reason: string;
  tier: string;
  priority: number;
  rule: string;
  action: string;
}

function tierRules(origins: readonly RuleOrigin[]): TierRuleReport[] {
  return uniqueOrigins(origins).flatMap((o) => (o.tier ? [{ reason: formatOrigin(o), tier: o.tier.tier, priority: o.tier.priority, rule: o.tier.rule, action: o.tier.action }] : []));
}

/**
 * The rules that allow the flow besides those of the matched entry: without them "allowed by" would
 * be incomplete, as deleting the rules it lists would leave the flow allowed. The map state cannot
 * tell them: it keeps no entry, hence no origin, for an allow another entry covers (an L3L4 allow
 * under an L4 allow of the same verdict, a plain allow merged under a redirect: finding 182; a
 * NetworkPolicy allow under an Admin Accept: finding 2550), and it keeps entries of tier rules the
 * flow never reaches (an Accept after a Pass of the same policy). So they are the rules the
 * reference evaluator finds the flow passing on, tier after tier (`chain`: `allowChain`), in tier order.
 */
function shadowedAllowers(d: DirectionDecision, chain: readonly RuleOrigin[]): RuleOrigin[] {
  const listed = new Set(d.allowedBy.map(formatOrigin));
  return inTierOrder(uniqueOrigins(chain).filter((o) => !listed.has(formatOrigin(o))));
}

const TIER_RANK = { Admin: 0, Baseline: 2 } as const;

/** Stable: Admin by priority, then the NetworkPolicy tier (no `tier`), then Baseline by priority. */
function inTierOrder(origins: readonly RuleOrigin[]): RuleOrigin[] {
  const rank = (o: RuleOrigin): number => (o.tier ? TIER_RANK[o.tier.tier] : 1);
  return [...origins].sort((a, b) => rank(a) - rank(b) || (a.tier?.priority ?? 0) - (b.tier?.priority ?? 0));
}

const isPass = (o: RuleOrigin): boolean => o.tier?.action === 'Pass';

/** One side of the flow: `at` enforces (a pod, as the decider resolved it), `peer` is the other end. */
function side(engine: Engine, at: FlowEndpoint, peer: FlowEndpoint, flow: Flow, d: DirectionDecision, chain: () => RuleOrigin[]): SideReport {
  const endpoint = at.name;
  const peerId = peerIdentity(engine, peer);
  const hit = engine.lookup(endpoint, peerId, d.direction, PROTOCOL_NUMBER[flow.protocol], flow.port);
  const labelsOf = labelsOfEngine(engine);
  // The text table's columns, plus `protocol` and `ports` as `maps dump -o json` and `plan -o json` name the key.
  const entry = hit
    ? {
        policy: hit.entry.deny ? 'Deny' : 'Allow',
        direction: d.direction,
        identity: hit.key.identity,
        labels: labelsOf(hit.key.identity),
        portProto: portProto(hit.key),
        protocol: PROTOCOL_NAMES[hit.key.protocol] ?? hit.key.protocol,
        ports: portRange(hit.key),
        proxyPort: hit.entry.proxyPort,
        verdict: hubbleVerdict(hit.entry),
        precedence: hit.entry.precedence,
      }
    : null;
  const verdict = !d.allowed && !(d.l7 !== undefined) ? 'DROPPED' : d.proxied ? 'REDIRECTED' : 'FORWARDED';
  const also = hit && verdict !== 'DROPPED' ? shadowedAllowers(d, chain()) : [];
  const tiers = tierRules([...d.allowedBy, ...d.deniedBy, ...d.redirectedBy, ...also]);
  return {
    endpoint,
    direction: d.direction,
    verdict,
    peer: { identity: peerId, labels: labelsOf(peerId) },
    entry,
    ...(hit ? { table: renderMapRecords([hit], labelsOf) } : {}),
    defaultDeny: d.enforcedBy.length > 0,
    enforcedBy: d.enforcedBy.map(formatOrigin),
    // A Pass rule's entry drops what no lower tier allows, and allows what none denies (the default
    // allow below it, finding 2633): the rule passed the flow on, it neither denied nor allowed it.
    allowedBy: d.allowedBy.filter((o) => !isPass(o)).map(formatOrigin),
    deniedBy: d.deniedBy.filter((o) => !isPass(o)).map(formatOrigin),
    passedBy: [...d.deniedBy, ...d.allowedBy].filter(isPass).map(formatOrigin),
    redirectedBy: d.redirectedBy.map(formatOrigin),
    alsoAllowedBy: also.map(formatOrigin),
    ...(d.l7 ? { l7: { parser: d.l7.parser, verdict: d.l7.allowed ? 'FORWARDED' : 'DROPPED', allowedBy: d.l7.allowedBy.map(formatOrigin), ...proxyRules(engine, endpoint, d.direction, peerId, flow, hit) } } : {}),
    ...(tiers.length > 0 ? { tierRules: tiers } : {}),
  };
}

/** The L7 table rows the proxy behind `hit` applies to `peer` on `port` (its own and the any-peer row), as `maps dump` lists them. */
function proxyRules(engine: Engine, endpoint: string, direction: string, peer: number, flow: Flow, hit: LookupResult | undefined): { allowAll: boolean; rules: unknown[] } {
  const port = flow.port;
  const covers = (from: number, to: number): boolean => port >= from && port <= to;
  const rows = engine
    .l7Table(endpoint)
    .filter((r) => hit !== undefined && r.redirect.direction === direction && r.redirect.protocol === PROTOCOL_NUMBER[flow.protocol] && r.redirect.proxyPort === hit.entry.proxyPort && (r.peer === peer || r.peer === ANY_IDENTITY))
    .filter((r) => covers(r.redirect.port, maskedPortEnd(r.redirect.port, r.redirect.portPrefixLen ?? 16)))
    .filter((r) => r.portRange === undefined || covers(r.portRange.port, r.portRange.endPort));
  const allowAll = rows.some((r) => r.policy.allowAll);
  return { allowAll, rules: allowAll ? [] : rows.flatMap((r) => (r.policy.allowAll ? [] : l7Items(r.policy.rules))) };
}

/** The flow's verdict in Hubble's words: FORWARDED, DROPPED, or REDIRECTED to a proxy and its L7 verdict. */
function flowVerdict(sides: readonly SideReport[], allowed: boolean, proxied: boolean): string {
  const redirect = sides.find((s) => s.verdict === 'REDIRECTED' && s.entry !== null);
  if (!proxied) return allowed ? 'FORWARDED' : 'DROPPED';
  const to = redirect ? `REDIRECTED to proxy port ${String(redirect.entry?.proxyPort)}` : 'REDIRECTED';
  const l7 = sides.map((s) => s.l7).find((x) => x !== undefined);
  return l7 ? `${to} (${l7.parser}), L7 ${allowed ? 'FORWARDED' : 'DROPPED'}` : to;
}

/**
 * Traces one flow on a scenario's cluster (`built`: its state and the engine that went through its
 * steps, as `reach` decides): the verdict, and each enforcing side's matched entry and reasons.
 * Peers that are plain IPs are added to the state as externals named by the address.
 */
export function traceFlow(built: { state: ClusterState; decider: EngineDecider }, from: string, to: string, port: number, protocol: FlowProtocol, request?: L7Request): TraceResult {
  const src = resolvePeer(built.state, from, '--from');
  const dst = resolvePeer(src.state, to, '--to');
  const state = dst.state;
  const mismatch = familyMismatch(from, to);
  if (mismatch !== undefined) throw new UnknownPeerError(`--from ${from} --to ${to}: ${mismatch}`);
  const flow: Flow = { from: src.name, to: dst.name, port, protocol, ...(request ? { request } : {}) };
  const engine = built.decider.engine;
  const decision = built.decider.decide(state, flow);
  const sides: SideReport[] = [];
  const [fromEp, toEp] = [resolveEndpoint(state, flow.from), resolveEndpoint(state, flow.to)];
  if (decision.egress) sides.push(side(engine, fromEp, toEp, flow, decision.egress, () => allowChain(state, flow, 'egress')));
  if (decision.ingress) sides.push(side(engine, toEp, fromEp, flow, decision.ingress, () => allowChain(state, flow, 'ingress')));
  return { from: flow.from, to: flow.to, port, protocol, ...(request ? { request } : {}), verdict: flowVerdict(sides, decision.allowed, decision.proxied), allowed: decision.allowed, proxied: decision.proxied, sides };
}

interface TraceResult {
  readonly from: string;
  readonly to: string;
  readonly port: number;
  readonly protocol: FlowProtocol;
  readonly request?: L7Request;
  readonly verdict: string;
  readonly allowed: boolean;
  readonly proxied: boolean;
  readonly sides: readonly SideReport[];
}
