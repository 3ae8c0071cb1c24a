import { ciliumExtendedKey, POD_NAMESPACE_KEY, SOURCE_ANY, SOURCE_K8S } from '../model/labels.js';
import type { Direction, Enforcement, Policy, PolicyKind, PolicyRef, PolicyRule, PolicyWarning } from '../model/rules.js';
import { Selector, WILDCARD_SELECTOR } from '../model/selector.js';
import { readMetadata, refOf, restrictToNamespace } from './common.js';
import { checkToServices } from './cilium-services.js';
import { absent, at, isPlainObject, join, Reader } from './reader.js';
import { intern } from '../model/intern.js';
import { parseLabelSelector } from './selector.js';
import type { ParseOptions } from './cilium-options.js';
import { CILIUM_SELECTOR, SHAPES, type DirectionShape } from './cilium-shapes.js';
import { POD_INIT_KEY, rawKeys } from './cilium-scope.js';
import { readL3Peers, readToFqdns } from './cilium-peers.js';
import { readPortClauses } from './cilium-ports.js';

export type { CiliumAgentOptions, ParseOptions } from './cilium-options.js';
export { ciliumAgentOptions } from './cilium-options.js';

const RULE_FIELDS = ['endpointSelector', 'nodeSelector', 'ingress', 'ingressDeny', 'egress', 'egressDeny', 'labels', 'description', 'enableDefaultDeny', 'log'];

/** Parses a `cilium.io/v2` CiliumNetworkPolicy or CiliumClusterwideNetworkPolicy (`spec` and/or `specs`). */
export function parseCiliumPolicy(r: Reader, doc: Record<string, unknown>, kind: Exclude<PolicyKind, 'NetworkPolicy'>, options: ParseOptions = {}): Policy {
  const namespaced = kind === 'CiliumNetworkPolicy';
  const md = readMetadata(r, doc.metadata, namespaced);
  const ref = refOf(kind, md);
  const specs: [unknown, string][] = [];
  if (!absent(doc.spec)) specs.push([doc.spec, 'spec']);
  (r.optArray(doc.specs, 'specs') ?? []).forEach((s, i) => specs.push([s, at('specs', i)]));
  // cnp_types.go Validate refuses only `Spec == nil && Specs == nil` (ErrEmptyCNP; the CRD's `has(self.spec) ||
  // has(self.specs)`): `specs: []` is a policy of no rules, whose update removes the old rules (attack finding 2232).
  if (absent(doc.spec) && absent(doc.specs)) r.fail('', 'must have spec or specs');
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
  const host = !absent(o.nodeSelector);
  if (host) readHostSpec(r, o, path, namespace);
  if (!host && absent(o.endpointSelector)) r.fail(join(path, 'endpointSelector'), 'is required');
  // A host spec's rules are still read (its subject stands in for the node's), so that what Cilium refuses in them is refused.
  const subject = host ? parseLabelSelector(r, o.nodeSelector, join(path, 'nodeSelector'), CILIUM_SELECTOR) : parseSubject(r, o.endpointSelector, join(path, 'endpointSelector'), namespace, out.warnings);
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

/**
 * What Cilium refuses in a host spec, whose object the agent then skips whole (no stand-in keeps its other specs).
 * The spec itself is "not supported", deferred (`Reader.unsupported`): its selector and rules are read after it,
 * and Cilium's Rule.Sanitize refuses the whole object for an invalid one (attack finding 1834).
 */
function readHostSpec(r: Reader, o: Record<string, unknown>, path: string, namespace: string | undefined): void {
  if (namespace !== undefined) r.fail(join(path, 'nodeSelector'), 'a CiliumNetworkPolicy rule cannot have nodeSelector (Cilium refuses the policy; host policies are CiliumClusterwideNetworkPolicies)');
  // Rule.Sanitize (pkg/policy/api/rule_validation.go); the CRD's oneOf refuses both selectors too.
  if (!absent(o.endpointSelector)) r.fail(path, 'rule cannot have both EndpointSelector and NodeSelector');
  const lists = ['ingress', 'ingressDeny', 'egress', 'egressDeny'].map((f) => o[f]);
  if (!lists.some((l) => Array.isArray(l) && l.length > 0)) r.fail(path, 'rule must have at least one of Ingress, IngressDeny, Egress, EgressDeny (an empty list is none; Cilium refuses the whole policy)');
  r.unsupported(join(path, 'nodeSelector'), 'is not supported by distill (a host policy: distill models pod endpoints, not the host endpoint)');
  checkHostL7(r, o.ingress, join(path, 'ingress'), ['http', 'kafka', 'dns', 'l7'], 'L7 policy is not supported on host ingress yet');
  checkHostL7(r, o.egress, join(path, 'egress'), ['http', 'kafka'], 'L7 protocol HTTP or Kafka is not supported on host egress yet');
}

/**
 * rule_validation.go IngressRule.sanitize(hostPolicy): every non-empty L7 rule list (countL7Rules) on host ingress;
 * EgressRule.sanitize(hostPolicy): non-empty HTTP or Kafka rules on host egress (DNS is allowed).
 */
function checkHostL7(r: Reader, v: unknown, path: string, lists: readonly string[], detail: string): void {
  if (!Array.isArray(v)) return;
  const nonEmpty = (o: Record<string, unknown>, k: string): boolean => Array.isArray(o[k]) && (o[k] as unknown[]).length > 0;
  v.forEach((rule: unknown, i) => {
    const toPorts: unknown[] = isPlainObject(rule) && Array.isArray(rule.toPorts) ? rule.toPorts : [];
    if (toPorts.some((pr) => isPlainObject(pr) && isPlainObject(pr.rules) && lists.some((k) => nonEmpty(pr.rules as Record<string, unknown>, k)))) r.fail(at(path, i), detail);
  });
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

/** The fields distill does not read, and two peer kinds in one rule, are refused. */
function checkPeerFields(r: Reader, o: Record<string, unknown>, path: string, shape: DirectionShape, fqdnField: string | undefined): void {
  // Cilium (pkg/policy/api/rule_validation.go, IngressCommonRule.sanitize / EgressCommonRule.sanitize,
  // `l3Members`) refuses two non-empty peer kinds in one rule, counting ToFQDNs, FromGroups/ToGroups and
  // ToServices too; `Rule.Sanitize` fails and CiliumNetworkPolicy.Parse drops the whole object, so the
  // agent skips it too instead of enforcing a stand-in whose other allow rules Cilium never enforces
  // (attack finding 1765; the unread fields below only defer their error, `Reader.unsupported`).
  const groups = shape.direction === 'ingress' ? ['fromGroups'] : [...(shape.field === 'egress' ? ['toFQDNs'] : []), 'toServices', 'toGroups'];
  const kinds = [shape.endpoints, shape.cidr, shape.cidrSet, shape.entities, shape.nodes, ...groups].filter((f) => Array.isArray(o[f]) && (o[f] as unknown[]).length > 0);
  if (kinds.length > 1) r.fail(path, `combining ${kinds[0]} and ${kinds[1]} is not supported (Cilium refuses it: "combining ${kinds[0]} and ${kinds[1]} is not supported yet"); write one rule per peer kind`);
  for (const u of shape.unsupported) {
    if (u === fqdnField) continue;
    if (UNREAD_LISTS.includes(u)) {
      checkUnreadList(r, o[u], join(path, u));
      continue;
    }
    if (absent(o[u])) continue;
    if (u === 'toFQDNs') r.fail(join(path, u), 'is not read here (parsed with fqdn: false)');
    r.unsupported(join(path, u), 'is not supported by distill');
  }
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
  if (path.endsWith('toServices')) checkToServices(r, v as unknown[], path);
  const requires = path.endsWith('Requires');
  r.unsupported(path, `is not supported by distill${requires ? " (deprecated: Cilium 1.19's CRD allows no items, maxItems 0)" : ''}`);
}

