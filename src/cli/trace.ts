import { Command, Option } from 'commander';
import { upsertCidrGroup, upsertPolicy } from '../model/cluster.js';
import { addHeader, KAFKA_API_KEYS, L7Request } from '../model/l7.js';
import { FLOW_PROTOCOLS, FlowProtocol, flowPortRange } from '../model/ports.js';
import { precedenceLevel, verdictByte } from '../model/policy-map.js';
import { SideReport, traceFlow } from '../explain/trace.js';
import { shownInTable } from '../explain/format.js';
import { CliEnv, CliIo, Ctx, intOption, outputOption, OutputFormat, printData, readPolicies, readScenario, reportInputError } from './common.js';
import { scenarioEngine } from '../scenario/engine.js';
import { checkStdinOnce, InputError } from './input.js';

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
  if (!m || protocol === undefined) throw new InputError(`--port: "${text}" is not PORT/PROTOCOL (e.g. 80/TCP; protocols: ${FLOW_PROTOCOLS.join(', ')})`);
  const range = flowPortRange(protocol);
  if (port < range.min || port > range.max) throw new InputError(`--port: ${port} is out of range for ${protocol} (${protocol.startsWith('ICMP') ? 'types' : 'ports'} ${range.min}..${range.max})`);
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

/** What the lower tiers did with a flow a Pass rule handed them (finding 2633). */
function passedOn(s: SideReport): string {
  if (s.verdict === 'DROPPED') return 'nothing allows it';
  return s.allowedBy.length + s.alsoAllowedBy.length === 0 ? 'nothing decides it: allowed by default' : 'the rules below allow it';
}

/** The peer's identity as the table names labels (the ones that tell peers apart). */
function peerText(p: SideReport['peer']): string {
  const labels = p.labels.filter(shownInTable).join(',');
  return `${String(p.identity)}${labels ? ` (${labels})` : ''}`;
}

function renderSide(s: SideReport): string {
  const out = [`${s.direction} of ${s.endpoint}: ${s.verdict}`];
  out.push(s.table !== undefined ? s.table.split('\n').map((l) => `  ${l}`).join('\n') : `  no map entry matches (default deny) for the peer's identity ${peerText(s.peer)}`);
  out.push(`  default deny: ${s.defaultDeny ? `yes, enforced by ${s.enforcedBy.join('; ')}` : 'no (no policy isolates this direction)'}`);
  if (s.deniedBy.length) out.push(`  denied by: ${s.deniedBy.join('; ')}`);
  if (s.verdict === 'DROPPED' && s.entry?.policy === 'Allow' && s.entry.proxyPort !== 0) out.push(`  dropped: the entry redirects to proxy port ${String(s.entry.proxyPort)}, and the proxies take TCP and UDP only`);
  if (s.passedBy.length) out.push(`  passed by: ${s.passedBy.join('; ')} (to the lower tiers, where ${passedOn(s)})`);
  if (s.allowedBy.length) out.push(`  allowed by: ${s.allowedBy.join('; ')}`);
  if (s.redirectedBy.length) out.push(`  redirected by: ${s.redirectedBy.join('; ')}`);
  if (s.alsoAllowedBy.length) out.push(`  also allowed by (entries the matched one shadows or covers): ${s.alsoAllowedBy.join('; ')}`);
  for (const t of s.tierRules ?? []) out.push(`  ${t.reason}: ${t.tier} tier, priority ${String(t.priority)}, rule "${t.rule}": ${t.action}`);
  if (s.entry) out.push(`  precedence: ${String(s.entry.precedence)} (level ${String(precedenceLevel(Number(s.entry.precedence)))}, verdict byte ${String(verdictByte(Number(s.entry.precedence)))}: higher wins)`);
  if (s.l7) out.push(`  ${s.l7.parser} proxy: ${s.l7.verdict}${s.l7.allowedBy.length ? ` (allowed by ${s.l7.allowedBy.join('; ')})` : ' (no rule matches the request)'}`);
  if (s.l7 && s.l7.verdict === 'DROPPED') out.push(`  ${s.l7.parser} rules for this peer and port: ${s.l7.rules.map((r) => JSON.stringify(r)).join(' ') || 'none'}`);
  return out.join('\n');
}

/**
 * The `-f` file and document of each policy the reasons name (finding 2301), in the order named: a
 * reason is `Kind/ns/name field.path`. The scenario's own policies are not listed.
 */
function namedSources(sides: readonly SideReport[], read: ReadonlyMap<string, string>): [string, string][] {
  const named = new Map<string, string>();
  for (const s of sides) {
    for (const reason of [...s.enforcedBy, ...s.deniedBy, ...s.passedBy, ...s.allowedBy, ...s.redirectedBy, ...s.alsoAllowedBy, ...(s.l7?.allowedBy ?? [])]) {
      const ref = reason.split(' ', 1)[0] ?? '';
      const src = read.get(ref);
      if (src !== undefined) named.set(ref, src);
    }
  }
  return [...named];
}

function trace(ctx: Ctx, opts: TraceOptions): number {
  const io: CliIo = ctx.io;
  try {
    const { port, protocol } = parsePortProto(opts.port);
    const request = requestOf(opts);
    checkStdinOnce([opts.scenario, ...opts.filename]);
    const step = intOption(opts.step, '--step', 0);
    const built = scenarioEngine(readScenario(ctx, opts.scenario), step);
    let state = built.state;
    const applied = readPolicies(ctx, opts.filename);
    for (const g of applied.cidrGroups) state = upsertCidrGroup(state, g);
    for (const p of applied.policies) state = upsertPolicy(state, p);
    const t = traceFlow({ state, decider: built.decider }, opts.from, opts.to, port, protocol, request);
    const sources = namedSources(t.sides, applied.sources);
    const data = { ...t, sides: t.sides.map(({ table: _table, ...rest }) => rest), ...(opts.filename.length > 0 ? { sources: sources.map(([policy, source]) => ({ policy, source })) } : {}) };
    if (!printData(io, opts.output, data)) {
      const body = t.sides.length === 0 ? 'neither side is a pod: nothing enforces policy on this flow' : t.sides.map(renderSide).join('\n\n');
      const from = sources.length > 0 ? `\n\nread from (-f): ${sources.map(([ref, src]) => `${ref} ${src}`).join('; ')}` : '';
      io.out(`${t.from} -> ${t.to} ${port}/${protocol}: ${t.verdict}\n\n${body}${from}\n`);
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
