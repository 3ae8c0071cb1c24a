import type { ContainerPort } from '../model/ports.js';
import type { KeyedPod } from '../model/cluster.js';
import { sealedPod } from '../model/sealed-pod.js';
import { POLICY_KINDS, PolicyKind, PolicyRef } from '../model/rules.js';
import { flat, intern } from '../model/intern.js';
import { EngineError, EngineEvent } from '../engine/events.js';
import { checkEvents } from '../engine/validate.js';
import { checkNamespaceName, checkObjectName, forgetExtendedSelectors } from '../policy/common.js';
import { ManifestError } from '../policy/errors.js';
import { forgetParsedSelectors } from '../policy/selector.js';
import { readManifest, type ParseOptions } from '../policy/manifest.js';
import { parseCidrGroup } from '../policy/cidr-group.js';
import { isDnsSubdomain } from '../model/labels.js';
import { fqdnSyntaxError, MAX_DNS_TTL } from '../model/fqdn.js';
import { DNS_TRANSPORTS, type DnsTransport } from '../model/fqdn-events.js';
import { absent, join, Reader } from '../policy/reader.js';
import { readContainerPorts, readIp, readLabels, readPodIps } from '../policy/readers.js';
import { checkInputDepth, checkJsonTextDepth } from '../policy/depth.js';
import { compactPolicy, SharedValues } from './trace-sharing.js';
import { ByteLines, TextLines } from './trace-lines.js';

/**
 * Churn traces: JSON Lines. Line 1 is the header, every other line one event (see
 * docs/traces.md). Events are the engine's, with manifests inline; a `phase` line marks where a
 * phase (e.g. the initial state, then churn) begins.
 */
export const TRACE_VERSION = 1;

export interface TraceHeader {
  readonly distillTrace: typeof TRACE_VERSION;
  readonly profile?: string;
  readonly seed?: number;
  readonly description?: string;
}

/** One event as written in a trace. `tag` names what kind of change it is, for latency reports. */
export type TraceEventJson = { readonly tag?: string } & (
  | { readonly type: 'upsertNamespace'; readonly name: string; readonly labels: Readonly<Record<string, string>> }
  | { readonly type: 'deleteNamespace'; readonly name: string }
  | {
      readonly type: 'upsertPod';
      readonly pod: {
        readonly namespace: string;
        readonly name: string;
        readonly labels: Readonly<Record<string, string>>;
        readonly ip: string;
        /** A dual-stack pod's addresses, `ip` first (as `status.podIPs`). */
        readonly ips?: readonly string[];
        readonly serviceAccount?: string;
        readonly ports?: readonly ContainerPort[];
      };
      readonly local?: boolean;
      /** The node the pod runs on (multi-node traces, `distill gen --nodes`); `local` stays "on the replaying node". */
      readonly node?: string;
    }
  | { readonly type: 'deletePod'; readonly namespace: string; readonly name: string }
  | { readonly type: 'upsertPolicy'; readonly manifest: Readonly<Record<string, unknown>> }
  | { readonly type: 'deletePolicy'; readonly ref: { readonly kind: PolicyKind; readonly namespace?: string; readonly name: string } }
  | { readonly type: 'phase'; readonly name: string }
  /** A CiliumCIDRGroup manifest (`cilium.io/v2` or `v2alpha1`), created or replaced; `deleteCidrGroup` names one. */
  | { readonly type: 'upsertCidrGroup'; readonly manifest: Readonly<Record<string, unknown>> }
  | { readonly type: 'deleteCidrGroup'; readonly name: string }
  | {
      readonly type: 'dnsResponse';
      readonly endpoint: string;
      readonly name: string;
      readonly ips: readonly string[];
      readonly ttl: number;
      /** The DNS server the query went to (its address, port and transport, UDP when absent): the engine then judges the query as a flow. */
      readonly server?: { readonly ip: string; readonly port: number; readonly protocol?: DnsTransport };
    }
  | { readonly type: 'advanceTime'; readonly seconds: number }
);

type TraceItem =
  | { readonly kind: 'event'; readonly line: number; readonly tag: string; readonly event: EngineEvent; readonly node?: string }
  | { readonly kind: 'phase'; readonly line: number; readonly name: string }


/** `fqdn: false` refuses toFQDNs policies and DNS events; by default they are read (the engine takes both). */
export interface TraceOptions {
  readonly fqdn?: boolean;
  /** Called every 4,096 lines and at the end with lines read so far and the total. */
  readonly onProgress?: (done: number, total: number) => void;
  /**
   * `false`: policies keep no manifest (reading a policy's `manifest` throws). For readers that
   * never look at it, as a replay: the text is ~280 bytes of heap a policy (8 MB for cilium-ci).
   */
  readonly manifests?: boolean;
}

/** Seconds in TTLs and clock steps: whole, like DNS TTLs (RFC 2181: 31 bits). */
const MAX_SECONDS = 2 ** 31 - 1;

export interface Trace {
  readonly source: string;
  readonly header: TraceHeader;
  readonly items: readonly TraceItem[];
}

const EVENT_TYPES = ['upsertNamespace', 'deleteNamespace', 'upsertPod', 'deletePod', 'upsertPolicy', 'deletePolicy', 'phase', 'dnsResponse', 'advanceTime', 'upsertCidrGroup', 'deleteCidrGroup'] as const;

function readHeader(r: Reader, v: unknown): TraceHeader {
  const o = r.object(v, '', ['distillTrace', 'profile', 'seed', 'description']);
  if (o.distillTrace !== TRACE_VERSION) r.fail('distillTrace', `must be ${TRACE_VERSION} (the trace format version this distill reads)`);
  const profile = r.optString(o.profile, 'profile');
  const description = r.optString(o.description, 'description');
  return {
    distillTrace: TRACE_VERSION,
    ...(profile !== undefined ? { profile } : {}),
    ...(absent(o.seed) ? {} : { seed: r.integer(o.seed, 'seed') }),
    ...(description !== undefined ? { description } : {}),
  };
}

type TraceEventType = (typeof EVENT_TYPES)[number];

/** The fields of each event type besides `type` and `tag`. */
const EVENT_FIELDS: Readonly<Record<TraceEventType, readonly string[]>> = {
  upsertNamespace: ['name', 'labels'],
  deleteNamespace: ['name'],
  upsertPod: ['pod', 'local', 'node'],
  deletePod: ['namespace', 'name'],
  upsertPolicy: ['manifest'],
  deletePolicy: ['ref'],
  phase: ['name'],
  dnsResponse: ['endpoint', 'name', 'ips', 'ttl', 'server'],
  advanceTime: ['seconds'],
  upsertCidrGroup: ['manifest'],
  deleteCidrGroup: ['name'],
};

/** One line after the header: its type, then the fields that type has. */
function readItem(r: Reader, v: unknown, line: number, options: TraceOptions, shared: SharedValues, policyOptions: ParseOptions): TraceItem {
  const head = r.object(v, '', ['type', 'tag', 'name', 'labels', 'namespace', 'pod', 'local', 'node', 'manifest', 'ref', 'endpoint', 'ips', 'ttl', 'server', 'seconds']);
  const type = r.oneOf(head.type, 'type', EVENT_TYPES);
  const tag = r.optString(head.tag, 'tag') ?? type;
  const o = r.object(v, '', ['type', 'tag', ...EVENT_FIELDS[type]]);
  const ev = (event: EngineEvent): TraceItem => ({ kind: 'event', line, tag, event });
  if ((type === 'dnsResponse' || type === 'advanceTime') && options.fqdn === false) r.fail('type', `${type} events are not read here (fqdn: false)`);
  switch (type) {
    case 'dnsResponse':
      return ev(readDnsResponse(r, o));
    case 'advanceTime':
      return ev({ type, seconds: r.intInRange(o.seconds, 'seconds', 0, MAX_SECONDS) });
    case 'phase':
      return { kind: 'phase', line, name: r.nonEmptyString(o.name, 'name') };
    case 'upsertNamespace': {
      const name = r.nonEmptyString(o.name, 'name');
      checkNamespaceName(r, name, 'name');
      return ev({ type, name, labels: absent(o.labels) ? {} : readLabels(r, o.labels, 'labels') });
    }
    case 'deleteNamespace':
      return ev({ type, name: r.nonEmptyString(o.name, 'name') });
    case 'upsertPod': {
      const pod = readPod(r, o.pod, shared);
      const node = absent(o.node) ? undefined : r.nonEmptyString(o.node, 'node');
      if (node?.includes('/')) r.fail('node', `"${node}" must not contain '/'`);
      return { ...ev({ type, pod, local: r.optBoolean(o.local, 'local') ?? false }), ...(node !== undefined ? { node } : {}) };
    }
    case 'deletePod':
      return ev({ type, namespace: r.nonEmptyString(o.namespace, 'namespace'), name: r.nonEmptyString(o.name, 'name') });
    case 'upsertPolicy': {
      const manifestText = options.manifests === false ? null : flat(JSON.stringify(o.manifest));
      return ev({ type, policy: compactPolicy(readManifest(o.manifest, `${r.source} manifest`, policyOptions), manifestText, shared) });
    }
    case 'upsertCidrGroup':
      return ev({ type, group: parseCidrGroup(o.manifest, `${r.source} manifest`) });
    case 'deleteCidrGroup': {
      const name = r.nonEmptyString(o.name, 'name');
      if (!isDnsSubdomain(name)) r.fail('name', `"${name}" is not a CiliumCIDRGroup name (a DNS subdomain of at most 253 characters)`);
      return ev({ type, name });
    }
    case 'deletePolicy':
      return ev({ type, ref: readPolicyRef(r, o.ref) });
  }
}

/** A `dnsResponse` line: the pod's DNS proxy saw `name` answered with `ips` for `ttl` seconds. */
function readDnsResponse(r: Reader, o: Record<string, unknown>): EngineEvent {
  const endpoint = r.nonEmptyString(o.endpoint, 'endpoint');
  if (!/^[^/]+\/[^/]+$/.test(endpoint)) r.fail('endpoint', `"${endpoint}" is not namespace/name`);
  const name = r.nonEmptyString(o.name, 'name');
  const bad = fqdnSyntaxError('matchName', name);
  if (bad !== undefined) r.fail('name', bad);
  const ips = r.array(o.ips, 'ips').map((ip, i) => readIp(r, ip, `ips[${i}]`));
  const ttl = r.intInRange(o.ttl, 'ttl', 0, MAX_DNS_TTL);
  if (absent(o.server)) return { type: 'dnsResponse', endpoint, name, ips, ttl };
  const server = r.object(o.server, 'server', ['ip', 'port', 'protocol']);
  const protocol = absent(server.protocol) ? undefined : r.oneOf(server.protocol, 'server.protocol', DNS_TRANSPORTS);
  return { type: 'dnsResponse', endpoint, name, ips, ttl, server: { ip: readIp(r, server.ip, 'server.ip'), port: r.intInRange(server.port, 'server.port', 1, 65535), ...(protocol ? { protocol } : {}) } };
}

/** An `upsertPod` line's pod; labels and ports shared with the trace's other pods that have the same. */
function readPod(r: Reader, v: unknown, shared: SharedValues): KeyedPod {
  const p = r.object(v, 'pod', ['namespace', 'name', 'labels', 'ip', 'ips', 'serviceAccount', 'ports']);
  const namespace = r.nonEmptyString(p.namespace, 'pod.namespace');
  checkNamespaceName(r, namespace, 'pod.namespace');
  const name = r.nonEmptyString(p.name, 'pod.name');
  checkObjectName(r, name, 'pod.name');
  const labels = shared.labels(absent(p.labels) ? {} : readLabels(r, p.labels, 'pod.labels'));
  const ip = readIp(r, p.ip, 'pod.ip');
  const { ips } = podIpsOf(r, p.ips, p.ip);
  const serviceAccount = r.optString(p.serviceAccount, 'pod.serviceAccount') ?? 'default';
  // Sealed: the engine keeps it as it is, without a boundary copy (src/model/sealed-pod.ts).
  return sealedPod(intern(namespace), name, labels, ip, ips, serviceAccount, shared.ports(readContainerPorts(r, p.ports, 'pod.ports')));
}

/** A `deletePolicy` line's ref: a namespace exactly when the kind is namespaced. */
function readPolicyRef(r: Reader, v: unknown): PolicyRef {
  const ref = r.object(v, 'ref', ['kind', 'namespace', 'name']);
  const kind = r.oneOf(ref.kind, join('ref', 'kind'), POLICY_KINDS);
  const name = r.nonEmptyString(ref.name, join('ref', 'name'));
  const namespace = r.optString(ref.namespace, join('ref', 'namespace'));
  const clusterwide = kind === 'CiliumClusterwideNetworkPolicy' || kind === 'ClusterNetworkPolicy';
  if (clusterwide !== (namespace === undefined)) r.fail('ref.namespace', clusterwide ? 'a clusterwide policy has no namespace' : 'is required for a namespaced policy');
  return namespace === undefined ? { kind, name } : { kind, namespace, name };
}

const NOT_A_TRACE = 'this is not a distill trace (JSON Lines, first line {"distillTrace": 1, ...}); make one with `distill gen` (see docs/traces.md)';

/**
 * Parses a whole trace before anything is replayed: the first bad line stops it with an error
 * naming the file and line, and nothing is applied. `input` may be the file's UTF-8 bytes (the
 * caller checked they are UTF-8): lines are then decoded one at a time, so the file's text never
 * sits in the JS heap (for cilium-ci 15 MB, garbage through the cold start that follows).
 */
export function parseTrace(input: string | Uint8Array, source: string, options: TraceOptions = {}): Trace {
  try {
    return parseLines(input, source, options);
  } finally {
    // The parser's selector caches: what they hold is now kept by the trace's policies, or garbage.
    forgetParsedSelectors();
    forgetExtendedSelectors();
  }
}

function parseLines(input: string | Uint8Array, source: string, options: TraceOptions): Trace {
  const text = typeof input === 'string' ? new TextLines(input) : new ByteLines(input);
  const total = text.count();
  let header: TraceHeader | undefined;
  const items: TraceItem[] = [];
  const shared = new SharedValues(source);
  // A trace models CiliumCIDRGroup objects (upsertCidrGroup): group peers are read. One object for the whole trace:
  // a new one per policy made the parser's option reads miss their inline caches on every policy (finding 3124).
  const policyOptions: ParseOptions = { ...options, cidrGroups: true };
  // Line by line, not text.split: an array of every line would live (and be promoted) through the whole parse.
  for (let i = 0, start = 0; start <= text.length; i++) {
    const nl = text.next(start);
    const end = nl < 0 ? text.length : nl;
    const raw = text.slice(start, end);
    start = end + 1;
    const line = i + 1;
    if ((i & 4095) === 0) options.onProgress?.(i, total);
    if (raw.trim() === '') continue;
    const r = new Reader(`${source}:${line}`);
    checkJsonTextDepth(raw, `${source}:${line}`);
    let v: unknown;
    try {
      v = JSON.parse(raw);
    } catch (e) {
      throw new ManifestError(`${source}:${line}`, '', `is not valid JSON (${(e as Error).message})${header === undefined ? `: ${NOT_A_TRACE}` : ''}`);
    }
    checkInputDepth(v, `${source}:${line}`);
    if (header === undefined) {
      if (typeof v !== 'object' || v === null || !Object.hasOwn(v, 'distillTrace')) throw new ManifestError(`${source}:${line}`, '', `has no "distillTrace" header: ${NOT_A_TRACE}`);
      header = readHeader(r, v);
      continue;
    }
    items.push(readItem(r, v, line, options, shared, policyOptions));
  }
  options.onProgress?.(total, total);
  if (header === undefined) throw new ManifestError(`${source}:1`, '', 'is empty: a trace starts with a header line {"distillTrace": 1, ...}');
  return { source, header, items };
}

/** A churn event of a trace, with its tag. */
export type ChurnItem = Extract<TraceItem, { kind: 'event' }>;

/** The initial phase's events and the churn items, at most `limit` (fresh arrays, the caller's to empty). */
export function splitItems(items: Trace['items'], limit?: number): { initial: EngineEvent[]; churn: ChurnItem[] } {
  const firstChurn = items.findIndex((i) => i.kind === 'phase' && i.name !== 'initial');
  const end = firstChurn < 0 ? items.length : firstChurn;
  // Filled in one pass each: no slice of the items and no one-element array per event.
  const initial: EngineEvent[] = [];
  for (let i = 0; i < end; i++) {
    const item = items[i] as Trace['items'][number];
    if (item.kind === 'event') initial.push(item.event);
  }
  const churn: ChurnItem[] = [];
  for (let i = end; i < items.length && (limit === undefined || churn.length < limit); i++) {
    const item = items[i] as Trace['items'][number];
    if (item.kind === 'event') churn.push(item);
  }
  return { initial, churn };
}

/** Empties the trace and returns its items, for a reader that drops each once used (a CLI replay). */
export function takeItems(trace: Trace): Trace['items'] {
  // parseTrace's array is the trace's own; readonly only to its readers.
  return (trace.items as TraceItem[]).splice(0);
}

/**
 * Checks the trace's events against the model as it evolves from an empty cluster (every field,
 * and what the engine would refuse: deleting a pod, namespace or policy that does not exist), so
 * a replay refuses a bad trace before its first write. The error names the file and line.
 */
export function checkTrace(trace: Trace): void {
  // One array of events (not one of items, then one of events): it lives through the check.
  const events: EngineEvent[] = [];
  for (const i of trace.items) if (i.kind === 'event') events.push(i.event);
  try {
    checkEvents(events);
  } catch (e) {
    if (!(e instanceof EngineError)) throw e;
    const line = trace.items.filter((i) => i.kind === 'event')[e.eventIndex]?.line;
    throw new ManifestError(line === undefined ? trace.source : `${trace.source}:${line}`, '', `${e.eventType}: ${e.detail}`);
  }
}

/** Serialises events into trace lines (the inverse of parseTrace for generated traces). */
export function traceLine(v: TraceHeader | TraceEventJson): string {
  return JSON.stringify(v);
}

/** `pod.ips` of a dual-stack pod: its first address must be `pod.ip`. */
function podIpsOf(r: Reader, v: unknown, ip: unknown): { ips?: ReturnType<typeof readPodIps> } {
  if (absent(v)) return {};
  const ips = readPodIps(r, v, 'pod.ips');
  if (ips[0]!.text !== readIp(r, ip, 'pod.ip').text) r.fail('pod.ips[0]', `must be pod.ip (${String(ip)})`);
  return ips.length > 1 ? { ips } : {};
}
