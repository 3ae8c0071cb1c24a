import { Cidr, cidrContainsIp } from '../model/cidr.js';
import { podIps, podKey, type Pod } from '../model/cluster.js';
import { Label, LabelSet, labelSetKey, makeLabelSet, POD_NAMESPACE_KEY, SOURCE_K8S } from '../model/labels.js';
import type { Policy } from '../model/rules.js';
import { makeSelector, type Requirement } from '../model/selector.js';
import { networksCoverEverything } from '../model/tiers.js';
import type { EngineContext } from './context.js';
import { EngineError } from './events.js';
import type { IdentityRecord } from './identities.js';
import type { PodTable } from './pod-table.js';
import { cidrSelector, labelsSelector, type IdentitySelector, type SelectorCache } from './selector-cache.js';

/*
 * Identity splits for ClusterNetworkPolicy `networks` peers and egress `destinationNamedPort`
 * (docs/tiers-encoding.md §4). Both depend on the destination pod itself (its address, its
 * container ports), while map keys are identities. So pods sharing labels get derived labels
 * where they differ on a term in force: a `networks` CIDR (other than /0) holding some but not all
 * of them, a port name they give different meanings, and, while some /0 is in force, the address
 * family of pods that are not IPv4-only. Every identity is then uniform for every term; pods that
 * agree keep sharing one.
 *
 * Unforgeable and unselectable: the keys are under `io.cilium.k8s`, which a pod's own labels never
 * reach (`isDerivedLabelKey`, Cilium's filterPodLabels), and each has two `/`, so it is no valid
 * Kubernetes label key and no policy selector can name it (`labelKeyProblem`): only the selectors
 * `networksPeerSelectors` builds see these labels, and user selectors match as the oracle does.
 */
const NET_PREFIX = 'io.cilium.k8s.distill/net/';
const FAMILY_KEY = 'io.cilium.k8s.distill/ip/family';
const PORT_PREFIX = 'io.cilium.k8s.distill/port/';

/**
 * Whether these identity labels carry a split by port `name`: the pods sharing their base labels
 * give the name more than one meaning. A NetworkPolicy-tier egress named port then resolves over
 * the pods of the identities that differ only by this split (as the oracle does; identities.ts).
 */
export function splitByPortName(labels: LabelSet, name: string): boolean {
  const key = PORT_PREFIX + name;
  return labels.some((l) => l.source === SOURCE_K8S && l.key === key);
}

/** The names these identity labels carry a split by (see splitByPortName). */
export function portSplitNames(labels: LabelSet): string[] {
  const out: string[] = [];
  for (const l of labels) if (l.source === SOURCE_K8S && l.key.startsWith(PORT_PREFIX)) out.push(l.key.slice(PORT_PREFIX.length));
  return out;
}

/** The key of these identity labels without their split by `name`: what the identities that differ only by it share. */
export function keyWithoutPortSplit(labels: LabelSet, name: string): string {
  const key = PORT_PREFIX + name;
  return labelSetKey(labels.filter((l) => l.source !== SOURCE_K8S || l.key !== key));
}
const k8s = (key: string): { source: string; key: string } => ({ source: SOURCE_K8S, key });

const isZero = (c: Cidr): boolean => c.prefixLength === 0;


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
 * CiliumNetworkPolicy `toCIDR`) and the pod identities whose pods are all inside (their `nets`;
 * for /0, every pod identity of that family).
 */
export function networksPeerSelectors(cidrs: readonly Cidr[]): IdentitySelector[] {
  const out: IdentitySelector[] = [];
  for (const c of cidrs) {
    out.push(cidrSelector(c, []));
    if (!isZero(c)) {
      out.push({ kind: 'podnet', key: `podnet:${c.text}`, cidr: c });
      continue;
    }
    // IPv4-only pods carry no family label; every other pod names its families.
    const family: Requirement =
      c.family === 'ipv4' ? { key: k8s(FAMILY_KEY), operator: 'NotIn', values: ['ipv6'] } : { key: k8s(FAMILY_KEY), operator: 'In', values: ['ipv4+ipv6', 'ipv6'] };
    out.push(labelsSelector(makeSelector([{ key: k8s(POD_NAMESPACE_KEY), operator: 'Exists', values: [] }, family])));
  }
  return out;
}

/** The terms a policy puts in force: networks CIDRs and egress named-port names. */
interface Terms {
  readonly cidrs: readonly Cidr[];
  readonly names: readonly string[];
  /** Each egress rule's CIDRs (rules with networks peers, but not both /0s): what `dualStackProblem` checks. */
  readonly rules: readonly (readonly Cidr[])[];
}

function termsOf(policy: Policy): Terms | undefined {
  const t = policy.tiered;
  if (!t) return undefined;
  const cidrs = new Map<string, Cidr>();
  const names = new Set<string>();
  const rules: Cidr[][] = [];
  for (const r of t.rules) {
    if (r.direction !== 'egress') continue;
    // A rule over every address is one identity-0 key (`networksCoverEverything`): it splits nothing.
    if (!networksCoverEverything(r.peers)) {
      const ruleCidrs = r.peers.flatMap((p) => (p.kind === 'networks' ? p.cidrs : []));
      for (const c of ruleCidrs) cidrs.set(c.text, c);
      if (ruleCidrs.length > 0) rules.push(ruleCidrs);
    }
    for (const p of r.protocols) if (p.kind === 'named') names.add(p.name);
  }
  if (cidrs.size === 0 && names.size === 0) return undefined;
  return { cidrs: [...cidrs.values()], names: [...names], rules };
}

/** The pods of one base label set (their labels without derived ones), and how many are inside each tracked CIDR. */
interface Group {
  readonly pods: Map<string, Pod>;
  readonly inside: Map<string, number>;
  /** Per port name in force: how many pods give it each meaning (`portsValue`, '' = the pod lacks it). */
  readonly ports: Map<string, Map<string, number>>;
}

const newGroup = (): Group => ({ pods: new Map(), inside: new Map(), ports: new Map() });

function bump(m: Map<string, number>, k: string, sign: 1 | -1): void {
  const n = (m.get(k) ?? 0) + sign;
  if (n > 0) m.set(k, n);
  else m.delete(k);
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

const inCidr = (pod: Pod, c: Cidr): boolean => podIps(pod).some((ip) => cidrContainsIp(c, ip));

/**
 * The CIDR of `rule` holding one address of `pod` while the rule holds another of its addresses
 * nowhere: the rule matches the pod at some of its addresses only (undefined when at all or none).
 */
function partialHold(pod: Pod, rule: readonly Cidr[]): Cidr | undefined {
  let first: Cidr | undefined;
  let outside = false;
  for (const ip of podIps(pod)) {
    const c = rule.find((x) => cidrContainsIp(x, ip));
    if (c === undefined) outside = true;
    else first ??= c;
  }
  return outside ? first : undefined;
}

/**
 * The split stage. Terms (networks CIDRs, port names) are refcounted by policy. CIDRs other than
 * /0 split only where needed: pods of one base label set get `…/net/<c>` only while `c` holds some
 * but not all of them; a base set wholly inside `c` keeps its identities, which then carry `c` in
 * their `nets` (what `podnet` selectors read). So the split of one pod can relabel the others of
 * its set: `settle()` does that at the end of the transaction, for the sets that changed, and
 * re-announces identities whose `nets` changed to the peer selector cache.
 *
 * Names work the same way: a set whose pods give a name more than one meaning labels each pod
 * having it with its ports. The family label is per pod (no set state).
 */
/** What a pod joining derives when no policy splits identities (no array per pod). */
const NO_LABELS: readonly Label[] = [];

export class NetworkSplits {
  private s: State = { cidrs: new Map(), names: new Map(), zeroRefs: 0, byPolicy: new Map() };
  /** Base label-set key → its group; kept only while some CIDR other than /0, or some name, is in force. */
  private groups = new Map<string, Group>();
  private readonly groupOf = new Map<string, string>();
  /** Groups whose membership changed and pods a CIDR entering or leaving force holds: `settle()` looks at them. */
  private readonly dirty = new Set<string>();
  private readonly dirtyPods = new Set<string>();
  private settling = false;
  /** Pods with addresses of two families (`Pod.ips`): see `dualStackProblem`. */
  private readonly dualStack = new Set<string>();
  /** Dual-stack pods that joined and policies (keys) upserted since `settle()` last found no problem. */
  private readonly dualStackJoined = new Set<string>();
  private readonly dualStackPolicies = new Set<string>();

  constructor(
    private readonly ctx: EngineContext,
    private readonly pods: PodTable,
    private readonly peerCache: SelectorCache,
  ) {}

  private get tracking(): boolean {
    if (this.s.names.size > 0) return true;
    for (const { cidr } of this.s.cidrs.values()) if (!isZero(cidr)) return true;
    return false;
  }

  /** A pod into (or out of) its group's counts. */
  private count1(g: Group, key: string, pod: Pod, sign: 1 | -1): void {
    if (sign > 0) g.pods.set(key, pod);
    else g.pods.delete(key);
    for (const [text, { cidr }] of this.s.cidrs) if (!isZero(cidr) && inCidr(pod, cidr)) bump(g.inside, text, sign);
    for (const name of this.s.names.keys()) {
      let m = g.ports.get(name);
      if (!m) g.ports.set(name, (m = new Map()));
      bump(m, portsValue(pod, name) ?? '', sign);
      if (m.size === 0) g.ports.delete(name);
    }
  }

  /** A pod enters the pod table with base labels `base` (key `baseKey`): its derived labels under the terms in force. */
  podJoined(key: string, pod: Pod, base: LabelSet, baseKey: string): readonly Label[] {
    if (pod.ips !== undefined && pod.ips.length > 1) {
      this.dualStack.add(key);
      this.dualStackJoined.add(key);
    } else if (this.dualStack.size > 0) this.dualStack.delete(key);
    if (this.s.byPolicy.size === 0) return NO_LABELS;
    let g: Group | undefined;
    if (this.groups.size > 0 || this.tracking) {
      const b = baseKey;
      g = this.groups.get(b);
      if (!g) this.groups.set(b, (g = newGroup()));
      this.count1(g, key, pod, +1);
      this.groupOf.set(key, b);
      if (!this.settling) this.dirty.add(b);
    }
    return this.labelsFor(pod, g);
  }

  /**
   * `identity`: the one the pod leaves (already released). Its `nets` hold for its pods only, so
   * with its last pod gone they go too: a pod that takes it back in this transaction may be
   * outside them, and no group marks it for `settle()` when no CIDR is tracked then (935).
   */
  podLeft(key: string, pod: Pod, identity: IdentityRecord): void {
    if (identity.refs === 0 && identity.nets !== undefined) this.setNets(identity, undefined);
    this.dualStack.delete(key);
    const b = this.groupOf.get(key);
    if (b === undefined) return;
    this.groupOf.delete(key);
    const g = this.groups.get(b) as Group;
    this.count1(g, key, pod, -1);
    if (g.pods.size === 0) this.groups.delete(b);
    if (!this.settling) this.dirty.add(b);
  }

  private labelsFor(pod: Pod, g: Group | undefined): Label[] {
    const s = this.s;
    const out: Label[] = [];
    if (g) {
      for (const [text, n] of g.inside) {
        const c = s.cidrs.get(text)?.cidr;
        if (c && n < g.pods.size && inCidr(pod, c)) out.push({ ...k8s(NET_PREFIX + text), value: '' });
      }
    }
    const family = s.zeroRefs > 0 ? familyValue(pod) : undefined;
    if (family !== undefined) out.push({ ...k8s(FAMILY_KEY), value: family });
    // A name splits only a group whose pods give it more than one meaning.
    for (const [name, meanings] of g?.ports ?? []) {
      const v = meanings.size > 1 ? portsValue(pod, name) : undefined;
      if (v !== undefined) out.push({ ...k8s(PORT_PREFIX + name), value: v });
    }
    return out;
  }

  /** `key` is `policyRefKey(policy.ref)`. */
  policyUpserted(policy: Policy, key: string): void {
    // Only tiered policies have terms: a plain one is asked one lookup, no call (30,000 in a cilium-ci cold start).
    if (policy.tiered === undefined && !this.s.byPolicy.has(key)) return;
    this.change(key, termsOf(policy));
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
    if (next && next.rules.length > 0 && this.dualStack.size > 0) this.dualStackPolicies.add(key);
    this.dropNets(touched.cidrs);
    this.regroup(touched.cidrs, touched.names);
    this.reidentify(touched.zero);
    // Logged after the pods: undoing restores the terms first, then the pods' old identities.
    this.ctx.onUndo(() => {
      this.s = saved;
      this.rebuildGroups();
    });
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

  /** The groups again from the pod table (tracking starts or stops, or an undo restored the terms). */
  private rebuildGroups(): void {
    this.groups = new Map();
    this.groupOf.clear();
    if (!this.tracking) return;
    for (const rec of this.pods.records()) {
      if (rec.pod.failClosed === true) continue;
      const base = this.pods.labelsOf(podKey(rec.pod)) as LabelSet;
      const b = labelSetKey(base);
      let g = this.groups.get(b);
      if (!g) this.groups.set(b, (g = newGroup()));
      this.count1(g, podKey(rec.pod), rec.pod, +1);
      this.groupOf.set(podKey(rec.pod), b);
    }
  }

  /**
   * CIDRs leaving force leave every identity's `nets` now. `settle()` recomputes `nets` only for
   * the identities of the pods it looks at, and may find none holding them: a pod outside the CIDR
   * that took an identity while a pod inside it still held it (1730), and that pod gone since,
   * leaves no pod inside the CIDR to mark (`regroup`) and, tracking stopped, no group to settle.
   */
  private dropNets(touched: readonly Cidr[]): void {
    const gone = touched.filter((c) => !this.s.cidrs.has(c.text));
    if (gone.length === 0) return;
    const seen = new Set<IdentityRecord>();
    for (const { identity } of this.pods.records()) {
      const old = identity.nets;
      if (old === undefined || seen.has(identity)) continue;
      seen.add(identity);
      if (!gone.some((c) => old.has(c.text))) continue;
      const kept = new Set(old);
      for (const c of gone) kept.delete(c.text);
      this.setNets(identity, kept.size === 0 ? undefined : kept);
    }
  }

  /** CIDRs or names entering or leaving force: the pods inside them or having them may change labels or `nets` (settled at commit). */
  private regroup(cidrs: readonly Cidr[], names: readonly string[]): void {
    if (cidrs.length === 0 && names.length === 0) return;
    this.rebuildGroups();
    // A pod the agent holds fail-closed (`Pod.failClosed`, finding 2352) is in no group: its identity is `pending`.
    const concerned = (pod: Pod): boolean => pod.failClosed !== true && cidrs.some((c) => inCidr(pod, c)) || pod.ports.some((p) => p.name !== undefined && names.includes(p.name));
    // A pod's split labels depend on its whole group (pods of its base labels), not only on itself: a
    // pod outside the CIDR shares a group with one inside, so the group's other members settle too.
    const groups = new Set<string>();
    for (const rec of this.pods.records()) {
      if (!concerned(rec.pod)) continue;
      const k = podKey(rec.pod);
      this.dirtyPods.add(k);
      const g = this.groupOf.get(k);
      if (g !== undefined) groups.add(g);
    }
    if (groups.size === 0) return;
    for (const rec of this.pods.records()) {
      const g = this.groupOf.get(podKey(rec.pod));
      if (g !== undefined && groups.has(g)) this.dirtyPods.add(podKey(rec.pod));
    }
  }

  /** The first or last /0: pods that are not IPv4-only get or lose their family label now. */
  private reidentify(zero: boolean): void {
    if (!zero) return;
    for (const rec of [...this.pods.records()]) if (rec.pod.failClosed !== true && familyValue(rec.pod) !== undefined) this.pods.reidentifyPod(podKey(rec.pod));
  }

  /**
   * At commit: every pod of a changed group gets the labels its group now gives it, and every
   * identity of those groups the `nets` its pods share (re-announced to the peer cache on change).
   */
  settle(): void {
    const problem = this.dualStackProblem();
    if (problem) throw new EngineError(0, 'batch', problem);
    if (this.dirty.size === 0 && this.dirtyPods.size === 0) return;
    const keys = new Set(this.dirtyPods);
    for (const b of this.dirty) for (const k of this.groups.get(b)?.pods.keys() ?? []) keys.add(k);
    this.dirty.clear();
    this.dirtyPods.clear();
    this.settling = true;
    try {
      for (const k of keys) this.relabel(k);
    } finally {
      this.settling = false;
    }
    const seen = new Set<IdentityRecord>();
    for (const k of keys) {
      const held = this.pods.get(k);
      const rec = held?.pod.failClosed === true ? undefined : held?.identity;
      if (!rec || seen.has(rec)) continue;
      seen.add(rec);
      this.setNets(rec, this.netsOf(rec, this.groups.get(this.groupOf.get(k) ?? '')));
    }
  }

  /**
   * A networks rule matches a flow by the address it uses, and a dual-stack pod's two addresses
   * share one identity: a rule whose CIDRs hold one of them and not the other cannot be matched
   * on one address only in the maps. Refused (fail closed) rather than matched on both. A rule
   * holding both addresses (both /0s, or one CIDR per family: 1690) or neither (1180) matches the
   * pod at both or at none, as the identity does, and is encoded.
   */
  private dualStackProblem(): string | undefined {
    if (this.dualStackJoined.size === 0 && this.dualStackPolicies.size === 0) return undefined;
    const hit = this.dualStackHit();
    // Kept after a hit: the refused transaction is undone, and the next settle checks the same again.
    if (hit === undefined) {
      this.dualStackJoined.clear();
      this.dualStackPolicies.clear();
      return undefined;
    }
    return `ClusterNetworkPolicy networks peer ${hit.cidr} with dual-stack pod ${hit.pod}: both addresses of a pod share one identity, so the maps cannot match its rule on one address and not the other; only the reference evaluator (--naive) decides it`;
  }

  /** A rule in force holding some but not all addresses of a dual-stack pod, among the pods and policies new since the last check (O(that change)). */
  private dualStackHit(): { pod: string; cidr: string } | undefined {
    const hit = (key: string, terms: Terms | undefined): { pod: string; cidr: string } | undefined => {
      const pod = this.dualStack.has(key) ? this.pods.get(key)?.pod : undefined;
      if (pod === undefined || terms === undefined) return undefined;
      for (const rule of terms.rules) {
        const c = partialHold(pod, rule);
        if (c !== undefined) return { pod: key, cidr: c.text };
      }
      return undefined;
    };
    for (const key of this.dualStackJoined) for (const terms of this.s.byPolicy.values()) {
      const h = hit(key, terms);
      if (h) return h;
    }
    for (const p of this.dualStackPolicies) for (const key of this.dualStack) {
      const h = hit(key, this.s.byPolicy.get(p));
      if (h) return h;
    }
    return undefined;
  }

  private relabel(key: string): void {
    const rec = this.pods.get(key);
    if (!rec || rec.pod.failClosed === true) return;
    const base = this.pods.labelsOf(key) as LabelSet;
    const derived = this.labelsFor(rec.pod, this.groups.get(this.groupOf.get(key) ?? ''));
    const want = derived.length === 0 ? base : makeLabelSet([...base, ...derived]);
    if (labelSetKey(want) !== rec.labelKey) this.pods.reidentifyPod(key);
  }

  /** The CIDRs holding every pod of an identity: its split labels, and those holding its whole group. */
  private netsOf(rec: IdentityRecord, g: Group | undefined): ReadonlySet<string> | undefined {
    const nets = new Set<string>();
    if (g) for (const [text, n] of g.inside) if (n === g.pods.size) nets.add(text);
    for (const l of rec.labels) if (l.source === SOURCE_K8S && l.key.startsWith(NET_PREFIX)) nets.add(l.key.slice(NET_PREFIX.length));
    return nets.size === 0 ? undefined : nets;
  }

  private setNets(rec: IdentityRecord, nets: ReadonlySet<string> | undefined): void {
    const old = rec.nets;
    if (sameSet(old, nets)) return;
    this.reannounce(rec, nets);
    this.ctx.onUndo(() => this.reannounce(rec, old));
  }

  private reannounce(rec: IdentityRecord, nets: ReadonlySet<string> | undefined): void {
    const present = this.peerCache.hasIdentity(rec.id);
    if (present) this.peerCache.removeIdentity(rec.id);
    (rec as { nets?: ReadonlySet<string> }).nets = nets;
    if (present) this.peerCache.addIdentity(rec);
  }
}

function sameSet(a: ReadonlySet<string> | undefined, b: ReadonlySet<string> | undefined): boolean {
  if ((a?.size ?? 0) !== (b?.size ?? 0)) return false;
  for (const x of a ?? []) if (!b?.has(x)) return false;
  return true;
}
