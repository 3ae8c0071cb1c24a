import { intern } from './intern.js';
/**
 * Labels as Cilium sees them: every label has a source (`k8s`, `reserved`, `cidr`, ...).
 * A selector key without a source prefix matches labels of any source.
 */

export type LabelSource = string;

export const SOURCE_K8S = 'k8s';
export const SOURCE_RESERVED = 'reserved';
export const SOURCE_CIDR = 'cidr';
export const SOURCE_ANY = 'any';

/** Label keys Cilium derives for every pod identity. */
export const POD_NAMESPACE_KEY = 'io.kubernetes.pod.namespace';
export const NAMESPACE_LABELS_PREFIX = 'io.cilium.k8s.namespace.labels.';
export const SERVICE_ACCOUNT_KEY = 'io.cilium.k8s.policy.serviceaccount';
export const CLUSTER_KEY = 'io.cilium.k8s.policy.cluster';
export const NAMESPACE_NAME_LABEL = 'kubernetes.io/metadata.name';
export const DEFAULT_CLUSTER_NAME = 'default';

export interface Label {
  readonly source: LabelSource;
  readonly key: string;
  readonly value: string;
}

/** A label set, sorted by source then key, keys unique per source. */
export type LabelSet = readonly Label[];

export interface LabelKey {
  readonly source: LabelSource;
  readonly key: string;
}

/**
 * Splits `k8s:app` into source and key as Cilium's ParseSource (pkg/labels) does: a leading `$` is
 * the short form of `reserved:` (`$host`), and whatever precedes the first `:` is the source, known
 * or not (`example.com:8080` is key `8080` of source `example.com`, which no identity label has, so
 * it selects nothing; refusing it instead made the agent skip a policy Cilium enforces). An empty
 * source (`:app`) is `any`.
 */
export function parseLabelKey(raw: string, defaultSource: LabelSource = SOURCE_ANY): LabelKey {
  if (raw.startsWith('$')) return { source: SOURCE_RESERVED, key: raw.slice(1) };
  const colon = raw.indexOf(':');
  if (colon < 0) return { source: defaultSource, key: raw };
  const source = raw.slice(0, colon);
  return { source: source === 'unspec' || source === '' ? SOURCE_ANY : source, key: raw.slice(colon + 1) };
}

/**
 * The extended key `<source>.<key>` Cilium 1.19 makes of a policy selector key, which it validates
 * (as a Kubernetes qualified name, so the source counts towards the 63 characters: attack finding
 * 760) and matches. `EndpointSelector.Sanitize` (pkg/policy/api/selector.go) extends every key with
 * `labels.DefaultKeyExtender`, which is `GetExtendedKeyFrom` (pkg/labels/labels.go; read at the
 * v1.19 branch point 2ba24a2a, test TestLabelParseKey): the source from `parseSource(str, ':')` (a
 * leading `$` is `reserved`, so is a key without ':' that starts with `reserved.`; else the text
 * before the first ':', `any` when empty or absent), then the rest cut at its first '=' ("Remove an
 * eventually value"). `app` and `:app` -> `any.app`, `k8s:app=x` -> `k8s.app`, `$host` and
 * `reserved.host` -> `reserved.host`, `k8s.app` -> `any.k8s.app` (attack findings 1240, 1241).
 */
export function ciliumExtendedKey(raw: string): string {
  const [source, rest] = ciliumSourceOf(raw);
  const eq = rest.indexOf('=');
  return `${source === '' ? SOURCE_ANY : source}.${eq < 0 ? rest : rest.slice(0, eq)}`;
}

/** labels.parseSource(str, ':') (pkg/labels/labels.go): the source and the rest. */
function ciliumSourceOf(raw: string): [string, string] {
  if (raw.startsWith('$')) return [SOURCE_RESERVED, raw.slice(1)];
  const colon = raw.indexOf(':');
  if (colon >= 0) return [raw.slice(0, colon), raw.slice(colon + 1)];
  const reserved = `${SOURCE_RESERVED}.`;
  return raw.startsWith(reserved) ? [SOURCE_RESERVED, raw.slice(reserved.length)] : ['', raw];
}

/**
 * The label key Cilium 1.19 matches for a policy selector key: its extended key read back by
 * `labels.ParseSelectDotLabel` (pkg/policy/types/requirements.go RequirementsFromK8s), whose
 * `parseSource(str, '.')` takes the source up to the first '.' (`unspec` selects as `any`). So a
 * source with a dot is cut there: `k8s.io:app` (extended `k8s.io.app`) is key `io.app` of source
 * `k8s` (attack finding 1242).
 */
export function ciliumSelectorKey(raw: string): LabelKey {
  const extended = ciliumExtendedKey(raw);
  const dot = extended.indexOf('.');
  const source = extended.slice(0, dot);
  return { source: source === 'unspec' ? SOURCE_ANY : source, key: extended.slice(dot + 1) };
}

export function formatLabelKey(k: LabelKey): string {
  return `${k.source}:${k.key}`;
}

export function formatLabel(l: Label): string {
  return l.value === '' ? `${l.source}:${l.key}` : `${l.source}:${l.key}=${l.value}`;
}

function sameKey(a: Label, b: Label): boolean {
  return a.source === b.source && a.key === b.key;
}

/** The labels sorted, one per `source:key` (the last given wins). Sorting is stable, so a key's last label ends its run. */
export function makeLabelSet(labels: Iterable<Label>): LabelSet {
  return labelSetOf(Array.from(labels));
}

/** `makeLabelSet` of an array the caller gives up (sorted in place: no copy). */
export function labelSetOf(sorted: Label[]): LabelSet {
  sortLabels(sorted);
  let dups = 0;
  for (let i = 1; i < sorted.length; i++) if (sameKey(sorted[i - 1] as Label, sorted[i] as Label)) dups++;
  if (dups === 0) return sorted;
  return sorted.filter((l, i) => i + 1 === sorted.length || !sameKey(l, sorted[i + 1] as Label));
}

/**
 * Stable sort by `compareLabelKeys`. Label sets are short: an insertion sort in place allocates
 * nothing, where `Array.prototype.sort` copies into a work array on every call (per pod identity).
 */
function sortLabels(a: Label[]): void {
  if (a.length > 32) {
    a.sort(compareLabelKeys);
    return;
  }
  for (let i = 1; i < a.length; i++) {
    const x = a[i] as Label;
    let j = i - 1;
    while (j >= 0 && compareLabelKeys(a[j] as Label, x) > 0) {
      a[j + 1] = a[j] as Label;
      j--;
    }
    a[j + 1] = x;
  }
}

function compareLabelKeys(a: Label, b: Label): number {
  if (a.source !== b.source) return a.source < b.source ? -1 : 1;
  return a.key < b.key ? -1 : a.key > b.key ? 1 : 0;
}

/** Canonical string of a label set: equal sets give equal strings (the identity key). */
export function labelSetKey(set: LabelSet): string {
  return intern(labelSetText(set));
}

/**
 * `labelSetKey` without interning it: a string of its own (`join` builds it flat). Interning a new ~250-character
 * key costs ~6 µs (measured: 6,000 pod identity keys, 46 ms interned against 13 ms flat); the pod
 * table shares the identity table's copy instead (PodTable `identityLabels`).
 */
export function labelSetText(set: LabelSet): string {
  return set.map(formatLabel).join(',');
}

export function k8sLabels(map: Readonly<Record<string, string>>): Label[] {
  return Object.entries(map).map(([key, value]) => ({ source: SOURCE_K8S, key, value }));
}

/**
 * Label keys distill (like Cilium) derives itself for a pod's identity. A pod label in one of these
 * spaces would let a pod claim another namespace's labels, service account or cluster, so it never
 * reaches the identity: Cilium's `filterPodLabels` drops every pod label under `io.cilium.k8s`
 * (pkg/k8s/utils/utils.go, `k8sconst.LabelPrefix`), and `SanitizePodLabels` then writes
 * `io.kubernetes.pod.namespace` itself. `reserved:` and `cidr:` labels cannot come from a pod at
 * all: a pod label's source is always `k8s`, and `:` is not allowed in a label key.
 */
const DERIVED_LABEL_PREFIX = 'io.cilium.k8s';

/**
 * `io.kubernetes.pod.namespace` is one exact key (SanitizePodLabels overwrites it): a pod label
 * that only starts with it (`io.kubernetes.pod.namespace/quarantine`, `io.kubernetes.pod.namespaced`)
 * is an ordinary label Cilium keeps, and a deny rule may select it.
 */
export function isDerivedLabelKey(key: string): boolean {
  return key.startsWith(DERIVED_LABEL_PREFIX) || key === POD_NAMESPACE_KEY || filteredOut(key);
}

/**
 * Cilium's default identity label filter (pkg/labelsfilter, defaultLabelPrefixCfg; no `--labels`
 * given): a label is left out of the identity when an ignore pattern matches at the start of its
 * key, unless an include pattern matches a longer start (filterLabels: shortest ignore against
 * longest include). So `pod-template-hash`, `controller-revision-hash`, `pod-template-generation`,
 * `k8s.io/…`, `kubernetes.io/…`, `…beta.kubernetes.io…`, `io.kubernetes…`, `annotation…`,
 * `etcd_node…`, the per-pod controller labels `statefulset.kubernetes.io/pod-name`,
 * `apps.kubernetes.io/pod-index`, `batch.kubernetes.io/job-completion-index` (cilium#28003, #28897),
 * the Job labels `controller-uid…` and `batch.kubernetes.io/controller-uid…` (cilium#31964, 1.16) and
 * `topology.kubernetes.io…` (cilium#43725, in 1.19.0-rc.1 by #43780; finding 2530) select nothing in
 * Cilium, while `app.kubernetes.io/…` and `io.kubernetes.pod.namespace…` are kept.
 */
const LABEL_FILTER_IGNORES = [
  /^io\.kubernetes/, /^kubernetes\.io/, /^statefulset\.kubernetes\.io\/pod-name/, /^apps\.kubernetes\.io\/pod-index/,
  /^batch\.kubernetes\.io\/job-completion-index/, /^batch\.kubernetes\.io\/controller-uid/, /^.*beta\.kubernetes\.io/,
  /^k8s\.io/, /^pod-template-generation/, /^pod-template-hash/, /^controller-revision-hash/, /^controller-uid/,
  /^annotation.*/, /^etcd_node/, /^topology\.kubernetes\.io/,
];
const LABEL_FILTER_INCLUDES = [
  /^io\.kubernetes\.pod\.namespace/, /^io\.cilium\.k8s\.namespace\.labels/, /^app\.kubernetes\.io/,
  /^io\.cilium\.k8s\.policy\.cluster/, /^io\.cilium\.k8s\.policy\.serviceaccount/,
];

/** Any ignore pattern at all: most keys (`app`, `tier`) fail this one test. */
const ANY_LABEL_FILTER_IGNORE = new RegExp(LABEL_FILTER_IGNORES.map((re) => `(?:${re.source})`).join('|'));

/**
 * Whether Cilium's default label filter leaves `key` out of an identity. It runs over every label of a pod's
 * identity, its namespace's labels under `io.cilium.k8s.namespace.labels.` included: only the unanchored
 * `.*beta\.kubernetes\.io` ignore can match there (at 0, longer than that include's 30 characters), so a namespace
 * label whose key contains `beta.kubernetes.io` is no part of it (attack finding 2461).
 */
export function filteredOut(key: string): boolean {
  if (!ANY_LABEL_FILTER_IGNORE.test(key)) return false;
  let ignored = 0;
  for (const re of LABEL_FILTER_IGNORES) {
    const m = re.exec(key);
    if (m && (ignored === 0 || m[0].length < ignored)) ignored = m[0].length;
  }
  if (ignored === 0) return false;
  let included = 0;
  for (const re of LABEL_FILTER_INCLUDES) included = Math.max(included, re.exec(key)?.[0].length ?? 0);
  return included <= ignored;
}

/** The keys of `labels` that belong to a derived label space (dropped from the identity). */
export function derivedLabelKeys(labels: Readonly<Record<string, string>>): string[] {
  return Object.keys(labels).filter(isDerivedLabelKey);
}

/** The keys of a namespace's `labels` that Cilium's label filter leaves out of its pods' identities (finding 2461). */
export function filteredNamespaceLabelKeys(labels: Readonly<Record<string, string>>): string[] {
  return Object.keys(labels).filter((k) => filteredOut(NAMESPACE_LABELS_PREFIX + k));
}

/** Why a namespace label is no part of its pods' identities (warnings name it). */
export const FILTERED_NAMESPACE_LABEL_DETAIL = 'dropped from the identities of the namespace\'s pods: Cilium\'s default label filter ignores a namespace label containing "beta.kubernetes.io", so no namespace selector matches it';

/** Why a pod label key in a derived label space is dropped (warnings name it). */
export function derivedLabelDetail(key: string): string {
  if (!key.startsWith(DERIVED_LABEL_PREFIX) && key !== POD_NAMESPACE_KEY) return `dropped from the pod's identity: Cilium's default label filter ignores "${key}", so no selector matches it`;
  return `dropped from the pod's identity: "${key}" is in a label space Cilium derives itself (a pod cannot claim it)`;
}

const NAME_RE = /^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;
const DNS_LABEL_RE = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS_SUBDOMAIN_RE = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/** RFC 1123 label (namespace names): at most 63 lowercase alphanumerics and `-`. */
export function isDnsLabel(name: string): boolean {
  return name.length <= 63 && DNS_LABEL_RE.test(name);
}

/** RFC 1123 subdomain (object names, label-key prefixes): at most 253 characters. */
export function isDnsSubdomain(name: string): boolean {
  return name.length <= 253 && DNS_SUBDOMAIN_RE.test(name);
}

/** Kubernetes qualified name: `[prefix/]name`, name ≤ 63 chars, prefix a DNS subdomain ≤ 253. */
export function labelKeyProblem(key: string): string | undefined {
  const slash = key.indexOf('/');
  const name = slash >= 0 ? key.slice(slash + 1) : key;
  const prefix = slash >= 0 ? key.slice(0, slash) : undefined;
  if (name === '') return 'name part must not be empty';
  if (name.length > 63) return 'name part must be at most 63 characters';
  if (!NAME_RE.test(name)) return 'name part must consist of alphanumerics, "-", "_" or ".", starting and ending with an alphanumeric';
  if (prefix !== undefined) {
    if (!isDnsSubdomain(prefix)) return 'prefix must be a DNS subdomain';
  }
  return undefined;
}

/** Kubernetes label value: empty, or ≤ 63 chars of alphanumerics and `-_.`, alphanumeric at both ends. */
export function labelValueProblem(value: string): string | undefined {
  if (value === '') return undefined;
  if (value.length > 63) return 'must be at most 63 characters';
  if (!NAME_RE.test(value)) return 'must consist of alphanumerics, "-", "_" or ".", starting and ending with an alphanumeric';
  return undefined;
}

export function reservedLabel(name: string): Label {
  return { source: SOURCE_RESERVED, key: name, value: '' };
}
