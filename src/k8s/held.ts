import type { NodeHold, Pod } from '../model/cluster.js';
import { FIRST_CLUSTER_IDENTITY, MAX_CLUSTER_IDENTITY } from '../model/identity.js';
import { POD_NAMESPACE_KEY } from '../model/labels.js';
import type { IpAddress } from '../model/cidr.js';
import type { CidrGroup } from '../model/cidr-group.js';
import { parseCidrGroup } from '../policy/cidr-group.js';
import type { Policy } from '../model/rules.js';
import { parseManifest, type ParseOptions } from '../policy/manifest.js';
import { denyAllSideOf, denySideOf, failClosedStandIn } from '../policy/stand-in.js';
import { apiServerSliceOf, ciliumEndpointOf, type CiliumEndpointFacts, ciliumNodeOf, identityNumber, identityOf, KnownKind, namespaceOf, NodeAddresses, nodeOf, podEndpoint, unreadablePodEndpoint } from './objects.js';

/** A log call: a message and its fields. */
export type LogFn = (msg: string, fields: Readonly<Record<string, unknown>>) => void;

/** What one object means to the engine, with a signature: equal signatures, no event. */
export type Held =
  | { readonly kind: 'Namespace'; readonly name: string; readonly labels: Readonly<Record<string, string>>; readonly sig: string }
  /** `expired`: a remote pod past its deletionTimestamp, held fail-closed (`expiredPod`). */
  | { readonly kind: 'Pod'; readonly pod: Pod; readonly local: boolean; readonly node?: string; readonly deleteAt: number | undefined; readonly expired?: true; readonly sig: string }
  /**
   * `groupless`: the policy mentions `cidrGroupRef`/`cidrGroupSelector`, and this is how it reads
   * without CiliumCIDRGroup objects (the fail-closed stand-in of src/policy/stand-in.ts), enforced
   * while the groups are not watched or one cannot be read (`EngineBatches`, `effectiveHeld`).
   * `whileUnreadable`: the policy has no group peer but a deny whose `any:` pod-namespace selector also
   * selects group prefixes (src/policy/cilium-scope.ts `groupReading`, attack finding 2172); its
   * `groupless` reading (that deny denying every peer) is enforced only while the groups are watched
   * and one cannot be read (unwatched, distill knows no group labels: finding 2212).
   */
  | { readonly kind: 'Policy'; readonly policy: Policy; readonly sig: string; readonly groupless?: Policy; readonly whileUnreadable?: true; readonly denySide?: true; readonly denyAll?: true }
  /**
   * A CiliumCIDRGroup (`group`), or, `group` undefined, one that cannot be read: its prefixes and
   * labels are unknown, so no group peer can be read safely while it is (`EngineBatches`).
   */
  | { readonly kind: 'CidrGroup'; readonly name: string; readonly group: CidrGroup | undefined; readonly sig: string }
  /** `unreadable`: a CiliumIdentity whose `security-labels` distill cannot read, held as a fail-closed stand-in (`keptOnUnreadable`). */
  | { readonly kind: 'Identity'; readonly id: number; readonly labels: Readonly<Record<string, string>>; readonly unreadable?: true; readonly sig: string }
  | { readonly kind: 'Node'; readonly node: NodeAddresses; readonly sig: string }
  /** A CiliumEndpoint: the identity its agent wrote for its addresses (`upsertEndpoint`). */
  | { readonly kind: 'Endpoint'; readonly endpoint: CiliumEndpointFacts; readonly sig: string }
  /**
   * An EndpointSlice of default/kubernetes: its addresses are the API server's (`apiServerEvent`). `held`: held
   * fail-closed (`failClosedSlice`), the addresses its change adds or drops.
   */
  | { readonly kind: 'ApiServer'; readonly addresses: readonly IpAddress[]; readonly held?: readonly IpAddress[]; readonly sig: string };

/** What reading an object needs: the node, the clock, how policies read, and where to log. */
export interface ReadContext {
  readonly nodeName: string;
  readonly now: () => number;
  readonly parseOptions: ParseOptions;
  readonly debug: LogFn;
  readonly warn: LogFn;
  /** Whether CIDR group peers are read now (`EngineBatches`); while not, reading a policy with them warns that its stand-in is enforced. */
  readonly groupsRead?: () => boolean;
}

export function rec(v: unknown): Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
}

/** A name as text, whatever the wire holds (`String` throws on an object whose `toString` is not a function). */
const keyPart = (v: unknown): string => (typeof v === 'string' ? v : (JSON.stringify(v) ?? ''));

export function objectKey(kind: KnownKind, obj: Record<string, unknown>): string {
  const md = rec(obj.metadata);
  const clusterScoped = kind === 'Namespace' || kind === 'Node' || kind === 'CiliumNode' || kind === 'CiliumClusterwideNetworkPolicy' || kind === 'ClusterNetworkPolicy' || kind === 'CiliumIdentity' || kind === 'CiliumCIDRGroup';
  const ns = clusterScoped ? '' : keyPart(md.namespace ?? 'default');
  return `${kind}/${ns}/${keyPart(md.name)}`;
}

/** The namespace an engine-held object lives in (deleting the namespace deletes it in the engine). */
export function namespaceOfHeld(h: Held): string | undefined {
  if (h.kind === 'Pod') return h.pod.namespace;
  if (h.kind === 'Policy') return h.policy.ref.namespace;
  return undefined;
}

/** Sorted-key JSON: two objects with the same meaning get the same text. */
function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (typeof v === 'bigint') return v.toString();
  if (typeof v !== 'object' || v === null) return JSON.stringify(v) ?? 'null';
  const o = v as Record<string, unknown>;
  return `{${Object.keys(o)
    .sort()
    .map((k) => `${JSON.stringify(k)}:${canonical(o[k])}`)
    .join(',')}}`;
}

/**
 * What an object that cannot be read (an update distill refuses) stands for: a policy or namespace
 * keeps its last readable version, as Cilium's policy watcher returns on a validation or parse
 * error before touching the policy repository (pkg/policy/k8s cilium_network_policy.go onUpsert:
 * `cnp.Validate()`; network_policy.go: ParseNetworkPolicy). Dropping it instead would delete an
 * isolating or deny policy and open what it closed. A pod is held fail-closed at its last readable addresses
 * (`failClosedPod`); one never readable at the addresses that still parse (`unreadablePod`, finding 2462), else nothing.
 *
 * An identity (`key` CiliumIdentity//<number>) becomes a fail-closed stand-in (`unreadableIdentity`):
 * Cilium reads every `security-labels` map (pkg/k8s/identitybackend `crdBackend.ListAndWatch` upserts
 * `KeyFunc(SecurityLabels)`, which never fails), so the number stands for labels distill does not
 * know on every Cilium node. Keeping the old labels kept their allows (finding 1935); deleting the id
 * let its pods' addresses fall to identity 0, which every wildcard allow admits past the denies both
 * readings apply (1936). The stand-in keeps the number for its pods and is denied by every local map.
 */
export function keptOnUnreadable(key: string, had: Held | undefined, unreadablePod?: () => Held | undefined): Held | undefined {
  if (key.startsWith(IDENTITY_KEY_PREFIX)) return unreadableIdentity(key.slice(IDENTITY_KEY_PREFIX.length), had);
  if (key.startsWith('CiliumCIDRGroup/')) return unreadableGroup(key.slice(key.lastIndexOf('/') + 1));
  // A pod update distill cannot read holds the pod fail-closed at its last readable addresses (27q, the class of
  // finding 2352): dropped, its addresses read as world, which a wildcard allow admits past a deny on its labels.
  if (had?.kind === 'Pod') return failClosedPod(had);
  // Never readable: held fail-closed where its addresses still parse (finding 2462), else nothing.
  if (key.startsWith('Pod/')) return unreadablePod?.();
  // A CiliumEndpoint update distill cannot read drops the endpoint: its old number may be stale, and
  // without one the pod's addresses keep the fail-closed 255 (finding 2220).
  return had === undefined || had.kind === 'Identity' || had.kind === 'Endpoint' ? undefined : had;
}

/**
 * A pod held fail-closed (`Pod.failClosed`), with its own signature: a pod the engine refuses (`EngineBatches`) or
 * whose update distill cannot read. Its addresses are the unallocated number, which every local map denies both
 * ways, and a local one is an endpoint whose map is empty (default deny both ways).
 */
export function failClosedPod(h: Extract<Held, { kind: 'Pod' }>): Held {
  if (h.pod.failClosed === true) return h;
  return { ...h, pod: { ...h.pod, failClosed: true }, sig: `failClosed:${h.sig}` };
}

/**
 * A CiliumCIDRGroup held fail-closed (`CidrGroup.failClosed`, finding 2431), with its own signature: one whose change
 * (or delete, finding 2600: `h` is then the version the engine holds) the engine refuses alone. Its prefixes (and
 * every address inside) read the unallocated number, which every local map denies both ways, instead of its last
 * labels, which the policies around it may no longer deny. It carries the labels the engine holds for it (`had`; none
 * if it holds none): no address reads them, and the CIDR identities inside keep their map entries, so the form fits
 * where the change did not (finding 2601).
 */
export function failClosedGroup(h: Extract<Held, { kind: 'CidrGroup' }>, had: Held | undefined): Held {
  if (h.group === undefined || h.group.failClosed === true) return h;
  const labels: ReadonlyMap<string, string> = had?.kind === 'CidrGroup' && had.group !== undefined ? had.group.labels : new Map();
  const labelsSig = JSON.stringify([...labels].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  return { ...h, group: { ...h.group, labels, failClosed: true }, sig: `failClosed:${labelsSig}:${h.sig}` };
}

/**
 * A node held fail-closed (`upsertNode.failClosed`), with its own signature: one whose change the engine refuses alone.
 * A remote node's own addresses read the unallocated number instead of an identity of its last labels (finding 2432);
 * the local node's labels read as unknown instead of its last ones (finding 2541), on every port when that form was
 * refused too (`allPorts`, finding 2730), its own addresses at the unallocated number when that one was refused too
 * (`addresses`, finding 2900).
 */
export function failClosedNode(h: Extract<Held, { kind: 'Node' }>, form: NodeHold = true): Held {
  const hold = h.node.local ? form : true;
  if (h.node.failClosed === hold) return h;
  return { ...h, node: { ...h.node, failClosed: hold }, sig: `failClosed${hold === true ? '' : `:${hold}`}:${h.sig}` };
}

/**
 * An API server EndpointSlice held fail-closed (finding 3265), with its own signature: one whose change (add, update
 * or delete: `h` is then undefined) the engine refuses alone, or one of a split step. It lists its new addresses, and
 * holds (`setApiServer.held`) those the version the engine holds does not read as the API server's and those it leaves:
 * they read the unallocated number, which every local map denies, below their reading in either version; on the agent's
 * own node `host`, labelled as the new addresses label it. Left at the old version, an address joining the API server
 * read world, which a world allow admits past a kube-apiserver deny.
 */
export function failClosedSlice(h: Extract<Held, { kind: 'ApiServer' }> | undefined, had: Held | undefined): Held {
  // Held already (`had.held`: a split step's form read again once committed, a change while held): those stay held.
  const [before, heldBefore] = had?.kind === 'ApiServer' ? [had.addresses, had.held ?? []] : [[], []];
  const addresses = h?.addresses ?? [];
  const inAll = (ip: IpAddress, list: readonly IpAddress[]): boolean => list.some((o) => o.text === ip.text);
  const kept = addresses.filter((ip) => inAll(ip, before) && !inAll(ip, heldBefore));
  const held = [...addresses, ...before, ...heldBefore].filter((ip, i, all) => !inAll(ip, kept) && all.findIndex((o) => o.text === ip.text) === i);
  const sig = `failClosed:${canonical({ addresses: addresses.map((a) => a.text).sort(), held: held.map((a) => a.text).sort() })}`;
  return { kind: 'ApiServer', addresses, held, sig };
}

/**
 * A policy held at its deny side (`denySideOf`, finding 2433), with its own signature: one the engine refuses alone
 * (`EngineBatches`), which Cilium accepts and enforces on every endpoint whose policy it can compute. Keeping the old
 * version instead kept its allows, which the new version and every later input deny. `kept`: the version in force,
 * whose denies the deny side keeps too (finding 2523, `EngineBatches.denySideBesideStale`).
 */
export function denySidePolicy(h: Extract<Held, { kind: 'Policy' }>, kept?: Extract<Held, { kind: 'Policy' }>): Held {
  if (h.denySide === true) return h;
  return sidePolicy(h, kept, 'denySide', denySideOf);
}

/**
 * A policy held at its deny-all side (`denyAllSideOf`, finding 2542), with its own signature: one whose deny side the
 * engine refuses too. Waiting at its last version instead kept the old allows and none of the new denies.
 */
export function denyAllPolicy(h: Extract<Held, { kind: 'Policy' }>, kept?: Extract<Held, { kind: 'Policy' }>): Held {
  if (h.denyAll === true) return h;
  return { ...sidePolicy(h, kept, 'denyAll', denyAllSideOf), denyAll: true };
}

function sidePolicy(h: Extract<Held, { kind: 'Policy' }>, kept: Extract<Held, { kind: 'Policy' }> | undefined, name: string, side: (p: Policy, kept?: Policy) => Policy): Extract<Held, { kind: 'Policy' }> {
  const policy = side(h.policy, kept?.policy);
  const groupless = h.groupless === undefined ? undefined : h.groupless === h.policy ? policy : side(h.groupless, kept?.policy);
  const sig = kept ? `${name}:${h.sig}:kept:${kept.sig}` : `${name}:${h.sig}`;
  return { kind: 'Policy', policy, sig, denySide: true, ...(groupless ? { groupless } : {}), ...(h.whileUnreadable === true ? { whileUnreadable: true as const } : {}) };
}

const IDENTITY_KEY_PREFIX = 'CiliumIdentity//';

/**
 * The stand-in of CiliumIdentity `name` whose value distill cannot read: its last readable labels (its
 * pods keep the number), none when it never was readable. Undefined when the name is no cluster
 * identity number (Cilium skips such an object too: the CRD backend keys identities by number).
 */
function unreadableIdentity(name: string, had: Held | undefined): Held | undefined {
  const id = identityNumber(name);
  if (!(id >= FIRST_CLUSTER_IDENTITY && id <= MAX_CLUSTER_IDENTITY)) return undefined;
  const labels = had?.kind === 'Identity' ? had.labels : {};
  return { kind: 'Identity', id, labels, unreadable: true, sig: canonical({ id, labels, unreadable: true }) };
}

/**
 * A CiliumCIDRGroup that cannot be read (its first version, or an update). Neither keeping its last
 * version nor dropping it is safe: the new version may list fewer prefixes (an allow kept on the old
 * ones is wider than Cilium's) or more, or labels that another group's selector or name key
 * matches (a deny without them is narrower than Cilium's; findings 2040, 2041). So it is held as
 * unknown, and while some group is, every policy's group peers read as the stand-in reads them
 * (an allow rule dropped, a deny rule denying every peer): never wider than Cilium's allow, never
 * narrower than its deny, whatever the group holds.
 */
function unreadableGroup(name: string): Held {
  return { kind: 'CidrGroup', name, group: undefined, sig: `unreadable:${name}` };
}

/** What an object of `kind` means to the engine; undefined: nothing (not an endpoint, no address yet). Throws when it cannot be read. */
export function meaningOf(kind: KnownKind, obj: Record<string, unknown>, source: string, ctx: ReadContext): Held | undefined {
  switch (kind) {
    case 'Namespace': {
      const ns = namespaceOf(obj, source);
      return { kind, ...ns, sig: canonical(ns) };
    }
    case 'Pod':
      return podMeaning(obj, source, ctx);
    case 'Node':
    case 'CiliumNode':
      return nodeMeaning(kind, obj, source, ctx);
    case 'EndpointSlice': {
      const addresses = apiServerSliceOf(obj, source);
      return addresses && { kind: 'ApiServer', addresses, sig: canonical(addresses.map((a) => a.text)) };
    }
    case 'CiliumIdentity': {
      const { nonCanonical, ...id } = identityOf(obj, source);
      // A name ParseUint reads but Cilium's allocator never writes ("0300" for 300, attack finding 2003):
      // Cilium puts the pods of these labels on that number; distill does too, as a stand-in denied by
      // every local map, since another object may claim the same number (`300`), which Cilium's cache
      // resolves by event order (allocator cache OnUpsert/OnDelete keyed by number).
      if (nonCanonical === true) return { kind: 'Identity', ...id, unreadable: true, sig: canonical({ ...id, unreadable: true }) };
      return { kind: 'Identity', ...id, sig: canonical(id) };
    }
    case 'CiliumCIDRGroup':
      return groupMeaning(obj, source);
    case 'CiliumEndpoint': {
      const endpoint = ciliumEndpointOf(obj, source);
      return endpoint && { kind: 'Endpoint', endpoint, sig: canonical({ ...endpoint, ips: endpoint.ips.map((a) => a.text) }) };
    }
    default:
      return policyMeaning(obj, source, ctx);
  }
}

/** A pod distill cannot read, held fail-closed at the addresses that still parse (`unreadablePodEndpoint`), if any. */
export function unreadablePodMeaning(obj: Record<string, unknown>, ctx: ReadContext): Held | undefined {
  const ep = unreadablePodEndpoint(obj, ctx.nodeName, ctx.now());
  if (ep === undefined) return undefined;
  const sig = `failClosed:unreadable:${canonical({ ...ep.pod, ip: ep.pod.ip.text, ...(ep.pod.ips ? { ips: ep.pod.ips.map((a) => a.text) } : {}), local: ep.local })}`;
  return { kind: 'Pod', pod: ep.pod, local: ep.local, deleteAt: undefined, ...(ep.expired === true ? { expired: true as const } : {}), sig };
}

function podMeaning(obj: Record<string, unknown>, source: string, ctx: ReadContext): Held | undefined {
  const ep = podEndpoint(obj, ctx.nodeName, source, ctx.now());
  if (ep.pod === null) {
    ctx.debug('pod is not an endpoint', { source, reason: ep.reason });
    return undefined;
  }
  // The deadline is not part of the signature: a pod marked for deletion is the same endpoint until it passes.
  const sig = canonical({ ...ep.pod, ip: ep.pod.ip.text, ...(ep.pod.ips ? { ips: ep.pod.ips.map((a) => a.text) } : {}), local: ep.local });
  const held: Extract<Held, { kind: 'Pod' }> = { kind: 'Pod', pod: ep.pod, local: ep.local, ...(ep.node !== undefined ? { node: ep.node } : {}), deleteAt: ep.deleteAt, sig };
  return ep.expired === true ? expiredPod(held) : held;
}

/**
 * A remote pod past its `deletionTimestamp` and not deleted yet: held fail-closed until its DELETED (finding 2843).
 * Its node's kubelet kills it then, but one cut off from the API server never learnt of the deletion (the node
 * lifecycle controller's evictions of an unreachable node's pods) and the pod may still run; Cilium keeps its
 * identity (the pod watcher never reads `deletionTimestamp`, and the remote agent deletes its CiliumEndpoint only
 * when the endpoint goes). Removed, its addresses read as world, which a world or CIDR allow admits past the deny of
 * its labels; held at the unallocated number, every local map denies it, and neither its allows nor world's apply.
 * Only at addresses no other pod claims (`HeldForms.expiredAtFree`): its upsert would take back one a new pod holds.
 */
export function expiredPod(h: Extract<Held, { kind: 'Pod' }>): Held {
  return { ...(failClosedPod(h) as Extract<Held, { kind: 'Pod' }>), deleteAt: undefined, expired: true };
}

/**
 * An expired pod (`expiredPod`) held at `ips` only, some of its addresses: the others are claimed by other pods
 * (`HeldForms.expiredAtFree`, finding 2920). Its own signature, so a claim made or given up re-sends it.
 */
export function expiredPodAt(h: Extract<Held, { kind: 'Pod' }>, ips: readonly IpAddress[]): Held {
  const { ips: _all, ...one } = h.pod;
  const pod: Pod = ips.length > 1 ? { ...one, ip: ips[0]!, ips } : { ...one, ip: ips[0]! };
  return { ...h, pod, sig: `${h.sig}:at:${ips.map((ip) => ip.text).join(',')}` };
}

function nodeMeaning(kind: 'Node' | 'CiliumNode', obj: Record<string, unknown>, source: string, ctx: ReadContext): Held | undefined {
  const node = kind === 'Node' ? nodeOf(obj, ctx.nodeName, source) : ciliumNodeOf(obj, ctx.nodeName, source);
  if (node.ips.length === 0) {
    ctx.debug('node has no address yet', { source });
    return undefined;
  }
  const texts = (l: readonly IpAddress[] | undefined): string[] | undefined => l?.map((a) => a.text);
  return { kind: 'Node', node, sig: canonical({ ...node, ips: texts(node.ips), health: texts(node.health), ingress: texts(node.ingress) }) };
}

/** What an object means: its spec and its name and labels; not its status or bookkeeping metadata. */
function meaningfulPart(obj: Record<string, unknown>): Record<string, unknown> {
  const md = rec(obj.metadata);
  const manifest: Record<string, unknown> = { ...obj, metadata: { name: md.name, ...(md.namespace !== undefined ? { namespace: md.namespace } : {}), ...(md.labels !== undefined ? { labels: md.labels } : {}) } };
  delete manifest.status;
  return manifest;
}

/**
 * A CiliumCIDRGroup as Cilium's agent reads it (src/policy/cidr-group.ts, after pkg/policy/k8s
 * cilium_cidr_group.go `applyCIDRGroup`). Throws when it cannot be read (`keptOnUnreadable`).
 */
function groupMeaning(obj: Record<string, unknown>, source: string): Held {
  const manifest = meaningfulPart(obj);
  const group = parseCidrGroup(manifest, source);
  // The apiVersion is no part of the meaning: the same group read at v2 or v2alpha1 is one group.
  return { kind: 'CidrGroup', name: group.name, group, sig: canonical({ ...manifest, apiVersion: undefined }) };
}

/** A policy's manifest mentions a CIDR group peer (the key, as a JSON object key, in its canonical text). */
const mentionsGroups = (sig: string): boolean => sig.includes('"cidrGroupRef":') || sig.includes('"cidrGroupSelector":');

function policyMeaning(obj: Record<string, unknown>, source: string, ctx: ReadContext): Held {
  const manifest = meaningfulPart(obj);
  const sig = canonical(manifest);
  const policy = policyOf(manifest, source, ctx, ctx.parseOptions);
  if (ctx.parseOptions.cidrGroups !== true) return { kind: 'Policy', policy, sig };
  if (!mentionsGroups(sig)) return sig.includes(POD_NAMESPACE_KEY) ? podNamespaceMeaning(manifest, source, ctx, policy, sig) : { kind: 'Policy', policy, sig };
  // Read once more as if groups were not watched: the stand-in enforced while some group cannot be
  // read. When no stand-in exists (every spec a host policy) the policy itself stands (finding 2044).
  const groupless = orPolicy(policy, () => {
    const quiet = ctx.groupsRead?.() ?? false;
    return policyOf(manifest, source, quiet ? { ...ctx, warn: () => {} } : ctx, { ...ctx.parseOptions, cidrGroups: false });
  });
  return { kind: 'Policy', policy, sig, groupless };
}

/**
 * A policy without group peers that names the pod-namespace key: a deny whose `any:` pod-namespace selector also
 * selects group prefixes (src/policy/cilium-scope.ts `groupReading`, attack finding 2172) is read once more without
 * the groups' labels, the reading enforced while a group cannot be read (`whileUnreadable`, finding 2212).
 */
function podNamespaceMeaning(manifest: Record<string, unknown>, source: string, ctx: ReadContext, policy: Policy, sig: string): Held {
  const options: ParseOptions = { ...ctx.parseOptions, cidrGroups: false, groupLabelsUnknown: true };
  let unknown: Policy;
  try {
    unknown = parseManifest(manifest, source, options);
  } catch {
    const groupless = orPolicy(policy, () => policyOf(manifest, source, { ...ctx, warn: () => {} }, options));
    return { kind: 'Policy', policy, sig, groupless, whileUnreadable: true };
  }
  // An allow's group peer (mode `all`: every value of the key Cilium may hold must match) is dropped while
  // a group cannot be read: its labels may put another value on the same prefixes (review 27v, finding 2324).
  const allowsGroups = policy.rules.some((r) => r.peers.some((q) => q.kind === 'cidrGroup'));
  return allowsGroups ? { kind: 'Policy', policy, sig, groupless: unknown, whileUnreadable: true } : { kind: 'Policy', policy, sig };
}

/** A second reading of a policy, or the policy itself where that reading fails (it has no stand-in). */
function orPolicy(policy: Policy, read: () => Policy): Policy {
  try {
    return read();
  } catch {
    return policy;
  }
}

/** The policy, or its fail-closed stand-in when it uses what distill does not read (src/policy/stand-in.ts). */
function policyOf(manifest: Record<string, unknown>, source: string, ctx: ReadContext, options: ParseOptions): Policy {
  try {
    return parseManifest(manifest, source, options);
  } catch (e) {
    const standIn = failClosedStandIn(manifest, source, e, options);
    if (standIn === undefined) throw e;
    ctx.warn('policy enforced fail-closed: it uses what distill does not read', { source, error: (e as Error).message });
    return standIn;
  }
}

/**
 * How the CiliumCIDRGroup objects are read: `read` (watched, every one readable), `unreadable`
 * (watched, some cannot be read) or `unwatched`.
 */
export type GroupsMode = 'read' | 'unreadable' | 'unwatched';

/**
 * What the engine is to hold for `h` in groups mode `mode`: a policy with group peers reads as its
 * stand-in while they are not read, one `whileUnreadable` while some group cannot be read, each with
 * its own signature (a change of mode is a change).
 */
export function effectiveHeld(h: Held, mode: GroupsMode): Held {
  if (h.kind !== 'Policy' || h.groupless === undefined || mode === 'read' || (h.whileUnreadable === true && mode === 'unwatched')) return h;
  return { kind: 'Policy', policy: h.groupless, sig: `groupless:${h.sig}`, groupless: h.groupless, ...(h.whileUnreadable === true ? { whileUnreadable: true as const } : {}), ...(h.denySide === true ? { denySide: true as const } : {}), ...(h.denyAll === true ? { denyAll: true as const } : {}) };
}
