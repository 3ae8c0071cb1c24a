import type { EngineEvent } from '../engine/events.js';
import { IpAddress, isValidIp, parseIp } from '../model/cidr.js';
import { type NodeEndpointAddresses, nodeEndpointsOf, type NodeHold, type Pod } from '../model/cluster.js';
import { KINDS_API_VERSIONS, KINDS_OTHER_API_VERSIONS } from './kinds.js';
import { FIRST_CLUSTER_IDENTITY, identityLabelProblem, MAX_CLUSTER_IDENTITY } from '../model/identity.js';
import { lastNamedPortWins, readContainerPorts, readIp, readLabels } from '../policy/readers.js';
import { readMetadata } from '../policy/common.js';
import { join, Reader } from '../policy/reader.js';

/**
 * Kubernetes objects exactly as the API server returns them (JSON), read into what the engine
 * takes. Only the fields distill needs are read; every other field is left alone, as a client
 * that tolerates newer API versions must.
 */

/** An object as the API server returns it: `apiVersion`, `kind`, `metadata`, and the rest. */
export type K8sObject = Readonly<Record<string, unknown>>;

/** The kinds distill reads. */
export const KNOWN_KINDS = Object.keys(KINDS_API_VERSIONS) as KnownKind[];
/** A kind distill reads. */
export type KnownKind = keyof typeof KINDS_API_VERSIONS;

/** A cluster identity (`CiliumIdentity` in CRD mode): its number and its labels (`source:key` → value). */
export interface Identity {
  readonly id: number;
  readonly labels: Readonly<Record<string, string>>;
}

/**
 * Identity events, for an engine with `identitySource: 'external'`. `labels` keys are
 * `source:key` as in `CiliumIdentity` `security-labels`.
 */
export type IdentityEvent = Extract<EngineEvent, { readonly type: 'upsertIdentity' | 'deleteIdentity' }>;

/**
 * A pod as the engine sees it, or why it is not an endpoint (yet). `deleteAt` (ms since the
 * epoch): the pod is being deleted gracefully and stops being an endpoint then.
 */
/**
 * `expired`: a remote pod past its `deletionTimestamp` that is still listed (not `Succeeded`/`Failed`): the agent holds
 * it fail-closed until it is deleted (finding 2843).
 */
export type PodEndpoint = { readonly pod: Pod; readonly local: boolean; readonly node?: string; readonly deleteAt?: number; readonly expired?: true } | { readonly pod: null; readonly reason: 'host-network' | 'no-ip' | 'terminated' | 'terminating' };

function rec(v: unknown): Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
}

/**
 * The kind of an API object if distill reads it (its `apiVersion` checked), else undefined.
 * `source` names the object in errors.
 */
export function objectKind(obj: unknown): KnownKind | undefined {
  const o = rec(obj);
  const kind = o.kind;
  if (typeof kind !== 'string' || !Object.hasOwn(KINDS_API_VERSIONS, kind)) return undefined;
  const k = kind as KnownKind;
  const served = KINDS_API_VERSIONS[k] === o.apiVersion || (typeof o.apiVersion === 'string' && (KINDS_OTHER_API_VERSIONS[k]?.includes(o.apiVersion) ?? false));
  return served ? k : undefined;
}

/** A `v1` Namespace: its name and labels. Throws ManifestError naming `source` and the field. */
export function namespaceOf(obj: unknown, source: string): { name: string; labels: Record<string, string> } {
  const r = new Reader(source);
  const md = readMetadata(r, rec(obj).metadata, false);
  return { name: md.name, labels: readLabels(r, rec(rec(obj).metadata).labels ?? {}, 'metadata.labels') };
}

/** Container ports of every container, renamed from the API's `containerPort` to distill's `port`. */
function containerPorts(r: Reader, spec: Record<string, unknown>): Pod['ports'] {
  const out: Pod['ports'][number][] = [];
  const containers = r.optArray(spec.containers, 'spec.containers') ?? [];
  containers.forEach((c, i) => {
    const path = `spec.containers[${i}].ports`;
    const ports = (r.optArray(rec(c).ports, path) ?? []).map((p) => {
      const po = rec(p);
      return { ...(po.name !== undefined ? { name: po.name } : {}), port: po.containerPort, ...(po.protocol !== undefined ? { protocol: po.protocol } : {}) };
    });
    out.push(...readContainerPorts(r, ports, path));
  });
  return lastNamedPortWins(out);
}

/**
 * An address as Kubernetes and Cilium read it: Go's net.ParseIP gives an IPv4-mapped IPv6 text
 * (`::ffff:10.0.0.1`) the IPv4 form (`To4() != nil`; k8s.io/utils/net `IPFamilyOf` counts it as
 * IPv4), so a pod or node written so sends from the IPv4 address (attack finding 101).
 */
function objectIp(text: string): IpAddress {
  const ip = parseIp(text);
  if (ip.family !== 'ipv6' || ip.value >> 32n !== 0xffffn) return ip;
  const v = ip.value & 0xffffffffn;
  return parseIp([24n, 16n, 8n, 0n].map((s) => String((v >> s) & 0xffn)).join('.'));
}

/**
 * The pod's addresses: every entry of `status.podIPs` (at most one per family, the primary first),
 * else `status.podIP`; empty while it has none. Throws ManifestError naming the field.
 */
function podAddresses(r: Reader, status: Record<string, unknown>): IpAddress[] {
  const listed = r.optArray(status.podIPs, 'status.podIPs') ?? [];
  const ips: IpAddress[] = [];
  listed.forEach((entry, i) => {
    const path = `status.podIPs[${i}].ip`;
    const v = rec(entry).ip;
    if (v === undefined || v === null || v === '') return;
    const ip = objectIp(readIp(r, v, path).text);
    if (ips.some((o) => o.family === ip.family)) r.fail(path, `a second ${ip.family} address (${ips.find((o) => o.family === ip.family)?.text} and ${ip.text}); a pod has at most one per family`);
    ips.push(ip);
  });
  if (ips.length > 0) return ips;
  const single = status.podIP;
  return single === undefined || single === null || single === '' ? [] : [objectIp(readIp(r, single, 'status.podIP').text)];
}

/**
 * When a gracefully deleted pod stops being an endpoint: its `deletionTimestamp` (the time the
 * API server will delete it, now + `deletionGracePeriodSeconds` when the delete was asked), in ms
 * since the epoch; undefined when no deletion was asked.
 */
function deletionDeadline(r: Reader, meta: Record<string, unknown>): number | undefined {
  const ts = meta.deletionTimestamp;
  if (ts === undefined || ts === null) return undefined;
  const text = r.nonEmptyString(ts, 'metadata.deletionTimestamp');
  const at = RFC3339.test(text) ? Date.parse(text) : NaN;
  if (Number.isNaN(at)) r.fail('metadata.deletionTimestamp', `"${text}" is not an RFC 3339 time`);
  return at;
}

/** The annotation the kubelet puts on a static pod's mirror pod (Kubernetes `MirrorPodAnnotationKey`). */
const MIRROR_POD_ANNOTATION = 'kubernetes.io/config.mirror';

/**
 * A pod's service account as Cilium reads it: `spec.serviceAccountName` (Cilium 1.19 pkg/k8s
 * `GetPodMetadata` passes `pod.Spec.ServiceAccountName` to `SanitizePodLabels`), else the deprecated
 * `spec.serviceAccount` (the API server's v1 conversion fills one from the other). With neither, a
 * mirror pod has none, "": the ServiceAccount admission plugin sets `default` on every pod but a
 * static pod's mirror pod, which "may not reference service accounts" (kubernetes
 * plugin/pkg/admission/serviceaccount/admission.go `Admit`), and `SanitizePodLabels` then sets no
 * service-account label (attack finding 2460); any other pod has `default`, as admitted.
 */
function podServiceAccount(r: Reader, spec: Record<string, unknown>, meta: Record<string, unknown>): string {
  for (const field of ['serviceAccountName', 'serviceAccount']) {
    const name = r.optString(spec[field], join('spec', field));
    if (name !== undefined && name !== '') return name;
  }
  return Object.hasOwn(rec(meta.annotations), MIRROR_POD_ANNOTATION) ? '' : 'default';
}

const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/i;

/**
 * A `v1` Pod as an endpoint of node `nodeName` (`spec.nodeName` equal: local) or a remote peer, at
 * time `now` (ms since the epoch). Host-network pods are never endpoints (they have the node's
 * address); pods without an address wait; `Succeeded`/`Failed` pods stop being endpoints, and so
 * do local pods being deleted once their `deletionTimestamp` has passed (before it, they are endpoints
 * with `deleteAt` set: their containers may still serve while they drain); a remote one is then
 * `expired` (finding 2843). Throws ManifestError naming `source` and the field.
 */
export function podEndpoint(obj: unknown, nodeName: string, source: string, now: number = Date.now()): PodEndpoint {
  const r = new Reader(source);
  const o = rec(obj);
  const md = readMetadata(r, o.metadata, true);
  const meta = rec(o.metadata);
  const spec = rec(o.spec);
  const status = rec(o.status);
  const labels = readLabels(r, meta.labels ?? {}, 'metadata.labels');
  const ports = containerPorts(r, spec);
  const deleteAt = deletionDeadline(r, meta);
  if (spec.hostNetwork === true) return { pod: null, reason: 'host-network' };
  if (status.phase === 'Succeeded' || status.phase === 'Failed') return { pod: null, reason: 'terminated' };
  const local = spec.nodeName === nodeName;
  const expired = deleteAt !== undefined && deleteAt <= now;
  if (expired && local) return { pod: null, reason: 'terminating' };
  const ips = podAddresses(r, status);
  if (ips.length === 0) return { pod: null, reason: 'no-ip' };
  const serviceAccount = podServiceAccount(r, spec, meta);
  const pod: Pod = { namespace: md.namespace ?? 'default', name: md.name, labels, ip: ips[0]!, ...(ips.length > 1 ? { ips } : {}), serviceAccount, ports };
  const node = typeof spec.nodeName === 'string' && spec.nodeName !== '' ? { node: spec.nodeName } : {};
  if (expired) return { pod, local, ...node, expired: true };
  return { pod, local, ...node, ...(deleteAt !== undefined ? { deleteAt } : {}) };
}

/**
 * What is known of a pod distill cannot read (attack finding 2462): where it is, when its name, namespace and some
 * address still parse, held fail-closed (`Pod.failClosed`, no labels, no ports) at the first valid address of each
 * family of `status.podIPs` and `status.podIP` (Cilium's `ValidIPs`, pkg/k8s/utils/utils.go, takes all of them as the
 * pod's). Undefined where `podEndpoint` would make it no endpoint (host network, a terminal phase, a passed deletion)
 * or nothing parses: its addresses then read as before.
 */
export function unreadablePodEndpoint(obj: unknown, nodeName: string, now: number): { readonly pod: Pod; readonly local: boolean; readonly expired?: true } | undefined {
  const o = rec(obj);
  const meta = rec(o.metadata);
  const spec = rec(o.spec);
  const status = rec(o.status);
  let md: { name: string; namespace?: string };
  try {
    md = readMetadata(new Reader('unreadable pod'), { name: meta.name, namespace: meta.namespace }, true);
  } catch {
    return undefined;
  }
  if (spec.hostNetwork === true || status.phase === 'Succeeded' || status.phase === 'Failed') return undefined;
  const ts = typeof meta.deletionTimestamp === 'string' && RFC3339.test(meta.deletionTimestamp) ? Date.parse(meta.deletionTimestamp) : NaN;
  if (ts <= now && spec.nodeName === nodeName) return undefined;
  const texts = [...(Array.isArray(status.podIPs) ? status.podIPs.map((e) => rec(e).ip) : []), status.podIP];
  const ips: IpAddress[] = [];
  for (const t of texts) {
    if (typeof t !== 'string' || !isValidIp(t)) continue;
    const ip = objectIp(t);
    if (!ips.some((x) => x.family === ip.family)) ips.push(ip);
  }
  if (ips.length === 0) return undefined;
  const pod: Pod = { namespace: md.namespace ?? 'default', name: md.name, labels: {}, ip: ips[0]!, ...(ips.length > 1 ? { ips } : {}), serviceAccount: '', ports: [], failClosed: true };
  return { pod, local: spec.nodeName === nodeName, ...(ts <= now ? { expired: true as const } : {}) };
}

/**
 * A node's addresses as the engine takes them (`local`: the agent's own node); a CiliumNode's also
 * its health endpoint's and Ingress's (`health`, `ingress`).
 */
export interface NodeAddresses extends NodeEndpointAddresses {
  readonly name: string;
  readonly ips: readonly IpAddress[];
  readonly local: boolean;
  /** `metadata.labels` (ClusterNetworkPolicy `nodes` peers select on them). */
  readonly labels: Readonly<Record<string, string>>;
  /** Held fail-closed by the agent (`EngineBatches`, findings 2432, 2541, 2730): sent as `upsertNode.failClosed`. */
  readonly failClosed?: NodeHold;
}

/** The `status.addresses` types that are IP addresses (Hostname, InternalDNS and ExternalDNS are names). */
const NODE_IP_TYPES: ReadonlySet<string> = new Set(['InternalIP', 'ExternalIP']);

/**
 * A `v1` Node: its InternalIP and ExternalIP addresses (`status.addresses`; the first valid one of
 * each type and family), each once; `local` when it is the agent's node `nodeName` (Cilium:
 * reserved host, else remote-node). Throws ManifestError naming `source` and the field.
 */
export function nodeOf(obj: unknown, nodeName: string, source: string): NodeAddresses {
  const r = new Reader(source);
  const md = readMetadata(r, rec(obj).metadata, false);
  const ips: IpAddress[] = [];
  const groups = new Set<string>();
  for (const a of r.optArray(rec(rec(obj).status).addresses, 'status.addresses') ?? []) {
    const type = rec(a).type;
    const address = rec(a).address;
    if (typeof type !== 'string' || !NODE_IP_TYPES.has(type)) continue;
    // As Cilium's ParseNode (pkg/k8s/node.go): an empty or invalid address is ignored, not the whole
    // node (whose other addresses would be world), and only the first IP of a type and family counts.
    if (typeof address !== 'string' || !isValidIp(address)) continue;
    const ip = objectIp(address);
    const group = `${type}/${ip.family}`;
    if (groups.has(group)) continue;
    groups.add(group);
    if (!ips.some((o) => o.text === ip.text)) ips.push(ip);
  }
  return { name: md.name, ips, local: md.name === nodeName, labels: readLabels(r, rec(rec(obj).metadata).labels ?? {}, 'metadata.labels') };
}

/** The `spec.addresses` types of a CiliumNode (pkg/node/addressing: InternalIP, ExternalIP, CiliumInternalIP). */
const CILIUM_NODE_IP_TYPES: ReadonlySet<string> = new Set(['InternalIP', 'ExternalIP', 'CiliumInternalIP']);

/**
 * A `cilium.io/v2` CiliumNode: every valid address of `spec.addresses` (`{type, ip}`), each once.
 * Cilium's node manager (pkg/node/manager NodeUpdated) puts each of a node's addresses in the
 * ipcache as remote-node (host for its own node), the CiliumInternalIP (cilium_host, the source of
 * node-to-pod traffic) included; that address is in no Node object. `spec.health.ipv4/ipv6` and
 * `spec.ingress.ipv4/ipv6` are the node's health endpoint and Ingress addresses, which Cilium puts
 * in the ipcache as reserved health and ingress (pkg/node/manager/policy.go updatePolicy.Upsert; read
 * by pkg/node/types ParseCiliumNode, an unparsable one skipped as here).
 */
export function ciliumNodeOf(obj: unknown, nodeName: string, source: string): NodeAddresses {
  const r = new Reader(source);
  const md = readMetadata(r, rec(obj).metadata, false);
  const ips: IpAddress[] = [];
  for (const a of r.optArray(rec(rec(obj).spec).addresses, 'spec.addresses') ?? []) {
    const type = rec(a).type;
    const address = rec(a).ip;
    if (typeof type !== 'string' || !CILIUM_NODE_IP_TYPES.has(type) || typeof address !== 'string' || !isValidIp(address)) continue;
    const ip = objectIp(address);
    if (!ips.some((o) => o.text === ip.text)) ips.push(ip);
  }
  const spec = rec(rec(obj).spec);
  const labels = readLabels(r, rec(rec(obj).metadata).labels ?? {}, 'metadata.labels');
  return { name: md.name, ips, local: md.name === nodeName, labels, ...nodeEndpointsOf({ health: familyAddresses(spec.health), ingress: familyAddresses(spec.ingress) }) };
}

/** The valid addresses of a CiliumNode `{ipv4, ipv6}` addressing spec (spec.health, spec.ingress). */
function familyAddresses(v: unknown): IpAddress[] {
  const o = rec(v);
  return [o.ipv4, o.ipv6].filter((a): a is string => typeof a === 'string' && isValidIp(a)).map(objectIp);
}

/**
 * A `cilium.io/v2` CiliumIdentity (CRD mode): the name is the number, `security-labels` the
 * labels. Throws ManifestError naming `source` and the field.
 */
export function identityOf(obj: unknown, source: string): Identity & { readonly nonCanonical?: true } {
  const r = new Reader(source);
  const md = readMetadata(r, rec(obj).metadata, false);
  const id = identityNumber(md.name);
  // The engine takes cluster identities only (reserved ids and node-local ones never come from the cluster).
  if (!(id >= FIRST_CLUSTER_IDENTITY && id <= MAX_CLUSTER_IDENTITY)) r.fail('metadata.name', `"${md.name}" is not an identity number of a cluster identity (${FIRST_CLUSTER_IDENTITY}..${MAX_CLUSTER_IDENTITY})`);
  const labels = r.stringMap(rec(obj)['security-labels'] ?? {}, 'security-labels');
  if (Object.keys(labels).length === 0) r.fail('security-labels', 'must not be empty');
  for (const [k, v] of Object.entries(labels)) {
    const problem = identityLabelProblem(k, v);
    if (problem) r.fail(join('security-labels', k), problem);
  }
  return String(id) === md.name ? { id, labels } : { id, labels, nonCanonical: true };
}

/**
 * The number a CiliumIdentity's name stands for, as Cilium's CRD backend reads it
 * (pkg/k8s/identitybackend/identity.go `ListAndWatch`: `strconv.ParseUint(identity.Name, 10, 64)`,
 * the object skipped when that fails): ASCII digits only, leading zeros allowed ("0300" is 300), at
 * most 2^64-1. NaN where ParseUint fails. The caller checks the cluster range.
 */
export function identityNumber(name: string): number {
  if (!/^[0-9]{1,20}$/.test(name)) return NaN;
  const n = BigInt(name);
  return n <= 0xffffffffffffffffn ? Number(n) : NaN;
}

/** A CiliumEndpoint as the engine takes it (`upsertEndpoint`). */
export interface CiliumEndpointFacts {
  readonly namespace: string;
  readonly name: string;
  readonly identity: number;
  readonly ips: readonly IpAddress[];
}

/** At most this many `status.networking.addressing` pairs are read (Cilium's agent writes one per endpoint); more is unreadable. */
const MAX_ENDPOINT_ADDRESS_PAIRS = 8;

/**
 * A `cilium.io/v2` CiliumEndpoint as Cilium's agent puts it into its ipcache
 * (pkg/k8s/watchers/cilium_endpoint.go `endpointUpdated`): `status.identity.id` (an int64 on the
 * wire, a uint32 NumericIdentity; absent, Cilium uses reserved:unmanaged) for each `ipv4` and `ipv6`
 * of `status.networking.addressing`, and nothing while `status.networking.node` (the node IP) is
 * absent or unparsable. Undefined when Cilium upserts nothing, or would upsert a number distill
 * never uses (no identity: unmanaged, 3): the pod then keeps the fail-closed 255 (finding 2220).
 * Throws ManifestError naming `source` when it cannot be read: an identity that is no uint32
 * (Cilium would truncate it to another number), an address that does not parse, more than
 * `MAX_ENDPOINT_ADDRESS_PAIRS` pairs.
 */
export function ciliumEndpointOf(obj: unknown, source: string): CiliumEndpointFacts | undefined {
  const r = new Reader(source);
  const md = readMetadata(r, rec(obj).metadata, true);
  const status = rec(rec(obj).status);
  const networking = rec(status.networking);
  const node = networking.node;
  if (typeof node !== 'string' || !isValidIp(node)) return undefined;
  const identity = status.identity === undefined || status.identity === null ? undefined : rec(status.identity).id;
  if (identity === undefined) return undefined;
  const id = typeof identity === 'number' && Number.isInteger(identity) && identity >= 0 && identity <= 0xffffffff ? identity : r.fail('status.identity.id', `${JSON.stringify(identity)} is not a uint32 identity number`);
  const pairs = r.optArray(networking.addressing, 'status.networking.addressing') ?? [];
  if (pairs.length > MAX_ENDPOINT_ADDRESS_PAIRS) r.fail('status.networking.addressing', `${pairs.length} address pairs, more than the ${MAX_ENDPOINT_ADDRESS_PAIRS} distill reads`);
  const ips: IpAddress[] = [];
  pairs.forEach((pair, i) => {
    for (const family of ['ipv4', 'ipv6'] as const) {
      const v = rec(pair)[family];
      if (v === undefined || v === null || v === '') continue;
      const ip = objectIp(readIp(r, v, `status.networking.addressing[${i}].${family}`).text);
      if (!ips.some((o) => o.text === ip.text)) ips.push(ip);
    }
  });
  return { namespace: md.namespace ?? 'default', name: md.name, identity: id, ips };
}

/**
 * A `discovery.k8s.io/v1` EndpointSlice: the addresses of its endpoints when it belongs to the
 * default/kubernetes Service (label `kubernetes.io/service-name: kubernetes` in namespace
 * `default`), else undefined. Cilium labels every backend of that Service
 * `reserved:kube-apiserver` (pkg/ipcache/cell/apiserver_watcher.go
 * `registerAPIServerBackendWatcher`, over `BackendByServiceName(default/kubernetes)`); its backends
 * are every parsable address of every endpoint of a slice of address type IPv4 or IPv6, whatever
 * the endpoint's conditions (pkg/k8s/endpoints.go `ParseEndpointSliceV1`: not-ready and
 * terminating endpoints are kept, with their conditions). Throws ManifestError naming `source`.
 */
export function apiServerSliceOf(obj: unknown, source: string): IpAddress[] | undefined {
  const r = new Reader(source);
  const md = readMetadata(r, rec(obj).metadata, true);
  const labels = rec(rec(rec(obj).metadata).labels);
  if ((md.namespace ?? 'default') !== 'default' || labels['kubernetes.io/service-name'] !== 'kubernetes') return undefined;
  const type = rec(obj).addressType;
  if (type !== 'IPv4' && type !== 'IPv6') return [];
  const out: IpAddress[] = [];
  for (const ep of r.optArray(rec(obj).endpoints, 'endpoints') ?? []) {
    for (const a of r.optArray(rec(ep).addresses, 'endpoints[].addresses') ?? []) {
      if (typeof a !== 'string' || !isValidIp(a)) continue;
      const ip = objectIp(a);
      if (!out.some((o) => o.text === ip.text)) out.push(ip);
    }
  }
  return out;
}
