import { Command, Option } from 'commander';
import { isValidIp, parseIp } from '../model/cidr.js';
import { ClusterState, upsertExternal, upsertPolicy } from '../model/cluster.js';
import { DirectionDecision, Flow, FlowEndpoint, resolveEndpoint, UnknownEndpointError } from '../model/flow.js';
import { addHeader, KAFKA_API_KEYS, L7Request } from '../model/l7.js';
import { FLOW_PROTOCOLS, FlowProtocol, MAX_PORT, PROTOCOL_NUMBER } from '../model/ports.js';
import { datapathLookup, LookupResult, policyKeyString, precedenceLevel, verdictByte } from '../model/policy-map.js';
import { RuleOrigin, uniqueOrigins } from '../model/rules.js';
import type { Engine } from '../engine/engine.js';
import { decideFlow } from '../naive/evaluator.js';
import { EngineDecider, peerIdentity } from '../harness/engine-decider.js';
import { CliEnv, CliIo, Ctx, intOption, outputOption, OutputFormat, printData, readPolicies, readScenario, reportInputError, scenarioEngine } from './common.js';
import { InputError } from './input.js';
import { labelsOfEngine } from '../backend/record-json.js';
import { formatOrigin, hubbleVerdict, portProto, renderMapRecords } from '../explain/format.js';

interface TraceOptions {
  scenario: string;
  step?: string;
  filename: string[];
  from: string;
  to: string;
  port: string;
  httpMethod?: string;
  httpPath?: string;
  httpHost?: string;
  httpHeader: string[];
  dnsName?: string;
  kafkaApiKey?: string;
  kafkaTopic?: string;
  kafkaClientId?: string;
  kafkaApiVersion?: string;
  output: OutputFormat;
}

/** `80/TCP`, `53/udp` or `80` (TCP). */
export function parsePortProto(text: string): { port: number; protocol: FlowProtocol } {
  const m = /^(\d{1,5})(?:\/([A-Za-z0-9]+))?$/.exec(text.trim());
  const protocol = FLOW_PROTOCOLS.find((p) => p.toLowerCase() === (m?.[2] ?? 'TCP').toLowerCase());
  const port = Number(m?.[1]);
  if (!m || protocol === undefined || port > MAX_PORT) throw new InputError(`--port: "${text}" is not PORT/PROTOCOL (e.g. 80/TCP; protocols: ${FLOW_PROTOCOLS.join(', ')})`);
  return { port, protocol };
}

function kafkaRequest(opts: TraceOptions): L7Request {
  const apiKey = (opts.kafkaApiKey ?? 'produce').toLowerCase();
  if (!KAFKA_API_KEYS.includes(apiKey)) throw new InputError(`--kafka-api-key: "${opts.kafkaApiKey}" is not a Kafka API key (${KAFKA_API_KEYS.join(', ')})`);
  const apiVersion = intOption(opts.kafkaApiVersion, '--kafka-api-version', 0);
  return { kafka: { apiKey, ...(apiVersion !== undefined ? { apiVersion } : {}), ...(opts.kafkaClientId !== undefined ? { clientID: opts.kafkaClientId } : {}), ...(opts.kafkaTopic !== undefined ? { topic: opts.kafkaTopic } : {}) } };
}

/** `--http-header 'Name: value'` (repeatable), split at the first colon and trimmed as a scenario's `headers` list. */
function httpHeaders(lines: readonly string[]): Record<string, string> | undefined {
  if (lines.length === 0) return undefined;
  const out = Object.create(null) as Record<string, string>;
  for (const line of lines) {
    const colon = line.indexOf(':');
    if (colon <= 0 || line.slice(0, colon).trim() === '') throw new InputError(`--http-header: "${line}" is not "Name: value"`);
    addHeader(out, line.slice(0, colon).trim(), line.slice(colon + 1).trim());
  }
  return out;
}

function requestOf(opts: TraceOptions): L7Request | undefined {
  const headers = httpHeaders(opts.httpHeader);
  const http = opts.httpMethod !== undefined || opts.httpPath !== undefined || opts.httpHost !== undefined || headers !== undefined;
  const kafka = opts.kafkaApiKey !== undefined || opts.kafkaTopic !== undefined || opts.kafkaClientId !== undefined || opts.kafkaApiVersion !== undefined;
  if ([http, kafka, opts.dnsName !== undefined].filter(Boolean).length > 1) throw new InputError('--http-*, --kafka-* and --dns-name cannot be combined: a flow carries one request');
  if (opts.dnsName !== undefined) return { dns: { name: opts.dnsName } };
  if (kafka) return kafkaRequest(opts);
  if (!http) return undefined;
  return { http: { method: opts.httpMethod ?? 'GET', path: opts.httpPath ?? '/', ...(opts.httpHost !== undefined ? { host: opts.httpHost } : {}), ...(headers ? { headers } : {}) } };
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
    throw new InputError(`${option}: no pod or external named "${name}", and not an IP address (pods: namespace/name)`);
  }
  return { state: upsertExternal(state, { name, ip }), name };
}

interface SideReport {
  endpoint: string;
  direction: string;
  verdict: string;
  entry: Record<string, unknown> | null;
  /** The entry as `cilium bpf policy get` shows it (text output only). */
  table?: string;
  defaultDeny: boolean;
  enforcedBy: string[];
  allowedBy: string[];
  deniedBy: string[];
  /** ClusterNetworkPolicy Pass rules whose entry decided: the flow went on to the lower tiers, and none allowed it. */
  passedBy: string[];
  redirectedBy: string[];
  /** Rules behind the other allow entries the flow matches, which the matched entry shadows: the flow passes on them without `allowedBy`. */
  alsoAllowedBy: string[];
  l7?: { parser: string; verdict: string; allowedBy: string[] };
}

/**
 * The rules that allow the flow through map entries other than the one that matched (an L3 allow
 * under a matched L4 or L7 entry, a lower tier's allow): without them "allowed by" would be
 * incomplete, as deleting the rules it lists would leave the flow allowed. The map state keeps no
 * entry, hence no origin, for an allow another entry covers (an L3L4 allow under an L4 allow of the
 * same verdict, a plain allow merged under a redirect: finding 182), so the NetworkPolicy-tier
 * rules the reference evaluator finds allowing the flow (`oracle`) are added.
 */
function shadowedAllowers(engine: Engine, endpoint: string, peerId: number, flow: Flow, d: DirectionDecision, hit: LookupResult, oracle: DirectionDecision | undefined): RuleOrigin[] {
  const out: RuleOrigin[] = [];
  for (const [ks, r] of engine.mapState(endpoint)) {
    // The entry alone in a map would match the flow: the datapath's own matching, key by key. The
    // matched key counts too: a plain allow merged under a redirect (higher precedence) is shadowed.
    if (policyKeyString(r.key) !== policyKeyString(hit.key) && (r.entry.deny || !datapathLookup(new Map([[ks, r]]), peerId, d.direction, PROTOCOL_NUMBER[flow.protocol], flow.port))) continue;
    for (const c of engine.contributors(endpoint, r.key)) if (c.origin && !c.entry.deny) out.push(c.origin);
  }
  for (const o of oracle?.allowedBy ?? []) if (o.tier === undefined) out.push(o);
  const listed = new Set(d.allowedBy.map(formatOrigin));
  return uniqueOrigins(out).filter((o) => !listed.has(formatOrigin(o)));
}

/** One side of the flow: `at` enforces (a pod, as the decider resolved it), `peer` is the other end. */
function side(engine: Engine, at: FlowEndpoint, peer: FlowEndpoint, flow: Flow, d: DirectionDecision, oracle: DirectionDecision | undefined): SideReport {
  const endpoint = at.name;
  const peerId = peerIdentity(engine, peer);
  const hit = engine.lookup(endpoint, peerId, d.direction, PROTOCOL_NUMBER[flow.protocol], flow.port);
  const labelsOf = labelsOfEngine(engine);
  const entry = hit
    ? { policy: hit.entry.deny ? 'Deny' : 'Allow', direction: d.direction, identity: hit.key.identity, labels: labelsOf(hit.key.identity), portProto: portProto(hit.key), proxyPort: hit.entry.proxyPort, verdict: hubbleVerdict(hit.entry), precedence: hit.entry.precedence }
    : null;
  const verdict = !d.allowed && !(d.l7 !== undefined) ? 'DROPPED' : d.proxied ? 'REDIRECTED' : 'FORWARDED';
  return {
    endpoint,
    direction: d.direction,
    verdict,
    entry,
    ...(hit ? { table: renderMapRecords([hit], labelsOf) } : {}),
    defaultDeny: d.enforcedBy.length > 0,
    enforcedBy: d.enforcedBy.map(formatOrigin),
    allowedBy: d.allowedBy.map(formatOrigin),
    // A Pass rule's entry drops what no lower tier allows: the rule passed the flow on, it did not deny it.
    deniedBy: d.deniedBy.filter((o) => o.tier?.action !== 'Pass').map(formatOrigin),
    passedBy: d.deniedBy.filter((o) => o.tier?.action === 'Pass').map(formatOrigin),
    redirectedBy: d.redirectedBy.map(formatOrigin),
    alsoAllowedBy: hit && verdict !== 'DROPPED' ? shadowedAllowers(engine, endpoint, peerId, flow, d, hit, oracle).map(formatOrigin) : [],
    ...(d.l7 ? { l7: { parser: d.l7.parser, verdict: d.l7.allowed ? 'FORWARDED' : 'DROPPED', allowedBy: d.l7.allowedBy.map(formatOrigin) } } : {}),
  };
}

/** The flow's verdict in Hubble's words: FORWARDED, DROPPED, or REDIRECTED to a proxy and its L7 verdict. */
function flowVerdict(sides: readonly SideReport[], allowed: boolean, proxied: boolean): string {
  const redirect = sides.find((s) => s.verdict === 'REDIRECTED' && s.entry !== null);
  if (!proxied) return allowed ? 'FORWARDED' : 'DROPPED';
  const to = redirect ? `REDIRECTED to proxy port ${String(redirect.entry?.proxyPort)}` : 'REDIRECTED';
  const l7 = sides.map((s) => s.l7).find((x) => x !== undefined);
  return l7 ? `${to} (${l7.parser}), L7 ${allowed ? 'FORWARDED' : 'DROPPED'}` : to;
}

function renderSide(s: SideReport): string {
  const out = [`${s.direction} of ${s.endpoint}: ${s.verdict}`];
  out.push(s.table !== undefined ? s.table.split('\n').map((l) => `  ${l}`).join('\n') : '  no map entry matches (default deny)');
  out.push(`  default deny: ${s.defaultDeny ? `yes, enforced by ${s.enforcedBy.join('; ')}` : 'no (no policy selects this direction)'}`);
  if (s.deniedBy.length) out.push(`  denied by: ${s.deniedBy.join('; ')}`);
  if (s.passedBy.length) out.push(`  passed by: ${s.passedBy.join('; ')} (to the lower tiers, where nothing allows it)`);
  if (s.allowedBy.length) out.push(`  allowed by: ${s.allowedBy.join('; ')}`);
  if (s.redirectedBy.length) out.push(`  redirected by: ${s.redirectedBy.join('; ')}`);
  if (s.alsoAllowedBy.length) out.push(`  also allowed by (entries the matched one shadows or covers): ${s.alsoAllowedBy.join('; ')}`);
  if (s.entry) out.push(`  precedence: ${String(s.entry.precedence)} (level ${String(precedenceLevel(Number(s.entry.precedence)))}, verdict byte ${String(verdictByte(Number(s.entry.precedence)))}: higher wins)`);
  if (s.l7) out.push(`  ${s.l7.parser} proxy: ${s.l7.verdict}${s.l7.allowedBy.length ? ` (allowed by ${s.l7.allowedBy.join('; ')})` : ' (no rule matches the request)'}`);
  return out.join('\n');
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
  const flow: Flow = { from: src.name, to: dst.name, port, protocol, ...(request ? { request } : {}) };
  const engine = built.decider.engine;
  const decision = built.decider.decide(state, flow);
  const sides: SideReport[] = [];
  const [fromEp, toEp] = [resolveEndpoint(state, flow.from), resolveEndpoint(state, flow.to)];
  const oracle = decideFlow(state, flow);
  if (decision.egress) sides.push(side(engine, fromEp, toEp, flow, decision.egress, oracle.egress));
  if (decision.ingress) sides.push(side(engine, toEp, fromEp, flow, decision.ingress, oracle.ingress));
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

function trace(ctx: Ctx, opts: TraceOptions): number {
  const io: CliIo = ctx.io;
  try {
    const { port, protocol } = parsePortProto(opts.port);
    const request = requestOf(opts);
    const step = intOption(opts.step, '--step', 0);
    const built = scenarioEngine(readScenario(ctx, opts.scenario), step);
    let state = built.state;
    for (const p of readPolicies(ctx, opts.filename)) state = upsertPolicy(state, p);
    const t = traceFlow({ state, decider: built.decider }, opts.from, opts.to, port, protocol, request);
    const data = { ...t, sides: t.sides.map(({ table: _table, ...rest }) => rest) };
    if (!printData(io, opts.output, data)) {
      io.out(`${t.from} -> ${t.to} ${port}/${protocol}: ${t.verdict}\n\n${t.sides.map(renderSide).join('\n\n')}\n`);
      if (t.sides.length === 0) io.out('neither side is a pod: nothing enforces policy on this flow\n');
    }
    return 0;
  } catch (e) {
    return reportInputError(io, e, opts.scenario);
  }
}

const collect = (v: string, prev: string[]): string[] => [...prev, v];

export function registerTrace(program: Command, { ctx, done }: CliEnv): void {
  program
    .command('trace')
    .alias('explain')
    .description("Trace one flow: its verdict in Hubble's words, the map entry that matched on each side and the rules behind it")
    .addOption(new Option('--scenario <file>', 'the cluster: a scenario file').makeOptionMandatory())
    .option('--step <n>', 'the cluster after step n (default: after the last step)')
    .option('-f, --filename <path>', 'also apply these manifests (file, directory or -; repeatable)', collect, [] as string[])
    .addOption(new Option('--from <peer>', 'source: pod (namespace/name), external, or IP').makeOptionMandatory())
    .addOption(new Option('--to <peer>', 'destination: pod (namespace/name), external, or IP').makeOptionMandatory())
    .addOption(new Option('--port <port/proto>', 'destination port and protocol, e.g. 80/TCP').makeOptionMandatory())
    .option('--http-method <method>', 'an HTTP request the flow carries: method (default GET)')
    .option('--http-path <path>', 'HTTP request path (default /)')
    .option('--http-host <host>', 'HTTP Host header')
    .option('--http-header <header>', "an HTTP request header, 'Name: value' (repeatable)", collect, [] as string[])
    .option('--dns-name <name>', 'a DNS query the flow carries')
    .option('--kafka-api-key <key>', 'a Kafka request the flow carries: API key (default produce)')
    .option('--kafka-topic <topic>', 'Kafka topic')
    .option('--kafka-client-id <id>', 'Kafka client ID')
    .option('--kafka-api-version <n>', 'Kafka API version')
    .addOption(outputOption())
    .action((opts: TraceOptions) => {
      done(trace(ctx(), opts));
    });
}
