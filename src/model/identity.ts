import {
  CLUSTER_KEY,
  filteredOut,
  isDerivedLabelKey,
  DEFAULT_CLUSTER_NAME,
  Label,
  LabelSet,
  labelSetOf,
  labelSetKey,
  makeLabelSet,
  NAMESPACE_LABELS_PREFIX,
  POD_NAMESPACE_KEY,
  reservedLabel,
  SERVICE_ACCOUNT_KEY,
  SOURCE_K8S,
} from './labels.js';

/** Numeric security identity. 0 means "any identity" in the policy map. */
export type IdentityId = number;

export const ANY_IDENTITY: IdentityId = 0;

/** Reserved identities, numbered as Cilium numbers them. */
export const RESERVED_IDENTITIES = {
  host: 1,
  world: 2,
  unmanaged: 3,
  health: 4,
  init: 5,
  'remote-node': 6,
  'kube-apiserver': 7,
  ingress: 8,
  'world-ipv4': 9,
  'world-ipv6': 10,
} as const satisfies Record<string, IdentityId>;

export type ReservedName = keyof typeof RESERVED_IDENTITIES;

export const FIRST_CLUSTER_IDENTITY: IdentityId = 256;
/**
 * The ipcache's number of a pod whose label set has no external identity (yet, or no longer), with
 * identities from outside (finding 2002): every local map denies it in both directions, above every
 * tier (policy-resolver.ts `setDeniedEverywhere`), while some pod holds it. distill's own number: the
 * last of the reserved range (Cilium's reserved identities are 0..11, pkg/identity/numericidentity.go;
 * cluster ones start at 256), never an external id (256..2^24 - 1) nor a node-local one (bit 24 or 25).
 * Cilium lets an operator map 128..255 to fixed identities (`IsUserReservedIdentity`,
 * `--fixed-identity-mapping`); distill does not model them, so no input of its can carry 255 (finding
 * 2186); modelling them would need another number, outside every scope Cilium numbers.
 */
export const UNALLOCATED_POD_IDENTITY: IdentityId = 255;
/** Node-local identities (CIDR prefixes) have bit 24 set. */
export const LOCAL_IDENTITY_FLAG: IdentityId = 1 << 24;
/**
 * Remote nodes' label identities have bit 25 set: Cilium's remote-node scope (pkg/identity
 * `IdentityScopeRemoteNode`, 2<<24), node-local too but apart from the CIDR ones ("instead of using
 * local scoped identity it uses remote-node scoped identity", docs.cilium.io, Node based).
 */
const REMOTE_NODE_IDENTITY_FLAG: IdentityId = 2 << 24;

/** Cilium's identity types (pkg/identity/identity.go `*IdentityType`), as its `identity` gauge counts them. */
export type IdentityType = 'reserved' | 'cluster_local' | 'node_local' | 'remote_node';

/**
 * The type of an identity number as Cilium's allocator counts it (pkg/identity/cache
 * `RecordCompletedAllocation`): local scope, remote-node scope, reserved (1..255), else cluster.
 */
export function identityType(id: IdentityId): IdentityType {
  if ((id & REMOTE_NODE_IDENTITY_FLAG) !== 0) return 'remote_node';
  if ((id & LOCAL_IDENTITY_FLAG) !== 0) return 'node_local';
  return id < FIRST_CLUSTER_IDENTITY ? 'reserved' : 'cluster_local';
}

export function reservedIdentityLabels(name: ReservedName): LabelSet {
  return makeLabelSet([reservedLabel(name)]);
}

/**
 * Cilium's IP stack mode: `dual` when the agent runs with both `enable-ipv4` and `enable-ipv6`
 * (`option.Config.IsDualStack()`), else `single`. It decides the one world label an outside address
 * carries (pkg/labels/cidr.go `addWorldLabel`) and the world identity it resolves to (pkg/identity
 * `GetWorldIdentityFromIP`). The default is Cilium's default install: the Helm chart's
 * `ipv4.enabled: true`, `ipv6.enabled: false` (install/kubernetes/cilium/values.yaml), single stack.
 */
export type StackMode = 'single' | 'dual';

export const STACK_MODES: readonly StackMode[] = ['single', 'dual'];

export const DEFAULT_STACK_MODE: StackMode = 'single';

/** The reserved world identity an outside address of `family` is in: world (2) single-stack, world-ipv4 (9) / world-ipv6 (10) dual-stack. */
export function worldName(stack: StackMode, family: 'ipv4' | 'ipv6'): 'world' | 'world-ipv4' | 'world-ipv6' {
  if (stack === 'single') return 'world';
  return family === 'ipv4' ? 'world-ipv4' : 'world-ipv6';
}

/**
 * The world label an address outside the cluster carries: one, by the stack mode (pkg/labels/cidr.go
 * `addWorldLabel`: `reserved:world` unless dual-stack, then `reserved:world-ipv4` or
 * `reserved:world-ipv6` by the address's family). The `world` entity selects all three.
 */
export function worldLabels(stack: StackMode, family: 'ipv4' | 'ipv6'): LabelSet {
  return makeLabelSet([reservedLabel(worldName(stack, family))]);
}

/** Label sources a cluster identity's labels may carry (reserved, CIDR and FQDN identities are node-local). */
const CLUSTER_LABEL_SOURCES: ReadonlySet<string> = new Set([SOURCE_K8S, 'container', 'unspec']);
const IDENTITY_LABEL_KEY = /^[\x21-\x3a\x3c\x3e-\x7e]{1,512}$/;
const IDENTITY_LABEL_VALUE = /^[\x20-\x3a\x3c-\x7e]{0,512}$/;

/**
 * Why `source:key` → value (Cilium's `security-labels` form) is not a valid cluster identity
 * label, or undefined. Keys and values are printable ASCII without Cilium's separators (`;`, and
 * `=` in keys), a source is required and must be a cluster source.
 */
export function identityLabelProblem(rawKey: string, value: string): string | undefined {
  const colon = rawKey.indexOf(':');
  if (colon <= 0) return `label ${JSON.stringify(rawKey)} has no source (expected source:key, e.g. k8s:app)`;
  const source = rawKey.slice(0, colon);
  if (!CLUSTER_LABEL_SOURCES.has(source)) return `label ${JSON.stringify(rawKey)}: source ${JSON.stringify(source)} is not a cluster identity source (k8s, container, unspec)`;
  if (!IDENTITY_LABEL_KEY.test(rawKey.slice(colon + 1))) return `label key ${JSON.stringify(rawKey)} must be 1-512 printable characters without ';' or '='`;
  if (!IDENTITY_LABEL_VALUE.test(value)) return `label ${JSON.stringify(rawKey)}: value must be at most 512 printable characters without ';'`;
  return undefined;
}

/** A cluster identity's labels from Cilium's `security-labels` form (checked by identityLabelProblem). */
export function identityLabelsFrom(securityLabels: Readonly<Record<string, string>>): LabelSet {
  const out: Label[] = [];
  for (const [rawKey, value] of Object.entries(securityLabels)) {
    const colon = rawKey.indexOf(':');
    out.push({ source: rawKey.slice(0, colon), key: rawKey.slice(colon + 1), value });
  }
  return makeLabelSet(out);
}

/** A label set in Cilium's `security-labels` form (`source:key` → value), as CiliumIdentity objects and identity events carry it. */
export function securityLabels(labels: LabelSet): Record<string, string> {
  const out: Record<string, string> = Object.create(null) as Record<string, string>;
  for (const l of labels) out[`${l.source}:${l.key}`] = l.value;
  return out;
}

/** The numbers a cluster identity may have: 256 up to the 24-bit limit (bit 24 marks node-local ones). */
export const MAX_CLUSTER_IDENTITY: IdentityId = LOCAL_IDENTITY_FLAG - 1;

/** What a pod's identity is derived from. */
export interface PodIdentitySource {
  readonly namespace: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly serviceAccount: string;
}

/**
 * A pod's identity labels, as Cilium derives them: its own labels, its namespace name, its
 * namespace's labels and its service account (none for an empty one: Cilium's `SanitizePodLabels`,
 * pkg/k8s/utils/utils.go, deletes the key when the service account is ""), plus the cluster name.
 */
export function podIdentityLabels(pod: PodIdentitySource, namespaceLabels: Readonly<Record<string, string>>): LabelSet {
  // Pod labels in a derived label space never reach the identity (see isDerivedLabelKey).
  // One array, built and sorted in place: this runs for every pod of a relabelled namespace.
  const labels: Label[] = [];
  for (const key of Object.keys(pod.labels)) if (!isDerivedLabelKey(key)) labels.push({ source: SOURCE_K8S, key, value: pod.labels[key] as string });
  for (const l of namespacePart(pod.namespace, namespaceLabels)) labels.push(l);
  if (pod.serviceAccount !== '') labels.push({ source: SOURCE_K8S, key: SERVICE_ACCOUNT_KEY, value: pod.serviceAccount });
  return labelSetOf(labels);
}

const CLUSTER_LABEL: Label = { source: SOURCE_K8S, key: CLUSTER_KEY, value: DEFAULT_CLUSTER_NAME };

/** The labels every pod of a namespace shares, per namespace-labels object: built once, the Label objects shared. */
const namespaceParts = new WeakMap<object, { readonly namespace: string; readonly labels: readonly Label[] }>();

function namespacePart(namespace: string, namespaceLabels: Readonly<Record<string, string>>): readonly Label[] {
  const hit = namespaceParts.get(namespaceLabels);
  if (hit !== undefined && hit.namespace === namespace) return hit.labels;
  const labels: Label[] = [{ source: SOURCE_K8S, key: POD_NAMESPACE_KEY, value: namespace }];
  for (const [k, v] of Object.entries(namespaceLabels)) {
    const key = NAMESPACE_LABELS_PREFIX + k;
    // Cilium's label filter also runs over the namespace's labels (filteredOut, finding 2461).
    if (!filteredOut(key)) labels.push({ source: SOURCE_K8S, key, value: v });
  }
  labels.push(CLUSTER_LABEL);
  namespaceParts.set(namespaceLabels, { namespace, labels });
  return labels;
}

/** Where numbering stands, per scope (`IdentityAllocator.mark`). */
interface IdentityMark {
  readonly cluster: IdentityId;
  readonly local: IdentityId;
  readonly remoteNode: IdentityId;
}

interface Allocation {
  readonly id: IdentityId;
  readonly labels: LabelSet;
  /** `labelSetKey(labels)`, kept for the release. */
  readonly key: string;
  refs: number;
}

/**
 * Allocates one numeric identity per distinct label set, refcounted: the first user allocates,
 * the last release frees. Cluster-scope ids start at 256; local-scope ids (CIDRs) at 2^24 + 1.
 * Freed ids are not reused within one allocator, so a stale id can never alias a new label set.
 */
export class IdentityAllocator {
  private readonly byKey = new Map<string, Allocation>();
  private readonly byId = new Map<IdentityId, Allocation>();
  private nextCluster = FIRST_CLUSTER_IDENTITY;
  private nextLocal = LOCAL_IDENTITY_FLAG + 1;
  private nextRemoteNode = REMOTE_NODE_IDENTITY_FLAG + 1;
  /** Numbering at `begin`, or null when no transaction is journaled. */
  private saved: IdentityMark | null = null;
  /** Undo steps since `begin`, newest last (made on the first change: most transactions make none). */
  private journal: (() => void)[] | null = null;
  /** Node-local numbers a restart restored (label-set key → id), and those ids: fresh numbers skip them. */
  private readonly preferred = new Map<string, IdentityId>();
  private readonly preferredIds = new Set<IdentityId>();

  constructor() {
    for (const [name, id] of Object.entries(RESERVED_IDENTITIES)) {
      const labels = reservedIdentityLabels(name as ReservedName);
      const key = labelSetKey(labels);
      const a: Allocation = { id, labels, key, refs: Infinity };
      this.byKey.set(key, a);
      this.byId.set(id, a);
    }
  }

  /**
   * Starts journaling: `rollback` then returns the allocator exactly to this point (numbering,
   * allocations, reference counts), `commit` forgets the journal. Every change is one journaled
   * step, so the rollback is exact wherever the caller stopped.
   */
  begin(): void {
    this.saved = this.mark();
    this.journal = null;
  }

  commit(): void {
    this.saved = null;
    this.journal = null;
  }

  rollback(): void {
    const j = this.journal ?? [];
    const saved = this.saved;
    this.journal = null;
    this.saved = null;
    for (let i = j.length - 1; i >= 0; i--) (j[i] as () => void)();
    if (saved) this.setMark(saved);
  }

  private record(undo: () => void): void {
    if (this.saved) (this.journal ??= []).push(undo);
  }

  /** Takes a reference on the identity of `labels`, allocating it if new. */
  /** `key`: `labelSetKey(labels)`, if the caller has it. */
  acquire(labels: LabelSet, scope: 'cluster' | 'local' | 'remote-node' = 'cluster', key = labelSetKey(labels)): { id: IdentityId; isNew: boolean } {
    const existing = this.byKey.get(key);
    if (existing) {
      existing.refs += 1;
      this.record(() => (existing.refs -= 1));
      return { id: existing.id, isNew: false };
    }
    const id = scope === 'cluster' ? this.nextCluster++ : scope === 'local' ? this.localId(key) : this.nextRemoteNode++;
    this.insert({ id, labels, key, refs: 1 }, key);
    return { id, isNew: true };
  }

  /** A node-local number: the one restored for these labels if it is free, else the next one nobody was promised. */
  private localId(key: string): IdentityId {
    const restored = this.preferred.get(key);
    if (restored !== undefined && !this.byId.has(restored)) return restored;
    let id = this.nextLocal++;
    while (this.preferredIds.has(id) || this.byId.has(id)) id = this.nextLocal++;
    return id;
  }

  /**
   * Node-local identities as a previous run numbered them (the DNS cache file): the same label
   * sets get the same numbers again, so the first write after a restart finds the pinned maps
   * right. Call before the first allocation.
   */
  prefer(identities: Iterable<{ readonly id: IdentityId; readonly labels: LabelSet }>): void {
    for (const { id, labels } of identities) {
      this.preferred.set(labelSetKey(labels), id);
      this.preferredIds.add(id);
    }
  }

  private insert(a: Allocation, key: string): void {
    this.byKey.set(key, a);
    this.byId.set(a.id, a);
    this.record(() => {
      this.byKey.delete(key);
      this.byId.delete(a.id);
    });
  }

  /** Drops a reference; returns true when that was the last one and the identity is gone. */
  release(id: IdentityId): boolean {
    const a = this.byId.get(id);
    if (!a) throw new Error(`identity ${id} is not allocated`);
    a.refs -= 1;
    if (a.refs > 0) {
      this.record(() => (a.refs += 1));
      return false;
    }
    const key = a.key;
    this.byId.delete(id);
    this.byKey.delete(key);
    this.record(() => {
      a.refs += 1;
      this.byKey.set(key, a);
      this.byId.set(id, a);
    });
    return true;
  }

  /** Where numbering stands now. */
  mark(): IdentityMark {
    return { cluster: this.nextCluster, local: this.nextLocal, remoteNode: this.nextRemoteNode };
  }

  private setMark(mark: IdentityMark): void {
    this.nextCluster = mark.cluster;
    this.nextLocal = mark.local;
    this.nextRemoteNode = mark.remoteNode;
  }

  /**
   * Returns numbering to a mark, undoing a refused transaction. Only allowed once every id
   * allocated since the mark has been released, so no live id can be handed out twice.
   */
  rewind(mark: IdentityMark): void {
    for (const id of this.byId.keys()) {
      const fromMark = (id & REMOTE_NODE_IDENTITY_FLAG) !== 0 ? id >= mark.remoteNode : (id & LOCAL_IDENTITY_FLAG) !== 0 ? id >= mark.local : id >= mark.cluster;
      if (fromMark && id >= FIRST_CLUSTER_IDENTITY && !this.preferredIds.has(id)) throw new Error(`cannot rewind: identity ${id} allocated since the mark is still live`);
    }
    const now = this.mark();
    this.record(() => this.setMark(now));
    this.setMark(mark);
  }

  /** Re-allocates a released id for the same labels (undoing a refused transaction). */
  revive(id: IdentityId, labels: LabelSet): void {
    const key = labelSetKey(labels);
    if (this.byId.has(id) || this.byKey.has(key)) throw new Error(`identity ${id} is live, cannot revive it`);
    this.insert({ id, labels, key, refs: 1 }, key);
  }

  lookup(labels: LabelSet): IdentityId | undefined {
    return this.byKey.get(labelSetKey(labels))?.id;
  }

  labelsOf(id: IdentityId): LabelSet | undefined {
    return this.byId.get(id)?.labels;
  }

  refCount(id: IdentityId): number {
    return this.byId.get(id)?.refs ?? 0;
  }

  /** Every allocated identity, reserved ones included. */
  *entries(): IterableIterator<[IdentityId, LabelSet]> {
    for (const [id, a] of this.byId) yield [id, a.labels];
  }
}
