import { parse } from 'yaml';
import { inCidr, isV4Mapped, sameIp } from './cidr.js';

/*
 * An independent reader of ClusterNetworkPolicy (policy.networking.k8s.io/v1alpha2) together with
 * namespaced NetworkPolicy, written only from kubernetes-sigs/network-policy-api at commit
 * 0eec1b0e5fa92715b4c0f4c48d3c8d2913ed2159 (apis/v1alpha2/clusternetworkpolicy_types.go, cited as
 * types.go; site-src/api-overview.md) and the Kubernetes NetworkPolicy API (networking.k8s.io/v1).
 * It reads the scenario YAML itself and shares no code with distill's reader, oracle or engine.
 *
 * Scope: IPv4, IPv6 and dual-stack pods with explicit addresses (`ip` or `ips`, status.podIPs),
 * externals and nodes of either family, CNP subjects namespaces/pods, peers namespaces/pods/networks/nodes,
 * protocols tcp/udp/sctp (number or range) and destinationNamedPort, NetworkPolicy
 * podSelector/namespaceSelector/ipBlock peers, numeric and named ports, endPort. A flow names an
 * endpoint by name (a pod's first address, a node's first address) or by one of its addresses; a
 * `networks` CIDR or an ipBlock is matched against that address, family-strict (cidr.ts).
 * It does not read domainNames or Cilium policies: the generator writes none.
 */

type Labels = ReadonlyMap<string, string>;
type Obj = Record<string, unknown>;

interface Pod { readonly ns: string; readonly name: string; readonly labels: Labels; readonly ips: readonly string[]; readonly ports: readonly { name?: string; port: number; protocol: string }[] }
interface External { readonly name: string; readonly ip: string }
interface Node { readonly name: string; readonly ips: readonly string[]; readonly labels: Labels; readonly local: boolean }
export interface World { readonly nsLabels: ReadonlyMap<string, Labels>; readonly pods: ReadonlyMap<string, Pod>; readonly externals: ReadonlyMap<string, External>; readonly nodes: ReadonlyMap<string, Node>; readonly policies: readonly Obj[] }
export interface FlowQ { readonly from: string; readonly to: string; readonly port: number; readonly protocol: string }

const obj = (v: unknown): Obj => (v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Obj) : {});
const list = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
const labelsOf = (v: unknown): Map<string, string> => new Map(Object.entries(obj(v)).map(([k, x]) => [k, String(x)]));

const keyOf = (p: Obj): string => `${String(p.kind)}/${String(obj(p.metadata).namespace ?? '')}/${String(obj(p.metadata).name)}`;

/** The document after the changes of steps 0..step (docs/scenarios.md): apply, delete, setPodLabels, setNamespaceLabels, addNode. */
function stateAt(doc: Obj, step: number): Obj {
  let [namespaces, pods, nodes, policies] = [list(doc.namespaces).map(obj), list(doc.pods).map(obj), list(doc.nodes).map(obj), list(doc.policies).map(obj)];
  for (const c of list(doc.steps).slice(0, step + 1).flatMap((s) => list(obj(s).changes)).map(obj)) {
    if (c.apply !== undefined) policies = [...policies.filter((p) => keyOf(p) !== keyOf(obj(c.apply))), obj(c.apply)];
    if (c.delete !== undefined) policies = policies.filter((p) => keyOf(p) !== keyOf({ kind: obj(c.delete).kind, metadata: c.delete }));
    const rl = obj(c.setPodLabels);
    if (c.setPodLabels !== undefined) pods = pods.map((p) => (p.name === rl.pod ? { ...p, labels: rl.labels } : p));
    const nl = obj(c.setNamespaceLabels);
    if (c.setNamespaceLabels !== undefined) namespaces = namespaces.map((n) => (n.name === nl.namespace ? { ...n, labels: nl.labels } : n));
    const an = obj(c.addNode);
    if (c.addNode !== undefined) nodes = [...nodes.filter((n) => n.name !== an.name), { ...nodes.find((n) => n.name === an.name), ...an }];
  }
  return { ...doc, namespaces, pods, nodes, policies };
}

/**
 * Why the API server refuses the scenario's ClusterNetworkPolicies, if it does: types.go `CIDR` is
 * validated by `isCIDR(self)`, and the apiserver CEL library's `cidr()` refuses an IPv4-mapped IPv6
 * prefix (k8s.io/apiserver pkg/cel/library cidr.go; its test row `parse_invalid_cidr_ipv4_in_ipv6`:
 * `cidr('::ffff:192.168.0.1/24')` is "IPv4-mapped IPv6 address is not allowed").
 */
export function apiRefusal(text: string, step: number): string | undefined {
  const doc = stateAt(obj(parse(text)), step);
  for (const p of list(doc.policies).map(obj)) {
    if (p.kind !== 'ClusterNetworkPolicy') continue;
    for (const r of list(obj(p.spec).egress)) for (const x of list(obj(r).to)) for (const c of list(obj(x).networks)) {
      if (isV4Mapped(String(c).split('/')[0] ?? '')) return `${keyOf(p)}: ${String(c)} is an IPv4-mapped IPv6 prefix`;
    }
  }
  return undefined;
}

/** Reads the scenario's state at a step. */
export function readWorld(text: string, step = 0): World {
  const doc = stateAt(obj(parse(text)), step);
  const nsLabels = new Map<string, Labels>();
  const addNs = (name: string, labels: Map<string, string>): void => {
    labels.set('kubernetes.io/metadata.name', name);
    nsLabels.set(name, labels);
  };
  for (const n of list(doc.namespaces)) addNs(String(obj(n).name), labelsOf(obj(n).labels));
  const pods = new Map<string, Pod>();
  for (const raw of list(doc.pods)) {
    const p = obj(raw);
    const [ns, name] = String(p.name).split('/') as [string, string];
    if (!nsLabels.has(ns)) addNs(ns, new Map());
    const ports = list(p.ports).map((x) => {
      const o = obj(x);
      return { ...(o.name === undefined ? {} : { name: String(o.name) }), port: Number(o.port), protocol: String(o.protocol ?? 'TCP').toUpperCase() };
    });
    // A pod without an address gets one distill allocates; this reader then refuses to match it against a CIDR.
    const ips = p.ips !== undefined ? list(p.ips).map(String) : p.ip !== undefined ? [String(p.ip)] : [];
    pods.set(`${ns}/${name}`, { ns, name, labels: labelsOf(p.labels), ips, ports });
  }
  const externals = new Map(list(doc.externals).map((e) => [String(obj(e).name), { name: String(obj(e).name), ip: String(obj(e).ip) }]));
  const nodes = new Map(list(doc.nodes).map((raw) => {
    const n = obj(raw);
    return [`node:${String(n.name)}`, { name: String(n.name), ips: list(n.ips).map(String), labels: labelsOf(n.labels), local: n.local === true }];
  }));
  return { nsLabels, pods, externals, nodes, policies: list(doc.policies).map(obj) };
}

/** metav1.LabelSelector: matchLabels AND matchExpressions; {} selects everything. */
function selects(sel: unknown, labels: Labels): boolean {
  const s = obj(sel);
  for (const [k, v] of Object.entries(obj(s.matchLabels))) if (labels.get(k) !== String(v)) return false;
  for (const raw of list(s.matchExpressions)) {
    const e = obj(raw);
    const key = String(e.key);
    const values = list(e.values).map(String);
    const has = labels.has(key);
    const val = labels.get(key);
    const ok =
      e.operator === 'In' ? has && values.includes(val!) :
      e.operator === 'NotIn' ? !has || !values.includes(val!) :
      e.operator === 'Exists' ? has :
      e.operator === 'DoesNotExist' ? !has :
      (() => { throw new Error(`unknown operator ${String(e.operator)}`); })();
    if (!ok) return false;
  }
  return true;
}

const nsOf = (w: World, pod: Pod): Labels => w.nsLabels.get(pod.ns) ?? new Map();

/** types.go ClusterNetworkPolicySubject / NamespacedPod: namespaces, or namespaceSelector AND podSelector. */
function cnpSelectsPod(w: World, sel: Obj, pod: Pod): boolean {
  if (sel.namespaces !== undefined) return selects(sel.namespaces, nsOf(w, pod));
  if (sel.pods !== undefined) return selects(obj(sel.pods).namespaceSelector, nsOf(w, pod)) && selects(obj(sel.pods).podSelector, pod.labels);
  throw new Error('peer or subject with no known field');
}

/** A peer: a pod (namespaces/pods/networks match it), a node (nodes/networks) or an external (networks). */
/** `ip`: the address the flow uses (a pod or node named by name uses its first address). */
type Peer = { kind: 'pod'; pod: Pod; ip: string } | { kind: 'external'; ip: string } | { kind: 'node'; ip: string; node: Node };
function peerIp(p: Peer): string {
  if (p.ip === '') throw new Error('a CIDR meets a pod with no address in the scenario');
  return p.ip;
}

/** types.go ClusterNetworkPolicyEgressPeer.Networks: "cluster-internal traffic will be checked against the rule as well". */
function cnpPeerMatches(w: World, peer: Obj, p: Peer): boolean {
  if (peer.networks !== undefined) return list(peer.networks).some((c) => inCidr(peerIp(p), String(c)));
  // types.go ClusterNetworkPolicyEgressPeer.Nodes: "selects the nodeIPs"; "if present but empty, it selects all Nodes".
  if (peer.nodes !== undefined) return p.kind === 'node' && selects(peer.nodes, p.node.labels);
  return p.kind === 'pod' && cnpSelectsPod(w, peer, p.pod);
}

/** The destination's container port named `name` with this protocol, if any. */
const namedPort = (dst: Peer, name: string, protocol: string): number | undefined =>
  dst.kind === 'pod' ? dst.pod.ports.find((x) => x.name === name && x.protocol === protocol)?.port : undefined;

/** types.go ClusterNetworkPolicyProtocol: none = all traffic; else any entry matches (OR). */
function cnpProtocolsMatch(protocols: unknown, f: FlowQ, dst: Peer): boolean {
  const ps = list(protocols);
  if (ps.length === 0) return true;
  return ps.some((raw) => {
    const p = obj(raw);
    if (p.destinationNamedPort !== undefined) return namedPort(dst, String(p.destinationNamedPort), f.protocol) === f.port;
    const key = f.protocol.toLowerCase();
    if (!['tcp', 'udp', 'sctp'].includes(key) || p[key] === undefined) return false;
    const port = obj(obj(p[key]).destinationPort);
    if (port.number !== undefined) return Number(port.number) === f.port;
    const r = obj(port.range);
    return f.port >= Number(r.start) && f.port <= Number(r.end);
  });
}

type Action = 'Accept' | 'Deny' | 'Pass';

/** The action of a CNP's first rule (in written order, types.go Ingress/Egress docs) that matches, if any. */
function firstMatch(w: World, cnp: Obj, dir: 'ingress' | 'egress', peer: Peer, f: FlowQ, dst: Peer): Action | undefined {
  for (const raw of list(obj(cnp.spec)[dir])) {
    const rule = obj(raw);
    const peers = list(dir === 'ingress' ? rule.from : rule.to).map(obj);
    if (peers.some((x) => cnpPeerMatches(w, x, peer)) && cnpProtocolsMatch(rule.protocols, f, dst)) return rule.action as Action;
  }
  return undefined;
}

/**
 * One tier, by priority ascending. types.go Priority: "If two (or more) policies in the same tier
 * with the same priority could match a connection, then the implementation can apply any of the
 * matching policies": the set of actions any tie-break could yield; 'none' when no rule matched.
 */
function tierOutcomes(w: World, tier: string, subject: Pod, dir: 'ingress' | 'egress', peer: Peer, f: FlowQ, dst: Peer): Set<Action | 'none'> {
  const cnps = w.policies.filter((p) => p.kind === 'ClusterNetworkPolicy' && obj(p.spec).tier === tier && cnpSelectsPod(w, obj(obj(p.spec).subject), subject));
  const priorities = [...new Set(cnps.map((p) => Number(obj(p.spec).priority)))].sort((a, b) => a - b);
  for (const prio of priorities) {
    const actions = new Set<Action>();
    for (const p of cnps) if (Number(obj(p.spec).priority) === prio) {
      const a = firstMatch(w, p, dir, peer, f, dst);
      if (a !== undefined) actions.add(a);
    }
    if (actions.size > 0) return actions;
  }
  return new Set(['none']);
}

/** NetworkPolicy port: numeric (with endPort) or a name resolved on the destination pod. */
function npPortMatches(raw: unknown, f: FlowQ, dst: Peer): boolean {
  const p = obj(raw);
  if (String(p.protocol ?? 'TCP').toUpperCase() !== f.protocol) return false;
  if (p.port === undefined) return true;
  if (typeof p.port === 'string' && !/^\d+$/.test(p.port)) return namedPort(dst, p.port, f.protocol) === f.port;
  const lo = Number(p.port);
  return p.endPort === undefined ? f.port === lo : f.port >= lo && f.port <= Number(p.endPort);
}

function npPeerMatches(w: World, np: Obj, raw: unknown, peer: Peer): boolean {
  const x = obj(raw);
  if (x.ipBlock !== undefined) {
    const b = obj(x.ipBlock);
    return inCidr(peerIp(peer), String(b.cidr)) && !list(b.except).some((c) => inCidr(peerIp(peer), String(c)));
  }
  if (peer.kind !== 'pod') return false;
  const nsOk = x.namespaceSelector === undefined ? peer.pod.ns === obj(np.metadata).namespace : selects(x.namespaceSelector, nsOf(w, peer.pod));
  return nsOk && (x.podSelector === undefined || selects(x.podSelector, peer.pod.labels));
}

/** networking.k8s.io/v1: isolated when a policy of the pod's namespace selects it for `dir`; then allowed iff a rule matches. */
function networkPolicyTier(w: World, subject: Pod, dir: 'ingress' | 'egress', peer: Peer, f: FlowQ, dst: Peer): boolean | undefined {
  const types = (np: Obj): string[] => {
    const spec = obj(np.spec);
    if (spec.policyTypes !== undefined) return list(spec.policyTypes).map(String);
    return spec.egress !== undefined ? ['Ingress', 'Egress'] : ['Ingress'];
  };
  const want = dir === 'ingress' ? 'Ingress' : 'Egress';
  const nps = w.policies.filter((p) => p.kind === 'NetworkPolicy' && obj(p.metadata).namespace === subject.ns && selects(obj(p.spec).podSelector, subject.labels) && types(p).includes(want));
  if (nps.length === 0) return undefined;
  return nps.some((np) => list(obj(np.spec)[dir]).some((raw) => {
    const rule = obj(raw);
    const peers = list(dir === 'ingress' ? rule.from : rule.to);
    const peerOk = rule[dir === 'ingress' ? 'from' : 'to'] === undefined || peers.length === 0 || peers.some((x) => npPeerMatches(w, np, x, peer));
    const ports = list(rule.ports);
    return peerOk && (ports.length === 0 || ports.some((p) => npPortMatches(p, f, dst)));
  }));
}

/**
 * One side's possible verdicts. types.go Tier: Admin, then NetworkPolicy ("always makes a final
 * decision for selected pods"), then Baseline, then "all pods can communicate"; Pass "skips all
 * further ClusterNetworkPolicy rules in the current tier ... and passes evaluation to the next tier".
 */
function side(w: World, subject: Pod, dir: 'ingress' | 'egress', peer: Peer, f: FlowQ, dst: Peer): Set<boolean> {
  const out = new Set<boolean>();
  const belowAdmin = (): void => {
    const np = networkPolicyTier(w, subject, dir, peer, f, dst);
    if (np !== undefined) { out.add(np); return; }
    for (const a of tierOutcomes(w, 'Baseline', subject, dir, peer, f, dst)) out.add(a !== 'Deny');
  };
  for (const a of tierOutcomes(w, 'Admin', subject, dir, peer, f, dst)) {
    if (a === 'Accept') out.add(true);
    else if (a === 'Deny') out.add(false);
    else belowAdmin();
  }
  return out;
}

/**
 * A pod, external or node (`node:<name>`) by name, or an endpoint by one of its addresses: a node's
 * address before a pod's (a pod at a node's address is host-network), the agent's own node first
 * when two list it; an address nobody holds is outside the cluster (docs/scenarios.md `{ip}` ends).
 */
function resolve(w: World, name: string): Peer {
  const pod = w.pods.get(name);
  if (pod) return { kind: 'pod', pod, ip: pod.ips[0] ?? '' };
  const ext = w.externals.get(name);
  if (ext) return { kind: 'external', ip: ext.ip };
  const named = w.nodes.get(name);
  if (named) return { kind: 'node', ip: named.ips[0] ?? '', node: named };
  if (!/^[0-9a-f:.]+$/i.test(name) || !/[:.]/.test(name)) throw new Error(`unknown endpoint ${name}`);
  const node = [...w.nodes.values()].sort((a, b) => Number(b.local) - Number(a.local)).find((n) => n.ips.some((ip) => sameIp(ip, name)));
  if (node) return { kind: 'node', ip: name, node };
  const owner = [...w.pods.values()].find((p) => p.ips.some((ip) => sameIp(ip, name)));
  if (owner) return { kind: 'pod', pod: owner, ip: name };
  return { kind: 'external', ip: name };
}

/** The address a flow uses for an endpoint ('' for a pod the scenario gives none). */
export const flowAddress = (w: World, name: string): string => resolve(w, name).ip;

/** Every verdict a conforming implementation may give the flow: egress of the source AND ingress of the destination. */
export function possibleVerdicts(w: World, f: FlowQ): Set<boolean> {
  const src = resolve(w, f.from);
  const dst = resolve(w, f.to);
  const eg = src.kind === 'pod' ? side(w, src.pod, 'egress', dst, f, dst) : new Set([true]);
  const ing = dst.kind === 'pod' ? side(w, dst.pod, 'ingress', src, f, dst) : new Set([true]);
  const out = new Set<boolean>();
  for (const a of eg) for (const b of ing) out.add(a && b);
  return out;
}

/**
 * Whether the flow goes to a node and a ClusterNetworkPolicy selecting the flow's source has an
 * egress `networks` peer whose CIDRs hold some but not all addresses of the destination's role
 * (`host` for the agent's own node, `remote-node` for the others; every address of every node of
 * that role, both families): distill's engine cannot split a role's one identity by address, so
 * there it fails closed (a Deny or Pass denies the whole role, an Accept admits none of it;
 * docs/semantics.md, Nodes, row "ClusterNetworkPolicy networks"; finding 442). Where the CIDRs
 * hold all or none of them the engine is exact.
 */
export function networksSplitNodeRole(w: World, f: FlowQ): boolean {
  const src = w.pods.get(f.from);
  const dst = resolve(w, f.to);
  if (!src || dst.kind !== 'node') return false;
  const role = [...w.nodes.values()].filter((n) => n.local === dst.node.local).flatMap((n) => n.ips);
  return w.policies.some((p) => p.kind === 'ClusterNetworkPolicy' && cnpSelectsPod(w, obj(obj(p.spec).subject), src) &&
    list(obj(p.spec).egress).some((r) => list(obj(r).to).some((x) => {
      const nets = list(obj(x).networks).map(String);
      const inside = role.filter((ip) => nets.some((c) => inCidr(ip, c))).length;
      return inside > 0 && inside < role.length;
    })));
}

/**
 * Whether distill's engine refuses the state (docs/semantics.md, ClusterNetworkPolicy: "a `networks`
 * rule holding one address of a dual-stack pod and not the other"): one identity per pod cannot
 * match a rule on one of its addresses only. Only the oracle decides then.
 */
export function engineRefusesDualStack(w: World): boolean {
  const duals = [...w.pods.values()].filter((p) => p.ips.length > 1);
  if (duals.length === 0) return false;
  return w.policies.some((p) => p.kind === 'ClusterNetworkPolicy' && (['ingress', 'egress'] as const).some((dir) => list(obj(p.spec)[dir]).some((r) => {
    const nets = list(dir === 'ingress' ? obj(r).from : obj(r).to).flatMap((x) => list(obj(x).networks).map(String));
    // Findings 1180 and 1690: a rule holding both addresses of a pod (both /0s, or one CIDR per family) or neither is exact.
    return duals.some((pod) => {
      const inside = pod.ips.filter((ip) => nets.some((c) => inCidr(ip, c))).length;
      return inside > 0 && inside < pod.ips.length;
    });
  })));
}
