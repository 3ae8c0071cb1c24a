import { ciliumExtendedKey, CLUSTER_KEY, NAMESPACE_LABELS_PREFIX, POD_NAMESPACE_KEY, SOURCE_ANY, SOURCE_K8S, SOURCE_RESERVED } from '../model/labels.js';
import type { Verdict } from '../model/rules.js';
import { existsRequirement, hasSource, makeSelector, Requirement, Selector } from '../model/selector.js';
import { SOURCE_CIDR_GROUP } from '../model/cidr-group.js';
import { restrictToNamespace, withRequirement } from './common.js';

/*
 * How a Cilium peer endpoint selector is scoped: to the policy's namespace, to pods, or not at all
 * (Cilium 1.19 getEndpointSelector; the deny reading of attack finding 1101), and whether it could
 * match node identities' labels.
 */

/** The label source of node labels on node identities (Cilium's `node:`). */
export const SOURCE_NODE = 'node';

/**
 * The subject key that makes a clusterwide policy's peers match init endpoints too: Cilium's
 * getEndpointSelector adds no `Exists k8s:io.kubernetes.pod.namespace` to a CCNP peer when the
 * rule's endpointSelector HasKey `reserved:init` (matchesPodInit; init endpoints carry no namespace
 * label, cilium#28007 kept this for clusterwide policies only), whatever the key's operator. HasKey
 * compares extended keys: `$init` and `reserved.init` are this key too (attack finding 1243).
 */
export const POD_INIT_KEY = `${SOURCE_RESERVED}.init`;

/**
 * Cilium scopes a peer endpoint selector to the policy's namespace unless it names a namespace
 * (or namespace labels) itself; clusterwide policies only ever select pods (any namespace),
 * unless their subject names `reserved:init` (see POD_INIT_KEY). Selectors on reserved labels are
 * left alone.
 */
export function scopePeerSelector(sel: Selector, namespace: string | undefined, names: NamespaceKeys, matchesInit: boolean, verdict: Verdict): Selector {
  if (hasSource(sel, SOURCE_RESERVED)) return sel;
  if (names === 'none' && namespace === undefined && matchesInit) return sel;
  if (names === 'none') return namespace === undefined ? withRequirement(sel, '', podsOnly) : restrictToNamespace(sel, namespace);
  if (selectsOnlyPods(sel)) return sel;
  // A selector that names the namespace only negatively (NotIn, DoesNotExist) also matches world,
  // host and every other non-pod identity in Cilium 1.19's getEndpointSelector (a namespace key
  // lifts the scope; in a clusterwide policy only the pod-namespace key, or an init subject, lifts
  // the Exists requirement). cilium#46996 (for cilium#46949, "affects v1.19") always adds a namespace
  // requirement. Both readings are covered: an allow selects pods only, a deny keeps 1.19's wider
  // reading (attack finding 1101).
  const unscopedIn119 = namespace !== undefined || names === 'pod-namespace' || matchesInit;
  return verdict === 'deny' && unscopedIn119 ? sel : withRequirement(sel, '', podsOnly);
}

/** Which namespace keys a peer selector names as written: the pod namespace, only namespace labels, or none. */
type NamespaceKeys = 'pod-namespace' | 'namespace-labels' | 'none';

/**
 * Whether a peer selector names the namespace itself, decided on its keys as written, as Cilium's
 * getEndpointSelector does (pkg/k8s/apis/cilium.io/utils/utils.go) on the extended keys
 * (`labels.GetExtendedKeyFrom`): only `k8s.` or `any.` `io.kubernetes.pod.namespace` or
 * `io.cilium.k8s.namespace.labels.*` counts, so `k8s:io.kubernetes.pod.namespace=x` and
 * `k8s.io:kubernetes.pod.namespace` do too (attack findings 1242, 1243). An `unspec:` key matches
 * like `any:` but does not lift the scope (`HasKey("any....")` is false).
 */
export function rawKeysNameNamespace(v: unknown): NamespaceKeys {
  let names: NamespaceKeys = 'none';
  for (const raw of rawKeys(v)) {
    const extended = ciliumExtendedKey(raw);
    for (const source of [SOURCE_K8S, SOURCE_ANY]) {
      if (extended === `${source}.${POD_NAMESPACE_KEY}`) return 'pod-namespace';
      if (extended.startsWith(`${source}.${NAMESPACE_LABELS_PREFIX}`)) names = 'namespace-labels';
    }
  }
  return names;
}

/** A selector's keys as written (matchLabels and matchExpressions), as Cilium's HasKey reads them. */
export function rawKeys(v: unknown): string[] {
  if (typeof v !== 'object' || v === null) return [];
  const o = v as Record<string, unknown>;
  const keys = typeof o.matchLabels === 'object' && o.matchLabels !== null ? Object.keys(o.matchLabels) : [];
  for (const e of Array.isArray(o.matchExpressions) ? (o.matchExpressions as unknown[]) : []) {
    const key = typeof e === 'object' && e !== null ? (e as Record<string, unknown>).key : undefined;
    if (typeof key === 'string') keys.push(key);
  }
  return keys;
}

/**
 * Whether a peer selector can reach a node identity through a label distill's node identities do
 * not carry for endpoint selectors. With enable-node-selector-labels Cilium's node identity is
 * reserved:host or reserved:remote-node (maybe reserved:kube-apiserver), its Node labels under
 * `node:` and `k8s:io.cilium.k8s.policy.cluster` (pkg/node/manager nodeIdentityLabels); a key
 * without source (`any:`) or with `node:`, or the cluster key, may match those. A selector with a
 * requirement no node identity meets (pods only, another `k8s:` key, another reserved label) is exact.
 */
export function readsNodeLabels(sel: Selector): boolean {
  if (selectsOnlyPods(sel)) return false;
  const excludesNodes = sel.requirements.some(
    (q) =>
      (q.operator === 'In' || q.operator === 'Exists') &&
      ((q.key.source === SOURCE_K8S && q.key.key !== CLUSTER_KEY) || (q.key.source === SOURCE_RESERVED && !NODE_RESERVED_NAMES.includes(q.key.key))),
  );
  return !excludesNodes && sel.requirements.some((q) => q.key.source === SOURCE_ANY || q.key.source === SOURCE_NODE || q.key.key === CLUSTER_KEY);
}

const NODE_RESERVED_NAMES: readonly string[] = ['host', 'remote-node', 'kube-apiserver'];

/**
 * The reserved labels of an identity for an address outside the cluster (a CIDR, CIDR-group, learnt
 * FQDN or API-server prefix): `AddWorldLabel` gives world, world-ipv4 or world-ipv6, the API server's
 * addresses carry kube-apiserver. Such identities also carry `cidr:`, `cidrgroup:` (pkg/policy/k8s
 * cilium_cidr_group.go applyCIDRGroup: the group's metadata.labels under the source `cidrgroup`,
 * inherited by longer prefixes, pkg/ipcache/metadata.go mergeParentLabels) and `fqdn:` labels.
 */
const OUTSIDE_RESERVED_NAMES: readonly string[] = ['world', 'world-ipv4', 'world-ipv6', 'kube-apiserver'];

/**
 * Whether a peer selector can reach the identity of an address outside the cluster through a label
 * distill's label selectors do not see there. Cilium matches a key without source (`any:`) against
 * every source (pkg/labels/array.go `LabelArray.Has`/`Get`: `IsAnySource` compares the key only), so
 * `team=a` matches `cidrgroup:team=a` on a group's prefixes and `10.0.0.0/8` the label
 * `cidr:10.0.0.0/8`; distill's CIDR identities carry their reserved labels only (attack finding 2020,
 * as 952 for written `cidrgroup:` keys). A selector with a positive requirement such identities never
 * meet (a `k8s:` key, another reserved label) is exact. Otherwise distill's selection there is
 * narrower when an `any:` requirement is positive (In, Exists: a deny would deny too little) and wider
 * when one is negative (NotIn, DoesNotExist: an allow would allow too much); each of these is what
 * this returns true for, per verdict.
 */
export function readsOutsideLabels(sel: Selector, verdict: Verdict): boolean {
  // A pod-namespace or namespace-label requirement excludes every outside identity but a CIDR group's
  // (a group's `io.cilium.k8s*` labels are dropped, RemoveCiliumLabels; one labelled
  // io.kubernetes.pod.namespace is selected through `groupReading`: attack finding 2172).
  if (selectsOnlyPods(sel)) return false;
  const positive = (q: Requirement): boolean => q.operator === 'In' || q.operator === 'Exists';
  const excludesOutside = sel.requirements.some((q) => positive(q) && q.key.source !== SOURCE_ANY && !(q.key.source === SOURCE_RESERVED && OUTSIDE_RESERVED_NAMES.includes(q.key.key)));
  return !excludesOutside && sel.requirements.some((q) => q.key.source === SOURCE_ANY && positive(q) === (verdict === 'deny'));
}

/**
 * How a peer selector reads the identities of CIDR-group prefixes when it needs
 * `any:io.kubernetes.pod.namespace` (attack finding 2172). Cilium reads such a key as `any:`
 * (getEndpointSelector adds no namespace requirement when the selector HasKey
 * `any.io.kubernetes.pod.namespace`), `LabelArray.Has` matches an `any:` key against a label of every
 * source, and `applyCIDRGroup` gives a group's prefixes its metadata.labels (all but `io.cilium.k8s*`)
 * under `cidrgroup:`: a group labelled `io.kubernetes.pod.namespace: x` is selected by
 * `{io.kubernetes.pod.namespace: x}`. Returns:
 * - `none` when the selector cannot match such an identity (no `any:` pod-namespace requirement, or a
 *   positive requirement no group identity meets: a `k8s:` or other non-`any:` key, a namespace label);
 * - a selector on `cidrgroup:` keys that matches the group labels it reads (each `any:` requirement
 *   re-sourced; a requirement on another source is negative here, so every group identity meets it);
 * - `unsupported` when that re-reading could be more open than Cilium's: a `reserved:` requirement
 *   (group identities carry reserved:world), or an `any:` requirement that a CIDR identity's other
 *   labels (`cidr:<prefix>`, `reserved:world…`, with the value "") could decide, positive in a deny
 *   (it would deny too little) or negative in an allow (it would allow too much).
 */
export function groupReading(sel: Selector, verdict: Verdict): Selector | 'none' | 'unsupported' {
  const positive = (q: Requirement): boolean => q.operator === 'In' || q.operator === 'Exists';
  const namesPodNamespace = sel.requirements.some((q) => positive(q) && q.key.source === SOURCE_ANY && q.key.key === POD_NAMESPACE_KEY);
  if (!namesPodNamespace) return 'none';
  const groupsNever = (q: Requirement): boolean =>
    positive(q) && ((q.key.source !== SOURCE_ANY && q.key.source !== SOURCE_RESERVED) || q.key.key.startsWith(CILIUM_K8S_LABEL_PREFIX));
  if (sel.requirements.some(groupsNever)) return 'none';
  if (sel.requirements.some((q) => q.key.source === SOURCE_RESERVED)) return 'unsupported';
  const requirements: Requirement[] = [];
  for (const q of sel.requirements) {
    if (q.key.source !== SOURCE_ANY) continue;
    if (otherOutsideLabelDecides(q) && positive(q) === (verdict === 'deny')) return 'unsupported';
    requirements.push({ ...q, key: { source: SOURCE_CIDR_GROUP, key: q.key.key } });
  }
  return makeSelector(requirements);
}

/** Keys `utils.RemoveCiliumLabels` drops from a group's labels (k8sconst.LabelPrefix): no group label has one. */
const CILIUM_K8S_LABEL_PREFIX = 'io.cilium.k8s';

/**
 * Whether an `any:` requirement could be decided by a label of a CIDR identity other than its group
 * labels: `reserved:world…`/`reserved:kube-apiserver` (AddWorldLabel) and `cidr:<prefix>` (IPv6 with `-`
 * for `:`) all have the value "", so only Exists, DoesNotExist or a value list holding "" read them, on
 * a reserved outside name or a prefix key. (`fqdn:<name>` labels are left: attack finding 2211.)
 */
function otherOutsideLabelDecides(q: Requirement): boolean {
  const readsEmpty = q.operator === 'Exists' || q.operator === 'DoesNotExist' || q.values.includes('');
  return readsEmpty && (OUTSIDE_RESERVED_NAMES.includes(q.key.key) || /^[0-9a-fA-F.:-]+\/[0-9]{1,3}$/.test(q.key.key));
}

function podsOnly(): Requirement {
  return existsRequirement({ source: SOURCE_K8S, key: POD_NAMESPACE_KEY });
}

/** Some requirement needs a label only pods carry: the pod namespace or a namespace label. */
function selectsOnlyPods(sel: Selector): boolean {
  return sel.requirements.some(
    (q) =>
      (q.operator === 'In' || q.operator === 'Exists') &&
      (q.key.source === SOURCE_K8S || q.key.source === SOURCE_ANY) &&
      (q.key.key === POD_NAMESPACE_KEY || q.key.key.startsWith(NAMESPACE_LABELS_PREFIX)),
  );
}
