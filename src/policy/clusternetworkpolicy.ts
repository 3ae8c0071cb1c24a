import { Cidr, parseCidr } from '../model/cidr.js';
import { NAMESPACE_LABELS_PREFIX, SOURCE_K8S } from '../model/labels.js';
import type { Direction, Policy, PolicyWarning } from '../model/rules.js';
import { makeSelector, Selector, WILDCARD_SELECTOR } from '../model/selector.js';
import { MAX_PRIORITY, MIN_PRIORITY, networksCoverEverything, TIER_ACTIONS, TIERS, TierAction, TieredSpec, TierPeer, TierPort, TierRule } from '../model/tiers.js';
import { FqdnSelector, makeFqdnSelector } from '../model/fqdn.js';
import { isValidPortName } from '../model/ports.js';
import { readCidr, readMetadata, refOf } from './common.js';
import type { ParseOptions } from './cilium-options.js';
import { ManifestError } from './errors.js';
import { absent, at, join, Reader } from './reader.js';
import { parseLabelSelector, SelectorOptions } from './selector.js';

/*
 * Reads ClusterNetworkPolicy (kubernetes-sigs/network-policy-api) at `policy.networking.k8s.io/v1beta1`
 * (apis/v1beta1/clusternetworkpolicy_types.go, the storage version) and `v1alpha2` (apis/v1alpha2/
 * clusternetworkpolicy_types.go), each as its own version. Limits are the CRD's, alike in both (priority
 * 0–1000, at most 25 rules per direction, 25 peers, 25 protocols, 25 networks). Where v1beta1 differs
 * (docs/semantics.md, "v1beta1 against v1alpha2"): a `networks` CIDR must be its own network address
 * (`cidr(self) == cidr(self).masked()`), a `domainNames` label starts with a letter or digit (v1alpha2's
 * pattern has `A-z`), and `destinationNamedPort` is an experimental field, so no CRD of v1beta1 takes it
 * beside a `networks` peer.
 */
/** The apiVersions read, v1beta1 first (the storage version, what `kubectl get` returns). */
export const CNP_API_VERSIONS = ['policy.networking.k8s.io/v1beta1', 'policy.networking.k8s.io/v1alpha2'] as const;
export type CnpVersion = 'v1beta1' | 'v1alpha2';
/** The version of one of CNP_API_VERSIONS. */
export const cnpVersionOf = (apiVersion: string): CnpVersion => (apiVersion === CNP_API_VERSIONS[0] ? 'v1beta1' : 'v1alpha2');
const MAX_ITEMS = 25;
const MAX_RULE_NAME = 100;
const MAX_CIDR_LENGTH = 43;
const POD_SELECTOR: SelectorOptions = { defaultSource: SOURCE_K8S, allowSourcePrefix: false };
const NAMESPACE_SELECTOR: SelectorOptions = {
  defaultSource: SOURCE_K8S,
  allowSourcePrefix: false,
  mapKey: (k) => ({ source: SOURCE_K8S, key: NAMESPACE_LABELS_PREFIX + k.key }),
};
/** Peer fields distill reads; the experimental ones are refused, not guessed at. */
const PEER_FIELDS: Readonly<Record<Direction, readonly string[]>> = { ingress: ['namespaces', 'pods'], egress: ['namespaces', 'pods', 'networks', 'domainNames', 'nodes'] };
const EGRESS_ONLY_PEERS = ['networks', 'nodes', 'domainNames'];
/** Node label keys are plain Kubernetes label keys (`kubernetes.io/os`), read as `k8s:` labels of the node. */
const NODE_SELECTOR: SelectorOptions = { defaultSource: SOURCE_K8S, allowSourcePrefix: false };
/** One label of v1alpha2's `DomainName` pattern, `A-z` (which also takes `[\]^_` and a backquote) kept as written. */
const DOMAIN_LABEL = /^[a-zA-z0-9]([-a-zA-Z0-9_]*[a-zA-Z0-9])?$/;
/** One label of v1beta1's `DomainName` pattern (apis/v1beta1 at 30ea168: `[a-zA-Z0-9]` first, the typo gone). */
const DOMAIN_LABEL_V1BETA1 = /^[a-zA-Z0-9]([-a-zA-Z0-9_]*[a-zA-Z0-9])?$/;

function limited(r: Reader, v: unknown, path: string, min: number): unknown[] {
  const a = r.array(v, path);
  if (a.length < min) r.fail(path, `must have at least ${min} item${min === 1 ? '' : 's'}`);
  if (a.length > MAX_ITEMS) r.fail(path, `has ${a.length} items; the API allows at most ${MAX_ITEMS}`);
  return a;
}

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isStrings = (v: unknown): boolean => Array.isArray(v) && v.every((x) => typeof x === 'string');

/** The shape the CRD's LabelSelector schema checks: string labels, expressions with string key and operator, string values. */
function crdSelectorShape(v: unknown): boolean {
  if (!isRecord(v) || Object.keys(v).some((k) => k !== 'matchLabels' && k !== 'matchExpressions')) return false;
  const { matchLabels: ml, matchExpressions: me } = v;
  if (ml !== undefined && !(isRecord(ml) && Object.values(ml).every((x) => typeof x === 'string'))) return false;
  if (me === undefined) return true;
  return Array.isArray(me) && me.every((e) => isRecord(e) && typeof e.key === 'string' && typeof e.operator === 'string' && (e.values === undefined || isStrings(e.values)));
}

/**
 * A LabelSelector. The CRD's schema checks its shape only, so the API server takes an operator
 * `in`, `In` without values or an invalid key, which metav1.LabelSelectorAsSelector then refuses:
 * such a selector is "not supported" (the agent's stand-in makes its rule fail closed).
 */
function readSelector(r: Reader, v: unknown, path: string, opts: SelectorOptions): Selector {
  try {
    return parseLabelSelector(r, v, path, opts);
  } catch (e) {
    if (!(e instanceof ManifestError) || !crdSelectorShape(v)) throw e;
    // Deferred (`Reader.unsupported`): the API server stores the object only if the rest passes the CRD (attack finding 1835).
    r.unsupported(e.fieldPath, `${e.detail}: the CRD takes this selector, Kubernetes' LabelSelectorAsSelector refuses it; it is not supported by distill`);
    return WILDCARD_SELECTOR;
  }
}

/** `namespaces: <LabelSelector>` or `pods: {namespaceSelector, podSelector}` as one selector. */
function readPodSelection(r: Reader, o: Record<string, unknown>, path: string): Selector {
  if (!absent(o.namespaces)) return readSelector(r, o.namespaces, join(path, 'namespaces'), NAMESPACE_SELECTOR);
  const p = join(path, 'pods');
  const pods = r.object(o.pods, p, ['namespaceSelector', 'podSelector']);
  if (absent(pods.podSelector)) r.fail(join(p, 'podSelector'), 'is required');
  const podSel = readSelector(r, pods.podSelector, join(p, 'podSelector'), POD_SELECTOR);
  const nsSel = absent(pods.namespaceSelector) ? makeSelector([]) : readSelector(r, pods.namespaceSelector, join(p, 'namespaceSelector'), NAMESPACE_SELECTOR);
  return makeSelector([...podSel.requirements, ...nsSel.requirements]);
}

function readSubject(r: Reader, v: unknown): Selector {
  const o = r.object(v, 'spec.subject', ['namespaces', 'pods']);
  const given = ['namespaces', 'pods'].filter((k) => !absent(o[k]));
  if (given.length !== 1) r.fail('spec.subject', `exactly one of namespaces, pods must be set${given.length > 1 ? ` (got ${given.join(' and ')})` : ''}`);
  return readPodSelection(r, o, 'spec.subject');
}

function readPeer(r: Reader, v: unknown, path: string, direction: Direction, warnings: PolicyWarning[], version: CnpVersion): TierPeer {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) r.fail(path, 'must be an object');
  const o = v as Record<string, unknown>;
  const present = Object.keys(o).filter((k) => !absent(o[k]));
  for (const k of present) {
    // To this version's ingress peer type a peer with no known field (a newer CRD's): "not supported", so the agent's stand-in fails its rule closed.
    if (direction === 'ingress' && EGRESS_ONLY_PEERS.includes(k)) r.unsupported(join(path, k), `"${k}" is an egress peer; an ingress peer is namespaces or pods (a newer CRD's "${k}" ingress peer is not supported by distill)`);
  }
  const known = present.filter((k) => PEER_FIELDS[direction].includes(k));
  if (known.length > 1) r.fail(path, `exactly one peer field may be set (got ${known.join(' and ')})`);
  if (known.length === 0) {
    // The API: a peer with no field this implementation knows comes from a newer CRD; fail closed.
    warnings.push({ source: r.source, path, detail: `no peer field distill knows (${present.join(', ') || 'empty'}): fails closed (an Accept rule matches nothing, a Deny or Pass rule denies everything)` });
    return { kind: 'unknown', fields: present };
  }
  if (known[0] === 'domainNames') return { kind: 'domainNames', fqdns: readDomainNames(r, o.domainNames, join(path, 'domainNames'), version) };
  // types.go `Nodes`: a LabelSelector over node labels; "if present but empty, it selects all Nodes".
  if (known[0] === 'nodes') return { kind: 'nodes', selector: readSelector(r, o.nodes, join(path, 'nodes'), NODE_SELECTOR) };
  if (known[0] !== 'networks') return { kind: 'pods', selector: readPodSelection(r, o, path) };
  const np = join(path, 'networks');
  const items = limited(r, o.networks, np, 1);
  // The CRD types networks as x-kubernetes-list-type: set: the API server refuses a repeated item.
  items.forEach((c, i) => {
    if (items.indexOf(c) !== i) r.fail(at(np, i), `duplicate value ${JSON.stringify(c)} (networks is a set)`);
  });
  const cidrs: Cidr[] = items.map((c, i) => readNetwork(r, c, at(np, i), version));
  return { kind: 'networks', cidrs };
}

/**
 * The CRD's `isCIDR(self)` (apiserver CEL library parseCIDR: netip.ParsePrefix, then "IPv4-mapped
 * IPv6 address is not allowed"); readCidr applies the netip rules. v1beta1 adds `&& cidr(self) ==
 * cidr(self).masked()`: the CEL CIDR's Equal compares the netip.Prefix values (k8s.io/apiserver
 * pkg/cel/cidr.go), so an address with host bits set ("10.0.0.1/8") is refused; v1alpha2 takes it,
 * and it is read as its network (10.0.0.0/8).
 */
function readNetwork(r: Reader, v: unknown, path: string, version: CnpVersion): Cidr {
  // The CRD's `CIDR` type: maxLength 43 (a long IPv6 form netip takes, e.g. eight 4-digit groups with a dotted quad, is refused).
  if (typeof v === 'string' && v.length > MAX_CIDR_LENGTH) r.fail(path, `"${v}" is ${v.length} characters; the API allows at most ${MAX_CIDR_LENGTH}`);
  const c = readCidr(r, v, path, true);
  const addr = parseCidr((v as string).slice(0, (v as string).indexOf('/')));
  if (addr.family === 'ipv6' && addr.network >> 32n === 0xffffn) r.fail(path, `"${String(v)}": an IPv4-mapped IPv6 address is not allowed (the API's isCIDR refuses it)`);
  if (version === 'v1beta1' && addr.network !== c.network) {
    r.fail(path, `"${String(v)}" has host bits set: v1beta1 takes only a network address (the CRD's cidr(self) == cidr(self).masked(), "Invalid CIDR format provided"); write ${c.text}`);
  }
  return c;
}

/**
 * `domainNames` (apis/v1alpha2 `DomainName`): the CRD's pattern, checked label by label (no
 * backtracking): an optional `*.` prefix, two or more labels, an optional trailing dot. `*.x`
 * takes one or more labels before `x` ("matches subdomains", "latest.blog.kubernetes.io" too), so it
 * becomes the FQDN pattern `**.x`; names compare in lower case without the trailing dot.
 */
function readDomainNames(r: Reader, v: unknown, path: string, version: CnpVersion): FqdnSelector[] {
  const label = version === 'v1beta1' ? DOMAIN_LABEL_V1BETA1 : DOMAIN_LABEL;
  const shape = version === 'v1beta1' ? 'two or more labels, each of letters, digits, "-" and "_" that starts and ends with a letter or digit' : 'two or more labels of letters, digits, "-", "_"';
  const items = limited(r, v, path, 1);
  return items.map((item, i) => {
    const p = at(path, i);
    const name = r.nonEmptyString(item, p);
    if (items.indexOf(item) !== i) r.fail(p, `duplicate value ${JSON.stringify(name)} (domainNames is a set)`);
    const wildcard = name.startsWith('*.');
    const body = wildcard ? name.slice(2) : name;
    const labels = (body.endsWith('.') ? body.slice(0, -1) : body).split('.');
    if (labels.length < 2 || !labels.every((l) => label.test(l))) {
      r.fail(p, `"${name}" is not a domain name the API takes (${shape}, an optional "*." prefix, an optional trailing dot)`);
    }
    return wildcard ? makeFqdnSelector('matchPattern', `**.${body}`) : makeFqdnSelector('matchName', body);
  });
}

/**
 * An object of which the CRD requires one field (minProperties 1) that holds only fields distill does not know:
 * the installed CRD would have pruned them and refused the object, so a newer CRD stored it, and the entry may be
 * valid there. `r.object` has deferred the fields as not supported (the agent's stand-in fails the rule closed),
 * so the presence check is not held against the object (attack findings 1896, 1910; types.go's peers: "If an
 * implementation sees no fields are set then it can infer that the deployed CRD is of an incompatible version").
 */
function onlyUnknownFields(o: Record<string, unknown>, known: readonly string[]): boolean {
  const present = Object.keys(o).filter((k) => !absent(o[k]));
  return present.length > 0 && present.every((k) => !known.includes(k));
}

/** A `Port`; undefined when it holds only a newer CRD's fields (deferred as not supported). */
function readPort(r: Reader, v: unknown, path: string): { from: number; to: number } | undefined {
  const o = r.object(v, path, ['number', 'range']);
  if (onlyUnknownFields(o, ['number', 'range'])) return undefined;
  const given = ['number', 'range'].filter((k) => !absent(o[k]));
  if (given.length !== 1) r.fail(path, 'exactly one of number, range must be set');
  if (!absent(o.number)) {
    const n = r.intInRange(o.number, join(path, 'number'), 1, 65535);
    return { from: n, to: n };
  }
  const rp = join(path, 'range');
  const range = r.object(o.range, rp, ['start', 'end']);
  const start = r.intInRange(range.start, join(rp, 'start'), 1, 65535);
  const end = r.intInRange(range.end, join(rp, 'end'), 1, 65535);
  if (start >= end) r.fail(rp, `start (${start}) must be less than end (${end})`);
  return { from: start, to: end };
}

/**
 * The placeholder of a protocols entry read as not supported (the policy is never returned with it). It is no
 * named port: the experimental CRD's "cannot be set with namedPorts" rule tests `has(destinationNamedPort)`, so a
 * newer CRD's protocol beside a nodes or domainNames peer is valid there (attack finding 1911).
 */
const UNREAD_PROTOCOL: TierPort = Object.freeze({ kind: 'named', name: '' });

function readProtocolEntry(r: Reader, v: unknown, path: string, warnings: PolicyWarning[]): TierPort {
  const known = ['tcp', 'udp', 'sctp', 'destinationNamedPort'];
  const o = r.object(v, path, known);
  // Only a newer CRD's protocol (e.g. icmp: finding 142) or port field: not supported, a stand-in.
  if (onlyUnknownFields(o, known)) return UNREAD_PROTOCOL;
  const given = known.filter((k) => !absent(o[k]));
  if (given.length !== 1) r.fail(path, 'exactly one of tcp, udp, sctp, destinationNamedPort must be set');
  const field = given[0] as string;
  if (field === 'destinationNamedPort') {
    const name = r.string(o.destinationNamedPort, join(path, field));
    // Go's omitempty makes "" (which the CRD takes: the key counts for minProperties) an entry with no field set.
    if (name === '') r.unsupported(join(path, field), 'is empty: a protocols entry with no port is not supported by distill');
    if (!isValidPortName(name)) {
      // The CRD takes any string (no pattern), but no container port has such a name (the API server refuses pods with it): it matches no port.
      warnings.push({ source: r.source, path: join(path, field), detail: `"${name}" is no container port name (IANA_SVC_NAME): this entry matches no port` });
    }
    return { kind: 'named', name };
  }
  const pp = join(path, field);
  const proto = r.object(o[field], pp, ['destinationPort']);
  if (onlyUnknownFields(proto, ['destinationPort'])) return UNREAD_PROTOCOL;
  if (absent(proto.destinationPort)) r.fail(join(pp, 'destinationPort'), 'is required');
  const port = readPort(r, proto.destinationPort, join(pp, 'destinationPort'));
  if (port === undefined) return UNREAD_PROTOCOL;
  const { from, to } = port;
  return { kind: 'range', protocol: field.toUpperCase() as 'TCP' | 'UDP' | 'SCTP', from, to };
}

function readRule(r: Reader, v: unknown, path: string, direction: Direction, index: number, warnings: PolicyWarning[], version: CnpVersion, splits: boolean): TierRule {
  const peersField = direction === 'ingress' ? 'from' : 'to';
  const o = r.object(v, path, ['name', 'action', peersField, 'protocols']);
  const name = r.optString(o.name, join(path, 'name'));
  // The CRD's maxLength counts characters (go-openapi MaxLength: utf8.RuneCountInString), not UTF-16 units.
  const nameLength = name === undefined ? 0 : [...name].length;
  if (nameLength > MAX_RULE_NAME) r.fail(join(path, 'name'), `is ${nameLength} characters; at most ${MAX_RULE_NAME}`);
  const action: TierAction = r.oneOf(o.action, join(path, 'action'), TIER_ACTIONS);
  if (absent(o[peersField])) r.fail(join(path, peersField), 'is required');
  const pp = join(path, peersField);
  const peers = limited(r, o[peersField], pp, 1).map((p, i) => readPeer(r, p, at(pp, i), direction, warnings, version));
  const protocols = absent(o.protocols) ? [] : limited(r, o.protocols, join(path, 'protocols'), 1).map((p, i) => readProtocolEntry(r, p, at(join(path, 'protocols'), i), warnings));
  // A nodes or domainNames peer first: only the experimental CRD has them, and it refuses any of the three with a
  // named port, so the rule is invalid whatever the order of its peers (attack finding 1833).
  const unnamed = peers.find((p) => p.kind === 'domainNames' || p.kind === 'nodes') ?? peers.find((p) => p.kind === 'networks');
  if (unnamed && protocols.some((p) => p.kind === 'named' && p !== UNREAD_PROTOCOL)) {
    // The experimental CRD refuses this (an XValidation); the standard CRD has no such rule and
    // accepts networks with a named port, which the API gives no meaning: the stand-in fails closed.
    // v1beta1 marks destinationNamedPort itself <network-policy-api:experimental>: its standard CRD has no such field
    // (pruned, the entry is left empty: minProperties 1) and its experimental CRD has the rule, so every v1beta1 CRD refuses it.
    if (unnamed.kind === 'networks' && version === 'v1beta1') r.fail(join(path, 'protocols'), 'destinationNamedPort cannot be used with a networks peer (networks have no named ports): v1beta1 refuses it (its experimental CRD\'s rule; its standard CRD has no destinationNamedPort)');
    else if (unnamed.kind === 'networks') r.unsupported(join(path, 'protocols'), 'destinationNamedPort with a networks peer is not supported by distill (the experimental CRD refuses it; the standard CRD accepts it, networks have no named ports)');
    else r.fail(join(path, 'protocols'), `destinationNamedPort cannot be used with a ${unnamed.kind} peer (${unnamed.kind} have no named ports)`);
  }
  if (action !== 'Accept' && peers.some((p) => p.kind === 'domainNames')) {
    // types.go: "DomainNames is only supported for Accept rules" (no CEL rule; NPEP-133: a Deny on incompletely learnt IPs fails open).
    // "not supported by distill": the agent's stand-in then fails closed (src/policy/stand-in.ts).
    r.unsupported(join(path, 'action'), `is ${action}: a domainNames peer in a ${action} rule is not supported by distill (the API supports it in Accept rules only)`);
  }
  if (!splits && direction === 'egress') {
    // Identities from outside cannot be split by address or named port (ParseOptions.identitySplits): the engine
    // would refuse the whole object, so the rule is "not supported" and the agent's stand-in fails it closed (2247).
    // Networks holding both /0s match every address alike and split nothing: read as written (review 27w, 2351).
    const what = peers.some((p) => p.kind === 'networks') && !networksCoverEverything(peers) ? 'a networks peer' : protocols.some((p) => p.kind === 'named' && p !== UNREAD_PROTOCOL) ? 'a destinationNamedPort' : null;
    if (what) r.unsupported(path, `has ${what}, which needs pod identities split by address or named port: with identities from outside it is not supported by distill`);
  }
  return { direction, index, action, peers, protocols, path, ...(name !== undefined && name !== '' ? { name } : {}) };
}

function readRules(r: Reader, v: unknown, direction: Direction, warnings: PolicyWarning[], version: CnpVersion, splits: boolean): TierRule[] {
  if (absent(v)) return [];
  const path = `spec.${direction}`;
  const a = r.array(v, path);
  if (a.length > MAX_ITEMS) r.fail(path, `has ${a.length} rules; the API allows at most ${MAX_ITEMS}`);
  return a.map((rule, i) => readRule(r, rule, at(path, i), direction, i, warnings, version, splits));
}

/**
 * Flattens a ClusterNetworkPolicy: `rules` and `enforcements` stay empty, everything is in `tiered`. `version`'s
 * validation applies, but a `served` object at v1beta1 (the agent's watch: it may have been written at v1alpha2,
 * ParseOptions.served) is checked as v1alpha2 checks it; v1beta1 is stricter than v1alpha2 and nowhere looser,
 * and both versions mean the same by every field (docs/semantics.md, "v1beta1 against v1alpha2"). With
 * `identitySplits: false` an egress rule that needs split identities is "not supported" (ParseOptions.identitySplits).
 */
export function parseClusterNetworkPolicy(r: Reader, doc: Record<string, unknown>, written: CnpVersion, options: Pick<ParseOptions, 'served' | 'identitySplits'> = {}): Policy {
  const version: CnpVersion = options.served === true ? 'v1alpha2' : written;
  const splits = options.identitySplits !== false;
  const md = readMetadata(r, doc.metadata, false);
  const ref = refOf('ClusterNetworkPolicy', md);
  const spec = r.object(doc.spec, 'spec', ['tier', 'priority', 'subject', 'ingress', 'egress']);
  const tier = r.oneOf(spec.tier, 'spec.tier', TIERS);
  if (absent(spec.priority)) r.fail('spec.priority', 'is required');
  const priority = r.intInRange(spec.priority, 'spec.priority', MIN_PRIORITY, MAX_PRIORITY);
  if (absent(spec.subject)) r.fail('spec.subject', 'is required');
  const subject = readSubject(r, spec.subject);
  const warnings: PolicyWarning[] = [];
  const rules = [...readRules(r, spec.ingress, 'ingress', warnings, version, splits), ...readRules(r, spec.egress, 'egress', warnings, version, splits)];
  const tiered: TieredSpec = { tier, priority, subject, rules };
  return { ref, rules: [], enforcements: [], tiered, manifest: doc, ...(warnings.length > 0 ? { warnings } : {}) };
}

/**
 * Two ClusterNetworkPolicies of one tier with one priority: the API lets an implementation pick
 * either when both match; distill applies both (Deny over Pass over Accept) but says so.
 */
export function samePriorityWarnings(policies: Iterable<Policy>, source: string): PolicyWarning[] {
  const seen = new Map<string, string>();
  const out: PolicyWarning[] = [];
  for (const p of policies) {
    if (p.tiered === undefined) continue;
    const key = `${p.tiered.tier}/${p.tiered.priority}`;
    const other = seen.get(key);
    if (other === undefined) seen.set(key, p.ref.name);
    else if (other !== p.ref.name) {
      out.push({ source, path: `ClusterNetworkPolicy/${p.ref.name}`, detail: `has the same ${p.tiered.tier} priority (${p.tiered.priority}) as ClusterNetworkPolicy/${other}: where both match, distill applies Deny over Pass over Accept; give them distinct priorities if the order matters` });
    }
  }
  return out;
}
