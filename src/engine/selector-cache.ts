import type { RuleOrigin } from '../model/rules.js';
import { Cidr, cidrContainsCidr, PrefixSet } from '../model/cidr.js';
import { GroupLabels, GroupMatchMode, groupSelectorMatches, NO_GROUP_LABELS } from '../model/cidr-group.js';
import type { IdentityId } from '../model/identity.js';
import { CLUSTER_KEY, type Label, LabelSet, NAMESPACE_LABELS_PREFIX, POD_NAMESPACE_KEY, SOURCE_RESERVED } from '../model/labels.js';
import { FqdnSelector, fqdnSelectorKey } from '../model/fqdn.js';
import { isWildcard, LabelIndex, labelIndex, makeSelector, Requirement, Selector, selectorMatches } from '../model/selector.js';
import type { EngineStats } from './stats.js';
import { TombstoneMap } from './tombstone-map.js';
import { CidrTrie } from './cidr-trie.js';

/**
 * What a rule's peer (or subject) selects, as the cache sees it: a label selector, or a CIDR with
 * exceptions, which selects the CIDR identities of prefixes inside it (and not inside an exception).
 */
export type IdentitySelector =
  | { readonly kind: 'labels'; readonly key: string; readonly selector: Selector }
  | { readonly kind: 'cidr'; readonly key: string; readonly cidr: Cidr; readonly except: readonly Cidr[]; readonly exceptSet: PrefixSet }
  /**
   * A `cidrGroupRef`/`cidrGroupSelector` item: the identities with a prefix (CIDR, FQDN IP, API server
   * address) whose CIDR group labels (`SelectorCache.groupLabelsOf`) `selector` matches, outside `except`.
   */
  | { readonly kind: 'cidrGroup'; readonly key: string; readonly selector: Selector; readonly except: readonly Cidr[]; readonly exceptSet: PrefixSet; readonly mode: GroupMatchMode }
  /** A `toFQDNs` entry: selects the identities carrying its `fqdn:<selector key>` label (dns-cache.ts). */
  | { readonly kind: 'fqdn'; readonly key: string; readonly fqdn: FqdnSelector }
  /** A ClusterNetworkPolicy `networks` CIDR over pods: the pod identities whose pods are all inside (`nets`, network-splits.ts). */
  | { readonly kind: 'podnet'; readonly key: string; readonly cidr: Cidr }
  /**
   * A ClusterNetworkPolicy `nodes` peer: the node identities whose node labels (`nodeLabels`,
   * node-table.ts) it matches; `remoteOnly` (CiliumNetworkPolicy `toNodes`/`fromNodes`): only
   * those labelled `reserved:remote-node`, never `host`. `unknown`: how it reads a node whose labels
   * are unknown (`nodeLabelsUnknown`, the agent's own node held fail-closed, finding 2541): absent, it
   * never selects it (an Accept's peer); `select`, it always does (a Deny's); `only`, it selects that
   * node alone (a Pass rule's Deny of it). Held on every port (`allPorts`, finding 2730), only
   * `onlyAllPorts` selects it (a Deny or Pass rule's all-port Deny of it).
   */
  | { readonly kind: 'nodes'; readonly key: string; readonly selector: Selector; readonly remoteOnly?: true; readonly unknown?: NodesUnknownMode };

/** How a `nodes` selector reads a node whose labels are unknown (see `IdentitySelector`). */
type NodesUnknownMode = 'select' | 'only' | 'onlyAllPorts';

/** How the agent's own node is held: its labels unknown to each rule's ports, or denied on every port by Deny and Pass rules. */
export type NodeLabelsUnknown = 'ports' | 'allPorts';

const NODES_BUCKET = 'nodes';
/** Label sets up to this size are scanned (a pod's few labels: a map would cost more than it saves). */
const INDEXED_LABEL_SET = 32;

export function nodesSelector(selector: Selector, unknown?: 'select'): IdentitySelector {
  return unknown === undefined ? { kind: 'nodes', key: `nodes:${selector.key}`, selector } : { kind: 'nodes', key: `nodes+unknown:${selector.key}`, selector, unknown };
}

/** The node whose labels are unknown, alone (a Pass rule with a `nodes` peer denies it: finding 2541). */
export const unknownNodeSelector: IdentitySelector = { kind: 'nodes', key: 'nodes-unknown', selector: makeSelector([]), unknown: 'only' };
/** The node held on every port, alone (a Deny or Pass rule with a `nodes` peer denies it on every port: finding 2730). */
export const unknownNodeAllPortsSelector: IdentitySelector = { kind: 'nodes', key: 'nodes-unknown-all-ports', selector: makeSelector([]), unknown: 'onlyAllPorts' };

export function remoteNodesSelector(selector: Selector): IdentitySelector {
  return { kind: 'nodes', key: `remote-nodes:${selector.key}`, selector, remoteOnly: true };
}

const isRemoteNodeLabel = (l: Label): boolean => l.source === SOURCE_RESERVED && l.key === 'remote-node';

/** The label source of FQDN selector identities (Cilium's `fqdn:` labels). */
export const SOURCE_FQDN = 'fqdn';

export function fqdnPeerSelector(fqdn: FqdnSelector): IdentitySelector {
  return { kind: 'fqdn', key: `fqdn:${fqdnSelectorKey(fqdn)}`, fqdn };
}

/**
 * One per selector object (the readers share equal selectors): every unit and enforcement subject
 * would otherwise wrap its own (cilium-ci: 68,000 subjects, 6,000 wrappers).
 */
const labelSelectors = new WeakMap<Selector, IdentitySelector>();

export function labelsSelector(selector: Selector): IdentitySelector {
  let s = labelSelectors.get(selector);
  if (s === undefined) labelSelectors.set(selector, (s = { kind: 'labels', key: selector.key, selector }));
  return s;
}

const NO_PREFIXES = new PrefixSet([]);

/** A CIDR peer's exceptions: the key's suffix (sorted, so every order gives one selector) and the set it checks. */
function exceptPart(except: readonly Cidr[]): { readonly suffix: string; readonly exceptSet: PrefixSet } {
  if (except.length === 0) return { suffix: '', exceptSet: NO_PREFIXES };
  return { suffix: ` except ${except.map((c) => c.text).sort().join(',')}`, exceptSet: new PrefixSet(except) };
}

export function cidrSelector(cidr: Cidr, except: readonly Cidr[]): IdentitySelector {
  const { suffix, exceptSet } = exceptPart(except);
  return { kind: 'cidr', key: `cidr:${cidr.text}${suffix}`, cidr, except, exceptSet };
}

export function cidrGroupSelector(selector: Selector, except: readonly Cidr[], mode: GroupMatchMode): IdentitySelector {
  const { suffix, exceptSet } = exceptPart(except);
  return { kind: 'cidrGroup', key: `cidrgroup-${mode}:${selector.key}${suffix}`, selector, except, exceptSet, mode };
}

export function isWildcardSelector(s: IdentitySelector): boolean {
  return s.kind === 'labels' && isWildcard(s.selector);
}

/** An identity as selectors see it. */
export interface SelectableIdentity {
  readonly id: IdentityId;
  /** The labels selectors match against (never `cidr:` labels: CIDR peers select prefixes). */
  readonly matchLabels: LabelSet;
  /** Set for CIDR identities: the prefix they stand for. */
  readonly cidr?: Cidr;
  /** Pod identities: the `networks` CIDRs in force holding every one of its pods (network-splits.ts). */
  readonly nets?: ReadonlySet<string>;
  /** Node identities (host, remote-node and the remote nodes' by labels): the labels of the node(s) they stand for. */
  readonly nodeLabels?: LabelSet | undefined;
  /** `host` while the agent's own node is held fail-closed: its node labels read as unknown (finding 2541), on every port (2730). */
  readonly nodeLabelsUnknown?: NodeLabelsUnknown | undefined;
}

export interface SelectionListener {
  selectionChanged(sel: CachedSelector, added: readonly IdentityId[], removed: readonly IdentityId[]): void;
  /** The rule the listener acts for (what `Engine.selectors()` reports as a selector's users). */
  readonly origin?: RuleOrigin;
}

/**
 * A selector's listeners, in the order they were added, each once (a Set's semantics). Most
 * selectors have a handful: they are kept in an array, since a Set keyed by an object first gives
 * the object an identity hash, a runtime call per new listener (~0.4 µs; 70,000 listeners in
 * cilium-ci's cold start). Past `SMALL` listeners a Set takes over.
 */
class ListenerSet implements Iterable<SelectionListener> {
  private static readonly SMALL = 16;
  private small: SelectionListener[] | null = [];
  private big: Set<SelectionListener> | null = null;

  get size(): number {
    return this.small !== null ? this.small.length : (this.big as Set<SelectionListener>).size;
  }

  add(l: SelectionListener): void {
    const small = this.small;
    if (small === null) {
      (this.big as Set<SelectionListener>).add(l);
    } else if (!small.includes(l)) {
      small.push(l);
      if (small.length > ListenerSet.SMALL) {
        this.big = new Set(small);
        this.small = null;
      }
    }
  }

  delete(l: SelectionListener): void {
    const small = this.small;
    if (small === null) {
      (this.big as Set<SelectionListener>).delete(l);
      return;
    }
    const i = small.indexOf(l);
    if (i >= 0) small.splice(i, 1);
  }

  [Symbol.iterator](): Iterator<SelectionListener> {
    return (this.small ?? (this.big as Set<SelectionListener>))[Symbol.iterator]();
  }
}

export class CachedSelector {
  readonly selected = new Set<IdentityId>();
  readonly listeners = new ListenerSet();
  /** The owning cache's visit number when `candidateSelectors` last listed it (dedups without a Set). */
  visit = 0;
  constructor(
    readonly selector: IdentitySelector,
    /** Index buckets this selector is filed under; null = evaluated for every identity. */
    readonly buckets: readonly Bucket[] | null,
  ) {}
}

/** A bucket of the two indexes: a label value (`key` = value), a label key (Exists), or a named one (CIDR, FQDN, pod network). */
const enum BucketKind {
  Value,
  Key,
  Named,
}

interface Bucket {
  readonly kind: BucketKind;
  /** The label key, or the name. */
  readonly key: string;
  /** The label value (Value buckets). */
  readonly value: string;
}

const CIDR_BUCKET = 'cidr';
const valueBucket = (key: string, value: string): Bucket => ({ kind: BucketKind.Value, key, value });
const keyBucket = (key: string): Bucket => ({ kind: BucketKind.Key, key, value: '' });
const namedBucket = (name: string): Bucket => ({ kind: BucketKind.Named, key: name, value: '' });

/** Keys that nearly every pod identity carries: filing a selector under them prunes little. */
function isCommonKey(key: string): boolean {
  return key === POD_NAMESPACE_KEY || key === CLUSTER_KEY || key.startsWith(NAMESPACE_LABELS_PREFIX);
}

/**
 * Files a label selector under its most restrictive positive requirement (as Calico's label index
 * does): an `In` on an uncommon key beats `Exists`, which beats the namespace key. Selectors with
 * only negative requirements are evaluated for every identity. Buckets ignore the label source;
 * the full evaluation checks it.
 */
function bucketsOf(sel: IdentitySelector): Bucket[] | null {
  if (sel.kind === 'cidr' || sel.kind === 'cidrGroup') return [namedBucket(CIDR_BUCKET)];
  if (sel.kind === 'fqdn' || sel.kind === 'podnet') return [namedBucket(sel.key)];
  if (sel.kind === 'nodes') return [namedBucket(NODES_BUCKET)];
  let best: { score: number; buckets: Bucket[] } | null = null;
  const consider = (r: Requirement): void => {
    let score: number;
    let buckets: Bucket[];
    if (r.operator === 'In') {
      score = r.values.length;
      buckets = r.values.map((v) => valueBucket(r.key.key, v));
    } else if (r.operator === 'Exists') {
      score = 50;
      buckets = [keyBucket(r.key.key)];
    } else {
      return;
    }
    if (isCommonKey(r.key.key)) score += 100;
    if (best === null || score < best.score) best = { score, buckets };
  };
  for (const r of sel.selector.requirements) consider(r);
  return best === null ? null : (best as { buckets: Bucket[] }).buckets;
}

/** A label key's buckets: by value (`In`), and the key's own (`Exists`; undefined while empty). */
class LabelKeyBuckets<V> {
  readonly values = new TombstoneMap<string, Set<V>>();
  exists: Set<V> | undefined = undefined;
}

/**
 * Sets of V by bucket. Value and Exists buckets are filed by label key first (then value), so an
 * identity's buckets are found from its labels' own strings, with no bucket string built and hashed
 * per label, and a label whose key files nothing costs one lookup. Tombstone maps: identities come
 * and go under the same labels.
 */
class BucketIndex<V> {
  /** Read directly by `candidateSelectors` (one lookup a label, no call around it); written only here. */
  readonly labelKeys = new TombstoneMap<string, LabelKeyBuckets<V>>();
  private readonly named = new TombstoneMap<string, Set<V>>();

  get(kind: BucketKind, key: string, value: string): Set<V> | undefined {
    if (kind === BucketKind.Named) return this.named.get(key);
    const b = this.labelKeys.get(key);
    if (b === undefined) return undefined;
    return kind === BucketKind.Value ? b.values.get(value) : b.exists;
  }

  /** Adds (sign 1) or removes (-1) `v` under the bucket. */
  change(kind: BucketKind, key: string, value: string, v: V, sign: 1 | -1): void {
    if (sign > 0) this.add(kind, key, value, v);
    else this.remove(kind, key, value, v);
  }

  private add(kind: BucketKind, key: string, value: string, v: V): void {
    let s: Set<V> | undefined;
    if (kind === BucketKind.Named) {
      s = this.named.get(key);
      if (!s) this.named.set(key, (s = new Set()));
    } else {
      let b = this.labelKeys.get(key);
      if (!b) this.labelKeys.set(key, (b = new LabelKeyBuckets()));
      if (kind === BucketKind.Value) {
        s = b.values.get(value);
        if (!s) b.values.set(value, (s = new Set()));
      } else {
        s = b.exists ??= new Set();
      }
    }
    s.add(v);
  }

  private remove(kind: BucketKind, key: string, value: string, v: V): void {
    if (kind === BucketKind.Named) {
      const s = this.named.get(key);
      if (!s) return;
      s.delete(v);
      if (s.size === 0) this.named.delete(key);
      return;
    }
    const b = this.labelKeys.get(key);
    if (!b) return;
    if (kind === BucketKind.Value) {
      const s = b.values.get(value);
      if (!s) return;
      s.delete(v);
      if (s.size > 0) return;
      b.values.delete(value);
    } else {
      const s = b.exists;
      if (!s) return;
      s.delete(v);
      if (s.size > 0) return;
      b.exists = undefined;
    }
    if (b.values.size === 0 && b.exists === undefined) this.labelKeys.delete(key);
  }
}

const NO_IDS: readonly IdentityId[] = [];

/** Appends the selectors of `s` not yet listed in this `visit`, in `s`'s order. */
function addUnvisited(out: CachedSelector[], s: Set<CachedSelector> | undefined, visit: number): void {
  if (s === undefined) return;
  for (const cs of s) {
    if (cs.visit === visit) continue;
    cs.visit = visit;
    out.push(cs);
  }
}

/** Adds the members of `s` to `out` (forEach: no iterator result per member in unoptimized code). */
function addAll<V>(out: Set<V>, s: Set<V> | undefined): void {
  if (s) s.forEach((v) => out.add(v));
}

/**
 * Each distinct selector once, with the identities it selects, over a universe of identities.
 * Two inverted indexes keep both directions proportional to the impact: selectors by their most
 * restrictive requirement (an identity event evaluates only selectors that could match it), and
 * identities by label (a new selector evaluates only identities that could match it).
 */
export class SelectorCache {
  private readonly byKey = new TombstoneMap<string, CachedSelector>();
  private readonly selectorBuckets = new BucketIndex<CachedSelector>();
  private readonly unindexed = new Set<CachedSelector>();
  private readonly identities = new TombstoneMap<IdentityId, SelectableIdentity>();
  private readonly identityBuckets = new BucketIndex<IdentityId>();
  /**
   * Label keys whose identity buckets are kept: value buckets for keys some selector was filed
   * under by value (`In`), key buckets for keys filed under by `Exists`. Most of an identity's
   * labels (`version`, the cluster, most namespace labels) file no selector, and each kept label
   * costs every identity event a bucket update, often in a Set holding most identities. A key is
   * indexed when a selector first needs it, and stays indexed.
   */
  private readonly valueKeys = new Set<string>();
  private readonly existsKeys = new Set<string>();
  /** When each identity was last added: a key indexed late lists its identities in the order eager indexing would have. */
  private readonly addedAt = new Map<IdentityId, number>();
  private adds = 0;
  /** Numbers `candidateSelectors` calls (CachedSelector.visit). */
  private visits = 0;
  /** Large label sets by key, built once per set (an identity's labels are shared by its selectors' evaluations). */
  private readonly indexes = new WeakMap<LabelSet, LabelIndex>();

  /** The CIDR group selectors registered (re-evaluated when a group changes). */
  private readonly groupSelectors = new Set<CachedSelector>();
  /** The CIDR identities by prefix, once a group has changed (`refreshGroupSelectors`). */
  private cidrTrie: CidrTrie | undefined;
  /** The CIDR group labels of a prefix's identity (the peer cache's are the engine's CIDR group table's). */
  groupLabelsOf: (c: Cidr) => GroupLabels = () => NO_GROUP_LABELS;

  constructor(private readonly stats: EngineStats) {}

  /**
   * A set's label index when scanning it would cost more than a lookup: without one, every candidate
   * selector read every label, so an identity of m labels cost (selectors × m) (attack finding 1143).
   */
  private indexOf(labels: LabelSet): LabelIndex | undefined {
    if (labels.length <= INDEXED_LABEL_SET) return undefined;
    let index = this.indexes.get(labels);
    if (index === undefined) this.indexes.set(labels, (index = labelIndex(labels)));
    return index;
  }

  private matches(selector: Selector, labels: LabelSet): boolean {
    return selectorMatches(selector, labels, this.indexOf(labels));
  }

  private hasKey(labels: LabelSet, key: string): boolean {
    const index = this.indexOf(labels);
    return index === undefined ? labels.some((l) => l.key === key) : index.has(key);
  }

  get selectorCount(): number {
    return this.byKey.size;
  }

  get identityCount(): number {
    return this.identities.size;
  }

  hasIdentity(id: IdentityId): boolean {
    return this.identities.has(id);
  }

  get(key: string): CachedSelector | undefined {
    return this.byKey.get(key);
  }

  /** Every registered selector. */
  selectors(): IterableIterator<CachedSelector> {
    return this.byKey.values();
  }

  private evaluate(cs: CachedSelector, ident: SelectableIdentity): boolean {
    const s = cs.selector;
    if (s.kind === 'labels') {
      if (isWildcard(s.selector)) return true;
      this.stats.selectorEvaluations++;
      return this.matches(s.selector, ident.matchLabels);
    }
    this.stats.selectorEvaluations++;
    if (s.kind === 'fqdn') {
      const key = s.key.slice('fqdn:'.length);
      return ident.matchLabels.some((l) => l.source === SOURCE_FQDN && l.key === key);
    }
    if (s.kind === 'podnet') return ident.nets?.has(s.cidr.text) === true;
    if (s.kind === 'nodes') return this.nodesMatch(s, ident);
    const c = ident.cidr;
    if (c === undefined || s.exceptSet.containsCidr(c)) return false;
    return s.kind === 'cidrGroup' ? groupSelectorMatches(s.selector, this.groupLabelsOf(c), s.mode) : cidrContainsCidr(s.cidr, c);
  }

  private nodesMatch(s: IdentitySelector & { kind: 'nodes' }, ident: SelectableIdentity): boolean {
    if (ident.nodeLabels === undefined) return false;
    if (ident.nodeLabelsUnknown !== undefined) return ident.nodeLabelsUnknown === 'allPorts' ? s.unknown === 'onlyAllPorts' : s.unknown === 'select' || s.unknown === 'only';
    return (s.unknown === undefined || s.unknown === 'select') && (s.remoteOnly !== true || ident.matchLabels.some(isRemoteNodeLabel)) && this.matches(s.selector, ident.nodeLabels);
  }

  /**
   * CIDR groups changed at `changed` (a group's old and new prefixes): the group selectors are
   * evaluated anew for the identities whose prefix lies inside one, as only their labels moved.
   */
  refreshGroupSelectors(changed: readonly Cidr[]): void {
    if (this.groupSelectors.size === 0) return;
    const trie = (this.cidrTrie ??= this.buildCidrTrie());
    const inside = new Set<IdentityId>();
    for (const c of changed) trie.within(c, (id) => inside.add(id));
    // In the order the identities were added, as a walk of the CIDR bucket would visit them.
    const ids = [...inside].sort((a, b) => (this.addedAt.get(a) ?? 0) - (this.addedAt.get(b) ?? 0));
    for (const id of ids) {
      const ident = this.identities.get(id);
      if (ident === undefined) continue;
      for (const cs of this.groupSelectors) {
        const now = this.evaluate(cs, ident);
        if (now === cs.selected.has(id)) continue;
        if (now) cs.selected.add(id);
        else cs.selected.delete(id);
        for (const l of [...cs.listeners]) l.selectionChanged(cs, now ? [id] : [], now ? [] : [id]);
      }
    }
  }

  /** The CIDR identities by prefix, built at the first group change and kept by `indexIdentity` from then on. */
  private buildCidrTrie(): CidrTrie {
    const trie = new CidrTrie();
    for (const id of this.identityBuckets.get(BucketKind.Named, CIDR_BUCKET, '') ?? NO_IDS) {
      const c = this.identities.get(id)?.cidr;
      if (c !== undefined) trie.add(c, id);
    }
    return trie;
  }

  /** The selectors filed under a bucket of `ident` (its labels' values and keys, FQDN labels, CIDR, pod networks, in that order), and the unindexed ones. */
  private candidateSelectors(ident: SelectableIdentity): CachedSelector[] {
    const visit = ++this.visits;
    const out: CachedSelector[] = [];
    addUnvisited(out, this.unindexed, visit);
    const idx = this.selectorBuckets;
    const labels = ident.matchLabels;
    for (let i = 0; i < labels.length; i++) {
      const l = labels[i] as Label;
      // One lookup by key for both its value and Exists buckets: most of a pod's labels file no selector.
      const b = idx.labelKeys.get(l.key);
      if (b !== undefined) {
        const byValue = b.values.get(l.value);
        if (byValue !== undefined) addUnvisited(out, byValue, visit);
        if (b.exists !== undefined) addUnvisited(out, b.exists, visit);
      }
      if (l.source === SOURCE_FQDN) addUnvisited(out, idx.get(BucketKind.Named, `fqdn:${l.key}`, ''), visit);
    }
    if (ident.cidr) addUnvisited(out, idx.get(BucketKind.Named, CIDR_BUCKET, ''), visit);
    for (const n of ident.nets ?? []) addUnvisited(out, idx.get(BucketKind.Named, `podnet:${n}`, ''), visit);
    if (ident.nodeLabels) addUnvisited(out, idx.get(BucketKind.Named, NODES_BUCKET, ''), visit);
    return out;
  }

  /** Lists (sign 1) or unlists (-1) an identity under each of its buckets (as `candidateSelectors` finds them). */
  private indexIdentity(ident: SelectableIdentity, sign: 1 | -1): void {
    const idx = this.identityBuckets;
    const id = ident.id;
    const labels = ident.matchLabels;
    for (let i = 0; i < labels.length; i++) {
      const l = labels[i] as Label;
      if (this.valueKeys.has(l.key)) idx.change(BucketKind.Value, l.key, l.value, id, sign);
      if (this.existsKeys.has(l.key)) idx.change(BucketKind.Key, l.key, '', id, sign);
      if (l.source === SOURCE_FQDN) idx.change(BucketKind.Named, `fqdn:${l.key}`, '', id, sign);
    }
    if (ident.cidr) {
      idx.change(BucketKind.Named, CIDR_BUCKET, '', id, sign);
      if (sign > 0) this.cidrTrie?.add(ident.cidr, id);
      else this.cidrTrie?.remove(ident.cidr, id);
    }
    for (const n of ident.nets ?? []) idx.change(BucketKind.Named, `podnet:${n}`, '', id, sign);
    if (ident.nodeLabels) idx.change(BucketKind.Named, NODES_BUCKET, '', id, sign);
  }

  addIdentity(ident: SelectableIdentity): void {
    if (this.identities.has(ident.id)) throw new Error(`identity ${ident.id} is already in the selector cache`);
    this.identities.set(ident.id, ident);
    this.addedAt.set(ident.id, this.adds++);
    this.indexIdentity(ident, +1);
    const hits: CachedSelector[] = [];
    for (const cs of this.candidateSelectors(ident)) {
      if (this.evaluate(cs, ident)) {
        cs.selected.add(ident.id);
        hits.push(cs);
      }
    }
    for (const cs of hits) for (const l of [...cs.listeners]) l.selectionChanged(cs, [ident.id], []);
  }

  removeIdentity(id: IdentityId): void {
    const ident = this.identities.get(id);
    if (!ident) throw new Error(`identity ${id} is not in the selector cache`);
    this.identities.delete(id);
    this.indexIdentity(ident, -1);
    // No evaluation needed: exactly the selectors that selected it lose it.
    const hits: CachedSelector[] = [];
    for (const cs of this.candidateSelectors(ident)) {
      if (cs.selected.delete(id)) hits.push(cs);
    }
    for (const cs of hits) for (const l of [...cs.listeners]) l.selectionChanged(cs, [], [id]);
  }

  /** Adds a listener to the selector's entry, creating and populating the entry if new. */
  register(selector: IdentitySelector, listener: SelectionListener): CachedSelector {
    let cs = this.byKey.get(selector.key);
    if (!cs) {
      cs = new CachedSelector(selector, bucketsOf(selector));
      this.byKey.set(selector.key, cs);
      if (selector.kind === 'cidrGroup') this.groupSelectors.add(cs);
      if (cs.buckets === null) this.unindexed.add(cs);
      else for (let i = 0; i < cs.buckets.length; i++) this.selectorBuckets.change((cs.buckets[i] as Bucket).kind, (cs.buckets[i] as Bucket).key, (cs.buckets[i] as Bucket).value, cs, +1);
      for (const id of this.candidateIdentities(cs)) {
        const ident = this.identities.get(id);
        if (ident && this.evaluate(cs, ident)) cs.selected.add(id);
      }
    }
    cs.listeners.add(listener);
    return cs;
  }

  unregister(cs: CachedSelector, listener: SelectionListener): void {
    cs.listeners.delete(listener);
    if (cs.listeners.size > 0) return;
    this.byKey.delete(cs.selector.key);
    this.groupSelectors.delete(cs);
    if (cs.buckets === null) this.unindexed.delete(cs);
    else for (const b of cs.buckets) this.selectorBuckets.change(b.kind, b.key, b.value, cs, -1);
  }

  private candidateIdentities(cs: CachedSelector): Iterable<IdentityId> {
    if (cs.buckets === null) return this.identities.keys();
    if (cs.buckets.length === 1) {
      // One bucket (most selectors): its own Set, not a copy; the caller only reads it.
      const b = cs.buckets[0] as Bucket;
      if (b.kind !== BucketKind.Named) this.indexKey(b.kind, b.key);
      return this.identityBuckets.get(b.kind, b.key, b.value) ?? NO_IDS;
    }
    const out = new Set<IdentityId>();
    for (const b of cs.buckets) {
      if (b.kind !== BucketKind.Named) this.indexKey(b.kind, b.key);
      addAll(out, this.identityBuckets.get(b.kind, b.key, b.value));
    }
    return out;
  }

  /** Starts keeping the value (or key) buckets of a label key: once per key and kind, one pass over the identities. */
  private indexKey(kind: BucketKind.Value | BucketKind.Key, key: string): void {
    const keys = kind === BucketKind.Value ? this.valueKeys : this.existsKeys;
    if (keys.has(key)) return;
    keys.add(key);
    const having: SelectableIdentity[] = [];
    for (const ident of this.identities.values()) if (this.hasKey(ident.matchLabels, key)) having.push(ident);
    having.sort((a, b) => (this.addedAt.get(a.id) as number) - (this.addedAt.get(b.id) as number));
    for (let i = 0; i < having.length; i++) {
      const ident = having[i] as SelectableIdentity;
      const labels = ident.matchLabels;
      for (let j = 0; j < labels.length; j++) {
        const l = labels[j] as Label;
        if (l.key === key) this.identityBuckets.change(kind, key, kind === BucketKind.Value ? l.value : '', ident.id, +1);
      }
    }
  }
}
