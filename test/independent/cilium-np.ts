/**
 * An independent reader of `cilium.io/v2` CiliumNetworkPolicy / CiliumClusterwideNetworkPolicy (L3/L4 only),
 * written from Cilium's sources and NOT from distill's: it imports nothing from src/ and reads the scenario
 * YAML itself. test/independent/cilium-np.property.test.ts holds distill to it.
 *
 * Sources (cilium/cilium):
 * - Documentation/security/policy/language.rst: endpoint / entity / CIDR / L4 rules, deny policies ("deny
 *   policies take precedence over allow"), an empty rule `ingress: [{}]` isolates and allows nothing, a rule
 *   with only `toPorts` allows every peer on those ports; intro.rst: an endpoint is default-deny in a direction
 *   once a rule selecting it has rules in that direction, `enableDefaultDeny` turns that off per rule.
 * - Documentation/security/policy/kubernetes.rst: pods carry `k8s:` labels, `io.kubernetes.pod.namespace`,
 *   `io.cilium.k8s.namespace.labels.<key>`; a CiliumNetworkPolicy's selectors are limited to its namespace,
 *   a clusterwide policy's are not.
 * - pkg/k8s/apis/cilium.io/utils/utils.go `getEndpointSelector`, `ParseCiliumRule`: the namespace match is
 *   added to a namespaced peer selector unless it names `io.kubernetes.pod.namespace` or a namespace label; a
 *   clusterwide peer selector without them gets `Exists k8s:io.kubernetes.pod.namespace` (pods only); the
 *   subject of a namespaced policy is always ANDed with its namespace.
 * - pkg/policy/api/selector.go, pkg/labels/labels.go: a key `src:key` has source `src`, a bare key is `any`
 *   and matches a label of that key from any source.
 * - pkg/policy/api/entity.go `EntitySelectorMapping`: all, world, cluster (the reserved node identities and
 *   every pod of the cluster), host, remote-node, none, ...
 * - pkg/policy/api/cidr.go, l4.go: CIDR selectors select addresses outside the cluster; `except` removes;
 *   protocol ANY (or absent) = TCP, UDP and SCTP; port "0" = every port; `endPort` an inclusive range.
 * - pkg/labels/cidr.go `addWorldLabel`: an outside address carries `reserved:world` single-stack, and
 *   `reserved:world-ipv4` or `reserved:world-ipv6` when IPv4 and IPv6 are both enabled (scenario `stack: dual`).
 * - pkg/policy/mapstate.go `determineAllowLocalhostIngress`: under allow-localhost=always the local host is
 *   allowed into every pod unless a deny names it.
 */
import { parse } from 'yaml';
import { inCidr } from './cidr.js';
import { kafkaRulesAllow, readKafkaRequest, type KafkaRequest } from './cilium-kafka.js';
import { httpRuleMatches, readRequest, type HttpRequest } from './cilium-l7.js';
import { fqdn, patternRegexp } from './dns-policy.js';

type Labels = ReadonlyMap<string, string>; // "source:key" -> value

export interface Peer {
  readonly name: string;
  readonly kind: 'pod' | 'world' | 'host' | 'remote-node';
  readonly ip: string;
  readonly labels: Labels;
  readonly namespace?: string;
  readonly ports: readonly { name: string; port: number; protocol: string }[];
}

interface Yaml { [k: string]: unknown }
const obj = (v: unknown): Yaml => (v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Yaml) : {});
const list = (v: unknown): unknown[] | undefined => (Array.isArray(v) ? v : undefined);
const str = (v: unknown): string => (v === undefined || v === null ? '' : String(v));

function podLabels(ns: string, own: Yaml, nsLabels: Yaml): Labels {
  const m = new Map<string, string>();
  for (const [k, v] of Object.entries(own)) {
    if (k.startsWith('io.cilium.k8s') || k === 'io.kubernetes.pod.namespace') continue; // filtered by Cilium
    m.set(`k8s:${k}`, str(v));
  }
  m.set('k8s:io.kubernetes.pod.namespace', ns);
  for (const [k, v] of Object.entries({ ...nsLabels, 'kubernetes.io/metadata.name': ns })) m.set(`k8s:io.cilium.k8s.namespace.labels.${k}`, str(v));
  m.set('k8s:io.cilium.k8s.policy.serviceaccount', 'default');
  m.set('k8s:io.cilium.k8s.policy.cluster', 'default');
  return m;
}

export interface Cluster {
  readonly peers: ReadonlyMap<string, Peer>;
  readonly policies: readonly Yaml[];
  readonly allowLocalhostAlways: boolean;
}

const keyOf = (p: Yaml): string => `${str(p.kind)}/${str(obj(p.metadata).namespace)}/${str(obj(p.metadata).name)}`;

/**
 * The scenario document after the changes of steps 0..step (docs/scenarios.md): apply, delete, addPod,
 * deletePod, setPodLabels, setNamespaceLabels, addExternal, addNode, deleteNode.
 */
function stateAt(doc: Yaml, step: number): Yaml {
  const named = (k: string): Yaml[] => (list(doc[k]) ?? []).map(obj);
  let [namespaces, pods, externals, nodes, policies] = [named('namespaces'), named('pods'), named('externals'), named('nodes'), named('policies')];
  const put = (xs: Yaml[], x: Yaml, key: (y: Yaml) => string): Yaml[] => [...xs.filter((y) => key(y) !== key(x)), x];
  const byName = (y: Yaml): string => str(y.name);
  for (const c of (list(doc.steps) ?? []).slice(0, step + 1).flatMap((s) => list(obj(s).changes) ?? []).map(obj)) {
    if (c.apply !== undefined) policies = put(policies, obj(c.apply), keyOf);
    if (c.delete !== undefined) policies = policies.filter((p) => keyOf(p) !== keyOf({ kind: obj(c.delete).kind, metadata: c.delete }));
    if (c.addPod !== undefined) pods = put(pods, obj(c.addPod), byName);
    if (c.deletePod !== undefined) pods = pods.filter((p) => p.name !== c.deletePod);
    const relabel = obj(c.setPodLabels);
    if (c.setPodLabels !== undefined) pods = pods.map((p) => (p.name === relabel.pod ? { ...p, labels: relabel.labels } : p));
    const nsl = obj(c.setNamespaceLabels);
    if (c.setNamespaceLabels !== undefined) namespaces = namespaces.map((n) => (n.name === nsl.namespace ? { ...n, labels: nsl.labels } : n));
    if (c.addExternal !== undefined) externals = put(externals, obj(c.addExternal), byName);
    if (c.addNode !== undefined) nodes = put(nodes, { ...nodes.find((n) => n.name === obj(c.addNode).name), ...obj(c.addNode) }, byName);
    if (c.deleteNode !== undefined) nodes = nodes.filter((n) => n.name !== c.deleteNode);
  }
  return { ...doc, namespaces, pods, externals, nodes, policies };
}

/**
 * The entities the API server takes: pkg/policy/api/entity.go `type Entity string` carries
 * `+kubebuilder:validation:Enum=all;world;cluster;host;init;ingress;unmanaged;remote-node;health;none;kube-apiserver`;
 * the same file defines `world-ipv4`/`world-ipv6` (EntityWorldIPv4/IPv6) but the enum leaves them out.
 */
const CRD_ENTITIES = ['all', 'world', 'cluster', 'host', 'init', 'ingress', 'unmanaged', 'remote-node', 'health', 'none', 'kube-apiserver'];

/**
 * Why the API server or the agent refuses a policy of the scenario (its initial policies or one a step applies),
 * for the refusals this reader knows: an entity outside the CRD enum above; DNS rules on ingress
 * (pkg/policy/api/rule_validation.go `PortRule.Validate(ingress)`: `hasDNSRules := pr.Rules != nil &&
 * len(pr.Rules.DNS) > 0; if ingress && hasDNSRules` -> "DNS rules are not allowed on ingress", so `dns: []` passes);
 * `rules` setting none or several of http, kafka, dns, l7proto (the CRD's oneOf).
 */
export function ciliumRefusal(text: string): string | undefined {
  const doc = obj(parse(text));
  const applied = (list(doc.steps) ?? []).flatMap((st) => list(obj(st).changes) ?? []).map((c) => obj(c).apply).filter((a) => a !== undefined);
  for (const pol of [...(list(doc.policies) ?? []), ...applied].map(obj)) {
    for (const spec of [...(pol.spec === undefined ? [] : [obj(pol.spec)]), ...(list(pol.specs) ?? []).map(obj)]) {
      // 1.19 pkg/policy/api/rule_validation.go Rule.Sanitize; CiliumNetworkPolicy.Parse then refuses the object.
      if (!['ingress', 'ingressDeny', 'egress', 'egressDeny'].some((f) => (list(spec[f]) ?? []).length > 0)) return 'rule must have at least one of Ingress, IngressDeny, Egress, EgressDeny';
      for (const [field, dir] of [['ingress', 'from'], ['ingressDeny', 'from'], ['egress', 'to'], ['egressDeny', 'to']] as const) {
        for (const rule of (list(spec[field]) ?? []).map(obj)) {
          const bad = (list(rule[`${dir}Entities`]) ?? []).map(str).find((e) => !CRD_ENTITIES.includes(e));
          if (bad !== undefined) return `${field}: entity ${bad} is not in the CRD's enum`;
          if (field === 'ingress' && (list(rule.toPorts) ?? []).some((pr) => (list(obj(obj(pr).rules).dns) ?? []).length > 0)) return 'DNS rules are not allowed on ingress';
          // The CRD's `oneOf` on `rules` (pkg/policy/api/l4.go L7Rules: +kubebuilder:validation:OneOf on http, kafka, dns, l7proto).
          const unions = (list(rule.toPorts) ?? []).map((pr) => obj(pr).rules).filter((x) => x !== undefined && x !== null);
          if (unions.some((u) => ['http', 'kafka', 'dns', 'l7proto'].filter((k) => obj(u)[k] !== undefined && obj(u)[k] !== null).length !== 1)) return 'rules must set exactly one of http, kafka, dns, l7proto';
        }
      }
    }
  }
  return undefined;
}

/** Reads the scenario's state at a step (namespaces, pods, externals, nodes, policies). */
export function readCluster(text: string, step = 0): Cluster {
  const doc = stateAt(obj(parse(text)), step);
  const nsLabels = new Map<string, Yaml>();
  for (const n of list(doc.namespaces) ?? []) nsLabels.set(str(obj(n).name), obj(obj(n).labels));
  const peers = new Map<string, Peer>();
  for (const p of list(doc.pods) ?? []) {
    const name = str(obj(p).name);
    const ns = name.split('/')[0] ?? '';
    const ports = (list(obj(p).ports) ?? []).map((x) => ({ name: str(obj(x).name), port: Number(obj(x).port), protocol: str(obj(x).protocol || 'TCP').toUpperCase() }));
    peers.set(name, { name, kind: 'pod', ip: str(obj(p).ip), labels: podLabels(ns, obj(obj(p).labels), nsLabels.get(ns) ?? {}), namespace: ns, ports });
  }
  for (const e of list(doc.externals) ?? []) {
    const name = str(obj(e).name);
    const ip = str(obj(e).ip);
    // pkg/labels/cidr.go addWorldLabel: one world label, `reserved:world` unless the agent runs
    // dual-stack (option.Config.IsDualStack()), then `reserved:world-ipv4` / `reserved:world-ipv6`.
    const world = doc.stack === 'dual' ? `reserved:world-ipv${ip.includes(':') ? 6 : 4}` : 'reserved:world';
    peers.set(name, { name, kind: 'world', ip, labels: new Map([[world, '']]), ports: [] });
  }
  for (const n of list(doc.nodes) ?? []) {
    const kind = obj(n).local === true ? 'host' : 'remote-node';
    const name = `node:${str(obj(n).name)}`;
    peers.set(name, { name, kind, ip: str((list(obj(n).ips) ?? [])[0]), labels: new Map([[`reserved:${kind}`, '']]), ports: [] });
  }
  const policies = (list(doc.policies) ?? []).map(obj);
  return { peers, policies, allowLocalhostAlways: doc.allowLocalhost !== 'policy' };
}

// ---- label selectors (pkg/policy/api/selector.go) ----

/** `k8s:app` -> ["k8s", "app"]; a bare key has source `any` (pkg/labels ParseSelectLabel). */
function splitKey(key: string): [string, string] {
  const i = key.indexOf(':');
  return i < 0 ? ['any', key] : [key.slice(0, i), key.slice(i + 1)];
}

function lookup(labels: Labels, key: string): string | undefined {
  const [src, k] = splitKey(key);
  for (const [lk, v] of labels) {
    const [ls, lkey] = splitKey(lk);
    if (lkey === k && (src === 'any' || src === ls)) return v;
  }
  return undefined;
}

interface Req { readonly key: string; readonly op: string; readonly values: readonly string[] }

function requirements(sel: Yaml): Req[] {
  const reqs: Req[] = Object.entries(obj(sel.matchLabels)).map(([key, v]) => ({ key, op: 'In', values: [str(v)] }));
  for (const e of list(sel.matchExpressions) ?? []) {
    reqs.push({ key: str(obj(e).key), op: str(obj(e).operator), values: (list(obj(e).values) ?? []).map(str) });
  }
  return reqs;
}

function reqMatches(r: Req, labels: Labels): boolean {
  const v = lookup(labels, r.key);
  switch (r.op) {
    case 'In': return v !== undefined && r.values.includes(v);
    case 'NotIn': return v === undefined || !r.values.includes(v);
    case 'Exists': return v !== undefined;
    case 'DoesNotExist': return v === undefined;
    default: throw new Error(`unknown operator ${r.op}`);
  }
}

const selects = (reqs: readonly Req[], labels: Labels): boolean => reqs.every((r) => reqMatches(r, labels));

const NS = 'io.kubernetes.pod.namespace';
const NS_LABELS = 'io.cilium.k8s.namespace.labels';

const EXISTS_NS: Req = { key: `k8s:${NS}`, op: 'Exists', values: [] };

/**
 * utils.go getEndpointSelector: a peer selector's namespace scoping. A selector naming the namespace (or its
 * labels) only through negative terms (NotIn, DoesNotExist) selected every identity without a namespace in
 * Cilium 1.19 (world, host, ...: cilium#46949, "affects/v1.19"); the fix, cilium#46996 ("There is code that
 * forces namespace selectors, but it incorrectly skipped NotIn selectors ... ensures that CNP and KNP always
 * have a namespace ... selector. This ensures they only select endpoints"), requires a namespace. Followed here
 * for allows; a deny keeps 1.19's reading (no requirement once a `NS` key, or in a namespaced policy a
 * `NS_LABELS` key, is named), so neither reading's denies are missed (attack finding 1101).
 */
function peerSelector(sel: Yaml, namespace: string | undefined, deny: boolean): Req[] {
  const reqs = requirements(sel);
  // "The k8s prefix must not be added to reserved labels" (getEndpointSelector; cilium#862): taken as is
  if (reqs.some((r) => splitKey(r.key)[0] === 'reserved')) return reqs;
  const names = (pred: (k: string) => boolean, positive: boolean): boolean => reqs.some((r) => {
    const [s, k] = splitKey(r.key);
    return pred(k) && (s === 'k8s' || s === 'any') && (!positive || r.op === 'In' || r.op === 'Exists');
  });
  const isNs = (k: string): boolean => k === NS;
  const isNsLabel = (k: string): boolean => k.startsWith(NS_LABELS);
  if (names(isNs, true) || names(isNsLabel, true)) return reqs;
  if (deny && (names(isNs, false) || (namespace !== undefined && names(isNsLabel, false)))) return reqs;
  if (names(isNs, false) || names(isNsLabel, false) || namespace === undefined) return [...reqs, EXISTS_NS];
  return [...reqs, { key: `k8s:${NS}`, op: 'In', values: [namespace] }];
}

/** ParseCiliumRule: the subject of a namespaced policy is its namespace's, whatever the selector says of it. */
function subjectSelector(sel: Yaml, namespace: string | undefined): Req[] {
  if (namespace === undefined) return requirements(sel);
  const matchLabels = Object.fromEntries(Object.entries(obj(sel.matchLabels)).filter(([k]) => k !== `k8s:${NS}`));
  return [...requirements({ ...sel, matchLabels }), { key: `k8s:${NS}`, op: 'In', values: [namespace] }];
}

// ---- peers: entities, CIDRs ----

function entitySelects(entity: string, p: Peer): boolean {
  switch (entity) {
    case 'all': return true;
    case 'world': return p.kind === 'world';
    case 'cluster': return p.kind !== 'world';
    case 'host': return p.kind === 'host';
    case 'remote-node': return p.kind === 'remote-node';
    default: return false; // none, health, init, ingress, unmanaged, kube-apiserver: no such peer here
  }
}

/** Does a rule's peer part select p? `undefined` = the rule names no peer (every peer, if it has ports). */
function peerSelects(rule: Yaml, dir: 'from' | 'to', p: Peer, namespace: string | undefined, deny: boolean): boolean | undefined {
  const eps = list(rule[`${dir}Endpoints`]);
  const ents = list(rule[`${dir}Entities`]);
  const cidrs = list(rule[`${dir}CIDR`]);
  const sets = list(rule[`${dir}CIDRSet`]);
  if (eps === undefined && ents === undefined && cidrs === undefined && sets === undefined) return undefined;
  if (eps?.some((s) => selects(peerSelector(obj(s), namespace, deny), p.labels))) return true;
  if (ents?.some((e) => entitySelects(str(e), p))) return true;
  if (p.kind !== 'world') return false; // CIDR selectors never select pods or nodes
  if (cidrs?.some((c) => inCidr(p.ip, str(c)))) return true;
  return sets?.some((s) => inCidr(p.ip, str(obj(s).cidr)) && !(list(obj(s).except) ?? []).some((x) => inCidr(p.ip, str(x)))) ?? false;
}

// ---- ports ----

export interface Flow { readonly port: number; readonly protocol: string }

/**
 * A named port: on ingress the subject pod's own container port; on egress any pod's of the cluster
 * (pkg/endpoint/endpoint.go `GetNamedPort`: "egress needs named ports of all the pods"; a name with two
 * numbers resolves to none, pkg/policy/types NamedPortMultiMap `GetNamedPort`).
 */
function namedPort(name: string, flow: Flow, candidates: readonly Peer[]): boolean {
  const numbers = new Set(candidates.flatMap((p) => p.ports.filter((c) => c.name === name && c.protocol === flow.protocol).map((c) => c.port)));
  return numbers.size === 1 && numbers.has(flow.port);
}

type Named = (name: string, flow: Flow) => boolean;

function portMatches(pp: Yaml, flow: Flow, named: Named): boolean {
  const proto = str(pp.protocol || 'ANY');
  if (flow.protocol === 'ICMP') return false;
  if (proto !== 'ANY' && proto !== flow.protocol) return false;
  const port = str(pp.port);
  if (/^[0-9]+$/.test(port)) {
    const lo = Number(port);
    if (lo === 0 && pp.endPort === undefined) return true;
    const hi = pp.endPort === undefined ? lo : Math.max(lo, Number(pp.endPort));
    return flow.port >= lo && flow.port <= hi;
  }
  return named(port.toLowerCase(), flow);
}

/**
 * An `icmps` field (pkg/policy/api/icmp.go `ICMPField.PortProtocol`): family IPv4 (default) or IPv6,
 * a numeric type; the flow's `port` is the ICMP type. Type names are not read here.
 */
function icmpMatches(f: Yaml, flow: Flow): boolean {
  const proto = str(f.family || 'IPv4') === 'IPv6' ? 'ICMPV6' : 'ICMP';
  return flow.protocol.toUpperCase() === proto && /^[0-9]+$/.test(String(f.type)) && Number(f.type) === flow.port;
}

/**
 * A rule's L4 part: no `toPorts` and no `icmps` = every port and protocol; otherwise the listed ports
 * and ICMP types only. An `icmps` entry without `fields` is a port rule with no ports (parserules.go
 * `icmpRules`: `GetPortRule` returns one whatever the fields): it matches nothing (attack finding 1301).
 */
function l4Matches(rule: Yaml, flow: Flow, named: Named): boolean {
  const toPorts = list(rule.toPorts) ?? [];
  const icmps = list(rule.icmps) ?? [];
  if (toPorts.length === 0 && icmps.length === 0) return true;
  if (toPorts.some((pr) => (list(obj(pr).ports) ?? []).some((pp) => portMatches(obj(pp), flow, named)))) return true;
  return icmps.some((ir) => (list(obj(ir).fields) ?? []).some((f) => icmpMatches(obj(f), flow)));
}

function ruleMatches(rule: Yaml, dir: 'from' | 'to', peer: Peer, flow: Flow, named: Named, namespace: string | undefined, deny: boolean): boolean {
  const l3 = peerSelects(rule, dir, peer, namespace, deny);
  if (l3 === false) return false;
  // `{}` (and `{toPorts: []}`: Go sees len 0 either way) takes the L3-only path with no peer: nothing
  if (l3 === undefined && (list(rule.toPorts) ?? []).length === 0 && (list(rule.icmps) ?? []).length === 0) return false;
  return l4Matches(rule, flow, named);
}

/** A probe's L7 request (docs/scenarios.md): one of `http`, `kafka`, `dns`. */
export type L7Request = { readonly http: HttpRequest } | { readonly kafka: KafkaRequest } | { readonly dns: string };

/** A probe's request (docs/scenarios.md `http`, `kafka`, `dns` fields), or undefined for L3/L4 only. */
export function readProbeRequest(probe: unknown): L7Request | undefined {
  const p = obj(probe);
  if (p.http !== undefined) return { http: readRequest(p.http) };
  if (p.kafka !== undefined) return { kafka: readKafkaRequest(p.kafka) };
  return p.dns === undefined ? undefined : { dns: str(obj(p.dns).name) };
}

/**
 * pkg/policy/api/l4.go `L7Rules`: a port rule's parser is the one whose list is non-empty (`IsEmpty`); the
 * proxy of that parser cannot read a request of another protocol and fails it.
 */
function portRuleAdmits(l7: Yaml, req: L7Request): boolean {
  const http = list(l7.http) ?? [];
  const kafka = list(l7.kafka) ?? [];
  const dns = list(l7.dns) ?? [];
  if (http.length > 0) return 'http' in req && http.some((h) => httpRuleMatches(obj(h), req.http));
  if (kafka.length > 0) return 'kafka' in req && kafkaRulesAllow(kafka.map(obj), req.kafka);
  if (dns.length > 0) return 'dns' in req && dns.map(obj).some((d) => dnsRuleMatches(d, req.dns));
  return true;
}

/**
 * pkg/policy/api/fqdn.go `PortRuleDNS` (an FQDNSelector): `matchName` or `matchPattern`, each compared with the
 * query as pkg/fqdn/matchpattern builds it (dns-policy.ts `patternRegexp`, names lower-cased and fully qualified).
 */
function dnsRuleMatches(rule: Yaml, name: string): boolean {
  const q = fqdn(name);
  if (rule.matchName !== undefined && fqdn(str(rule.matchName)) === q) return true;
  return rule.matchPattern !== undefined && patternRegexp(str(rule.matchPattern)).test(q);
}

/**
 * Does an allow rule that admits the flow also admit the request? Only its port rules covering the flow
 * count; one without L7 rules (or a rule without `toPorts`) admits every request, else one of its L7 rules
 * must match (HTTP cilium-l7.ts, Kafka cilium-kafka.ts, DNS above). No request = L3/L4 only. A query the DNS
 * proxy judges (`dnsFilters`, see `dnsFilterKeys`) is admitted only by port rules of the filters that redirect it.
 */
function l7Admits(rule: Yaml, flow: Flow, named: Named, req: L7Request | undefined, dnsFilters?: ReadonlySet<string>): boolean {
  const toPorts = list(rule.toPorts);
  if (dnsFilters !== undefined && req !== undefined) return (toPorts ?? []).map(obj).some((pr) => (list(pr.ports) ?? []).some((pp) => dnsFilters.has(filterKey(obj(pp))) && portMatches(obj(pp), flow, named)) && portRuleAdmits(obj(pr.rules), req));
  if (req === undefined || toPorts === undefined || toPorts.length === 0) return true;
  return toPorts.map(obj).some((pr) => (list(pr.ports) ?? []).some((pp) => portMatches(obj(pp), flow, named)) && portRuleAdmits(obj(pr.rules), req));
}

/**
 * The L4Filter a port belongs to, for ports covering the flow's port and protocol: pkg/policy/l4.go keeps a named
 * port's filters (`dns/UDP`) apart from the numbered ones (`53/UDP`), and an L3-only rule, port 0 or a range is a
 * filter of its own (pkg/policy/rule_test.go TestWildcardL3RulesEgress). Named ports are case-folded by the API.
 */
function filterKey(pp: Yaml): string {
  const port = str(pp.port);
  if (!/^[0-9]+$/.test(port)) return port === '' ? 'all' : `name:${port.toLowerCase()}`;
  if (Number(port) === 0) return 'all';
  return pp.endPort === undefined || Number(pp.endPort) <= Number(port) ? 'port' : `range:${port}-${str(pp.endPort)}`;
}

/**
 * DNS is not Envoy: the agent's DNS proxy judges a query with the rules of the L4Filter whose redirect it is
 * (pkg/endpoint/bpf.go addNewRedirectsFromDesiredPolicy: for each filter with a redirecting selector,
 * CreateOrUpdateRedirect(proxyPolicy{L4Filter: l4, ...}) -> pkg/proxy/dns.go setRules -> dnsproxy UpdateAllowed,
 * read by proxy.go ServeDNS -> CheckAllowed -> getPortRulesForID). So only the filters holding a DNS rule for this
 * peer and flow judge the query, and only allow rules on those filters (any L7 or none) admit it: a plain allow on
 * the named port `dns` is not in the `53/UDP` filter (attack finding 2682), nor the reverse (2760).
 */
function dnsFilterKeys(rule: Yaml, flow: Flow, named: Named): string[] {
  return (list(rule.toPorts) ?? []).map(obj).filter((pr) => (list(obj(pr.rules).dns) ?? []).length > 0)
    .flatMap((pr) => (list(pr.ports) ?? []).map(obj).filter((pp) => portMatches(pp, flow, named)).map(filterKey));
}

// ---- verdicts ----

interface Spec { readonly spec: Yaml; readonly namespace: string | undefined }

function specsSelecting(c: Cluster, subject: Peer): Spec[] {
  const out: Spec[] = [];
  for (const pol of c.policies) {
    const namespace = pol.kind === 'CiliumNetworkPolicy' ? str(obj(pol.metadata).namespace) : undefined;
    const specs = [...(pol.spec === undefined ? [] : [obj(pol.spec)]), ...(list(pol.specs) ?? []).map(obj)];
    for (const spec of specs) {
      if (selects(subjectSelector(obj(spec.endpointSelector), namespace), subject.labels)) out.push({ spec, namespace });
    }
  }
  return out;
}

/**
 * `strictEgressNamedPorts`: distill's documented deviation (docs/semantics.md "Named ports on egress"): an
 * egress DENY on a name two pods give different numbers denies every number (Cilium resolves it to none); an
 * egress ALLOW on a named port admits only pods that have that port. The test accepts a disagreement only
 * when this reading removes it.
 */
export interface Reading { readonly strictEgressNamedPorts: boolean }
const CILIUM: Reading = { strictEgressNamedPorts: false };

/** distill's reading: every pod of the peer's identity (same labels) has the port, and the name is unique. */
function strictNamed(pods: readonly Peer[], peer: Peer, named: Named): Named {
  const same = (a: Labels, b: Labels): boolean => a.size === b.size && [...a].every(([k, v]) => b.get(k) === v);
  const identity = peer.kind === 'pod' ? pods.filter((p) => same(p.labels, peer.labels)) : [];
  return (name, f) => identity.length > 0 && named(name, f) && identity.every((p) => namedPort(name, f, [p]));
}

/** One direction of one endpoint: is the flow with `peer` allowed? */
function directionAllows(c: Cluster, subject: Peer, peer: Peer, flow: Flow, ingress: boolean, reading: Reading, req?: L7Request): boolean {
  const [allowKey, denyKey, dir, flag] = ingress ? ['ingress', 'ingressDeny', 'from', 'ingress'] as const : ['egress', 'egressDeny', 'to', 'egress'] as const;
  const pods = [...c.peers.values()].filter((p) => p.kind === 'pod');
  const named: Named = (name, f) => namedPort(name, f, ingress ? [subject] : pods);
  let enforced = false;
  let allowed = false;
  const specs = specsSelecting(c, subject);
  const dnsKeys = req !== undefined && 'dns' in req ? new Set(specs.flatMap(({ spec, namespace }) =>
    (list(spec[allowKey]) ?? []).filter((r) => ruleMatches(obj(r), dir, peer, flow, named, namespace, false)).flatMap((r) => dnsFilterKeys(obj(r), flow, named)))) : new Set<string>();
  const dnsFilters = dnsKeys.size > 0 ? dnsKeys : undefined;
  for (const { spec, namespace } of specs) {
    const allows = list(spec[allowKey]) ?? [];
    const denies = list(spec[denyKey]) ?? [];
    const denyNamed: Named = !ingress && reading.strictEgressNamedPorts ? (name, f) => pods.some((p) => namedPort(name, f, [p])) : named;
    if (denies.some((r) => ruleMatches(obj(r), dir, peer, flow, denyNamed, namespace, true))) return false;
    if (allows.length + denies.length > 0 && obj(spec.enableDefaultDeny)[flag] !== false) enforced = true;
    const allowNamed = !ingress && reading.strictEgressNamedPorts ? strictNamed(pods, peer, named) : named;
    if (allows.some((r) => ruleMatches(obj(r), dir, peer, flow, allowNamed, namespace, false) && l7Admits(obj(r), flow, allowNamed, req, dnsFilters))) allowed = true;
  }
  if (ingress && peer.kind === 'host' && c.allowLocalhostAlways) return true;
  return allowed || !enforced;
}

const isL7Request = (r: L7Request | HttpRequest): r is L7Request => 'http' in r || 'kafka' in r || 'dns' in r;

/** Cilium's verdict for a flow: the source pod's egress and the destination pod's ingress. */
export function decide(c: Cluster, from: Peer, to: Peer, flow: Flow, reading: Reading = CILIUM, request?: L7Request | HttpRequest): boolean {
  // an HttpRequest alone (cilium-l7.ts readRequest) is an `http` probe
  const req: L7Request | undefined = request === undefined || isL7Request(request) ? request : { http: request };
  if (from.kind === 'pod' && !directionAllows(c, from, to, flow, false, reading, req)) return false;
  if (to.kind === 'pod' && !directionAllows(c, to, from, flow, true, reading, req)) return false;
  return true;
}
