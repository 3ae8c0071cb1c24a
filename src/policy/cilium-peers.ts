import { CLUSTER_KEY, DEFAULT_CLUSTER_NAME, reservedLabel, SOURCE_ANY, SOURCE_CIDR, SOURCE_K8S } from '../model/labels.js';
import type { Peer, Verdict } from '../model/rules.js';
import { existsRequirement, hasSource, makeSelector, matchLabelRequirement, Selector, WILDCARD_SELECTOR } from '../model/selector.js';
import { FqdnSelector, fqdnSyntaxError, makeFqdnSelector } from '../model/fqdn.js';
import { checkCidrFormat, readCidr, readCidrWithExcept } from './common.js';
import { cidrGroupNameKey, SOURCE_CIDR_GROUP } from '../model/cidr-group.js';
import type { Cidr } from '../model/cidr.js';
import { isDnsSubdomain } from '../model/labels.js';
import { absent, at, join, Reader } from './reader.js';
import { RESERVED_IDENTITIES } from '../model/identity.js';
import { parseLabelSelector, type SelectorOptions } from './selector.js';
import type { ParseOptions } from './cilium-options.js';
import { CILIUM_SELECTOR, type DirectionShape } from './cilium-shapes.js';
import { groupReading, rawKeysNameNamespace, readsNodeLabels, readsOutsideLabels, scopePeerSelector, SOURCE_NODE } from './cilium-scope.js';

/*
 * The L3 peers of a Cilium rule: endpoints, entities, CIDRs and CIDR sets, nodes, and toFQDNs.
 */


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

/** The rule's L3 peers; `anyL3` when it has an L3 peer field at all (an empty one selects nothing). */
export function readL3Peers(r: Reader, o: Record<string, unknown>, path: string, shape: DirectionShape, namespace: string | undefined, options: ParseOptions, matchesInit: boolean): { peers: Peer[]; anyL3: boolean } {
  const peers: Peer[] = [];
  const eps = r.optArray(o[shape.endpoints], join(path, shape.endpoints));
  eps?.forEach((e, i) => peers.push(...readEndpointPeers(r, e, at(join(path, shape.endpoints), i), namespace, options, matchesInit, shape.verdict)));
  const nodes = r.optArray(o[shape.nodes], join(path, shape.nodes));
  nodes?.forEach((n, i) => peers.push({ kind: 'nodes', selector: parseNodeSelector(r, n, at(join(path, shape.nodes), i), options) }));
  const ents = r.optArray(o[shape.entities], join(path, shape.entities));
  ents?.forEach((e, i) => peers.push(...entityPeers(r.oneOf(e, at(join(path, shape.entities), i), ENTITIES), shape.verdict === 'deny')));
  const cidrs = r.optArray(o[shape.cidr], join(path, shape.cidr));
  // The CRD types each item `format: cidr` (earlier: a pattern ending in /prefix-length), so the
  // API server refuses a bare address that the agent's CIDR.sanitize alone would take.
  cidrs?.forEach((c, i) => peers.push({ kind: 'cidr', cidr: readCidr(r, c, at(join(path, shape.cidr), i), true), except: [] }));
  const sets = r.optArray(o[shape.cidrSet], join(path, shape.cidrSet));
  sets?.forEach((s, i) => peers.push(...readCidrSetPeer(r, s, at(join(path, shape.cidrSet), i), options, shape.verdict)));
  return { peers, anyL3: eps !== undefined || nodes !== undefined || ents !== undefined || cidrs !== undefined || sets !== undefined };
}

/**
 * One endpoint selector of `fromEndpoints`/`toEndpoints`, scoped to the policy's namespace, and, when it
 * also matches the identities of CIDR-group prefixes (`groupReading`), the group peer that selects them.
 */
function readEndpointPeers(r: Reader, e: unknown, path: string, namespace: string | undefined, options: ParseOptions, matchesInit: boolean, verdict: Verdict): Peer[] {
  const sel = parseLabelSelector(r, e, path, CILIUM_SELECTOR);
  // Cilium matches `cidr:` keys against the labels of CIDR identities; distill's label selectors
  // never see those labels, so a deny would miss them and a DoesNotExist would match them. The
  // same holds for `cidrgroup:` keys, the labels CiliumCIDRGroup objects give those identities
  // (pkg/policy/api/cidr.go ToSelectors: a cidrGroupRef is `Exists cidrgroup.<key>`; attack finding 952).
  if (hasSource(sel, SOURCE_CIDR)) r.unsupported(path, 'a `cidr:` label key in an endpoint selector is not supported by distill (write the prefix in a CIDR field)');
  if (hasSource(sel, SOURCE_CIDR_GROUP)) r.unsupported(path, 'a `cidrgroup:` label key in an endpoint selector is not supported by distill (write cidrGroupRef or cidrGroupSelector in a CIDR set)');
  const scoped = scopePeerSelector(sel, namespace, rawKeysNameNamespace(e), matchesInit, verdict);
  if (options.nodeSelectorLabels === true && readsNodeLabels(scoped)) r.unsupported(path, 'this selector is not scoped to pods (a `reserved:` key, a clusterwide policy whose subject names reserved:init, or a deny naming the namespace only through NotIn/DoesNotExist) and could match the Node labels of node identities (enable-node-selector-labels gives them `node:` labels and k8s:io.cilium.k8s.policy.cluster), which distill does not model for endpoint selectors: this selector is not supported by distill (write toNodes/fromNodes for Node labels)');
  if (readsOutsideLabels(scoped, verdict)) r.unsupported(path, `this selector is not scoped to pods (a \`reserved:\` key, a clusterwide policy whose subject names reserved:init, or a deny naming the namespace only through NotIn/DoesNotExist), and in Cilium its keys without a source also match the \`cidrgroup:\` and \`cidr:\` labels of the identities of addresses outside the cluster, which distill's label selectors do not see (${verdict === 'deny' ? 'a deny would miss them' : 'an allow would admit them'}): this selector is not supported by distill (write k8s: keys, or cidrGroupRef/cidrGroupSelector in a CIDR set)`);
  const peer: Peer = { kind: 'selector', selector: scoped };
  // Where CiliumCIDRGroup objects are not read (options.cidrGroups), no group is known to this reading;
  // the agent's reading while a group is unreadable is its `groupless` one (src/k8s/held.ts).
  const reading = options.cidrGroups === true || options.groupLabelsUnknown === true ? groupReading(scoped, verdict) : 'none';
  const groups = options.cidrGroups === true ? reading : 'none';
  if (options.groupLabelsUnknown === true && verdict === 'deny' && reading !== 'none') r.unsupported(path, 'this selector needs io.kubernetes.pod.namespace without a source, which in Cilium also matches a CiliumCIDRGroup\'s label of that key on its prefixes\' identities, and a CiliumCIDRGroup cannot be read now (a deny would miss its prefixes): this selector is not supported by distill while it cannot be read');
  if (groups === 'unsupported') r.unsupported(path, `this selector needs io.kubernetes.pod.namespace without a source, which in Cilium also matches a CiliumCIDRGroup's label of that key on its prefixes' identities, and those identities' other labels (cidr:<prefix>, reserved:world…) could decide its other requirements there (${verdict === 'deny' ? 'a deny would miss them' : 'an allow would admit them'}): this selector is not supported by distill (write k8s:io.kubernetes.pod.namespace for pods only)`);
  return groups === 'none' || groups === 'unsupported' ? [peer] : [peer, { kind: 'cidrGroup', selector: groups, except: [], mode: verdict === 'deny' ? 'any' : 'all' }];
}

/**
 * A `cidrGroupSelector` as CIDRRule.sanitize checks it: `SanitizeWithKeyExtender` with
 * `GetSourcePrefixKeyExtender("cidrgroup.")` prefixes every key as written, then Kubernetes'
 * ValidateLabelSelector (operators, values, keys as qualified names) refuses the object.
 */
const CIDR_GROUP_SELECTOR: SelectorOptions = { defaultSource: SOURCE_CIDR_GROUP, allowSourcePrefix: false, validatedKey: (k) => `cidrgroup.${k}` };

/**
 * One `fromCIDRSet`/`toCIDRSet` item: a CIDR and its exceptions, or a CIDR group. Two of cidr,
 * cidrGroupRef, cidrGroupSelector are refused as the CRD's oneOf refuses them: its `required` counts a
 * present field, "" too (which its pattern and format refuse), where CIDRRule.sanitize counts non-empty
 * ones only. A group is read only when the consumer models CiliumCIDRGroup objects
 * (`options.cidrGroups`); otherwise, once the checks that refuse the object have run (attack findings
 * 1913, 1914), its error is deferred (`Reader.unsupported`, attack finding 1767) and the item adds no peer.
 */
function readCidrSetPeer(r: Reader, s: unknown, path: string, options: ParseOptions, verdict: Verdict): Peer[] {
  const so = r.object(s, path, ['cidr', 'except', 'cidrGroupRef', 'cidrGroupSelector']);
  const set = (['cidr', 'cidrGroupRef', 'cidrGroupSelector'] as const).filter((k) => !absent(so[k]));
  if (set.length > 1) r.fail(path, `more than one of cidr, cidrGroupRef, or cidrGroupSelector may not be set (got ${set.join(' and ')}; the CRD's oneOf counts an empty string too)`);
  if (set[0] === 'cidrGroupRef' || set[0] === 'cidrGroupSelector') {
    // The CRD's `format: cidr` refuses an exception that is no CIDR (attack finding 1837), by the API's
    // rule, not netip's: "/024" passes it (review 1890: refusing it dropped an object Cilium enforces).
    (r.optArray(so.except, join(path, 'except')) ?? []).forEach((e, i) => checkCidrFormat(r, e, at(join(path, 'except'), i)));
    if (options.cidrGroups === true) return [readCidrGroupPeer(r, so, path, set[0], verdict)];
    const p = join(path, set[0]);
    if (set[0] === 'cidrGroupSelector') parseLabelSelector(r, so.cidrGroupSelector, p, CIDR_GROUP_SELECTOR);
    else readCidrGroupName(r, so.cidrGroupRef, p);
    r.unsupported(p, 'is not supported by distill here (CiliumCIDRGroup objects are not watched)');
    return [];
  }
  return [readCidrWithExcept(r, so.cidr, so.except, path, 'cidr', 'except')];
}

/**
 * A CIDR group item (pkg/policy/types/selector.go `newCIDRRuleSelector`): `cidrGroupRef` is
 * `Exists cidrgroup:io.cilium.policy.cidrgroupname/<ref>`, `cidrGroupSelector` its requirements on
 * `cidrgroup:` keys; each `except` a requirement that the identity's prefix lies outside it
 * (`NewExceptRequirement`; no containment check for groups). A selector without a positive
 * requirement would match every identity, pods included: not supported (fail closed).
 */
function readCidrGroupPeer(r: Reader, so: Record<string, unknown>, path: string, field: 'cidrGroupRef' | 'cidrGroupSelector', verdict: Verdict): Peer {
  const mode = verdict === 'deny' ? 'any' : 'all';
  const except = (r.optArray(so.except, join(path, 'except')) ?? []).map((e, i) => readExceptOrDefer(r, e, at(join(path, 'except'), i)));
  if (field === 'cidrGroupRef') {
    const ref = readCidrGroupName(r, so.cidrGroupRef, join(path, field));
    return { kind: 'cidrGroup', selector: makeSelector([existsRequirement({ source: SOURCE_CIDR_GROUP, key: cidrGroupNameKey(ref) })]), except: except.filter(isCidr), mode };
  }
  const sel = parseLabelSelector(r, so.cidrGroupSelector, join(path, field), CIDR_GROUP_SELECTOR);
  if (!sel.requirements.some((q) => q.operator === 'In' || q.operator === 'Exists')) r.unsupported(join(path, field), 'a cidrGroupSelector without a matchLabels entry or an In/Exists expression selects every identity, pods included, in Cilium: it is not supported by distill');
  return { kind: 'cidrGroup', selector: sel, except: except.filter(isCidr), mode };
}

const isCidr = (c: Cidr | undefined): c is Cidr => c !== undefined;

/** A `cidrGroupRef`: the CRD's pattern and maxLength make it a DNS subdomain of at most 253 characters. */
function readCidrGroupName(r: Reader, v: unknown, path: string): string {
  const name = r.string(v, path);
  if (!isDnsSubdomain(name)) r.fail(path, `"${name}" is not a CiliumCIDRGroup name (the CRD's pattern: a DNS subdomain of at most 253 characters)`);
  return name;
}

/**
 * A group item's exception as the agent parses it (`labels.IPStringToLabel`, netip): one the API took
 * but netip refuses ("/024") is "not supported" (Cilium's selector code assumes it valid).
 */
function readExceptOrDefer(r: Reader, e: unknown, path: string): Cidr | undefined {
  try {
    return readCidr(new Reader(r.source, true), e, path, true);
  } catch {
    r.unsupported(path, 'an except item netip.ParsePrefix refuses beside a CIDR group is not supported by distill');
    return undefined;
  }
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
  // Deferred: the cluster's agent may run with the flag (the stand-in takes this error), and Cilium refuses the object
  // for an invalid field after it either way (attack finding 1836).
  if (options.nodeSelectorLabels !== true) r.unsupported(path, 'FromNodes/ToNodes rules can only be applied when the "enable-node-selector-labels" flag is set (Cilium refuses the policy without it; scenarios: nodeSelectorLabels: true)');
  const sel = parseLabelSelector(r, v, path, CILIUM_SELECTOR);
  const reqs = sel.requirements.map((q) => {
    if (q.key.key === CLUSTER_KEY) r.unsupported(path, `the key ${CLUSTER_KEY} in a node selector is not supported by distill`);
    // An `any:` key also matches the node identity's reserved labels (reserved:remote-node,
    // reserved:kube-apiserver...), which distill's node labels do not carry.
    if (q.key.source === SOURCE_ANY && Object.hasOwn(RESERVED_IDENTITIES, q.key.key)) r.unsupported(path, `the key ${q.key.key} in a node selector is not supported by distill (Cilium's any: source also matches the node's reserved:${q.key.key} label; write node:${q.key.key} for a Node label)`);
    if (q.key.source === SOURCE_ANY) return q;
    if (q.key.source !== SOURCE_NODE) r.unsupported(path, `a \`${q.key.source}:\` key in a node selector is not supported by distill (node identities carry \`node:\` labels)`);
    return { ...q, key: { source: SOURCE_ANY, key: q.key.key } };
  });
  return makeSelector(reqs);
}

/** An egress rule's `toFQDNs`; undefined when absent or empty. */
export function readToFqdns(r: Reader, v: unknown, path: string): FqdnSelector[] | undefined {
  if (absent(v)) return undefined;
  const fqdns = r.array(v, path).map((f, i) => parseFqdnSelector(r, f, at(path, i)));
  // Unlike an empty toEndpoints/toEntities/toCIDR/toCIDRSet, Cilium does not treat `toFQDNs: []`
  // as "select nothing" (pkg/policy/utils/parserules.go mergeEndpointSelectors leaves fqdns out
  // of its explicit-empty check): the rule is then a rule without peers.
  return fqdns.length > 0 ? fqdns : undefined;
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
