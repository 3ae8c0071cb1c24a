import { isValidIp, parseCidr, parseIp } from '../model/cidr.js';
import { type Pod, podKey } from '../model/cluster.js';
import { fqdnSyntaxError, MAX_DNS_TTL } from '../model/fqdn.js';
import { DNS_TRANSPORTS } from '../model/fqdn-events.js';
import { FIRST_CLUSTER_IDENTITY, identityLabelProblem, MAX_CLUSTER_IDENTITY, STACK_MODES } from '../model/identity.js';
import { isDnsLabel, isDnsSubdomain, labelKeyProblem, labelValueProblem } from '../model/labels.js';
import { isValidPortName, MAX_PORT } from '../model/ports.js';
import { isParsedPolicy, POLICY_KINDS, policyRefKey } from '../model/rules.js';
import { EngineError, EngineEvent } from './events.js';
import { networksCoverEverything, tierRuleName, type TieredSpec } from '../model/tiers.js';
import { tierSupportProblem } from './tiers.js';
import { ipKeyOfText } from './ip-key.js';

/**
 * Batch validation, before a transaction touches anything: every event's fields (the library's
 * callers are as untrusted as a manifest file) and its existence rules against the model as the
 * batch would evolve it. Pure: reads a model view, changes nothing.
 */

/** What validation needs to know about the model before the batch. */
export interface ModelView {
  hasNamespace(name: string): boolean;
  hasPod(key: string): boolean;
  hasPolicy(key: string): boolean;
  podsInNamespace(namespace: string): Iterable<string>;
  policiesInNamespace(namespace: string): Iterable<string>;
  /** Where identity numbers come from: identity events exist only with `external`. */
  readonly identitySource: 'local' | 'external';
  hasIdentity(id: number): boolean;
  hasNode(name: string): boolean;
  hasCidrGroup(name: string): boolean;
  /** The DNS clock (seconds advanced so far). */
  dnsNow(): number;
}

const EMPTY_MODEL: ModelView = {
  hasNamespace: () => false,
  hasPod: () => false,
  hasPolicy: () => false,
  podsInNamespace: () => [],
  policiesInNamespace: () => [],
  identitySource: 'local',
  hasIdentity: () => false,
  hasNode: () => false,
  hasCidrGroup: () => false,
  dnsNow: () => 0,
};

type Fail = (detail: string) => never;

const CONTAINER_PROTOCOLS: readonly string[] = ['TCP', 'UDP', 'SCTP'];

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function checkName(v: unknown, field: string, kind: 'namespace' | 'object', fail: Fail): string {
  if (typeof v !== 'string') return fail(`${field} must be a string`);
  const ok = kind === 'namespace' ? isDnsLabel(v) : isDnsSubdomain(v);
  if (!ok) fail(`${field}: "${v}" is not a valid ${kind === 'namespace' ? 'namespace name (a DNS label)' : 'name (a DNS subdomain)'}`);
  return v;
}

/** A plain object (an object literal, JSON, Object.create(null)): a Map or class instance has no own labels to read. */
function isPlainRecord(v: unknown): v is Record<string, unknown> {
  if (!isRecord(v)) return false;
  const proto: unknown = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

/**
 * Label maps found valid that cannot change (frozen: the engine's copies, boundary-copy.ts). The
 * replicas of a workload share one copy, so a cold start checks each once, not once per pod. Weak:
 * it holds nothing the engine or its caller dropped.
 */
const validLabelMaps = new WeakSet<object>();

/** Labels as the Kubernetes API validates them: own string properties only, valid keys and values. */
function checkLabelMap(m: unknown, field: string, fail: Fail): void {
  if (isRecord(m) && validLabelMaps.has(m)) return;
  checkLabelEntries(m, field, fail);
  if (Object.isFrozen(m)) validLabelMaps.add(m);
}

function checkLabelEntries(m: unknown, field: string, fail: Fail): asserts m is Record<string, unknown> {
  if (!isPlainRecord(m)) fail(`${field} must be a plain object of strings (not a Map or class instance)`);
  for (const k of Object.keys(m)) {
    const v = m[k];
    if (typeof v !== 'string') fail(`${field}[${JSON.stringify(k)}] must be a string`);
    const kp = labelKeyProblem(k);
    if (kp) fail(`${field}: invalid label key ${JSON.stringify(k)}: ${kp}`);
    const vp = labelValueProblem(v);
    if (vp) fail(`${field}[${JSON.stringify(k)}]: invalid label value ${JSON.stringify(v)}: ${vp}`);
  }
}

/** A parsed address (parseIp); pods are known by its text, so that is what must be valid. */
function checkIp(ip: unknown, fail: Fail, field = 'pod.ip'): void {
  if (!isRecord(ip) || typeof ip.text !== 'string' || typeof ip.value !== 'bigint') fail(`${field} must be a parsed IP address (parseIp)`);
  if (!isValidIp(ip.text)) fail(`${field}: ${JSON.stringify(ip.text)} is not a valid IP address`);
  if (ip.family !== (ip.text.includes(':') ? 'ipv6' : 'ipv4')) fail(`${field}: family ${JSON.stringify(ip.family)} does not match ${ip.text}`);
}

/**
 * A dual-stack pod's `ips`: `ip` first, at most one address per family (as `status.podIPs`). A pod held fail-closed
 * may list its old addresses after its new ones, two per family at most (the agent's split step, finding 3260).
 */
function checkIps(pod: Record<string, unknown>, fail: Fail): void {
  const ips = pod.ips;
  if (ips === undefined) return;
  const most = pod.failClosed === true ? 4 : 2;
  if (!Array.isArray(ips) || ips.length === 0 || ips.length > most) return fail(`pod.ips must list 1 to ${most} addresses`);
  for (let i = 0; i < ips.length; i++) checkIp(ips[i], fail, `pod.ips[${i}]`);
  const list = ips as { text: string; family: string }[];
  if (list[0]!.text !== (pod.ip as { text: string }).text) fail(`pod.ips[0] (${list[0]!.text}) must be pod.ip (${(pod.ip as { text: string }).text})`);
  if (new Set(list.map((ip) => ip.text)).size !== list.length) fail('pod.ips lists an address twice');
  for (const family of ['ipv4', 'ipv6']) {
    const n = list.filter((ip) => ip.family === family).length;
    if (n > most / 2) fail(`pod.ips: ${n === 2 ? 'two' : n} ${family} addresses; a pod has at most one per family${pod.failClosed === true ? ' (two held fail-closed)' : ''}`);
  }
}

function checkPorts(ports: unknown, fail: Fail): void {
  if (!Array.isArray(ports)) fail('pod.ports must be a list');
  // Indexed, no callback: every pod of a cold start passes here, mostly in unoptimized code.
  for (let i = 0; i < ports.length; i++) {
    const p: unknown = ports[i];
    if (!isRecord(p)) fail(`pod.ports[${i}] must be an object`);
    if (typeof p.port !== 'number' || !Number.isInteger(p.port) || p.port < 1 || p.port > MAX_PORT) fail(`pod.ports[${i}].port: ${String(p.port)} is not in 1..${MAX_PORT}`);
    if (typeof p.protocol !== 'string' || !CONTAINER_PROTOCOLS.includes(p.protocol)) fail(`pod.ports[${i}].protocol: ${JSON.stringify(p.protocol)} is not TCP, UDP or SCTP`);
    if (p.name !== undefined && (typeof p.name !== 'string' || !isValidPortName(p.name))) fail(`pod.ports[${i}].name: ${JSON.stringify(p.name)} is not a valid port name`);
  }
}

function checkPod(pod: unknown, fail: Fail): void {
  if (!isRecord(pod)) return fail('pod must be an object');
  checkName(pod.namespace, 'pod.namespace', 'namespace', fail);
  checkName(pod.name, 'pod.name', 'object', fail);
  checkLabelMap(pod.labels, 'pod.labels', fail);
  // Empty: the pod has no service account (Pod.serviceAccount).
  if (pod.serviceAccount !== '') checkName(pod.serviceAccount, 'pod.serviceAccount', 'object', fail);
  checkIp(pod.ip, fail);
  checkIps(pod, fail);
  checkPorts(pod.ports, fail);
  if (pod.failClosed !== undefined && pod.failClosed !== true) fail('pod.failClosed must be true or absent');
}

function checkIdentityId(id: unknown, fail: Fail): number {
  if (typeof id !== 'number' || !Number.isInteger(id) || id < FIRST_CLUSTER_IDENTITY || id > MAX_CLUSTER_IDENTITY) {
    return fail(`id: ${String(id)} is not a cluster identity (${FIRST_CLUSTER_IDENTITY}..${MAX_CLUSTER_IDENTITY})`);
  }
  return id;
}

function checkIdentityLabels(m: unknown, fail: Fail): void {
  if (!isPlainRecord(m)) fail('labels must be a map of strings (Cilium security-labels: source:key → value)');
  const keys = Object.keys(m);
  if (keys.length === 0) fail('labels must not be empty');
  for (const k of keys) {
    const v = m[k];
    if (typeof v !== 'string') fail(`labels[${JSON.stringify(k)}] must be a string`);
    const problem = identityLabelProblem(k, v);
    if (problem) fail(`labels: ${problem}`);
  }
}

function checkRef(ref: unknown, fail: Fail): string {
  if (!isRecord(ref)) return fail('ref must be an object');
  if (typeof ref.kind !== 'string' || !(POLICY_KINDS as readonly string[]).includes(ref.kind)) fail(`ref.kind: ${JSON.stringify(ref.kind)} is not a policy kind`);
  if (typeof ref.name !== 'string') fail('ref.name must be a string');
  if (ref.namespace !== undefined && typeof ref.namespace !== 'string') fail('ref.namespace must be a string');
  return policyRefKey({ kind: ref.kind as (typeof POLICY_KINDS)[number], name: ref.name, ...(typeof ref.namespace === 'string' ? { namespace: ref.namespace } : {}) });
}

/**
 * The model as the batch evolves it, over a read-only base view. Its tables are made on first
 * write: most batches are one event, and this runs on every transaction.
 */
class Overlay {
  private ns: Map<string, boolean> | null = null;
  private pods: Map<string, boolean> | null = null;
  private policies: Map<string, boolean> | null = null;
  private identities: Map<number, boolean> | null = null;
  private nodes: Map<string, boolean> | null = null;
  private cidrGroups: Map<string, boolean> | null = null;
  private clock: number | null = null;
  /** Pods and namespaced policies the batch created, per namespace (recorded only with `recordObjects`). */
  private podsByNs: Map<string, Set<string>> | null = null;
  private policiesByNs: Map<string, Set<string>> | null = null;

  /** Set for a batch's last event: nothing reads the overlay after it, so it is not written. */
  frozen = false;
  /** Unset when no event of the batch reads which pods or policies exist: they are then not recorded. */
  recordObjects = true;

  constructor(private readonly base: ModelView) {}

  hasNamespace(n: string): boolean {
    return this.ns?.get(n) ?? this.base.hasNamespace(n);
  }

  hasPod(k: string): boolean {
    return this.pods?.get(k) ?? this.base.hasPod(k);
  }

  hasPolicy(k: string): boolean {
    return this.policies?.get(k) ?? this.base.hasPolicy(k);
  }

  get identitySource(): 'local' | 'external' {
    return this.base.identitySource;
  }

  hasIdentity(id: number): boolean {
    return this.identities?.get(id) ?? this.base.hasIdentity(id);
  }

  hasNode(name: string): boolean {
    return this.nodes?.get(name) ?? this.base.hasNode(name);
  }

  hasCidrGroup(name: string): boolean {
    return this.cidrGroups?.get(name) ?? this.base.hasCidrGroup(name);
  }

  setCidrGroup(name: string, exists: boolean): void {
    if (this.frozen) return;
    (this.cidrGroups ??= new Map()).set(name, exists);
  }

  dnsNow(): number {
    return this.clock ?? this.base.dnsNow();
  }

  advanceClock(seconds: number): void {
    if (!this.frozen) this.clock = this.dnsNow() + seconds;
  }

  setNode(name: string, exists: boolean): void {
    if (this.frozen) return;
    (this.nodes ??= new Map()).set(name, exists);
  }

  setIdentity(id: number, exists: boolean): void {
    if (this.frozen) return;
    (this.identities ??= new Map()).set(id, exists);
  }

  setNamespace(n: string, exists: boolean): void {
    if (this.frozen) return;
    (this.ns ??= new Map()).set(n, exists);
    if (exists) return;
    const pods = (this.pods ??= new Map());
    const policies = (this.policies ??= new Map());
    for (const k of [...this.base.podsInNamespace(n), ...(this.podsByNs?.get(n) ?? [])]) pods.set(k, false);
    for (const k of [...this.base.policiesInNamespace(n), ...(this.policiesByNs?.get(n) ?? [])]) policies.set(k, false);
    this.podsByNs?.delete(n);
    this.policiesByNs?.delete(n);
  }

  /** The batch's pods and policies are recorded (`setPod`, `setPolicy` write): callers skip building their keys otherwise. */
  get recordsObjects(): boolean {
    return !this.frozen && this.recordObjects;
  }

  /** `key` is `namespace/name`. */
  setPod(key: string, exists: boolean): void {
    if (this.frozen || !this.recordObjects) return;
    (this.pods ??= new Map()).set(key, exists);
    if (exists) addTo((this.podsByNs ??= new Map()), key.slice(0, key.indexOf('/')), key);
  }

  setPolicy(namespace: string | undefined, key: string, exists: boolean): void {
    if (this.frozen || !this.recordObjects) return;
    (this.policies ??= new Map()).set(key, exists);
    if (exists && namespace !== undefined) addTo((this.policiesByNs ??= new Map()), namespace, key);
  }
}

function addTo(m: Map<string, Set<string>>, k: string, v: string): void {
  let s = m.get(k);
  if (!s) m.set(k, (s = new Set()));
  s.add(v);
}

/**
 * `networks` peers and egress `destinationNamedPort` split pod identities by address and port
 * (network-splits.ts); identities that come from outside cannot be split. A rule whose networks hold both /0s
 * matches every address alike (one identity-0 key, no split), so it is encoded (review 27w, finding 2351).
 */
function splitProblem(t: TieredSpec): string | null {
  for (const r of t.rules) {
    if (r.direction !== 'egress') continue;
    const what = r.peers.some((p) => p.kind === 'networks') && !networksCoverEverything(r.peers) ? 'a networks peer' : r.protocols.some((p) => p.kind === 'named') ? 'an egress destinationNamedPort' : null;
    if (what) return `${r.path} (${tierRuleName(r)}): ${what} needs pod identities split by address or named port, which the engine cannot do with identities from outside (identitySource: 'external')`;
  }
  return null;
}

/** What the engine cannot encode exactly yet it refuses, naming the policy and the rule. */
function checkTiered(key: string, t: TieredSpec, model: Overlay, fail: Fail): void {
  const problem = tierSupportProblem(t) ?? (model.identitySource === 'external' ? splitProblem(t) : null);
  if (problem) fail(`${key}: ${problem}; only the reference evaluator (--naive) decides it`);
}

type EventRecord = Record<string, unknown>;

/** One event's fields, and its existence rule against the model as the batch has evolved it so far. */
function checkEvent(e: EventRecord | undefined, model: Overlay, fail: Fail): void {
  if (e === undefined) fail('is not an event object');
  switch (e.type) {
    case 'upsertNamespace':
    case 'deleteNamespace':
      return checkNamespaceEvent(e, model, fail);
    case 'upsertPod':
    case 'deletePod':
      return checkPodEvent(e, model, fail);
    case 'upsertPolicy':
    case 'deletePolicy':
      return checkPolicyEvent(e, model, fail);
    case 'upsertIdentity':
    case 'deleteIdentity':
      return checkIdentityEvent(e, model, fail);
    case 'dnsResponse':
      return checkDnsResponse(e, model, fail);
    case 'advanceTime':
      checkSeconds(e.seconds, 'seconds', fail);
      checkClock(model.dnsNow(), e.seconds as number, 'seconds', fail);
      model.advanceClock(e.seconds as number);
      return;
    case 'upsertNode':
    case 'deleteNode':
      return checkNodeEvent(e, model, fail);
    case 'setApiServer':
      checkParsedIps(e.addresses, 'addresses', fail);
      if (e.held !== undefined) checkParsedIps(e.held, 'held', fail);
      return;
    case 'upsertCidrGroup':
    case 'deleteCidrGroup':
      return checkCidrGroupEvent(e, model, fail);
    case 'upsertEndpoint':
    case 'deleteEndpoint':
      return checkEndpointEvent(e, fail);
    default:
      fail(`unknown event type ${JSON.stringify(e.type)}`);
  }
}

function checkNamespaceEvent(e: EventRecord, model: Overlay, fail: Fail): void {
  const name = checkName(e.name, 'name', 'namespace', fail);
  if (e.type === 'upsertNamespace') {
    model.setNamespace(name, true);
    checkLabelMap(e.labels, 'labels', fail);
    return;
  }
  if (!model.hasNamespace(name)) fail(`namespace "${name}" does not exist`);
  model.setNamespace(name, false);
}

function checkPodEvent(e: EventRecord, model: Overlay, fail: Fail): void {
  if (e.type === 'upsertPod') {
    if (e.local !== undefined && typeof e.local !== 'boolean') fail('local must be true or false');
    checkPod(e.pod, fail);
    // The key only when the overlay records pods (never in a cold start); a copied pod builds it once for every stage.
    if (model.recordsObjects) model.setPod(podKey(e.pod as Pod), true);
    return;
  }
  const key = `${checkName(e.namespace, 'namespace', 'namespace', fail)}/${checkName(e.name, 'name', 'object', fail)}`;
  if (!model.hasPod(key)) fail(`pod "${key}" does not exist`);
  model.setPod(key, false);
}

function checkPolicyEvent(e: EventRecord, model: Overlay, fail: Fail): void {
  if (e.type === 'upsertPolicy') {
    if (!isParsedPolicy(e.policy)) fail('policy must be a policy returned by parseManifest');
    const t = e.policy.tiered;
    if (t) checkTiered(policyRefKey(e.policy.ref), t, model, fail);
    // The key only when the overlay records policies (never in a cold start: 3 calls a policy there).
    if (model.recordsObjects) model.setPolicy(e.policy.ref.namespace, policyRefKey(e.policy.ref), true);
    return;
  }
  const key = checkRef(e.ref, fail);
  if (!model.hasPolicy(key)) fail(`policy ${key} does not exist`);
  model.setPolicy(undefined, key, false);
}

function checkIdentityEvent(e: EventRecord, model: Overlay, fail: Fail): void {
  if (model.identitySource !== 'external') fail(`identity events need an engine whose identities come from outside (identitySource: 'external')`);
  const id = checkIdentityId(e.id, fail);
  if (e.type === 'upsertIdentity') {
    if (e.unreadable !== undefined && e.unreadable !== true) fail('unreadable must be true when present');
    // A stand-in never read has no labels (events.ts `unreadable`).
    if (e.unreadable !== true || !isPlainRecord(e.labels) || Object.keys(e.labels).length > 0) checkIdentityLabels(e.labels, fail);
  }
  else if (!model.hasIdentity(id)) fail(`identity ${id} does not exist`);
  model.setIdentity(id, e.type === 'upsertIdentity');
}

/** An answer the endpoint's DNS proxy saw: the pod, the name, its addresses and a TTL the DNS clock can hold. */
function checkDnsResponse(e: EventRecord, model: Overlay, fail: Fail): void {
  const key = typeof e.endpoint === 'string' ? e.endpoint : fail('endpoint must be a pod key "namespace/name"');
  if (!model.hasPod(key)) fail(`endpoint "${key}" is not a pod`);
  if (typeof e.name !== 'string') fail('name must be a DNS name');
  const bad = fqdnSyntaxError('matchName', e.name);
  if (bad !== undefined) fail(`name ${bad}`);
  checkParsedIps(e.ips, 'ips', fail);
  checkSeconds(e.ttl, 'ttl', fail);
  if ((e.ttl as number) > MAX_DNS_TTL) fail(`ttl must be at most ${MAX_DNS_TTL} seconds (a DNS TTL is 32 bits)`);
  checkClock(model.dnsNow(), e.ttl as number, 'ttl', fail);
  if (e.server !== undefined) checkDnsServer(e.server, fail);
}

function checkNodeEvent(e: EventRecord, model: Overlay, fail: Fail): void {
  const name = checkName(e.name, 'name', 'object', fail);
  if (e.type === 'deleteNode') {
    if (!model.hasNode(name)) fail(`node "${name}" does not exist`);
    model.setNode(name, false);
    return;
  }
  if (e.local !== undefined && typeof e.local !== 'boolean') fail('local must be true or false');
  if (!Array.isArray(e.ips) || e.ips.length === 0) fail('ips must be a non-empty list of parsed IP addresses');
  if (e.labels !== undefined) checkLabelMap(e.labels, 'labels', fail);
  if (e.failClosed !== undefined && e.failClosed !== true && ((e.failClosed !== 'allPorts' && e.failClosed !== 'addresses') || e.local !== true)) fail("failClosed must be true or absent ('allPorts' or 'addresses' on the local node)");
  checkParsedIps(e.ips, 'ips', fail);
  for (const field of ['health', 'ingress'] as const) if (e[field] !== undefined) checkParsedIps(e[field], field, fail);
  model.setNode(name, true);
}

/** At most this many addresses a CiliumEndpoint event lists (a pod has one per family; Cilium's agent writes one addressing pair). */
const MAX_ENDPOINT_IPS = 16;

/**
 * A CiliumEndpoint event: its pod's name, a uint32 number, whichever (the engine, not validation, decides
 * whether it is an identity it may use: a hostile number maps to the fail-closed 255), at most
 * `MAX_ENDPOINT_IPS` parsed addresses. A delete of an endpoint the engine does not hold changes nothing.
 */
function checkEndpointEvent(e: EventRecord, fail: Fail): void {
  checkName(e.namespace, 'namespace', 'namespace', fail);
  checkName(e.name, 'name', 'object', fail);
  if (e.type === 'deleteEndpoint') return;
  const id = e.identity;
  if (typeof id !== 'number' || !Number.isInteger(id) || id < 0 || id > 0xffffffff) fail(`identity: ${String(id)} is not a uint32 identity number`);
  if (!Array.isArray(e.ips) || e.ips.length > MAX_ENDPOINT_IPS) fail(`ips must be a list of at most ${MAX_ENDPOINT_IPS} parsed IP addresses`);
  checkParsedIps(e.ips, 'ips', fail);
}

function checkCidrGroupEvent(e: EventRecord, model: Overlay, fail: Fail): void {
  if (e.type === 'deleteCidrGroup') {
    const name = checkName(e.name, 'name', 'object', fail);
    if (!model.hasCidrGroup(name)) fail(`CiliumCIDRGroup "${name}" does not exist`);
    model.setCidrGroup(name, false);
    return;
  }
  const g = e.group;
  if (!isRecord(g)) return fail('group must be a CiliumCIDRGroup as the manifest reader returns it');
  const name = checkName(g.name, 'group.name', 'object', fail);
  if (!(g.labels instanceof Map) || [...g.labels].some(([k, v]) => typeof k !== 'string' || typeof v !== 'string')) fail('group.labels must be a Map of strings');
  if (!Array.isArray(g.cidrs) || g.cidrs.some((c) => !isParsedCidr(c))) fail('group.cidrs must be a list of parsed CIDRs');
  if (g.failClosed !== undefined && g.failClosed !== true) fail('group.failClosed must be true or absent');
  model.setCidrGroup(name, true);
}

/** A prefix as parseCidr returns it (a bad one would corrupt the ipcache index). */
function isParsedCidr(c: unknown): boolean {
  if (!isRecord(c) || typeof c.text !== 'string') return false;
  try {
    const p = parseCidr(c.text);
    return p.family === c.family && p.network === c.network && p.prefixLength === c.prefixLength;
  } catch {
    return false;
  }
}

/** A list of addresses as parseIp returns them. */
function checkParsedIps(list: unknown, field: string, fail: Fail): void {
  if (!Array.isArray(list)) fail(`${field} must be a list of parsed IP addresses`);
  (list as unknown[]).forEach((ip, i) => checkParsedIp(ip, `${field}[${i}]`, fail));
}

/** A DNS server as the proxy knows it: a parsed address, a port and the transport (absent: UDP). */
function checkDnsServer(v: unknown, fail: Fail): void {
  if (!isRecord(v)) return fail('server must be {ip, port}');
  checkParsedIp(v.ip, 'server.ip', fail);
  if (typeof v.port !== 'number' || !Number.isInteger(v.port) || v.port < 1 || v.port > 65535) fail('server.port must be a port number (1-65535)');
  if (v.protocol !== undefined && !(DNS_TRANSPORTS as readonly unknown[]).includes(v.protocol)) fail(`server.protocol must be one of ${DNS_TRANSPORTS.join(', ')}`);
}

/** An IpAddress as parseIp returns it (its value and family agree with its text). */
function checkParsedIp(v: unknown, field: string, fail: Fail): void {
  if (!isRecord(v) || typeof v.text !== 'string') return fail(`${field} must be an IP address from parseIp`);
  const v4 = ipKeyOfText(v.text);
  if (typeof v4 === 'number') {
    // A canonical dotted quad, checked without parsing (DNS answers carry many).
    if (v.family !== 'ipv4' || typeof v.value !== 'bigint' || Number(v.value) !== v4 >>> 0) fail(`${field} (${v.text}) does not match its value or family`);
    return;
  }
  if (!isValidIp(v.text)) return fail(`${field} must be an IP address from parseIp`);
  const want = parseIp(v.text);
  if (v.value !== want.value || v.family !== want.family) fail(`${field} (${v.text}) does not match its value or family`);
}

/** Seconds on the engine's clock: a non-negative integer (no wall clock is ever read). */
function checkSeconds(v: unknown, field: string, fail: Fail): void {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) fail(`${field} must be a non-negative integer number of seconds`);
}

/**
 * An embedder's options, checked once: `minTtl: Infinity` would keep every answer live for good,
 * and a NaN capacity would disable the limits it sets.
 */
export function checkEngineOptions(o: { readonly mapCapacity?: number; readonly stack?: string; readonly dns?: Partial<{ minTtl: number; maxIpsPerHostname: number; maxSelectorCombinations: number }> }): void {
  const check = (v: number | undefined, name: string, min: number, max: number): void => {
    if (v !== undefined && !(Number.isSafeInteger(v) && v >= min && v <= max)) throw new RangeError(`EngineOptions.${name} must be an integer from ${min} to ${max}, not ${String(v)}`);
  };
  check(o.mapCapacity, 'mapCapacity', 1, 2 ** 31);
  check(o.dns?.minTtl, 'dns.minTtl', 0, 2 ** 31);
  check(o.dns?.maxIpsPerHostname, 'dns.maxIpsPerHostname', 0, 2 ** 31);
  check(o.dns?.maxSelectorCombinations, 'dns.maxSelectorCombinations', 0, 2 ** 31);
  // A stack mode neither single nor dual would give outside addresses labels of neither mode.
  if (o.stack !== undefined && !(STACK_MODES as readonly string[]).includes(o.stack)) throw new RangeError(`EngineOptions.stack must be ${STACK_MODES.join(' or ')}, not ${JSON.stringify(o.stack)}`);
}

/**
 * The DNS clock and every expiry stay below 2^52 seconds, so that adding a TTL or a step is exact:
 * past 2^53 a one-second step no longer moves a double, and an answer would never expire.
 */
export const MAX_DNS_CLOCK = 2 ** 52;

function checkClock(now: number, seconds: number, field: string, fail: Fail): void {
  if (now + seconds > MAX_DNS_CLOCK) fail(`${field}: the DNS clock (${now} s) plus ${seconds} s passes 2^52 seconds`);
}

/**
 * Checks a batch against `base` as the batch evolves it; throws `EngineError` naming the first bad
 * event (its index, plus `indexOffset`). Fields are checked as the Kubernetes API would (names,
 * labels), so no malformed value can reach the engine's state.
 */
export function validateBatch(base: ModelView, events: readonly unknown[], indexOffset = 0): void {
  if (!Array.isArray(events)) throw new EngineError(0, 'batch', 'events must be a list');
  const model = new Overlay(base);
  model.recordObjects = readsObjects(events);
  let index = 0;
  let type = 'unknown';
  const fail: Fail = (detail) => {
    throw new EngineError(index + indexOffset, type, detail);
  };
  for (; index < events.length; index++) {
    const e: unknown = events[index];
    // isRecord inline, once for both: checkEvent takes the record (or undefined), not the value to check again.
    const r = typeof e === 'object' && e !== null && !Array.isArray(e) ? (e as EventRecord) : undefined;
    const t = r === undefined ? undefined : r.type;
    type = typeof t === 'string' ? t : 'unknown';
    model.frozen = index === events.length - 1;
    try {
      checkEvent(r, model, fail);
    } catch (err) {
      // A hostile object (a throwing getter, a Proxy) is a malformed event, not an engine bug.
      if (err instanceof EngineError) throw err;
      fail(`malformed event: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
}

const OBJECT_READERS: ReadonlySet<unknown> = new Set(['deleteNamespace', 'deletePod', 'deletePolicy', 'dnsResponse']);

/**
 * Does some event of the batch read which pods or policies exist? A cold start (60,000 upserts in
 * cilium-ci) reads none, and its overlay would record every pod and policy only to drop them (8 MB
 * promoted). Anything odd counts as a reader; a hostile event answering differently later can
 * only make a pod or policy it created look absent, which refuses the batch.
 */
function readsObjects(events: readonly unknown[]): boolean {
  try {
    // Indexed, no callback: one JS call fewer per event of a cold start (mostly unoptimised there).
    for (let i = 0; i < events.length; i++) {
      const e: unknown = events[i];
      // isRecord inline: one call fewer per event of a cold start.
      if (typeof e !== 'object' || e === null || Array.isArray(e) || OBJECT_READERS.has((e as EventRecord).type)) return true;
    }
    return false;
  } catch {
    return true;
  }
}

/** Checks a whole event history from an empty model (a churn trace, before anything is applied). */
export function checkEvents(events: readonly EngineEvent[], identitySource: 'local' | 'external' = 'local'): void {
  validateBatch({ ...EMPTY_MODEL, identitySource }, events);
}
