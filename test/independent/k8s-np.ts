/**
 * An independent reader of `networking.k8s.io/v1` NetworkPolicy, written only from Kubernetes'
 * own text, to hold distill's manifest reader (src/policy) and selectors (src/model) to it. It
 * shares no code with distill: it reads the parsed YAML objects itself.
 *
 * Sources (k8s.io/api networking/v1 types.go field comments, as published in the API reference and
 * the generated clients, e.g. kubernetes-client/java docs/V1NetworkPolicyPort.md; the concept page
 * kubernetes.io/docs/concepts/services-networking/network-policies/; apimachinery's
 * LabelSelector / LabelSelectorRequirement comments):
 * - policyTypes: "If this field is not specified, it will default based on the existence of ingress
 *   or egress rules; policies that contain an egress section are assumed to affect egress, and all
 *   policies ... are assumed to affect ingress".
 * - ingress/egress: "Traffic is allowed to a pod if there are no NetworkPolicies selecting the pod
 *   ... OR if the traffic matches at least one ingress rule across all of the NetworkPolicy objects
 *   whose podSelector matches the pod. If this field is empty then this NetworkPolicy does not allow
 *   any traffic". A rule: "If this field [from/to] is empty or missing, this rule matches all
 *   sources"; ports: "If this field is empty or missing, this rule matches all ports".
 * - NetworkPolicyPeer: podSelector alone = pods of the policy's namespace; namespaceSelector alone =
 *   all pods of the selected namespaces; both = "Pods matching PodSelector in Namespaces selected by
 *   NamespaceSelector"; ipBlock: cidr minus except.
 * - NetworkPolicyPort: protocol "defaults to TCP"; port "can either be a numerical or named port on
 *   a pod. If this field is not provided, this matches all port names and numbers"; endPort "the
 *   range of ports from port to endPort if set, inclusive".
 * - The concept page: "both the egress policy on the source pod and the ingress policy on the
 *   destination pod need to allow the connection"; namespaces carry kubernetes.io/metadata.name.
 * - LabelSelector: matchLabels and matchExpressions are ANDed; an empty selector matches all;
 *   NotIn / DoesNotExist match when the key is absent (apimachinery labels.Requirement.Matches).
 *
 * Where Cilium (which distill follows, docs/semantics.md) reads NetworkPolicy differently, a
 * `ReaderMode` flag picks the reading; each such place says so.
 */
import { inCidr } from './cidr.js';

export type Proto = 'TCP' | 'UDP' | 'SCTP' | 'ICMP';
export interface NamedPort { readonly name: string; readonly port: number; readonly protocol: Proto }
export interface KPod {
  readonly namespace: string; readonly name: string; readonly ip: string;
  /** Every address of a dual-stack pod (`ips`); `ip` is the first. */
  readonly ips?: readonly string[];
  readonly labels: Readonly<Record<string, string>>; readonly ports: readonly NamedPort[];
}
export interface KExternal { readonly name: string; readonly ip: string }
export interface KCluster {
  readonly namespaces: ReadonlyMap<string, Readonly<Record<string, string>>>;
  readonly pods: readonly KPod[];
  readonly externals: readonly KExternal[];
  readonly policies: readonly unknown[];
}
export type Endpoint = { readonly pod: KPod } | { readonly external: KExternal };
export interface KFlow { readonly src: Endpoint; readonly dst: Endpoint; readonly protocol: Proto; readonly port: number }
/** Where Cilium's reading differs from upstream Kubernetes; distill follows Cilium in both. */
export interface ReaderMode {
  /** Cilium: an ipBlock never selects a pod. Kubernetes: a pod whose IP is in the block matches. */
  readonly ipBlockSkipsPods: boolean;
  /** Cilium: an egress named port resolves per identity and cluster-wide (below). Kubernetes: per destination pod. */
  readonly egressNamedPortsPerIdentity: boolean;
  /**
   * Cilium: a name two container ports share (Kubernetes refuses it within one container, not across
   * containers) names only the last one (pkg/policy/types `NamedPortMap.AddPort`: `npm[name] = pp`).
   * Kubernetes: the API says only "a named port on a pod"; here every port with the name counts.
   */
  readonly lastNamedPortWins: boolean;
  /**
   * Cilium: a pod's identity carries `io.kubernetes.pod.namespace=<ns>` (its own label of that name is
   * dropped), and pkg/k8s/network_policy.go `parsePodSelector` writes that key over the `matchLabels`
   * of `spec.podSelector` and of a peer podSelector without namespaceSelector (attack finding 1300).
   * Kubernetes: pod labels as written.
   */
  readonly podNamespaceLabel: boolean;
}
export const CILIUM: ReaderMode = { ipBlockSkipsPods: true, egressNamedPortsPerIdentity: true, lastNamedPortWins: true, podNamespaceLabel: true };
export const UPSTREAM: ReaderMode = { ipBlockSkipsPods: false, egressNamedPortsPerIdentity: false, lastNamedPortWins: false, podNamespaceLabel: false };

const POD_NAMESPACE = 'io.kubernetes.pod.namespace';

/** The labels a podSelector sees on `p` (Cilium: its identity's `k8s:` labels). */
function podLabels(p: KPod, mode: ReaderMode): Readonly<Record<string, string>> {
  return mode.podNamespaceLabel ? { ...p.labels, [POD_NAMESPACE]: p.namespace } : p.labels;
}

/** A podSelector pinned to the policy's namespace (Cilium: its `matchLabels` namespace entry overwritten by it). */
function pinned(sel: unknown, ns: string, mode: ReaderMode): unknown {
  if (!mode.podNamespaceLabel || !isObj(sel)) return sel;
  return { ...sel, matchLabels: { ...(isObj(sel.matchLabels) ? sel.matchLabels : {}), [POD_NAMESPACE]: ns } };
}

type Obj = Readonly<Record<string, unknown>>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const list = (v: unknown): readonly unknown[] => (Array.isArray(v) ? v : []);
const field = (o: unknown, k: string): unknown => (isObj(o) && Object.hasOwn(o, k) ? o[k] : undefined);
const get = (m: Readonly<Record<string, string>>, k: string): string | undefined => (Object.hasOwn(m, k) ? m[k] : undefined);

/** apimachinery LabelSelector: matchLabels AND matchExpressions; {} matches everything. */
function selects(selector: unknown, labels: Readonly<Record<string, string>>): boolean {
  const ml = field(selector, 'matchLabels');
  if (isObj(ml)) for (const [k, v] of Object.entries(ml)) if (get(labels, k) !== String(v)) return false;
  for (const e of list(field(selector, 'matchExpressions'))) {
    const key = String(field(e, 'key'));
    const values = list(field(e, 'values')).map(String);
    const has = Object.hasOwn(labels, key);
    const value = get(labels, key);
    const ok = (() => {
      switch (field(e, 'operator')) {
        case 'In': return has && values.includes(value ?? '');
        case 'NotIn': return !has || !values.includes(value ?? '');
        case 'Exists': return has;
        case 'DoesNotExist': return !has;
        default: throw new Error(`unknown operator in ${JSON.stringify(e)}`);
      }
    })();
    if (!ok) return false;
  }
  return true;
}

/** policyTypes as defaulted by the API server (types.go `PolicyTypes` comment). */
function policyTypes(spec: unknown): ReadonlySet<'Ingress' | 'Egress'> {
  const given = field(spec, 'policyTypes');
  if (Array.isArray(given) && given.length > 0) return new Set(given.map((t) => (t === 'Egress' ? 'Egress' : 'Ingress')));
  return new Set(list(field(spec, 'egress')).length > 0 ? ['Ingress', 'Egress'] : ['Ingress']);
}

const nsLabels = (c: KCluster, ns: string): Record<string, string> =>
  ({ ...(c.namespaces.get(ns) ?? {}), 'kubernetes.io/metadata.name': ns });

function peerMatches(c: KCluster, policyNs: string, peer: unknown, other: Endpoint, mode: ReaderMode): boolean {
  const block = field(peer, 'ipBlock');
  if (block !== undefined) {
    // Cilium: pod traffic carries the pod's identity, so an ipBlock never selects a pod
    // (docs/semantics.md, NetworkPolicy ipBlock). Kubernetes: the pod IP decides.
    if ('pod' in other && mode.ipBlockSkipsPods) return false;
    const ips = 'pod' in other ? other.pod.ips ?? [other.pod.ip] : [other.external.ip];
    return ips.some((ip) => inCidr(ip, String(field(block, 'cidr'))) && !list(field(block, 'except')).some((e) => inCidr(ip, String(e))));
  }
  if (!('pod' in other)) return false;
  const podSel = field(peer, 'podSelector');
  const nsSel = field(peer, 'namespaceSelector');
  const nsOk = nsSel === undefined ? other.pod.namespace === policyNs : selects(nsSel, nsLabels(c, other.pod.namespace));
  const sel = nsSel === undefined ? pinned(podSel, policyNs, mode) : podSel;
  return nsOk && (sel === undefined || selects(sel, podLabels(other.pod, mode)));
}

/** Cilium identity of a pod here: namespace and labels (every generated pod has one service account). */
const identity = (p: KPod): string => `${p.namespace}|${JSON.stringify(Object.entries(p.labels).sort())}`;

function namedPorts(p: KPod, mode: ReaderMode): readonly NamedPort[] {
  return mode.lastNamedPortWins ? p.ports.filter((q, i) => !p.ports.slice(i + 1).some((r) => r.name === q.name)) : p.ports;
}

function namedPortMatches(c: KCluster, name: string, proto: Proto, port: number, dst: Endpoint, ingress: boolean, mode: ReaderMode): boolean {
  if (!('pod' in dst)) return false;
  const has = (p: KPod): boolean => namedPorts(p, mode).some((q) => q.name === name && q.protocol === proto && q.port === port);
  if (ingress || !mode.egressNamedPortsPerIdentity) return has(dst.pod);
  // Egress under Cilium (docs/semantics.md "Named ports on egress"): every pod of the peer's
  // identity has the port, and no pod of the cluster gives the name another port for the protocol.
  const same = c.pods.filter((p) => identity(p) === identity(dst.pod));
  const clash = c.pods.some((p) => namedPorts(p, mode).some((q) => q.name === name && q.protocol === proto && q.port !== port));
  return same.every(has) && !clash;
}

function portMatches(c: KCluster, rule: unknown, flow: KFlow, ingress: boolean, mode: ReaderMode): boolean {
  const ports = list(field(rule, 'ports'));
  if (ports.length === 0) return true;
  return ports.some((p) => {
    const proto = field(p, 'protocol') ?? 'TCP';
    if (proto !== flow.protocol) return false;
    const port = field(p, 'port');
    if (port === undefined) return true;
    if (typeof port === 'string' && !/^\d+$/.test(port)) return namedPortMatches(c, port, flow.protocol, flow.port, flow.dst, ingress, mode);
    const lo = Number(port);
    const end = field(p, 'endPort');
    const hi = end === undefined ? lo : Number(end);
    return flow.port >= lo && flow.port <= hi;
  });
}

/** One side of the flow: the policies selecting `self` in `direction` decide. */
function sideAllows(c: KCluster, self: KPod, other: Endpoint, flow: KFlow, direction: 'Ingress' | 'Egress', mode: ReaderMode): boolean {
  const key = direction === 'Ingress' ? 'ingress' : 'egress';
  const peersKey = direction === 'Ingress' ? 'from' : 'to';
  let isolated = false;
  for (const pol of c.policies) {
    const ns = String(field(field(pol, 'metadata'), 'namespace') ?? 'default');
    const spec = field(pol, 'spec');
    if (ns !== self.namespace || !selects(pinned(field(spec, 'podSelector') ?? {}, ns, mode), podLabels(self, mode))) continue;
    if (!policyTypes(spec).has(direction)) continue;
    isolated = true;
    for (const rule of list(field(spec, key))) {
      const peers = list(field(rule, peersKey));
      const peerOk = peers.length === 0 || peers.some((peer) => peerMatches(c, ns, peer, other, mode));
      if (peerOk && portMatches(c, rule, flow, direction === 'Ingress', mode)) return true;
    }
  }
  return !isolated;
}

/** The verdict: the source's egress and the destination's ingress must both allow; externals enforce nothing. */
export function k8sAllows(c: KCluster, flow: KFlow, mode: ReaderMode): boolean {
  const egress = 'pod' in flow.src ? sideAllows(c, flow.src.pod, flow.dst, flow, 'Egress', mode) : true;
  const ingress = 'pod' in flow.dst ? sideAllows(c, flow.dst.pod, flow.src, flow, 'Ingress', mode) : true;
  return egress && ingress;
}
