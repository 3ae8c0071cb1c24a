import { Cidr, cidrContainsIp, IpAddress } from '../model/cidr.js';
import type { Pod } from '../model/cluster.js';
import { Label, LabelSet, POD_NAMESPACE_KEY, SOURCE_K8S } from '../model/labels.js';
import { FlowProtocol, protocolCovers } from '../model/ports.js';
import { policyRefKey, type Policy } from '../model/rules.js';
import { makeSelector, type Requirement } from '../model/selector.js';
import type { TierPeer } from '../model/tiers.js';
import type { EngineContext } from './context.js';
import type { PodTable } from './pod-table.js';
import type { NamedPortResolver } from './rule-units.js';
import { cidrSelector, labelsSelector, type IdentitySelector } from './selector-cache.js';

/*
 * Identity splits for ClusterNetworkPolicy `networks` peers and egress `destinationNamedPort`
 * (docs/tiers-encoding.md §4). Both depend on the destination pod itself (its address, its
 * container ports), while map keys are identities. So a pod's identity gets derived labels that
 * make every identity uniform for every term in force: one label per `networks` CIDR (other than
 * /0) holding the pod's address, the pod's address family while some /0 is in force and it is not
 * IPv4, and the ports of every name some egress rule resolves. Pods that differ there get
 * different identities; pods that agree keep sharing one.
 *
 * Unforgeable and unselectable: the keys are under `io.cilium.k8s`, which a pod's own labels never
 * reach (`isDerivedLabelKey`, Cilium's filterPodLabels), and each has two `/`, so it is no valid
 * Kubernetes label key and no policy selector can name it (`labelKeyProblem`): only the selectors
 * `networksPeerSelectors` builds see these labels, and user selectors match as the oracle does.
 */
const NET_PREFIX = 'io.cilium.k8s.distill/net/';
const FAMILY_KEY = 'io.cilium.k8s.distill/ip/family';
const PORT_PREFIX = 'io.cilium.k8s.distill/port/';
const k8s = (key: string): { source: string; key: string } => ({ source: SOURCE_K8S, key });

const isZero = (c: Cidr): boolean => c.prefixLength === 0;

/** The addresses of a pod. */
function podIps(pod: Pod): readonly IpAddress[] {
  return [pod.ip];
}

/**
 * The family label's value: absent for IPv4-only pods (the usual cluster), so a /0 splits nothing
 * there; otherwise the families the pod has.
 */
function familyValue(pod: Pod): string | undefined {
  const fams = [...new Set(podIps(pod).map((ip) => ip.family))].sort();
  return fams.length === 1 && fams[0] === 'ipv4' ? undefined : fams.join('+');
}

/** A named port's (protocol, port) pairs on a pod, as a label value (`,` is the label-set separator). */
function portsValue(pod: Pod, name: string): string | undefined {
  const pairs = [...new Set(pod.ports.filter((p) => p.name === name).map((p) => `${p.protocol}-${p.port}`))].sort();
  return pairs.length === 0 ? undefined : pairs.join('_');
}

/**
 * What a `networks` peer selects: per CIDR, the CIDR identities inside (external addresses, as a
 * CiliumNetworkPolicy `toCIDR`) and the pod identities whose pods are inside (their derived label;
 * for /0, every pod identity of that family).
 */
export function networksPeerSelectors(cidrs: readonly Cidr[]): IdentitySelector[] {
  const out: IdentitySelector[] = [];
  for (const c of cidrs) {
    out.push(cidrSelector(c, []));
    const reqs: Requirement[] = [];
    if (!isZero(c)) reqs.push({ key: k8s(NET_PREFIX + c.text), operator: 'Exists', values: [] });
    else {
      reqs.push({ key: k8s(POD_NAMESPACE_KEY), operator: 'Exists', values: [] });
      // IPv4-only pods carry no family label; every other pod names its families.
      if (c.family === 'ipv4') reqs.push({ key: k8s(FAMILY_KEY), operator: 'NotIn', values: ['ipv6'] });
      else reqs.push({ key: k8s(FAMILY_KEY), operator: 'In', values: ['ipv4+ipv6', 'ipv6'] });
    }
    out.push(labelsSelector(makeSelector(reqs)));
  }
  return out;
}

/** Do a rule's networks peers hold both /0s, i.e. every address (pods, externals, nodes alike)? */
export function networksCoverEverything(peers: readonly TierPeer[]): boolean {
  const zeros = new Set(peers.flatMap((p) => (p.kind === 'networks' ? p.cidrs.filter(isZero).map((c) => c.family) : [])));
  return zeros.size === 2;
}

/** Egress named ports resolved against a destination identity's derived port labels (exact: its pods agree). */
export function namedPortsFromLabels(labels: LabelSet | undefined): NamedPortResolver {
  return (name, protocol) => {
    const value = labels?.find((l) => l.source === SOURCE_K8S && l.key === PORT_PREFIX + name)?.value;
    if (value === undefined) return [];
    const out: { protocol: FlowProtocol; port: number }[] = [];
    for (const pair of value.split('_')) {
      const [proto, port] = pair.split('-') as [FlowProtocol, string];
      if (protocolCovers(protocol, proto)) out.push({ protocol: proto, port: Number(port) });
    }
    return out;
  };
}

/** The terms a policy puts in force: networks CIDRs and egress named-port names. */
interface Terms {
  readonly cidrs: readonly Cidr[];
  readonly names: readonly string[];
}

function termsOf(policy: Policy): Terms | undefined {
  const t = policy.tiered;
  if (!t) return undefined;
  const cidrs = new Map<string, Cidr>();
  const names = new Set<string>();
  for (const r of t.rules) {
    if (r.direction !== 'egress') continue;
    // A rule over every address is one identity-0 key (`networksCoverEverything`): it splits nothing.
    if (!networksCoverEverything(r.peers)) for (const p of r.peers) if (p.kind === 'networks') for (const c of p.cidrs) cidrs.set(c.text, c);
    for (const p of r.protocols) if (p.kind === 'named') names.add(p.name);
  }
  if (cidrs.size === 0 && names.size === 0) return undefined;
  return { cidrs: [...cidrs.values()], names: [...names] };
}

interface State {
  readonly cidrs: Map<string, { readonly cidr: Cidr; refs: number }>;
  readonly names: Map<string, number>;
  zeroRefs: number;
  readonly byPolicy: Map<string, Terms>;
}

function cloneState(s: State): State {
  return {
    cidrs: new Map([...s.cidrs].map(([k, v]) => [k, { ...v }])),
    names: new Map(s.names),
    zeroRefs: s.zeroRefs,
    byPolicy: new Map(s.byPolicy),
  };
}

/**
 * The split stage: which terms are in force (refcounted by policy) and the derived labels they
 * give a pod. A term entering or leaving force re-identifies exactly the pods it concerns (those
 * whose address it holds, those having the port name; for the first or last /0, the pods that are
 * not IPv4-only), through the pod table as a namespace relabel does.
 */
export class NetworkSplits {
  private s: State = { cidrs: new Map(), names: new Map(), zeroRefs: 0, byPolicy: new Map() };

  constructor(
    private readonly ctx: EngineContext,
    private readonly pods: PodTable,
  ) {}

  /** The derived labels of a pod's identity under the terms in force. */
  labelsFor(pod: Pod): Label[] {
    const s = this.s;
    if (s.byPolicy.size === 0) return [];
    const out: Label[] = [];
    const ips = podIps(pod);
    for (const { cidr } of s.cidrs.values()) if (!isZero(cidr) && ips.some((ip) => cidrContainsIp(cidr, ip))) out.push({ ...k8s(NET_PREFIX + cidr.text), value: '' });
    const family = s.zeroRefs > 0 ? familyValue(pod) : undefined;
    if (family !== undefined) out.push({ ...k8s(FAMILY_KEY), value: family });
    for (const name of s.names.keys()) {
      const v = portsValue(pod, name);
      if (v !== undefined) out.push({ ...k8s(PORT_PREFIX + name), value: v });
    }
    return out;
  }

  policyUpserted(policy: Policy): void {
    this.change(policyRefKey(policy.ref), termsOf(policy));
  }

  policyDeleted(key: string): void {
    this.change(key, undefined);
  }

  private change(key: string, next: Terms | undefined): void {
    const old = this.s.byPolicy.get(key);
    if (old === undefined && next === undefined) return;
    const saved = cloneState(this.s);
    const touched = { cidrs: [] as Cidr[], names: [] as string[], zero: false };
    if (old) this.count(old, -1, touched);
    if (next) this.count(next, +1, touched);
    if (next) this.s.byPolicy.set(key, next);
    else this.s.byPolicy.delete(key);
    this.reidentify(touched);
    // Logged after the pods: undoing restores the terms first, then the pods' old identities.
    this.ctx.onUndo(() => (this.s = saved));
  }

  private count(t: Terms, sign: 1 | -1, touched: { cidrs: Cidr[]; names: string[]; zero: boolean }): void {
    const s = this.s;
    for (const c of t.cidrs) {
      const e = s.cidrs.get(c.text) ?? { cidr: c, refs: 0 };
      e.refs += sign;
      if (e.refs === 0) s.cidrs.delete(c.text);
      else s.cidrs.set(c.text, e);
      if ((sign > 0 && e.refs === 1) || (sign < 0 && e.refs === 0)) {
        if (isZero(c)) {
          s.zeroRefs += sign;
          if ((sign > 0 && s.zeroRefs === 1) || (sign < 0 && s.zeroRefs === 0)) touched.zero = true;
        } else touched.cidrs.push(c);
      }
    }
    for (const n of t.names) {
      const refs = (s.names.get(n) ?? 0) + sign;
      if (refs === 0) s.names.delete(n);
      else s.names.set(n, refs);
      if ((sign > 0 && refs === 1) || (sign < 0 && refs === 0)) touched.names.push(n);
    }
  }

  /** Pods whose derived labels the touched terms may change get their identity again. */
  private reidentify(t: { cidrs: readonly Cidr[]; names: readonly string[]; zero: boolean }): void {
    if (t.cidrs.length === 0 && t.names.length === 0 && !t.zero) return;
    const concerned = (pod: Pod): boolean =>
      podIps(pod).some((ip) => t.cidrs.some((c) => cidrContainsIp(c, ip))) ||
      (t.zero && familyValue(pod) !== undefined) ||
      pod.ports.some((p) => p.name !== undefined && t.names.includes(p.name));
    for (const rec of [...this.pods.records()]) if (concerned(rec.pod)) this.pods.upsertPod(rec.pod, rec.local);
  }
}
