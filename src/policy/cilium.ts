import { ciliumExtendedKey, CLUSTER_KEY, DEFAULT_CLUSTER_NAME, NAMESPACE_LABELS_PREFIX, POD_NAMESPACE_KEY, reservedLabel, SOURCE_ANY, SOURCE_CIDR, SOURCE_K8S, SOURCE_RESERVED } from '../model/labels.js';
import { asciiToLower, goToLower, KAFKA_API_KEYS, re2SyntaxError } from '../model/l7.js';
import { ALL_L4, FlowProtocol, ICMPV4_TYPES, ICMPV6_TYPES, isValidPortName, L4Match, MAX_PORT, RuleProtocol } from '../model/ports.js';
import type { Direction, DnsRule, Enforcement, HttpHeaderMatch, HttpRule, KafkaRule, L7Rules, Peer, Policy, PolicyKind, PolicyRef, PolicyRule, PolicyWarning, PortClause, Verdict } from '../model/rules.js';
import {
  existsRequirement,
  hasSource,
  makeSelector,
  matchLabelRequirement,
  Requirement,
  Selector,
  WILDCARD_SELECTOR,
} from '../model/selector.js';
import { FqdnSelector, fqdnSyntaxError, makeFqdnSelector } from '../model/fqdn.js';
import { readCidr, readCidrWithExcept, readMetadata, refOf, restrictToNamespace, withRequirement } from './common.js';
import { absent, at, join, Reader } from './reader.js';
import { intern } from '../model/intern.js';
import { RESERVED_IDENTITIES } from '../model/identity.js';
import { parseLabelSelector, SelectorOptions } from './selector.js';

/** The label source of node labels on node identities (Cilium's `node:`). */
const SOURCE_NODE = 'node';
/** The label source CiliumCIDRGroup objects give CIDR identities (Cilium's `cidrgroup:`). */
const SOURCE_CIDR_GROUP = 'cidrgroup';

const CILIUM_SELECTOR: SelectorOptions = { defaultSource: SOURCE_ANY, allowSourcePrefix: true };

/**
 * The CRD's enum for `toEntities`/`fromEntities` items (`+kubebuilder:validation:Enum` on
 * `Entity`, pkg/policy/api/entity.go): the API server refuses `world-ipv4` and `world-ipv6`,
 * though the agent maps them (`EntitySelectorMapping`); `world` still selects both families.
 */
const ENTITIES = [
  'all',
  'world',
  'cluster',
  'host',
  'remote-node',
  'kube-apiserver',
  'health',
  'init',
  'ingress',
  'unmanaged',
  'none',
] as const;
type Entity = (typeof ENTITIES)[number];

function reservedSelector(name: string): Selector {
  const l = reservedLabel(name);
  return makeSelector([matchLabelRequirement({ source: l.source, key: l.key }, '')]);
}

/**
 * Where the API server can be while its addresses are unknown (the agent has read no EndpointSlice
 * of default/kubernetes yet; a scenario without `apiServer`): Cilium labels those backends
 * `reserved:kube-apiserver` in the ipcache (pkg/ipcache/cell/apiserver_watcher.go
 * `registerAPIServerBackendWatcher`), outside the cluster or on a node. A deny on the entity then
 * also covers all of them (fail closed: attack finding 100); these peers are marked and dropped
 * once the addresses are known (rules.ts `withoutApiServerStandIns`).
 */
const KUBE_APISERVER_DENY_STAND_IN = ['host', 'remote-node', 'world', 'world-ipv4', 'world-ipv6'];

/** What each entity selects, as Cilium maps entities onto label selectors (`deny`: in a deny rule). */
function entityPeers(entity: Entity, deny: boolean): Peer[] {
  const peers: Peer[] = entitySelectors(entity).map((selector) => ({ kind: 'selector', selector, entity }));
  if (entity === 'kube-apiserver' && deny) for (const name of KUBE_APISERVER_DENY_STAND_IN) peers.push({ kind: 'selector', selector: reservedSelector(name), entity, apiServerStandIn: true });
  return peers;
}

function entitySelectors(entity: Entity): Selector[] {
  switch (entity) {
    case 'all':
      return [WILDCARD_SELECTOR];
    case 'world':
      return ['world', 'world-ipv4', 'world-ipv6'].map(reservedSelector);
    case 'none':
      // Cilium: "an entity that can be selected but never exist" (reserved:none).
      return [];
    case 'cluster':
      return [
        ...['host', 'remote-node', 'init', 'ingress', 'health', 'unmanaged', 'kube-apiserver'].map(reservedSelector),
        makeSelector([matchLabelRequirement({ source: SOURCE_K8S, key: CLUSTER_KEY }, DEFAULT_CLUSTER_NAME)]),
      ];
    default:
      return [reservedSelector(entity)];
  }
}

/** The CRD's enum for `toPorts[].ports[].protocol` (case-sensitive; ICMP only through `icmps`). */
const CILIUM_PROTOCOLS = ['TCP', 'UDP', 'SCTP', 'ANY'] as const;

interface DirectionShape {
  readonly field: 'ingress' | 'ingressDeny' | 'egress' | 'egressDeny';
  readonly direction: Direction;
  readonly verdict: Verdict;
  readonly endpoints: string;
  readonly cidr: string;
  readonly cidrSet: string;
  readonly entities: string;
  readonly nodes: string;
  readonly unsupported: readonly string[];
}

const SHAPES: readonly DirectionShape[] = [
  { field: 'ingress', direction: 'ingress', verdict: 'allow', endpoints: 'fromEndpoints', cidr: 'fromCIDR', cidrSet: 'fromCIDRSet', entities: 'fromEntities', nodes: 'fromNodes', unsupported: ['fromRequires', 'fromGroups', 'authentication'] },
  { field: 'ingressDeny', direction: 'ingress', verdict: 'deny', endpoints: 'fromEndpoints', cidr: 'fromCIDR', cidrSet: 'fromCIDRSet', entities: 'fromEntities', nodes: 'fromNodes', unsupported: ['fromRequires', 'fromGroups'] },
  { field: 'egress', direction: 'egress', verdict: 'allow', endpoints: 'toEndpoints', cidr: 'toCIDR', cidrSet: 'toCIDRSet', entities: 'toEntities', nodes: 'toNodes', unsupported: ['toRequires', 'toServices', 'toFQDNs', 'toGroups', 'authentication'] },
  { field: 'egressDeny', direction: 'egress', verdict: 'deny', endpoints: 'toEndpoints', cidr: 'toCIDR', cidrSet: 'toCIDRSet', entities: 'toEntities', nodes: 'toNodes', unsupported: ['toRequires', 'toServices', 'toGroups'] },
];

/** The Cilium agent options that change how a Cilium policy is read (each at Cilium's default when absent). */
export interface CiliumAgentOptions {
  /**
   * Cilium's `enable-node-selector-labels` agent option: `toNodes`/`fromNodes` are read only with
   * it; without it (Cilium's default) the agent refuses them, and so does distill.
   */
  readonly nodeSelectorLabels?: boolean;
  /** `false`: Cilium's `enable-l7-proxy=false` (default on): a policy with L7 rules is refused (`IngressRule.Validate`/`EgressRule.Validate`). */
  readonly l7Proxy?: boolean;
  /** `false`: Cilium's `enable-icmp-rules=false` (hidden, default on): a policy with `icmps` is refused. */
  readonly icmpRules?: boolean;
  /**
   * `false`: Cilium's `enable-non-default-deny-policies=false` (hidden, default on; Helm's
   * `enableNonDefaultDenyPolicies`): `enableDefaultDeny` is ignored, every rule isolates its direction
   * (`Rule.Sanitize`, and `evaluateDefaultDenyForRule` in pkg/policy/utils: "DefaultDeny is enabled").
   */
  readonly nonDefaultDenyPolicies?: boolean;
}

/** How manifests are read. */
export interface ParseOptions extends CiliumAgentOptions {
  /** `false` refuses `toFQDNs` (for a consumer that cannot learn DNS answers); default: read it. */
  readonly fqdn?: boolean;
}

/** Only the options that differ from Cilium's defaults (so an agent's config can be passed as is). */
export function ciliumAgentOptions(o: CiliumAgentOptions): CiliumAgentOptions {
  return {
    ...(o.nodeSelectorLabels === true ? { nodeSelectorLabels: true } : {}),
    ...(o.l7Proxy === false ? { l7Proxy: false } : {}),
    ...(o.icmpRules === false ? { icmpRules: false } : {}),
    ...(o.nonDefaultDenyPolicies === false ? { nonDefaultDenyPolicies: false } : {}),
  };
}

const RULE_FIELDS = ['endpointSelector', 'nodeSelector', 'ingress', 'ingressDeny', 'egress', 'egressDeny', 'labels', 'description', 'enableDefaultDeny', 'log'];

/** Parses a `cilium.io/v2` CiliumNetworkPolicy or CiliumClusterwideNetworkPolicy (`spec` and/or `specs`). */
export function parseCiliumPolicy(r: Reader, doc: Record<string, unknown>, kind: Exclude<PolicyKind, 'NetworkPolicy'>, options: ParseOptions = {}): Policy {
  const namespaced = kind === 'CiliumNetworkPolicy';
  const md = readMetadata(r, doc.metadata, namespaced);
  const ref = refOf(kind, md);
  const specs: [unknown, string][] = [];
  if (!absent(doc.spec)) specs.push([doc.spec, 'spec']);
  (r.optArray(doc.specs, 'specs') ?? []).forEach((s, i) => specs.push([s, at('specs', i)]));
  if (specs.length === 0) r.fail('', 'must have spec or specs');
  const out: RuleSet = { rules: [], enforcements: [], warnings: [] };
  for (const [spec, path] of specs) parseRule(r, spec, path, ref, md.namespace, out, options);
  return { ref, rules: out.rules.slice(), enforcements: out.enforcements.slice(), warnings: out.warnings.slice(), manifest: doc };
}

interface RuleSet {
  readonly rules: PolicyRule[];
  readonly enforcements: Enforcement[];
  readonly warnings: PolicyWarning[];
}

/** Cilium's podPrefixLbl (pkg/k8s/apis/cilium.io/utils/utils.go), an extended key: GetMatch, AddMatch and HasKey compare extended keys. */
const K8S_NAMESPACE_KEY = `${SOURCE_K8S}.${POD_NAMESPACE_KEY}`;

/**
 * The subject of a rule. In a CiliumNetworkPolicy, Cilium overwrites the `matchLabels` entry
 * whose extended key is `k8s.io.kubernetes.pod.namespace` (`k8s:io.kubernetes.pod.namespace`,
 * also with `=...` after it: attack finding 1243) with the policy's own namespace ("removing illegal namespace
 * match", pkg/k8s/apis/cilium.io/utils ParseCiliumRule: GetMatch + AddMatch); any other namespace
 * requirement is kept and ANDed with it.
 */
function parseSubject(r: Reader, v: unknown, path: string, namespace: string | undefined, warnings: PolicyWarning[]): Selector {
  const parsed = parseLabelSelector(r, v, path, CILIUM_SELECTOR);
  if (namespace === undefined) return parsed;
  const raw = v as Record<string, unknown>;
  let sel = parsed;
  const ml = raw.matchLabels;
  const named = typeof ml === 'object' && ml !== null ? Object.entries(ml).find(([k]) => ciliumExtendedKey(k) === K8S_NAMESPACE_KEY) : undefined;
  if (named !== undefined) {
    if (named[1] !== namespace) {
      warnings.push({ source: r.source, path: join(join(path, 'matchLabels'), named[0]), detail: `names namespace "${String(named[1])}"; Cilium replaces it with the policy's namespace "${namespace}" (an endpointSelector always applies in its policy's namespace)` });
    }
    const rest = Object.fromEntries(Object.entries(ml as Record<string, unknown>).filter(([k]) => k !== named[0]));
    sel = parseLabelSelector(r, { ...raw, matchLabels: rest }, path, CILIUM_SELECTOR);
  }
  const scoped = restrictToNamespace(sel, namespace);
  const excludes = sel.requirements.some((q) => q.key.key === POD_NAMESPACE_KEY && (q.key.source === SOURCE_K8S || q.key.source === SOURCE_ANY) && q.operator === 'In' && !q.values.includes(namespace));
  if (excludes) warnings.push({ source: r.source, path, detail: `requires another namespace than the policy's "${namespace}", to which Cilium restricts it: it selects no endpoint` });
  return scoped;
}

function parseRule(r: Reader, v: unknown, path: string, ref: PolicyRef, namespace: string | undefined, out: RuleSet, options: ParseOptions): void {
  const { rules, enforcements } = out;
  const o = r.object(v, path, RULE_FIELDS);
  // A namespaced policy's host spec: pkg/k8s/apis/cilium.io/v2/cnp_types.go Parse refuses the whole object ("rule cannot
  // have NodeSelector"). In a clusterwide one, "is not supported by distill": the agent's stand-in skips this spec only
  // and keeps the endpoint specs, which Cilium enforces (attack finding 1304).
  if (!absent(o.nodeSelector)) checkHostSpec(r, o, path, namespace);
  if (!absent(o.nodeSelector)) r.fail(join(path, 'nodeSelector'), 'is not supported by distill (a host policy: distill models pod endpoints, not the host endpoint)');
  if (absent(o.endpointSelector)) r.fail(join(path, 'endpointSelector'), 'is required');
  const subject = parseSubject(r, o.endpointSelector, join(path, 'endpointSelector'), namespace, out.warnings);
  r.optString(o.description, join(path, 'description'));
  (r.optArray(o.labels, join(path, 'labels')) ?? []).forEach((l, i) => {
    const lo = r.object(l, at(join(path, 'labels'), i), ['key', 'value', 'source']);
    r.nonEmptyString(lo.key, join(at(join(path, 'labels'), i), 'key'));
    r.optString(lo.value, join(at(join(path, 'labels'), i), 'value'));
    r.optString(lo.source, join(at(join(path, 'labels'), i), 'source'));
  });
  readLogConfig(r, o.log, join(path, 'log'));
  const dd = r.optObject(o.enableDefaultDeny, join(path, 'enableDefaultDeny'), ['ingress', 'egress']);
  const explicitDefaultDeny: Record<Direction, boolean | undefined> = {
    ingress: r.optBoolean(dd?.ingress, join(path, 'enableDefaultDeny.ingress')),
    egress: r.optBoolean(dd?.egress, join(path, 'enableDefaultDeny.egress')),
  };
  const hasRules: Record<Direction, boolean> = { ingress: false, egress: false };
  const matchesInit = namespace === undefined && rawKeys(o.endpointSelector).some((k) => ciliumExtendedKey(k) === POD_INIT_KEY);
  for (const shape of SHAPES) {
    const list = r.optArray(o[shape.field], join(path, shape.field)) ?? [];
    if (list.length > 0) hasRules[shape.direction] = true;
    list.forEach((item, i) => {
      rules.push(parseDirectionalRule(r, item, at(join(path, shape.field), i), shape, ref, namespace, subject, options, matchesInit));
    });
  }
  // Cilium 1.19 `Rule.Sanitize` (rule_validation.go `Validate` on main): "rule must have at least
  // one of Ingress, IngressDeny, Egress, EgressDeny" (an empty list counts as none), and
  // CiliumNetworkPolicy.Parse then refuses every spec of the object (attack finding 713).
  if (!hasRules.ingress && !hasRules.egress) r.fail(path, 'rule must have at least one of Ingress, IngressDeny, Egress, EgressDeny (an empty list is none; Cilium refuses the whole policy)');
  for (const direction of ['ingress', 'egress'] as const) {
    // Cilium makes one policy entry per ingress/egress rule, each carrying the flag
    // (ParseCiliumRule: newPolicyEntry), so the flag only matters for a direction with rules.
    const defaultDeny = options.nonDefaultDenyPolicies === false || (explicitDefaultDeny[direction] ?? true);
    if (hasRules[direction] && defaultDeny) {
      enforcements.push({ origin: { policy: ref, path: intern(path) }, subject, direction });
    }
  }
}

/** What Cilium refuses in a host spec, whose object the agent then skips whole (no stand-in keeps its other specs). */
function checkHostSpec(r: Reader, o: Record<string, unknown>, path: string, namespace: string | undefined): void {
  if (namespace !== undefined) r.fail(join(path, 'nodeSelector'), 'a CiliumNetworkPolicy rule cannot have nodeSelector (Cilium refuses the policy; host policies are CiliumClusterwideNetworkPolicies)');
  // Rule.Sanitize (pkg/policy/api/rule_validation.go); the CRD's oneOf refuses both selectors too.
  if (!absent(o.endpointSelector)) r.fail(path, 'rule cannot have both EndpointSelector and NodeSelector');
  const lists = ['ingress', 'ingressDeny', 'egress', 'egressDeny'].map((f) => o[f]);
  if (!lists.some((l) => Array.isArray(l) && l.length > 0)) r.fail(path, 'rule must have at least one of Ingress, IngressDeny, Egress, EgressDeny (an empty list is none; Cilium refuses the whole policy)');
}

/** Characters of Unicode's C categories that Go's `\PC` refuses (its tables hold no unassigned code points, Cn; JSON decoding turns lone surrogates into U+FFFD). */
const GO_OTHER_CHARACTER = /[\p{Cc}\p{Cf}\p{Co}]/u;
const MAX_LOG_VALUE = 32;

/**
 * `log: {value}` (pkg/policy/api/rule.go LogConfig): Hubble's label for the flows the policy
 * matches. The CRD refuses a value that is not a string, is longer than 32 characters (go-openapi
 * MaxLength counts runes) or has a control or format character (`pattern: ^\PC*$`), so the API
 * server never stores such a policy (attack finding 1302).
 */
function readLogConfig(r: Reader, v: unknown, path: string): void {
  const value = r.optString(r.optObject(v, path, ['value'])?.value, join(path, 'value'));
  if (value === undefined) return;
  if ([...value].length > MAX_LOG_VALUE) r.fail(join(path, 'value'), `is ${[...value].length} characters; the CRD allows at most ${MAX_LOG_VALUE}`);
  if (GO_OTHER_CHARACTER.test(value)) r.fail(join(path, 'value'), 'has a control or format character, which the CRD\'s pattern ^\\PC*$ refuses');
}

/**
 * The subject key that makes a clusterwide policy's peers match init endpoints too: Cilium's
 * getEndpointSelector adds no `Exists k8s:io.kubernetes.pod.namespace` to a CCNP peer when the
 * rule's endpointSelector HasKey `reserved:init` (matchesPodInit; init endpoints carry no namespace
 * label, cilium#28007 kept this for clusterwide policies only), whatever the key's operator. HasKey
 * compares extended keys: `$init` and `reserved.init` are this key too (attack finding 1243).
 */
const POD_INIT_KEY = `${SOURCE_RESERVED}.init`;

/**
 * Cilium scopes a peer endpoint selector to the policy's namespace unless it names a namespace
 * (or namespace labels) itself; clusterwide policies only ever select pods (any namespace),
 * unless their subject names `reserved:init` (see POD_INIT_KEY). Selectors on reserved labels are
 * left alone.
 */
function scopePeerSelector(sel: Selector, namespace: string | undefined, names: NamespaceKeys, matchesInit: boolean, verdict: Verdict): Selector {
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
function rawKeysNameNamespace(v: unknown): NamespaceKeys {
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
function rawKeys(v: unknown): string[] {
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
function readsNodeLabels(sel: Selector): boolean {
  if (selectsOnlyPods(sel)) return false;
  const excludesNodes = sel.requirements.some(
    (q) =>
      (q.operator === 'In' || q.operator === 'Exists') &&
      ((q.key.source === SOURCE_K8S && q.key.key !== CLUSTER_KEY) || (q.key.source === SOURCE_RESERVED && !NODE_RESERVED_NAMES.includes(q.key.key))),
  );
  return !excludesNodes && sel.requirements.some((q) => q.key.source === SOURCE_ANY || q.key.source === SOURCE_NODE || q.key.key === CLUSTER_KEY);
}

const NODE_RESERVED_NAMES: readonly string[] = ['host', 'remote-node', 'kube-apiserver'];

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

/** One rule of `ingress`, `ingressDeny`, `egress` or `egressDeny`: its L3 peers, its toFQDNs and its port clauses. */
function parseDirectionalRule(r: Reader, v: unknown, path: string, shape: DirectionShape, ref: PolicyRef, namespace: string | undefined, subject: Selector, options: ParseOptions, matchesInit: boolean): PolicyRule {
  const o = r.object(v, path, [shape.endpoints, shape.cidr, shape.cidrSet, shape.entities, shape.nodes, 'toPorts', 'icmps', ...shape.unsupported]);
  const fqdnField = shape.field === 'egress' && options.fqdn !== false ? 'toFQDNs' : undefined;
  checkPeerFields(r, o, path, shape, fqdnField);
  const l3 = readL3Peers(r, o, path, shape, namespace, options, matchesInit);
  const toFQDNs = fqdnField === undefined ? undefined : readToFqdns(r, o.toFQDNs, join(path, 'toFQDNs'));
  const { ports, hasL4 } = readPortClauses(r, o, path, shape, options);
  const peers = l3.peers;
  // A rule with ports but no peer field applies to every peer; a rule with neither selects nothing.
  if (!l3.anyL3 && toFQDNs === undefined && ports.length > 0 && hasL4) peers.push({ kind: 'selector', selector: WILDCARD_SELECTOR });
  // Exact-size copies: arrays grown by push keep spare capacity for as long as the policy lives.
  return { origin: { policy: ref, path: intern(path) }, subject, direction: shape.direction, verdict: shape.verdict, peers: peers.slice(), ports: ports.slice(), ...(toFQDNs ? { toFQDNs } : {}) };
}

/** The fields distill does not read, and two peer kinds in one rule, are refused. */
function checkPeerFields(r: Reader, o: Record<string, unknown>, path: string, shape: DirectionShape, fqdnField: string | undefined): void {
  for (const u of shape.unsupported) {
    if (u === fqdnField) continue;
    if (UNREAD_LISTS.includes(u)) {
      checkUnreadList(r, o[u], join(path, u));
      continue;
    }
    if (!absent(o[u])) r.fail(join(path, u), u === 'toFQDNs' ? 'is not read here (parsed with fqdn: false)' : 'is not supported by distill');
  }
  // Cilium (pkg/policy/api/rule_validation.go, IngressCommonRule.Validate /
  // EgressCommonRule.Validate) refuses two non-empty peer kinds in one rule; ToFQDNs is one of
  // the L3 members it counts.
  const kinds = [shape.endpoints, shape.cidr, shape.cidrSet, shape.entities, shape.nodes, ...(fqdnField ? [fqdnField] : [])].filter((f) => Array.isArray(o[f]) && (o[f] as unknown[]).length > 0);
  if (kinds.length > 1) r.fail(path, `combining ${kinds[0]} and ${kinds[1]} is not supported (Cilium refuses it: "combining ${kinds[0]} and ${kinds[1]} is not supported yet"); write one rule per peer kind`);
}

/** List fields distill does not read (`toFQDNs` aside, read elsewhere). */
const UNREAD_LISTS = ['fromRequires', 'toRequires', 'fromGroups', 'toGroups', 'toServices'];

/**
 * An empty list of a field distill does not read is Go's omitted field in Cilium 1.19 (each is
 * `omitempty`; pkg/policy/api/ingress.go, egress.go): `RequiresDerivative` (`len(ToGroups) > 0`),
 * the service translation and parserules.go `mergeEndpointSelectors` (which takes none of them) see
 * nothing, so it is read as absent (attack finding 1303: the agent's stand-in dropped the allow
 * rule, or denied every peer, for `fromRequires: []`). An item stays "not supported" (the stand-in
 * is closed under any reading); `fromRequires`/`toRequires` are deprecated `[]string` with
 * `+kubebuilder:validation:MaxItems=0`, so the API server refuses any item.
 */
function checkUnreadList(r: Reader, v: unknown, path: string): void {
  if (absent(v) || r.array(v, path).length === 0) return;
  const requires = path.endsWith('Requires');
  r.fail(path, `is not supported by distill${requires ? " (deprecated: Cilium 1.19's CRD allows no items, maxItems 0)" : ''}`);
}

/** The rule's L3 peers; `anyL3` when it has an L3 peer field at all (an empty one selects nothing). */
function readL3Peers(r: Reader, o: Record<string, unknown>, path: string, shape: DirectionShape, namespace: string | undefined, options: ParseOptions, matchesInit: boolean): { peers: Peer[]; anyL3: boolean } {
  const peers: Peer[] = [];
  const eps = r.optArray(o[shape.endpoints], join(path, shape.endpoints));
  eps?.forEach((e, i) => peers.push(readEndpointPeer(r, e, at(join(path, shape.endpoints), i), namespace, options, matchesInit, shape.verdict)));
  const nodes = r.optArray(o[shape.nodes], join(path, shape.nodes));
  nodes?.forEach((n, i) => peers.push({ kind: 'nodes', selector: parseNodeSelector(r, n, at(join(path, shape.nodes), i), options) }));
  const ents = r.optArray(o[shape.entities], join(path, shape.entities));
  ents?.forEach((e, i) => peers.push(...entityPeers(r.oneOf(e, at(join(path, shape.entities), i), ENTITIES), shape.verdict === 'deny')));
  const cidrs = r.optArray(o[shape.cidr], join(path, shape.cidr));
  // The CRD types each item `format: cidr` (earlier: a pattern ending in /prefix-length), so the
  // API server refuses a bare address that the agent's CIDR.sanitize alone would take.
  cidrs?.forEach((c, i) => peers.push({ kind: 'cidr', cidr: readCidr(r, c, at(join(path, shape.cidr), i), true), except: [] }));
  const sets = r.optArray(o[shape.cidrSet], join(path, shape.cidrSet));
  sets?.forEach((s, i) => peers.push(readCidrSetPeer(r, s, at(join(path, shape.cidrSet), i))));
  return { peers, anyL3: eps !== undefined || nodes !== undefined || ents !== undefined || cidrs !== undefined || sets !== undefined };
}

/** One endpoint selector of `fromEndpoints`/`toEndpoints`, scoped to the policy's namespace. */
function readEndpointPeer(r: Reader, e: unknown, path: string, namespace: string | undefined, options: ParseOptions, matchesInit: boolean, verdict: Verdict): Peer {
  const sel = parseLabelSelector(r, e, path, CILIUM_SELECTOR);
  // Cilium matches `cidr:` keys against the labels of CIDR identities; distill's label selectors
  // never see those labels, so a deny would miss them and a DoesNotExist would match them. The
  // same holds for `cidrgroup:` keys, the labels CiliumCIDRGroup objects give those identities
  // (pkg/policy/api/cidr.go ToSelectors: a cidrGroupRef is `Exists cidrgroup.<key>`; attack finding 952).
  if (hasSource(sel, SOURCE_CIDR)) r.fail(path, 'a `cidr:` label key in an endpoint selector is not supported by distill (write the prefix in a CIDR field)');
  if (hasSource(sel, SOURCE_CIDR_GROUP)) r.fail(path, 'a `cidrgroup:` label key in an endpoint selector is not supported by distill (CiliumCIDRGroup objects are not modelled)');
  const scoped = scopePeerSelector(sel, namespace, rawKeysNameNamespace(e), matchesInit, verdict);
  if (options.nodeSelectorLabels === true && readsNodeLabels(scoped)) r.fail(path, 'this selector is not scoped to pods (a `reserved:` key, a clusterwide policy whose subject names reserved:init, or a deny naming the namespace only through NotIn/DoesNotExist) and could match the Node labels of node identities (enable-node-selector-labels gives them `node:` labels and k8s:io.cilium.k8s.policy.cluster), which distill does not model for endpoint selectors; write toNodes/fromNodes for Node labels');
  return { kind: 'selector', selector: scoped };
}

/** One `fromCIDRSet`/`toCIDRSet` item: a CIDR and its exceptions (CIDR groups are not read). */
function readCidrSetPeer(r: Reader, s: unknown, path: string): Peer {
  const so = r.object(s, path, ['cidr', 'except', 'cidrGroupRef', 'cidrGroupSelector']);
  if (!absent(so.cidrGroupRef)) r.fail(join(path, 'cidrGroupRef'), 'is not supported by distill');
  if (!absent(so.cidrGroupSelector)) r.fail(join(path, 'cidrGroupSelector'), 'is not supported by distill');
  return readCidrWithExcept(r, so.cidr, so.except, path, 'cidr', 'except');
}

/** An egress rule's `toFQDNs`; undefined when absent or empty. */
function readToFqdns(r: Reader, v: unknown, path: string): FqdnSelector[] | undefined {
  if (absent(v)) return undefined;
  const fqdns = r.array(v, path).map((f, i) => parseFqdnSelector(r, f, at(path, i)));
  // Unlike an empty toEndpoints/toEntities/toCIDR/toCIDRSet, Cilium does not treat `toFQDNs: []`
  // as "select nothing" (pkg/policy/utils/parserules.go mergeEndpointSelectors leaves fqdns out
  // of its explicit-empty check): the rule is then a rule without peers.
  return fqdns.length > 0 ? fqdns : undefined;
}

/** The rule's `toPorts` or `icmps` as port clauses; with neither, every port and protocol (`hasL4` false). */
function readPortClauses(r: Reader, o: Record<string, unknown>, path: string, shape: DirectionShape, options: ParseOptions): { ports: PortClause[]; hasL4: boolean } {
  const toPorts = r.optArray(o.toPorts, join(path, 'toPorts')) ?? [];
  const icmps = r.optArray(o.icmps, join(path, 'icmps')) ?? [];
  if (icmps.length > 0 && options.icmpRules === false) r.fail(join(path, 'icmps'), 'ICMP rules can only be applied when the "enable-icmp-rules" flag is set');
  if (toPorts.length > 0 && icmps.length > 0) r.fail(join(path, 'icmps'), 'may only be present without toPorts (define a separate rule for toPorts)');
  const ports: PortClause[] = [];
  toPorts.forEach((p, i) => ports.push(...parsePortRule(r, p, at(join(path, 'toPorts'), i), shape, options)));
  icmps.forEach((p, i) => ports.push(...parseIcmpRule(r, p, at(join(path, 'icmps'), i))));
  // Cilium's L3-only path (every port and protocol) needs an empty toPorts and icmps.
  const hasL4 = toPorts.length > 0 || icmps.length > 0;
  if (!hasL4) ports.push({ l4: ALL_L4 });
  return { ports, hasL4 };
}

/**
 * One `toNodes`/`fromNodes` selector. Cilium refuses the rule unless the agent runs with
 * `enable-node-selector-labels` (rule_validation.go ErrFromToNodesRequiresNodeSelectorOption) and
 * then selects the remote nodes whose identity labels match: the Node's labels under the source
 * `node:` plus `k8s:io.cilium.k8s.policy.cluster` (pkg/node/manager nodeIdentityLabels). Distill
 * holds node labels without a source, so it reads keys of source `any` or `node` and refuses others
 * and the cluster key (not modelled).
 */
function parseNodeSelector(r: Reader, v: unknown, path: string, options: ParseOptions): Selector {
  if (options.nodeSelectorLabels !== true) r.fail(path, 'FromNodes/ToNodes rules can only be applied when the "enable-node-selector-labels" flag is set (Cilium refuses the policy without it; scenarios: nodeSelectorLabels: true)');
  const sel = parseLabelSelector(r, v, path, CILIUM_SELECTOR);
  const reqs = sel.requirements.map((q) => {
    if (q.key.key === CLUSTER_KEY) r.fail(path, `the key ${CLUSTER_KEY} in a node selector is not supported by distill`);
    // An `any:` key also matches the node identity's reserved labels (reserved:remote-node,
    // reserved:kube-apiserver...), which distill's node labels do not carry.
    if (q.key.source === SOURCE_ANY && Object.hasOwn(RESERVED_IDENTITIES, q.key.key)) r.fail(path, `the key ${q.key.key} in a node selector is not supported by distill (Cilium's any: source also matches the node's reserved:${q.key.key} label; write node:${q.key.key} for a Node label)`);
    if (q.key.source === SOURCE_ANY) return q;
    if (q.key.source !== SOURCE_NODE) r.fail(path, `a \`${q.key.source}:\` key in a node selector is not supported by distill (node identities carry \`node:\` labels)`);
    return { ...q, key: { source: SOURCE_ANY, key: q.key.key } };
  });
  return makeSelector(reqs);
}

/** One `toFQDNs` entry: exactly one of matchName, matchPattern (FQDNSelector, pkg/policy/api/fqdn.go). */
function parseFqdnSelector(r: Reader, v: unknown, path: string): FqdnSelector {
  const o = r.object(v, path, ['matchName', 'matchPattern']);
  const name = r.optString(o.matchName, join(path, 'matchName'));
  const pattern = r.optString(o.matchPattern, join(path, 'matchPattern'));
  // A field set to "" is refused too: the API server's CRD pattern needs one character.
  for (const [field, value] of [['matchName', name], ['matchPattern', pattern]] as const) {
    const error = value === undefined ? undefined : fqdnSyntaxError(field, value);
    if (error !== undefined) r.fail(join(path, field), error);
  }
  if ((name === undefined) === (pattern === undefined)) r.fail(path, 'exactly one of matchName or matchPattern is required');
  return name !== undefined ? makeFqdnSelector('matchName', name) : makeFqdnSelector('matchPattern', pattern as string);
}

/**
 * Protocols without transport ports that Cilium 1.18+ takes in `toPorts` (cilium/cilium#39872:
 * VRRP, IGMP; #44459: GRE, IPIP, IPv6, ESP, AH; `isExtendedIPProtocol`, rule_validation.go). The
 * API server stores such a policy and Cilium enforces it; refused as invalid, the agent skipped
 * the whole policy (attack finding 711). "Not supported" gives it the fail-closed stand-in.
 */
const EXTENDED_IP_PROTOCOLS: readonly unknown[] = ['VRRP', 'IGMP', 'GRE', 'IPIP', 'IPv6', 'ESP', 'AH'];

function parseProtocol(r: Reader, v: unknown, path: string): RuleProtocol {
  if (absent(v)) return 'ANY';
  if (EXTENDED_IP_PROTOCOLS.includes(v)) r.fail(path, `"${String(v)}" (an IP protocol without ports, Cilium 1.18+) is not supported by distill`);
  // The API server checks the CRD enum, case-sensitively, before Cilium's own (lenient) parser runs.
  const p = r.oneOf(v, path, CILIUM_PROTOCOLS);
  return p;
}

/**
 * A port string that is not a service name, as Cilium reads it: `strconv.ParseUint(port, 0, 16)`
 * (PortProtocol.sanitize, pkg/policy/api/rule_validation.go; createL4Filter, pkg/policy/l4.go).
 * Base 0: a leading 0 means octal ("010" is 8, "08" is refused), 0x/0o/0b prefixes, and `_`
 * between digits ("8_0" is 80). The CRD's port pattern is anchored at the start only for numbers,
 * so any string that starts with a digit reaches this parser.
 */
function goPortNumber(r: Reader, raw: string, path: string): number {
  const n = goParseUint16(raw);
  if (n === 'syntax') r.fail(path, `"${raw}" is not a port number: Cilium reads a leading 0 as octal, and "_" only between digits (strconv.ParseUint base 0); nor is it a valid port name`);
  if (n === 'range') r.fail(path, `${raw} is above ${MAX_PORT}`);
  return n;
}

/** Go's strconv.ParseUint(s, 0, 16): a number, or which error Go returns. */
function goParseUint16(s: string): number | 'syntax' | 'range' {
  if (s === '') return 'syntax';
  let base = 10;
  let digits = s;
  if (s[0] === '0') {
    const p = s.length >= 3 ? (s[1] as string).toLowerCase() : '';
    base = p === 'b' ? 2 : p === 'o' ? 8 : p === 'x' ? 16 : 8;
    digits = p === 'b' || p === 'o' || p === 'x' ? s.slice(2) : s.slice(1);
  }
  let n = 0;
  let underscores = false;
  for (const c of digits) {
    if (c === '_') {
      underscores = true;
      continue;
    }
    const d = parseInt(c, 36);
    if (Number.isNaN(d) || d >= base) return 'syntax';
    n = n * base + d;
    if (n > MAX_PORT) return 'range';
  }
  if (underscores && !goUnderscoreOk(s)) return 'syntax';
  return n;
}

/** Go's strconv.underscoreOK: `_` only between digits, or right after a base prefix. */
function goUnderscoreOk(s: string): boolean {
  let saw = '^';
  let i = 0;
  const hex = s.length >= 2 && s[0] === '0' && (s[1] as string).toLowerCase() === 'x';
  if (s.length >= 2 && s[0] === '0' && 'box'.includes((s[1] as string).toLowerCase())) {
    i = 2;
    saw = '0';
  }
  for (; i < s.length; i++) {
    const c = s[i] as string;
    if ((c >= '0' && c <= '9') || (hex && /^[a-fA-F]$/.test(c))) saw = '0';
    else if (c === '_') {
      if (saw !== '0') return false;
      saw = '_';
    } else {
      if (saw === '_') return false;
      saw = '!';
    }
  }
  return saw !== '_';
}

/** Cilium's maxPorts and maxICMPFields (pkg/policy/api/rule_validation.go). */
const MAX_RULE_ITEMS = 40;

/** Ranges written as port "0" with an endPort: Cilium refuses L7 rules on them (PortRule.sanitize, haveZeroPort). */
const fromPortZero = new WeakSet<L4Match>();

function parsePortProtocol(r: Reader, v: unknown, path: string): L4Match {
  const o = r.object(v, path, ['port', 'endPort', 'protocol']);
  const protocol = parseProtocol(r, o.protocol, join(path, 'protocol'));
  let port = 0;
  let named: string | undefined;
  // The CRD marks `port` required and Cilium's PortProtocol.Validate refuses an empty one.
  if (absent(o.port) || o.port === '') r.fail(join(path, 'port'), 'is required (Cilium: "port must be specified"; "0" means every port)');
  // The CRD types `port` as a string (no int-or-string): the API server refuses `port: 80`.
  if (typeof o.port === 'number') r.fail(join(path, 'port'), `${o.port} is a number: the CRD types port as a string, so the API server refuses it (quote it: "${o.port}")`);
  const raw = r.string(o.port, join(path, 'port'));
  // Cilium tries the service name first ("0x50" is a name), then strconv.ParseUint. iana.IsSvcName
  // is ASCII, so only ASCII letters fold: `toLowerCase` alone reads the Kelvin sign as `k` (finding 761).
  const folded = asciiToLower(raw);
  if (isValidPortName(folded)) {
    named = folded;
  } else {
    port = goPortNumber(r, raw, join(path, 'port'));
  }
  if (!absent(o.endPort)) {
    const end = r.intInRange(o.endPort, join(path, 'endPort'), 0, MAX_PORT);
    // Cilium accepts it (PortProtocol.Validate checks numeric ports only) without defining the range
    // of a name: "not supported" lets the agent enforce a fail-closed stand-in (src/policy/stand-in.ts).
    if (named !== undefined) r.fail(join(path, 'endPort'), 'with a named port is not supported by distill (Cilium defines no range of a name)');
    if (end !== 0 && port === 0) {
      // Cilium accepts it (PortProtocol.sanitize) and keys 0..end (l4.go toMapState,
      // PortRangeToMaskedPorts(0, end)); 0..65535 is the wildcard. Port 0 itself is no flow's
      // (probes start at 1) and `from: 0` reads as "every port" here, so the range starts at 1.
      const l4: L4Match = end === MAX_PORT ? { kind: 'range', protocol, from: 0, to: 0 } : { kind: 'range', protocol, from: 1, to: end };
      fromPortZero.add(l4);
      return l4;
    }
    if (end !== 0) {
      // Cilium accepts it and enforces the single port (PortRangeToMaskedPorts, pkg/policy/types:
      // "If the end port is equal to or less then the start port than the start port is returned").
      if (end > port) return { kind: 'range', protocol, from: port, to: end };
    }
  }
  if (named !== undefined) return { kind: 'named', protocol, name: named };
  return { kind: 'range', protocol, from: port, to: port };
}

function parsePortRule(r: Reader, v: unknown, path: string, shape: DirectionShape, options: ParseOptions): PortClause[] {
  const isDeny = shape.verdict === 'deny';
  const allowedKeys = isDeny ? ['ports'] : ['ports', 'rules', 'originatingTLS', 'terminatingTLS', 'serverNames', 'listener'];
  const o = r.object(v, path, allowedKeys);
  checkProxyFields(r, o, path, shape.direction, options);
  for (const u of ['originatingTLS', 'terminatingTLS', 'serverNames', 'listener']) {
    if (!absent(o[u])) r.fail(join(path, u), 'is not supported by distill');
  }
  const portsRaw = r.optArray(o.ports, join(path, 'ports')) ?? [];
  // Cilium refuses the policy (PortRule.Validate, PortDenyRule.Validate: maxPorts).
  if (portsRaw.length > MAX_RULE_ITEMS) r.fail(join(path, 'ports'), `too many ports, the max is ${MAX_RULE_ITEMS} (Cilium refuses the policy)`);
  const l4s = portsRaw.map((p, i) => parsePortProtocol(r, p, at(join(path, 'ports'), i)));
  const l7 = absent(o.rules) ? undefined : parseL7(r, o.rules, join(path, 'rules'), shape.direction, l4s, join(path, 'ports'));
  // A port rule without ports contributes no L4 filter at all (Cilium iterates its ports: none,
  // nothing added), so it allows nothing; the rule still makes the direction default-deny.
  return l4s.map((l4) => ({ l4, ...(l7 ? { l7 } : {}) }));
}

/**
 * What Cilium's `PortRule.Validate`/`sanitize` (rule_validation.go, in every version read) refuses
 * among the fields distill does not read: refused here too, so the agent skips the policy as Cilium does instead of enforcing a
 * stand-in whose remaining allows the cluster never enforces (attack findings 716, 717). `Rules.IsEmpty`
 * is true only when every list is nil: `http: []` is a list.
 */
function checkProxyFields(r: Reader, o: Record<string, unknown>, path: string, direction: Direction, options: ParseOptions): void {
  const rules = typeof o.rules === 'object' && o.rules !== null ? (o.rules as Record<string, unknown>) : undefined;
  const hasL7 = rules !== undefined && ['http', 'kafka', 'dns', 'l7'].some((k) => !absent(rules[k]));
  // Go's L7Rules.IsEmpty also counts a non-empty `l7proto`, which only the L7-proxy check needs.
  const l7proto = typeof rules?.l7proto === 'string' && rules.l7proto !== '';
  if ((hasL7 || l7proto) && options.l7Proxy === false) r.fail(join(path, 'rules'), 'L7 policy is not supported since L7 proxy is not enabled');
  if (!absent(o.listener) && direction === 'ingress') r.fail(join(path, 'listener'), 'Listener is not allowed on ingress');
  if (!absent(o.listener) && hasL7) r.fail(join(path, 'listener'), 'Listener is not allowed with L7 rules');
  // Both checks are in `PortRule.sanitize` (older releases) and `PortRule.Validate` (main), so in 1.19
  // (attack finding 717). `serverNames: []` is no server name.
  const names = o.serverNames;
  if (Array.isArray(names) && names.length > 0 && hasL7 && absent(o.terminatingTLS)) r.fail(join(path, 'serverNames'), 'ServerNames are not allowed with L7 rules without TLS termination');
  if (Array.isArray(names) && names.includes('')) r.fail(join(path, 'serverNames'), 'Empty server name is not allowed');
}

/** Cilium's proxy compiles these with RE2: validate with the same syntax the matcher uses. */
function checkRegex(r: Reader, s: string, path: string): void {
  const error = re2SyntaxError(s);
  if (error !== undefined) r.fail(path, `invalid RE2 regular expression: ${error}`);
}

/**
 * Cilium's PortRuleHTTP.Sanitize compiles path and method only, and the CRD's `idn-hostname`
 * format on `host` is one the API server ignores: Cilium takes a policy whose host is no regex
 * (`*.example.com`) and leaves it to the proxy. Refusing it as invalid would make the agent skip
 * the whole policy; "not supported" makes it drop this allow rule only (src/policy/stand-in.ts).
 */
function checkUnsanitizedRegex(r: Reader, s: string, path: string): void {
  const error = re2SyntaxError(s);
  if (error !== undefined) r.fail(path, `invalid RE2 regular expression: ${error}; Cilium accepts it and leaves it to its proxy, which is not supported by distill`);
}

/** `headers` entries are not sanitized by Cilium either ("Headers are not sanitized"). */
function unsanitizedHeader(r: Reader, v: unknown, path: string): string {
  const h = r.string(v, path);
  if (h === '') r.fail(path, 'an empty header name: Cilium accepts it and leaves it to its proxy, which is not supported by distill');
  return h;
}

function parseL7(r: Reader, v: unknown, path: string, direction: Direction, l4s: readonly L4Match[], portsPath: string): L7Rules | undefined {
  const o = r.object(v, path, ['http', 'kafka', 'dns', 'l7proto', 'l7']);
  if (!absent(o.l7proto)) r.fail(join(path, 'l7proto'), 'is not supported by distill');
  if (!absent(o.l7)) r.fail(join(path, 'l7'), 'is not supported by distill');
  const present = (['http', 'kafka', 'dns'] as const).filter((k) => !absent(o[k]));
  for (const k of present) r.array(o[k], join(path, k));
  // Empty lists are no L7 rules at all: Cilium (L7Rules.IsEmpty) picks a parser only for a
  // non-empty list, so such a port rule is a plain allow, never redirected.
  if (present.every((k) => (o[k] as unknown[]).length === 0)) return undefined;
  if (present.length > 1) r.fail(path, `multiple L7 protocol rule types in one rule (${present.join(', ')})`);
  const parser = present[0] as 'http' | 'kafka' | 'dns';
  if (parser === 'dns' && direction === 'ingress') r.fail(join(path, 'dns'), 'DNS rules are not allowed on ingress');
  if (parser === 'dns' && l4s.length === 0) r.fail(portsPath, 'a port (53) must be specified for DNS rules');
  l4s.forEach((l4, i) => {
    if (l4.kind === 'range' && (l4.from === 0 || fromPortZero.has(l4))) r.fail(join(at(portsPath, i), 'port'), 'L7 rules can not be used when a port is 0');
    // cilium#34023 (PortProtocol.Validate, Cilium >= 1.17): "DNS rules do not support port ranges".
    if (parser === 'dns' && l4.kind === 'range' && l4.to > l4.from) r.fail(join(at(portsPath, i), 'endPort'), 'DNS rules do not support port ranges');
    if (parser !== 'dns' && l4.kind !== 'all' && l4.protocol !== 'TCP') {
      r.fail(join(at(portsPath, i), 'protocol'), `L7 rules can only apply to TCP (not ${l4.protocol}) except for DNS rules`);
    }
  });
  const list = r.array(o[parser], join(path, parser));
  const lpath = join(path, parser);
  switch (parser) {
    case 'http':
      return { parser, http: list.map((x, i) => parseHttpRule(r, x, at(lpath, i))) };
    case 'kafka':
      return { parser, kafka: list.map((x, i) => parseKafkaRule(r, x, at(lpath, i))) };
    case 'dns':
      return { parser, dns: list.map((x, i) => parseDnsRule(r, x, at(lpath, i))) };
  }
}

function parseHttpRule(r: Reader, v: unknown, path: string): HttpRule {
  const o = r.object(v, path, ['method', 'path', 'host', 'headers', 'headerMatches']);
  const out: { -readonly [K in keyof HttpRule]: HttpRule[K] } = {};
  for (const f of ['method', 'path', 'host'] as const) {
    const s = r.optString(o[f], join(path, f));
    if (s !== undefined) {
      if (f === 'host') checkUnsanitizedRegex(r, s, join(path, f));
      else checkRegex(r, s, join(path, f));
      out[f] = s;
    }
  }
  const headers = r.optArray(o.headers, join(path, 'headers'));
  if (headers) out.headers = headers.map((h, i) => unsanitizedHeader(r, h, at(join(path, 'headers'), i)));
  const hm = r.optArray(o.headerMatches, join(path, 'headerMatches'));
  if (hm) {
    out.headerMatches = hm.map((h, i): HttpHeaderMatch => {
      const hpath = at(join(path, 'headerMatches'), i);
      const ho = r.object(h, hpath, ['name', 'value', 'mismatch', 'secret']);
      if (!absent(ho.secret)) r.fail(join(hpath, 'secret'), 'is not supported by distill');
      const name = r.nonEmptyString(ho.name, join(hpath, 'name'));
      const value = r.optString(ho.value, join(hpath, 'value'));
      const mismatch = absent(ho.mismatch) ? undefined : r.oneOf(ho.mismatch, join(hpath, 'mismatch'), ['LOG', 'ADD', 'DELETE', 'REPLACE'] as const);
      return { name, ...(value !== undefined ? { value } : {}), ...(mismatch ? { mismatch } : {}) };
    });
  }
  return out;
}

function parseKafkaRule(r: Reader, v: unknown, path: string): KafkaRule {
  const o = r.object(v, path, ['role', 'apiKey', 'apiVersion', 'clientID', 'topic']);
  const out: { -readonly [K in keyof KafkaRule]: KafkaRule[K] } = {};
  if (!absent(o.role)) out.role = r.oneOf(o.role, join(path, 'role'), ['produce', 'consume'] as const);
  for (const f of ['apiKey', 'apiVersion', 'clientID', 'topic'] as const) {
    const s = r.optString(o[f], join(path, f));
    if (s !== undefined) out[f] = s;
  }
  // Cilium: `len(kr.APIKey) > 0 && len(kr.Role) > 0`; an empty apiKey is no apiKey.
  if (out.role !== undefined && out.apiKey !== undefined && out.apiKey !== '') r.fail(path, 'role and apiKey are mutually exclusive');
  if (out.apiKey !== undefined && out.apiKey !== '' && !KAFKA_API_KEYS.includes(goToLower(out.apiKey))) r.fail(join(path, 'apiKey'), `"${out.apiKey}" is not a Kafka API key name`);
  // Cilium (kafka.PortRule.Sanitize): strconv.ParseInt(v, 10, 16) within 0..32767, so "+5" and "-0" are versions.
  const version = out.apiVersion !== undefined && /^[+-]?\d+$/.test(out.apiVersion) ? Number(out.apiVersion) : Number.NaN;
  if (out.apiVersion !== undefined && out.apiVersion !== '' && !(version >= 0 && version <= 32767)) r.fail(join(path, 'apiVersion'), `"${out.apiVersion}" is not an API version number (0 to 32767)`);
  // TopicValidChar, `^[a-zA-Z0-9\\._\\-]+$` in a Go raw string, lets a backslash through too.
  if (out.topic !== undefined && (out.topic.length > 255 || !/^[a-zA-Z0-9._\\-]+$/.test(out.topic))) {
    r.fail(join(path, 'topic'), `"${out.topic}" is not a valid Kafka topic name`);
  }
  return out;
}

/**
 * A DNS rule sets exactly one of matchName and matchPattern, each checked with the CRD's pattern
 * and length as toFQDNs fields are. The agent's code would take both ("mutually exclusive in an
 * FQDNSelector (but not in a PortRuleDNS)", pkg/policy/api/fqdn.go; GeneratePattern ORs them), but
 * the API server never stores such a rule: PortRuleDNS is FQDNSelector, whose fields carry
 * `+kubebuilder:validation:OneOf`, so the CRD gives `rules.dns[]` items the same
 * `oneOf: [{required: [matchName]}, {required: [matchPattern]}]` as toFQDNs items.
 */
function parseDnsRule(r: Reader, v: unknown, path: string): DnsRule {
  const o = r.object(v, path, ['matchName', 'matchPattern']);
  const matchName = r.optString(o.matchName, join(path, 'matchName'));
  const matchPattern = r.optString(o.matchPattern, join(path, 'matchPattern'));
  // An empty string is refused, as the API server refuses it: the CRD pattern needs one
  // character (TestFQDNNameRegex lists "" as bad), though the agent would read it as absent.
  for (const [field, value] of [['matchName', matchName], ['matchPattern', matchPattern]] as const) {
    const error = value === undefined ? undefined : fqdnSyntaxError(field, value);
    if (error !== undefined) r.fail(join(path, field), error);
  }
  if ((matchName === undefined) === (matchPattern === undefined)) r.fail(path, 'exactly one of matchName or matchPattern is required');
  return { ...(matchName !== undefined ? { matchName } : {}), ...(matchPattern !== undefined ? { matchPattern } : {}) };
}

/**
 * The CRD's type pattern (pkg/policy/api/icmp.go) lists "ExtendedEcho Reply", with a space, so the
 * API server refuses "ExtendedEchoReply" though Cilium's name tables have it (types 43 and 161).
 */
const CRD_PATTERN_MISSES_EXTENDED_ECHO_REPLY =
  '"ExtendedEchoReply" does not match the CRD\'s ICMP type pattern (it lists "ExtendedEcho Reply"): the API server refuses it; use 43 (IPv4) or 161 (IPv6)';

function parseIcmpRule(r: Reader, v: unknown, path: string): PortClause[] {
  const o = r.object(v, path, ['fields']);
  // `fields` is optional (the CRD and ICMPRule: +kubebuilder:validation:Optional): without it the rule's
  // GetPortRule is a PortRule with no ports, so the rule adds no L4 filter, as `fields: []` (attack finding 1301).
  const fields = r.optArray(o.fields, join(path, 'fields')) ?? [];
  // Cilium refuses the policy (ICMPRule.Validate: maxICMPFields).
  if (fields.length > MAX_RULE_ITEMS) r.fail(join(path, 'fields'), `too many types, the max is ${MAX_RULE_ITEMS} (Cilium refuses the policy)`);
  return fields.map((f, i) => {
    const fpath = at(join(path, 'fields'), i);
    const fo = r.object(f, fpath, ['type', 'family']);
    const family = absent(fo.family) ? 'IPv4' : r.oneOf(fo.family, join(fpath, 'family'), ['IPv4', 'IPv6'] as const);
    const protocol: FlowProtocol = family === 'IPv4' ? 'ICMP' : 'ICMPv6';
    let type: number;
    if (typeof fo.type === 'string' && !/^\d+$/.test(fo.type)) {
      if (fo.type === 'ExtendedEchoReply') r.fail(join(fpath, 'type'), CRD_PATTERN_MISSES_EXTENDED_ECHO_REPLY);
      const table = family === 'IPv4' ? ICMPV4_TYPES : ICMPV6_TYPES;
      const t = Object.hasOwn(table, fo.type) ? table[fo.type] : undefined;
      if (t === undefined) r.fail(join(fpath, 'type'), `"${fo.type}" is not an ${family} ICMP type name`);
      type = t;
    } else if (typeof fo.type === 'number' && Number.isInteger(fo.type) && (fo.type < 0 || fo.type > 255)) {
      // The CRD's pattern bounds only strings and ICMPRule.Validate checks no type: Cilium takes the
      // integer and keys a "port" no ICMP type has. "Not supported" makes the agent enforce a stand-in.
      r.fail(join(fpath, 'type'), `${fo.type} is no ICMP type (0 to 255): Cilium accepts it, which is not supported by distill`);
    } else {
      // A numeric string must match the CRD's pattern (no leading zero, at most 255).
      if (typeof fo.type === 'string' && !/^(0|[1-9]\d{0,2})$/.test(fo.type)) r.fail(join(fpath, 'type'), `"${fo.type}" is not an ICMP type (the CRD's pattern: 0 to 255 without leading zeros)`);
      type = r.intInRange(typeof fo.type === 'string' ? Number(fo.type) : fo.type, join(fpath, 'type'), 0, 255);
    }
    return { l4: { kind: 'range', protocol, from: type, to: type } };
  });
}
