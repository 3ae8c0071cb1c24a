/**
 * Which objects the engine is to hold at a fail-closed form, and that form (docs/architecture.md, "Layering": held
 * forms apart from the batch queue).
 * Consumes: what the engine holds (`EngineBatches`' map, read only), what the streams describe (`ObjectStates`, read
 * only), and `EngineBatches`' word of what changed, was refused, or committed.
 * Emits: the form to send for an object (`formOf`, `deletedFailClosed`, `expiredAtFree`), whether a refused object
 * takes a new form (`takeFailClosed`, `takeSlicesFailClosed`, `keepDenies`), a split step's order (`holdStep`), and
 * the held pods a batch re-sends (`heldClaimants`).
 * Never: touches the batch queue (dirty, refused, lagging, the halving limit) or the engine; nor returns a form that
 * allows more than both what the engine holds for the object and its wanted meaning.
 */
import { denyAllPolicy, denySidePolicy, effectiveHeld, expiredPodAt, failClosedGroup, failClosedNode, failClosedPod, failClosedSlice, keptOnUnreadable, namespaceOfHeld, type GroupsMode, type Held, type LogFn } from './held.js';
import type { ObjectStates } from './object-states.js';
import type { Cidr } from '../model/cidr.js';
import { type NodeHold, podIps, type Pod } from '../model/cluster.js';

type Next = ReadonlyMap<string, Held | undefined>;

export const namespaceKey = (ns: string): string => `Namespace//${ns}`;

/** Whether both are nodes with the same addresses. */
function sameIps(a: Held | undefined, b: Held | undefined): boolean {
  if (a?.kind !== 'Node' || b?.kind !== 'Node') return false;
  const texts = (h: typeof a): string => h.node.ips.map((ip) => ip.text).sort().join(',');
  return texts(a) === texts(b);
}

/**
 * Whether `want`, refused alone, has a fail-closed form not tried yet: a pod, a readable CIDR group, a node, a
 * policy (its deny side, then its deny-all side). An API server slice: `sliceHoldNew`.
 */
function hasFailClosedForm(want: Held): boolean {
  if (want.kind === 'Pod') return want.pod.failClosed !== true;
  if (want.kind === 'CidrGroup') return want.group !== undefined && want.group.failClosed !== true;
  if (want.kind === 'Node') return want.node.failClosed === undefined || (want.node.local && want.node.failClosed !== 'addresses');
  return want.kind === 'Policy' && want.denyAll !== true;
}

/** True when pod `key` claims address `ip` (text) in the engine once `next` commits (a namespace delete drops its pods). */
function engineClaims(held: ReadonlyMap<string, Held>, key: string, ip: string, next: Next = new Map()): boolean {
  const h = next.has(key) ? next.get(key) : held.get(key);
  if (h?.kind !== 'Pod' || (!next.has(key) && next.has(namespaceKey(h.pod.namespace)) && next.get(namespaceKey(h.pod.namespace)) === undefined)) return false;
  return podIps(h.pod).some((a) => a.text === ip);
}

/** The addresses of the pods the engine holds that `next` moves, deletes or drops with their namespace (as texts). */
export function leftIps(held: ReadonlyMap<string, Held>, next: Next): string[] {
  const left: string[] = [];
  const leaves = (h: Held | undefined, want: Held | undefined): void => {
    if (h?.kind !== 'Pod') return;
    const kept = new Set(want?.kind === 'Pod' ? podIps(want.pod).map((ip) => ip.text) : []);
    for (const ip of podIps(h.pod)) if (!kept.has(ip.text)) left.push(ip.text);
  };
  for (const [key, want] of next) {
    leaves(held.get(key), want);
    if (want !== undefined || !key.startsWith('Namespace/')) continue;
    const ns = key.slice('Namespace//'.length);
    for (const [k, h] of held) if (!next.has(k) && namespaceOfHeld(h) === ns) leaves(h, undefined);
  }
  return left;
}

const warnings = {
  addresses: 'local node and its held forms refused by the engine: its own addresses held at the unallocated number (denied by every local map) until it changes or a later change lets it be read',
  allPorts: 'local node and its held form refused by the engine: held fail-closed on every port (every Deny or Pass rule with a nodes peer denies it, no Accept selects it) until it changes or a later change lets it be read',
  localNode: 'local node refused by the engine: held fail-closed (its labels unknown: nodes peers of Deny and Pass rules select it as a Deny, of Accept rules never) until it changes or a later change lets it be read',
  slice: 'API server slice refused by the engine: the addresses its change adds or drops are held fail-closed (denied by every local map; those of this node stay host) until it changes or a later change lets it be read',
  node: 'node refused by the engine: held fail-closed (its addresses denied by every local map) until it changes or a later change lets it be read',
  group: 'CIDR group refused by the engine: held fail-closed (its addresses denied by every local map) until it changes or a later change lets it be read',
  pod: 'pod refused by the engine: held fail-closed (its addresses denied by every local map, its endpoint denying both ways) until it changes or a later change lets it be read',
  denySide: 'policy and its deny side refused by the engine: its subjects are isolated and denied every peer where it denies (none of its allows) until it changes or a later change lets it be read',
  policy: 'policy refused by the engine: its deny side is enforced (its subjects isolated, its denies, none of its allows) until it changes or a later change lets it be read',
} as const;

/** Which warning `takeFailClosed` logs for `want` (the form it had when refused). */
function warningFor(want: Held): string {
  if (want.kind === 'Node') return want.node.failClosed === 'allPorts' ? warnings.addresses : want.node.failClosed === true ? warnings.allPorts : want.node.local ? warnings.localNode : warnings.node;
  if (want.kind === 'ApiServer') return warnings.slice;
  if (want.kind === 'CidrGroup') return warnings.group;
  if (want.kind === 'Pod') return warnings.pod;
  return want.kind === 'Policy' && want.denySide === true ? warnings.denySide : warnings.policy;
}

/** The held forms: see the contract at the top of this file. */
export class HeldForms {
  /**
   * Pods the engine refused alone (finding 2352): held fail-closed (`Pod.failClosed`: their addresses the unallocated
   * number every local map denies, a local one an endpoint with an empty map) instead of absent or at their last
   * version, whose addresses would read as world or an older identity and take its allows. And policies the engine
   * refused alone (finding 2433), held at their deny side (`denySidePolicy`) instead of absent or at their last
   * version, whose allows the new version and every later input deny; nodes, groups and API server slices so too.
   * Read again when they change or after the next commit of something else.
   */
  private readonly failClosedPods = new Set<string>();
  /** Policies held at their deny-all side (finding 2542): their deny side was refused too. */
  private readonly denyAll = new Set<string>();
  /** The local node held on every port (finding 2730): its held form was refused too. */
  private readonly allPorts = new Set<string>();
  /** The local node held at its addresses (finding 2900): its all-port form was refused too. */
  private readonly addressHeld = new Set<string>();
  /** Policies held at a deny side that keeps the denies of the version in force (finding 2523, `denySideBesideStale`). */
  private readonly keptDenies = new Map<string, Extract<Held, { kind: 'Policy' }>>();
  /**
   * The objects of a refused batch of several objects (finding 2916), held at their narrowing forms (`holdNarrowed`)
   * until every one of them has committed so (`releaseSplit`): its parts, committed one by one in either form, never
   * allow what both the input before the batch and the input after it deny.
   */
  private readonly splitting = new Set<string>();
  /** Objects of such a batch sent at their own forms after it: a refused batch of them is halved without a new hold. */
  private readonly released = new Set<string>();
  /** Keys of the pods the engine holds fail-closed (`heldClaimants`). */
  private readonly heldFailClosed = new Set<string>();

  constructor(
    private readonly held: ReadonlyMap<string, Held>,
    private readonly states: ObjectStates,
    private readonly debug: LogFn,
    private readonly warn: LogFn,
  ) {}

  /** Whether `key` is held at a fail-closed form (or a deny side). */
  has(key: string): boolean {
    return this.failClosedPods.has(key);
  }

  /** The keys held at a fail-closed form. */
  get heldKeys(): ReadonlySet<string> {
    return this.failClosedPods;
  }

  /** The objects of the split step held at their narrowing forms. */
  get splitKeys(): ReadonlySet<string> {
    return this.splitting;
  }

  /** The objects of a split step sent at their own forms. */
  get releasedKeys(): ReadonlySet<string> {
    return this.released;
  }

  /** Whether `key` is new to a split step: neither held in it nor released from it. */
  isNew(key: string): boolean {
    return !this.splitting.has(key) && !this.released.has(key);
  }

  /** Whether `key` is an object of the split step with no narrowing form. */
  isFormless(key: string): boolean {
    return this.splitting.has(key) && !this.failClosedPods.has(key);
  }

  /** `key`'s meaning was set: its hold ends (true if it had one), and while its step is split the new version is held. */
  changed(key: string): boolean {
    const was = this.dropFailClosed(key);
    this.released.delete(key);
    if (this.splitting.has(key)) this.holdNarrowed(key);
    return was;
  }

  /**
   * The held form of `key` whose wanted meaning is `h`, or undefined when it is not held. `relabelled`: its
   * namespace's relabel was refused (a pod is then held fail-closed whatever its own hold).
   */
  formOf(key: string, h: Held, groupsMode: GroupsMode, relabelled: boolean, unreported: boolean): Held | undefined {
    if (h.kind === 'Pod' && (relabelled || this.failClosedPods.has(key))) return failClosedPod(this.splitting.has(key) ? this.withHeldPodIps(key, h) : h);
    if (!this.failClosedPods.has(key)) return undefined;
    if (h.kind === 'Policy') return effectiveHeld((this.denyAll.has(key) ? denyAllPolicy : denySidePolicy)(h, this.keptBeside(key, h, unreported)), groupsMode);
    if (h.kind === 'CidrGroup') return failClosedGroup(this.splitting.has(key) ? this.withHeldCidrs(key, h) : h, this.held.get(key));
    if (h.kind === 'ApiServer') return unreported ? this.unreportedSlice(key, h) : failClosedSlice(h, this.held.get(key));
    if (h.kind === 'Node') return failClosedNode(this.splitting.has(key) ? this.withHeldIps(key, h) : h, this.nodeHold(key));
    return undefined;
  }

  /**
   * The form of an object that may be gone (finding 3700): a policy at its deny side (its allows go, its denies and the
   * default deny of its subjects stay: absent, it has no allows; present, it has those denies); a pod, group, node or
   * API server slice fail-closed (its addresses the unallocated number every local map denies); an identity its stand-in
   * denied by every local map, an endpoint dropped, a namespace kept (`keptOnUnreadable`: its pods and policies come
   * on their own streams).
   */
  unreportedForm(key: string, h: Held, groupsMode: GroupsMode): Held | undefined {
    if (h.kind === 'Policy') return effectiveHeld(denySidePolicy(h, this.keptBeside(key, h, true)), groupsMode);
    if (h.kind === 'CidrGroup') return failClosedGroup(h, this.held.get(key));
    if (h.kind === 'ApiServer') return this.unreportedSlice(key, h);
    if (h.kind === 'Node') return failClosedNode(h);
    return keptOnUnreadable(key, h);
  }

  /**
   * An API server slice that may be gone (finding 3882): as if deleted, every address it or the version the engine
   * holds reads held (`failClosedSlice` beside the version held holds only those a change adds or drops: none here).
   */
  private unreportedSlice(key: string, h: Extract<Held, { kind: 'ApiServer' }>): Held {
    const had = this.held.get(key);
    const before = had?.kind === 'ApiServer' ? [...had.addresses, ...(had.held ?? [])] : [];
    return failClosedSlice(undefined, { ...h, held: [...h.addresses, ...before] });
  }

  /**
   * The version a policy's deny side is held beside: the one the engine held when refused (`keptDenies`), else an
   * unreported ClusterNetworkPolicy itself, its Pass rules so held as Denies (`tieredDenySide`, as a refused add or
   * delete: 3261). A Pass kept skips the policies below it, which the policy's absence lets decide (finding 3880).
   */
  private keptBeside(key: string, h: Extract<Held, { kind: 'Policy' }>, unreported: boolean): Extract<Held, { kind: 'Policy' }> | undefined {
    return this.keptDenies.get(key) ?? (h.policy.tiered !== undefined && unreported ? h : undefined);
  }

  /**
   * A node of a split batch holds the addresses the engine holds for it beside its new ones (finding 2914): held at
   * its new ones only, an old one read as world (or the host's, held) in the batch's parts, which neither input does.
   */
  private withHeldIps(key: string, h: Extract<Held, { kind: 'Node' }>): Extract<Held, { kind: 'Node' }> {
    const had = this.held.get(key);
    if (had?.kind !== 'Node') return h;
    const extra = had.node.ips.filter((ip) => !h.node.ips.some((o) => o.text === ip.text));
    if (extra.length === 0) return h;
    return { ...h, node: { ...h.node, ips: [...h.node.ips, ...extra] }, sig: `${h.sig}+${extra.map((ip) => ip.text).join(',')}` };
  }

  /**
   * A pod of a split batch holds the addresses the engine holds for it beside its new ones (finding 3260, as 2914 for a
   * node): an address it leaves read as world in the batch's parts, where the object that takes it in the input after
   * (the API server, a CiliumEndpoint: no narrowing form) had not committed yet.
   */
  private withHeldPodIps(key: string, h: Extract<Held, { kind: 'Pod' }>): Extract<Held, { kind: 'Pod' }> {
    const had = this.held.get(key);
    if (had?.kind !== 'Pod') return h;
    const ips = podIps(h.pod);
    const extra = podIps(had.pod).filter((ip) => !ips.some((o) => o.text === ip.text));
    if (extra.length === 0) return h;
    return { ...h, pod: { ...h.pod, ips: [...ips, ...extra] }, sig: `${h.sig}+${extra.map((ip) => ip.text).join(',')}` };
  }

  /** A CIDR group of a split batch holds the prefixes the engine holds for it beside its new ones (finding 3263, as 3260). */
  private withHeldCidrs(key: string, h: Extract<Held, { kind: 'CidrGroup' }>): Extract<Held, { kind: 'CidrGroup' }> {
    const had = this.held.get(key);
    if (had?.kind !== 'CidrGroup' || had.group === undefined || h.group === undefined) return h;
    const same = (a: Cidr, b: Cidr): boolean => a.family === b.family && a.network === b.network && a.prefixLength === b.prefixLength;
    const extra = had.group.cidrs.filter((c) => !h.group!.cidrs.some((o) => same(c, o)));
    if (extra.length === 0) return h;
    return { ...h, group: { ...h.group, cidrs: [...h.group.cidrs, ...extra] }, sig: `${h.sig}+${extra.map((c) => `${c.network}/${c.prefixLength}`).join(',')}` };
  }

  /**
   * A CIDR group or remote node whose delete the engine refused alone (finding 2600): the version the engine holds,
   * fail-closed; an API server slice, its addresses held (finding 3265). Kept at its last labels, a policy change committed beside the waiting delete read them.
   */
  deletedFailClosed(key: string): Held | undefined {
    const had = this.held.get(key);
    if (had?.kind === 'CidrGroup') return failClosedGroup(had, had);
    if (had?.kind === 'ApiServer') return failClosedSlice(undefined, had);
    // A pod or policy delete held so only while its batch is split (`holdNarrowed`).
    if (had?.kind === 'Pod') return failClosedPod(had);
    if (had?.kind === 'Policy') return (this.denyAll.has(key) ? denyAllPolicy : denySidePolicy)(had, this.keptDenies.get(key));
    return had?.kind === 'Node' ? failClosedNode(had, this.nodeHold(key)) : undefined;
  }

  /** The form a node held fail-closed takes: the local node's second (2730) and third (2900) after a refusal of each. */
  private nodeHold(key: string): NodeHold {
    return this.addressHeld.has(key) ? 'addresses' : this.allPorts.has(key) ? 'allPorts' : true;
  }

  /**
   * A remote pod past its deadline (finding 2843) holds fail-closed the addresses no other pod claims (2844): its upsert
   * would take back one a new pod holds; and only those (2920): a claim on one of its addresses left the others world.
   * It gives an address up only to a claimant the engine holds there once `next` (the batch, if any) commits (finding
   * 3042): the claimant was then written there after it (the engine's last writer owns an address), so the give-up
   * leaves the address to the claimant, never to world, whether the claimant waits for its namespace, a halving or a
   * refusal, or commits in this batch. Its held form, not `Pod.failClosed` (`heldClaimants` leaves it out).
   */
  expiredAtFree(key: string, h: Extract<Held, { kind: 'Pod' }>, namespacesWatched: boolean, next?: Next): Held | undefined {
    const ips = podIps(h.pod);
    // A pod waiting for its namespace (`EngineBatches.awaitNamespaces`, while namespaces are watched) claims nothing
    // yet (finding 2923).
    const sent = (pod: Pod, k: string, ip: string): boolean => (!namespacesWatched || this.states.get(namespaceKey(pod.namespace))?.desired !== undefined) && engineClaims(this.held, k, ip, next);
    const claimed = this.states.claimedByOthers(key, new Set(ips.map((ip) => ip.text)), sent);
    if (claimed.size === 0) return h;
    const free = ips.filter((ip) => !claimed.has(ip.text));
    return free.length === 0 ? undefined : expiredPodAt(h, free);
  }

  /**
   * Finding 2916: the parts of a refused batch committed one by one at their own forms could allow what the input
   * before and the input after the batch both deny (a Node upsert that makes an allow of the host select more, committed
   * before the delete of that allow). So its objects not yet split are held at their narrowing forms (`holdNarrowed`),
   * a relabelled namespace's pods fail-closed, all sent before the objects that have none; once all have committed so
   * (`EngineBatches.releaseSplit`) their own forms follow. `keys` itself when there is nothing new to hold (a part of a
   * split batch, or the own forms after it): plain halving.
   */
  holdStep(keys: readonly string[]): readonly string[] {
    if (!keys.some((k) => this.isNew(k))) return keys;
    const narrowed: string[] = [];
    const formless: string[] = [];
    for (const key of keys) {
      this.splitting.add(key);
      (this.holdNarrowed(key) ? narrowed : formless).push(key);
      const ns = this.states.get(key)?.desired;
      if (ns?.kind !== 'Namespace') continue;
      for (const [k, h] of this.held) if (h.kind === 'Pod' && h.pod.namespace === ns.name && !this.splitting.has(k) && this.holdNarrowed(k)) this.splitting.add(k), narrowed.unshift(k);
    }
    this.debug('a refused batch is retried in parts: its objects held at their narrowing forms until all have committed so', { objects: narrowed.length + formless.length });
    return [...narrowed, ...formless];
  }

  /**
   * Holds `key` at a form that allows no more than what the engine holds for it nor its wanted meaning, whatever the
   * rest holds: a pod fail-closed, a policy at its deny side keeping the denies of the version in force (findings
   * 2433, 2523), a node, readable CIDR group or API server slice (3265) fail-closed; a pod or policy delete at that form
   * of the version held. False for the other kinds (namespaces, identities, CiliumEndpoints, unreadable groups).
   */
  private holdNarrowed(key: string): boolean {
    const want = this.states.get(key)?.desired;
    const had = this.held.get(key);
    const h = want ?? had;
    if (h === undefined || (h.kind !== 'Pod' && h.kind !== 'Policy' && h.kind !== 'Node' && h.kind !== 'CidrGroup' && h.kind !== 'ApiServer')) return false;
    if ((h.kind === 'CidrGroup' && h.group === undefined) || (h.kind === 'Pod' && h.expired === true)) return false;
    if (this.failClosedPods.has(key)) return true;
    this.failClosedPods.add(key);
    // A ClusterNetworkPolicy added or deleted: its Pass rules as Denies (finding 3261), its deny side beside itself. A
    // Pass skips the policies after it, which the input without the policy applies.
    const kept = had?.kind === 'Policy' && (want !== undefined || had.policy.tiered) ? had : want?.kind === 'Policy' && want.policy.tiered ? want : undefined;
    if (kept !== undefined) this.keptDenies.set(key, kept);
    // The local node's held forms but the last keep `host` at its new addresses, which the input before reads
    // otherwise: readdressed, added or deleted, it is held at its addresses (old and new, `withHeldIps`).
    if (h.kind === 'Node' && h.node.local && !sameIps(want, had)) this.addressHeld.add(key);
    return true;
  }

  /** The split step's objects go to their own forms (`EngineBatches.releaseSplit`): their holds end. */
  release(): void {
    for (const key of this.splitting) {
      this.dropFailClosed(key);
      this.released.add(key);
    }
    this.splitting.clear();
  }

  /** `next` committed: its objects not held are past their split step. */
  committed(next: Next): void {
    for (const key of next.keys()) if (!this.failClosedPods.has(key)) this.released.delete(key);
  }

  /**
   * After a commit of `next` that emptied the backlog: the holds of the objects outside a split step end, but those of
   * `next` when it was only held forms (refused just now). Their keys: they are read again. A held form committed
   * beside other objects (a deny side joined to a policy delete, finding 2522) is read again too.
   */
  readAgain(next: Next): string[] {
    const onlyFailClosed = [...next.keys()].every((key) => this.failClosedPods.has(key));
    const dropped: string[] = [];
    for (const key of this.failClosedPods) {
      if ((next.has(key) && onlyFailClosed) || this.splitting.has(key)) continue;
      this.dropFailClosed(key);
      dropped.push(key);
    }
    return dropped;
  }

  /** The engine holds `want` for `key` now (undefined: nothing): whether it is a pod held fail-closed (`heldClaimants`). */
  engineHolds(key: string, want: Held | undefined): void {
    if (want?.kind === 'Pod' && want.pod.failClosed === true) this.heldFailClosed.add(key);
    else this.heldFailClosed.delete(key);
  }

  /**
   * A pod upsert the engine refused alone (its reading, not its fail-closed version) is to be sent again as its
   * fail-closed version (finding 2352); a policy upsert, as its deny side (finding 2433), its deny side as its
   * deny-all side (finding 2542); a group, node or slice fail-closed, their deletes too. Every other refusal: false.
   */
  takeFailClosed(key: string, wanted: Held | undefined): boolean {
    // A delete: the group or node the engine holds (finding 2600).
    const want = wanted ?? this.held.get(key);
    if (want === undefined || (wanted === undefined && want.kind !== 'CidrGroup' && want.kind !== 'Node' && want.kind !== 'ApiServer')) return false;
    if (want.kind === 'ApiServer' ? !this.sliceHoldNew(key, wanted) : !hasFailClosedForm(want)) return false;
    this.failClosedPods.add(key);
    if (want.kind === 'Policy' && want.denySide === true) this.denyAll.add(key);
    if (want.kind === 'Node' && want.node.failClosed === true) this.allPorts.add(key);
    if (want.kind === 'Node' && want.node.failClosed === 'allPorts') this.addressHeld.add(key);
    this.warn(warningFor(want), { key });
    return true;
  }

  /**
   * A batch of the API server's slices alone refused, one object for the halving (`EngineBatches.units`): each slice
   * is held fail-closed as one refused alone is (`takeFailClosed`, finding 3265). Waiting whole at the version the
   * engine held, an address joining the API server read world, and a later world allow admitted it past a
   * kube-apiserver deny (finding 3670). The keys taken, in `next`'s order; those with no new held form wait.
   */
  takeSlicesFailClosed(next: Next): string[] {
    return [...next].filter(([key, want]) => this.takeFailClosed(key, want)).map(([key]) => key);
  }

  /**
   * Whether an API server slice refused alone (its `wanted` meaning, undefined for a delete) has a held form other than
   * what the engine holds (finding 3265): a change or delete of a slice held so is held again, from that form. None
   * when `wanted` is a held form already (as `hasFailClosedForm` reads a pod's or node's): refused too, it waits
   * (findings 3620, 3671: retried, it was refused at every flush). A held key's `wanted` is always that form (`formOf`).
   */
  private sliceHoldNew(key: string, wanted: Held | undefined): boolean {
    if (wanted?.kind === 'ApiServer' && wanted.held !== undefined) return false;
    const had = this.held.get(key);
    return failClosedSlice(wanted?.kind === 'ApiServer' ? wanted : undefined, had).sig !== had?.sig;
  }

  /**
   * A policy's deny side vetoed and refused beside the identities it was joined to (`EngineBatches.denySideBesideStale`):
   * held at a deny side that keeps the denies of the version in force (findings 2523, 2670), then at the deny-all side
   * of both (2672). False when the engine holds no policy for it or it is at its deny-all side already.
   */
  keepDenies(key: string): boolean {
    const had = this.held.get(key);
    if (had?.kind !== 'Policy' || this.denyAll.has(key)) return false;
    if (this.keptDenies.has(key)) this.denyAll.add(key);
    else this.keptDenies.set(key, had);
    return true;
  }

  /** `key` is no longer held fail-closed (or at a deny side): false if it was not. */
  dropFailClosed(key: string): boolean {
    this.keptDenies.delete(key);
    this.denyAll.delete(key);
    this.allPorts.delete(key);
    this.addressHeld.delete(key);
    return this.failClosedPods.delete(key);
  }

  /**
   * The pods the engine holds fail-closed, not in `next`, at an address a pod leaves in `next` that no pod of `next`
   * claims (finding 3362): written again after the leave, so the address stays at the unallocated number (denied by
   * every local map). The engine's last writer owns an address and its leave deletes the entry: in a split step two
   * pods held at one address (3260: old and new), the last written one's own form left it world while the other was
   * still held, though both inputs read a pod there. Once the batch commits the claimant owns the address.
   */
  heldClaimants(next: Next): Held[] {
    if (this.heldFailClosed.size === 0) return [];
    const claimed = new Set<string>();
    for (const want of next.values()) if (want?.kind === 'Pod') for (const ip of podIps(want.pod)) claimed.add(ip.text);
    const left = leftIps(this.held, next).filter((ip) => !claimed.has(ip));
    if (left.length === 0) return [];
    const out: Held[] = [];
    for (const key of this.heldFailClosed) {
      const h = this.held.get(key);
      if (h !== undefined && !next.has(key) && left.some((ip) => engineClaims(this.held, key, ip, next))) out.push(h);
    }
    return out;
  }
}
