import { NAMESPACE_LABELS_PREFIX, POD_NAMESPACE_KEY, SOURCE_K8S } from '../model/labels.js';
import { ALL_L4, isValidPortName, L4Match, MAX_PORT, RuleProtocol } from '../model/ports.js';
import { Direction, Enforcement, Peer, Policy, PolicyRef, PolicyRule, PolicyWarning, PortClause } from '../model/rules.js';
import { existsRequirement, makeSelector, Selector, WILDCARD_SELECTOR } from '../model/selector.js';
import { readCidrWithExcept, readMetadata, refOf, restrictToNamespace } from './common.js';
import { absent, at, join, Reader } from './reader.js';
import { intern } from '../model/intern.js';
import { parseLabelSelector, SelectorOptions } from './selector.js';

const POD_SELECTOR: SelectorOptions = { defaultSource: SOURCE_K8S, allowSourcePrefix: false };
const NAMESPACE_SELECTOR: SelectorOptions = {
  defaultSource: SOURCE_K8S,
  allowSourcePrefix: false,
  mapKey: (k) => ({ source: SOURCE_K8S, key: NAMESPACE_LABELS_PREFIX + k.key }),
};

const NP_PROTOCOLS = ['TCP', 'UDP', 'SCTP'] as const;

/**
 * Translates a `networking.k8s.io/v1` NetworkPolicy into flattened rules, the way Cilium does:
 * pod selectors are scoped to the policy's namespace, namespace selectors match the namespace
 * labels every pod identity carries, an empty `from`/`to` selects every peer (world included).
 */
export function parseNetworkPolicy(r: Reader, doc: Record<string, unknown>): Policy {
  const md = readMetadata(r, doc.metadata, true);
  const namespace = md.namespace as string;
  const ref = refOf('NetworkPolicy', md);
  // `spec` is optional (k8s.io/api networking/v1 types.go: `+optional`, `json:"spec,omitempty"`): without it the API
  // server stores the empty spec, every pod of the namespace isolated for ingress (attack finding 2022).
  const spec = r.object(absent(doc.spec) ? {} : doc.spec, 'spec', ['podSelector', 'policyTypes', 'ingress', 'egress']);
  const warnings: PolicyWarning[] = [];
  const subject = absent(spec.podSelector) ? restrictToNamespace(WILDCARD_SELECTOR, namespace) : podSelectorOfNamespace(r, spec.podSelector, 'spec.podSelector', namespace, warnings);

  const ingress = r.optArray(spec.ingress, 'spec.ingress');
  const egress = r.optArray(spec.egress, 'spec.egress');
  const typesRaw = r.optArray(spec.policyTypes, 'spec.policyTypes');
  let types: Direction[];
  if (typesRaw === undefined || typesRaw.length === 0) {
    // Kubernetes' defaulting: Ingress always, Egress when the policy has egress rules.
    types = egress !== undefined && egress.length > 0 ? ['ingress', 'egress'] : ['ingress'];
  } else {
    if (typesRaw.length > 2) r.fail('spec.policyTypes', 'may not specify more than two policyTypes');
    types = [];
    typesRaw.forEach((t, i) => {
      const v = r.oneOf(t, at('spec.policyTypes', i), ['Ingress', 'Egress']);
      const d: Direction = v === 'Ingress' ? 'ingress' : 'egress';
      // The API server accepts a repeated type (ValidateNetworkPolicySpec checks at most two entries,
      // each Ingress or Egress, not uniqueness); refusing it made the agent skip an isolating policy.
      if (!types.includes(d)) types.push(d);
    });
  }

  const rules: PolicyRule[] = [];
  const enforcements: Enforcement[] = [];
  for (const direction of ['ingress', 'egress'] as const) {
    // Every rule is validated; rules of a direction missing from policyTypes are then ignored, as
    // Kubernetes ignores them.
    const parsed = parseRules(r, direction === 'ingress' ? ingress : egress, direction, ref, namespace, subject, warnings);
    if (!types.includes(direction)) continue;
    enforcements.push({ origin: { policy: ref, path: 'spec.policyTypes' }, subject, direction });
    rules.push(...parsed);
  }
  return { ref, rules, enforcements, manifest: doc, ...(warnings.length > 0 ? { warnings } : {}) };
}

/**
 * A podSelector that Cilium pins to the policy's namespace (the subject, a peer without
 * namespaceSelector): pkg/k8s/network_policy.go `parsePodSelector` copies `matchLabels` and then
 * sets `matchLabels["io.kubernetes.pod.namespace"] = <policy namespace>`, so an entry of that key
 * naming another namespace is replaced, not ANDed (attack finding 1300). `matchExpressions` are
 * kept and ANDed. The entry is still validated as written, as the API server validates it.
 */
function podSelectorOfNamespace(r: Reader, v: unknown, path: string, namespace: string, warnings: PolicyWarning[]): Selector {
  const parsed = parseLabelSelector(r, v, path, POD_SELECTOR);
  const ml = (v as Record<string, unknown>).matchLabels;
  if (typeof ml !== 'object' || ml === null || !Object.hasOwn(ml, POD_NAMESPACE_KEY)) return restrictToNamespace(parsed, namespace);
  const named = (ml as Record<string, unknown>)[POD_NAMESPACE_KEY];
  if (named !== namespace) {
    warnings.push({ source: r.source, path: join(join(path, 'matchLabels'), POD_NAMESPACE_KEY), detail: `names namespace "${String(named)}"; Cilium replaces it with the policy's namespace "${namespace}" (a podSelector without namespaceSelector always selects pods of its policy's namespace)` });
  }
  const rest = Object.fromEntries(Object.entries(ml).filter(([k]) => k !== POD_NAMESPACE_KEY));
  return restrictToNamespace(parseLabelSelector(r, { ...(v as Record<string, unknown>), matchLabels: rest }, path, POD_SELECTOR), namespace);
}

function parseRules(r: Reader, list: unknown[] | undefined, direction: Direction, ref: PolicyRef, namespace: string, subject: Selector, warnings: PolicyWarning[]): PolicyRule[] {
  const peerField = direction === 'ingress' ? 'from' : 'to';
  return (list ?? []).map((raw, i) => {
    const path = at(`spec.${direction}`, i);
    const ro = r.object(raw, path, [peerField, 'ports']);
    const peersRaw = r.optArray(ro[peerField], join(path, peerField));
    const peers: Peer[] =
      peersRaw === undefined || peersRaw.length === 0
        ? [{ kind: 'selector', selector: WILDCARD_SELECTOR }]
        : peersRaw.map((p, j) => parsePeer(r, p, at(join(path, peerField), j), namespace, warnings));
    const portsRaw = r.optArray(ro.ports, join(path, 'ports'));
    const ports: PortClause[] =
      portsRaw === undefined || portsRaw.length === 0 ? [{ l4: ALL_L4 }] : portsRaw.map((p, j) => ({ l4: parsePort(r, p, at(join(path, 'ports'), j)) }));
    return { origin: { policy: ref, path: intern(path) }, subject, direction, verdict: 'allow', peers, ports };
  });
}

function parsePeer(r: Reader, v: unknown, path: string, namespace: string, warnings: PolicyWarning[]): Peer {
  const po = r.object(v, path, ['podSelector', 'namespaceSelector', 'ipBlock']);
  const hasPod = po.podSelector !== undefined && po.podSelector !== null;
  const hasNs = po.namespaceSelector !== undefined && po.namespaceSelector !== null;
  if (po.ipBlock !== undefined && po.ipBlock !== null) {
    if (hasPod || hasNs) r.fail(path, 'ipBlock may not be combined with podSelector or namespaceSelector');
    const ib = r.object(po.ipBlock, join(path, 'ipBlock'), ['cidr', 'except']);
    return readCidrWithExcept(r, ib.cidr, ib.except, join(path, 'ipBlock'), 'cidr', 'except', true);
  }
  if (!hasPod && !hasNs) r.fail(path, 'must specify podSelector, namespaceSelector or ipBlock');
  if (!hasNs) return { kind: 'selector', selector: podSelectorOfNamespace(r, po.podSelector, join(path, 'podSelector'), namespace, warnings) };
  // With a namespaceSelector Cilium keeps the podSelector as written (no parsePodSelector): a pod-namespace key there is ANDed.
  let sel = hasPod ? parseLabelSelector(r, po.podSelector, join(path, 'podSelector'), POD_SELECTOR) : WILDCARD_SELECTOR;
  const nsSel = parseLabelSelector(r, po.namespaceSelector, join(path, 'namespaceSelector'), NAMESPACE_SELECTOR);
  // A namespaceSelector selects pods only, whatever its form: `{}`, or only negative terms
  // (NotIn, DoesNotExist) that world and host would otherwise satisfy. Cilium always adds a
  // namespace requirement (cilium#46949, fixed by #46996).
  sel = makeSelector([...sel.requirements, ...nsSel.requirements, existsRequirement({ source: SOURCE_K8S, key: POD_NAMESPACE_KEY })]);
  return { kind: 'selector', selector: sel };
}

function parsePort(r: Reader, v: unknown, path: string): L4Match {
  const po = r.object(v, path, ['protocol', 'port', 'endPort']);
  const protocol: RuleProtocol = po.protocol === undefined || po.protocol === null ? 'TCP' : r.oneOf(po.protocol, join(path, 'protocol'), NP_PROTOCOLS);
  const portV = po.port;
  const endPortV = po.endPort;
  if (portV === undefined || portV === null) {
    if (endPortV !== undefined && endPortV !== null) r.fail(join(path, 'endPort'), 'may not be specified without port');
    return { kind: 'range', protocol, from: 0, to: 0 };
  }
  if (typeof portV === 'string') {
    if (!isValidPortName(portV)) r.fail(join(path, 'port'), `"${portV}" is not a valid port name (IANA_SVC_NAME: at most 15 lowercase letters, digits and "-", with a letter)`);
    if (endPortV !== undefined && endPortV !== null) r.fail(join(path, 'endPort'), 'may not be specified when port is a named port');
    return { kind: 'named', protocol, name: portV };
  }
  const port = r.intInRange(portV, join(path, 'port'), 1, MAX_PORT);
  if (endPortV === undefined || endPortV === null) return { kind: 'range', protocol, from: port, to: port };
  const endPort = r.intInRange(endPortV, join(path, 'endPort'), 1, MAX_PORT);
  if (endPort < port) r.fail(join(path, 'endPort'), `${endPort} is below port ${port}`);
  return { kind: 'range', protocol, from: port, to: endPort };
}
