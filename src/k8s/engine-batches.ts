import { effectiveHeld, namespaceOfHeld, type GroupsMode, type Held, type LogFn } from './held.js';
import { eventsFor, rank, type AgentEvent } from './held-events.js';
import { HeldForms, leftIps, namespaceKey } from './held-forms.js';
import type { ObjectStates } from './object-states.js';
import { podIps } from '../model/cluster.js';

/** The events of one flush, to be applied as one transaction, then committed or rolled back. */
export interface MirrorBatch {
  readonly events: readonly AgentEvent[];
  /**
   * Numbers whose CiliumIdentity narrows (turns unreadable, the fail-closed stand-in, or is deleted) in what `states`
   * describes but not in this batch: the engine still reads them under their held labels (a refused object retried
   * alone, one the halving left for a later flush). A batch that would admit one of them more than now is to be
   * refused with `rollback(true)` (finding 2373; the agent's `staleVeto`).
   */
  readonly stale: ReadonlySet<number>;
  /** The engine applied the events: the mirror now holds what they describe. */
  commit(): void;
  /**
   * The engine refused them: the mirror keeps what the engine holds. The objects are retried: a
   * refused batch of several objects in halves, in its order (so one object the engine refuses
   * cannot hold back the others), a refused single object when it changes or after the next
   * committed change (what it conflicted with may have gone). `vetoed`: the batch was refused for admitting a number
   * of `stale` (finding 2373): a batch of several objects is retried in halves as a refused one is, so only the
   * objects that open such a number wait (finding 2440); one object alone (or a batch that joined others) is sent
   * again at once with those identities joined, and that batch commits or waits as a whole.
   */
  rollback(vetoed?: boolean): void;
}

/**
 * What the engine holds, by object key, and the batches that bring it to what `states` describes:
 * the keys changed since (dirty), the objects the engine refused, and the retry in halves. Which objects are held at a
 * fail-closed form meanwhile, and that form, is `HeldForms`' choice (held-forms.ts).
 */
export class EngineBatches {
  /** What the engine holds, by object key. */
  private readonly held = new Map<string, Held>();
  private readonly dirty = new Set<string>();
  /** Objects whose change the engine refused on its own: retried when they change or after the next commit. */
  private readonly refused = new Set<string>();
  /**
   * Objects the engine refused on their own (alone, or joined to a policy delete) whose wanted meaning has not
   * committed since: what `refused` holds, and those of it moved back to `dirty` for a retry. For /healthz and
   * `distill_objects_refused`: `refused` alone empties at each commit that retries it (finding 2395).
   */
  private readonly lagging = new Set<string>();
  /**
   * Namespaces whose relabel the engine refused alone (finding 2430), until a version of them commits: meanwhile every
   * pod of theirs is sent fail-closed, so the relabel joins its pods' fail-closed versions and commits (a held pod's
   * identity ignores the namespace's labels). Their pods keeping the identities of the old labels was a state of
   * neither input: a policy change committed around it opened flows both deny. Once the namespace commits, its pods
   * are read again under the new labels (one the engine still refuses alone is held fail-closed like every other pod).
   */
  private readonly relabelling = new Set<string>();
  /** After a refused batch of several objects: at most this many objects per flush (halved at each refusal, doubled at each commit) until the backlog is through. */
  private limit = Infinity;
  /** The last batch with events, until it is committed or rolled back (finding 1522). */
  private open: MirrorBatch | undefined;
  /** Keys of the CiliumCIDRGroup objects that cannot be read (`keptOnUnreadable`): while some is, group peers read as the stand-in. */
  private readonly unreadableGroups = new Set<string>();
  /**
   * CiliumIdentity keys joined to the next flush's batch (finding 2373): a batch refused for admitting their numbers
   * while their narrowing waited (`MirrorBatch.stale`) is sent again with them, so it commits with the stand-in or
   * delete, or waits with it.
   */
  private readonly joinStale = new Set<string>();
  /**
   * Pods vetoed alone, refused with the identities they were joined to and so held fail-closed (finding 2524), with
   * those identities: their own version is retried with them joined (alone in its flush), not alone first, which the
   * veto refuses again while they wait. Forgotten once the pod changes or commits, or something other than a pod
   * commits (a policy may no longer let it open those numbers).
   */
  private readonly rejoins = new Map<string, ReadonlySet<string>>();
  /** Whether the last flush saw namespaces watched (its pods then wait for theirs, `awaitNamespaces`). */
  private namespacesWatched = false;
  /** How the last flush read group peers (policies with them are re-sent when this changes). */
  private groupsMode: GroupsMode = 'unwatched';

  /** Which objects are held at a fail-closed form, and that form. */
  private readonly forms: HeldForms;

  constructor(
    private readonly states: ObjectStates,
    private readonly debug: LogFn,
    private readonly warn: LogFn = debug,
    /** True for an object whose stream may not report its deletion (findings 3700, 3702): held at `HeldForms.unreportedForm`. */
    private readonly unreported: (key: string) => boolean = () => false,
  ) {
    this.forms = new HeldForms(this.held, states, debug, warn);
  }

  /** The meaning of `key` was set: it is sent at the next flush (and no longer waits as refused). */
  changed(key: string): void {
    this.refused.delete(key);
    this.rejoins.delete(key);
    // A pod held fail-closed stays counted (as lagging) until a version of it commits (finding 2421).
    // Changed while its batch is split: its new version is held too until the batch is through.
    if (this.forms.changed(key)) this.lagging.add(key);
    this.dirty.add(key);
    if (!key.startsWith('CiliumCIDRGroup/')) return;
    const h = this.states.get(key)?.desired;
    if (h?.kind === 'CidrGroup' && h.group === undefined) this.unreadableGroups.add(key);
    else this.unreadableGroups.delete(key);
  }

  /** `key`'s meaning is the same but what the engine is to hold for it may not be (`ObjectStates.reread`): sent at the next flush. */
  reread(key: string): void {
    this.dirty.add(key);
  }

  /**
   * What the engine is to hold for `key` now: a policy as `effectiveHeld` reads it, a group that
   * cannot be read as nothing (its policies read as the stand-in meanwhile).
   */
  private wanted(key: string, next?: ReadonlyMap<string, Held | undefined>): Held | undefined {
    const h = this.states.get(key)?.desired;
    if (h === undefined) return this.forms.has(key) ? this.forms.deletedFailClosed(key) : undefined;
    // An unreadable group stays in the engine as it was while a held policy still reads groups: one the
    // engine refused to switch to its stand-in keeps its old version, whose deny on the group must keep
    // the old prefixes (finding 2170). `commit` re-sends the group once none does.
    if (h.kind === 'CidrGroup' && h.group === undefined) return this.heldReadsGroups() ? this.held.get(key) : undefined;
    if (h.kind === 'Pod' && h.expired === true) return this.forms.expiredAtFree(key, h, this.namespacesWatched, next);
    const relabelled = h.kind === 'Pod' && this.relabelling.has(namespaceKey(h.pod.namespace));
    const unreported = this.unreported(key);
    return this.forms.formOf(key, h, this.groupsMode, relabelled, unreported) ?? (unreported ? this.forms.unreportedForm(key, h, this.groupsMode) : effectiveHeld(h, this.groupsMode));
  }

  /** Whether the engine holds a policy that reads group peers (not its stand-in). */
  private heldReadsGroups(): boolean {
    for (const h of this.held.values()) if (h.kind === 'Policy' && h.groupless !== undefined && h.policy !== h.groupless) return true;
    return false;
  }

  /**
   * Group peers read once the groups are watched and while none of them is unreadable; a change
   * re-sends every held policy with group peers, in the order that never loosens first (finding
   * 2043: while a refused batch is retried in parts, a flush takes only the first dirty keys): to
   * the stand-in, the policies before every other change (a group turning unreadable is deleted
   * from the engine after the policies stopped reading it); back from it, the groups' changes
   * first (the group is in the engine before a deny reads it), then the policies.
   */
  private setGroupsRead(groupsWatched: boolean): void {
    const read = this.groupsReadable(groupsWatched);
    const mode: GroupsMode = read ? 'read' : groupsWatched ? 'unreadable' : 'unwatched';
    if (mode === this.groupsMode) return;
    this.groupsMode = mode;
    this.debug(read ? 'CIDR group peers read' : 'CIDR group peers read as the fail-closed stand-in (a group cannot be read)', { unreadable: [...this.unreadableGroups] });
    const policies = new Set<string>();
    for (const [key, h] of this.held) if (h.kind === 'Policy' && h.groupless !== undefined) policies.add(key);
    const rest = [...this.dirty].filter((k) => !policies.has(k));
    const isGroup = (k: string): boolean => read && k.startsWith('CiliumCIDRGroup/');
    const order = [...rest.filter(isGroup), ...policies, ...rest.filter((k) => !isGroup(k))];
    this.dirty.clear();
    for (const k of order) this.dirty.add(k);
  }

  /** Whether group peers would read now, given whether the groups are watched (`setGroupsRead`). */
  groupsReadable(groupsWatched: boolean): boolean {
    return groupsWatched && this.unreadableGroups.size === 0;
  }

  /** The objects the engine refused and still lacks (`lagging`, and the pods it holds fail-closed instead), by key, sorted. */
  refusedObjects(): string[] {
    return [...new Set([...this.lagging, ...this.forms.heldKeys])].sort();
  }

  /** How many objects `refusedObjects` lists. */
  get refusedObjectCount(): number {
    let n = this.lagging.size;
    for (const key of this.forms.heldKeys) if (!this.lagging.has(key)) n++;
    return n;
  }

  /** How many CiliumCIDRGroup objects cannot be read (group peers read as the stand-in while some is). */
  get unreadableGroupCount(): number {
    return this.unreadableGroups.size;
  }

  /** True when no change waits for a flush. */
  get idle(): boolean {
    return this.dirty.size === 0;
  }

  /** Local endpoints the engine holds, as `namespace/name`. */
  localEndpoints(): string[] {
    const out: string[] = [];
    for (const h of this.held.values()) if (h.kind === 'Pod' && h.local) out.push(`${h.pod.namespace}/${h.pod.name}`);
    return out.sort();
  }

  /**
   * Throws while a batch with events is neither committed nor rolled back. The next flush would be
   * computed against what the engine held before that batch: an allow added by the open batch and
   * deleted before the next flush gave no event, and the open batch's commit then recorded the
   * allow as held while the cluster has none; no later event deleted it (finding 1522).
   */
  checkSettled(): void {
    if (this.open) throw new Error('ClusterMirror.flush: the previous batch was neither committed nor rolled back (commit it once the engine applied it, roll it back if the engine refused it)');
  }

  /** The minimal events from what the engine holds to what `states` describes (see `ClusterMirror.flush`). */
  flush(namespacesWatched: boolean, groupsWatched = false): MirrorBatch {
    this.namespacesWatched = namespacesWatched;
    this.setGroupsRead(groupsWatched);
    this.endRevertedRelabels();
    const next = new Map<string, Held | undefined>();
    const expired: string[] = [];
    // The API server's slices count as one object (`units`).
    let slices = 0;
    for (const key of this.dirty) {
      const rejoin = this.rejoinOf(key);
      if (rejoin !== undefined && next.size > 0) break;
      this.dirty.delete(key);
      if (this.isExpired(key)) expired.push(key);
      const want = this.wanted(key, next);
      if (want?.sig !== this.held.get(key)?.sig) next.set(key, want), (slices += Number(this.isApiServer(key)));
      else this.lagging.delete(key);
      if (rejoin !== undefined) for (const k of rejoin) this.joinStale.add(k);
      if (rejoin !== undefined || next.size - Math.max(0, slices - 1) >= this.limit) break;
    }
    this.joinApiServer(next);
    if (this.dirty.size === 0) this.limit = Infinity;
    const joinedStale = this.joinStaleIdentities(next);
    const joined = this.joinRefusedPolicies(next) || joinedStale.size > 0;
    if (namespacesWatched) this.awaitNamespaces(next);
    this.rereadExpired(next, new Set([...expired, ...this.expiredAtLeft(next)]));
    const events = eventsFor(this.held, next, this.forms.heldClaimants(next));
    const stale = this.staleNumbers(next);
    const batch: MirrorBatch = {
      events,
      stale: new Set(stale.keys()),
      commit: () => {
        this.settle(batch);
        this.commit(next);
      },
      rollback: (vetoed = false) => {
        this.settle(batch);
        if (vetoed && stale.size > 0 && (this.units(next) === 1 || joined)) this.rollbackVetoed(next, stale, joinedStale);
        else if (vetoed && stale.size > 0) this.halve(next);
        else this.rollback(next, joined, joinedStale);
        // The last of a split batch refused alone: the rest may go on (`releaseSplit`).
        this.releaseSplit();
      },
    };
    if (events.length > 0) this.open = batch;
    return batch;
  }

  /**
   * A namespace whose relabel was refused (`relabelling`) and is back to the labels the engine holds needs no commit
   * to end it (finding 2520): changed back before its resend, its pods were otherwise held fail-closed for good.
   */
  private endRevertedRelabels(): void {
    for (const key of this.relabelling) if (this.dirty.has(key) && this.wanted(key)?.sig === this.held.get(key)?.sig) this.endRelabel(key);
  }

  /** Whether `key` is an EndpointSlice of the API server, wanted or held. */
  private isApiServer(key: string): boolean {
    return (this.states.get(key)?.desired ?? this.held.get(key))?.kind === 'ApiServer';
  }

  /**
   * How many objects `next` holds for the halving, the API server's slices counted as one: they make one event
   * (`apiServerEvent`), and split apart an address moved from one slice to another was world between the parts, which
   * neither input reads (finding 3023 = 3361; they have no narrowing form to hold).
   */
  private units(next: ReadonlyMap<string, Held | undefined>): number {
    let slices = 0;
    for (const key of next.keys()) if (this.isApiServer(key)) slices++;
    return next.size - Math.max(0, slices - 1);
  }

  /**
   * A batch with an API server slice takes every other one waiting in `dirty`, whatever the limit (`units`), and in
   * `refused` (finding 3672, as 743 for policies: a slice refused at every form, left behind, made an address it takes
   * world when another slice let it go).
   */
  private joinApiServer(next: Map<string, Held | undefined>): void {
    if (![...next.keys()].some((key) => this.isApiServer(key))) return;
    for (const key of [...this.dirty, ...this.refused]) {
      if (!this.isApiServer(key) || next.has(key)) continue;
      this.dirty.delete(key);
      this.refused.delete(key);
      const want = this.wanted(key, next);
      if (want?.sig !== this.held.get(key)?.sig) next.set(key, want);
      else this.lagging.delete(key);
    }
  }

  /** Settles the open batch; an empty batch needs no settling; a batch settled before throws. */
  private settle(batch: MirrorBatch): void {
    if (batch.events.length === 0) return;
    if (this.open !== batch) throw new Error('ClusterMirror: this batch was already committed or rolled back');
    this.open = undefined;
  }

  /**
   * A pod whose namespace the engine does not hold (and this batch does not bring) is no endpoint
   * yet: its identity would lack the namespace's labels, so a deny or a `NotIn` selector on them
   * would miss it. Cilium refuses such an endpoint: fetchK8sMetadataForEndpoint
   * (daemon/cmd/endpoint.go) reads the namespace from the watcher's store (GetCachedNamespace,
   * pkg/k8s/watchers/namespace.go) and fails with NotFound. The pod is sent when its namespace
   * commits (`commit`).
   */
  private awaitNamespaces(next: Map<string, Held | undefined>): void {
    for (const [key, want] of next) this.awaitNamespace(next, key, want);
  }

  /** `awaitNamespaces` for one object of `next`: true when it is a pod that waits. */
  private awaitNamespace(next: Map<string, Held | undefined>, key: string, want: Held | undefined): boolean {
    if (want?.kind !== 'Pod') return false;
    const nsKey = namespaceKey(want.pod.namespace);
    if (next.has(nsKey) ? next.get(nsKey) !== undefined : this.held.has(nsKey)) return false;
    this.debug('pod waits for its namespace', { key, namespace: want.pod.namespace });
    if (this.held.has(key)) next.set(key, undefined);
    else next.delete(key);
    return true;
  }

  /**
   * The expired pods at the addresses a pod the engine holds leaves in `next` (deleted, moved, waiting for its
   * namespace, or dropped with its namespace), taken out of `dirty`: read in this batch (`rereadExpired`), so the take-back
   * commits with the leave (finding 3200: apart, a halving's limit committed the leave first and the address was world).
   */
  private expiredAtLeft(next: ReadonlyMap<string, Held | undefined>): string[] {
    if (!this.states.hasExpired) return [];
    const keys = [...this.states.expiredAmong(leftIps(this.held, next))];
    for (const key of keys) this.dirty.delete(key);
    return keys;
  }

  private isExpired(key: string): boolean {
    const h = this.states.get(key)?.desired;
    return h?.kind === 'Pod' && h.expired === true;
  }

  /**
   * The expired pods this flush read, read again against the engine as `next` leaves it (`HeldForms.expiredAtFree`,
   * finding 3042), lower keys first (of two at one address the lower key holds it, and the higher one reads what it
   * holds).
   */
  private rereadExpired(next: Map<string, Held | undefined>, expired: ReadonlySet<string>): void {
    for (const key of [...expired].sort()) {
      if (!this.isExpired(key)) continue;
      const want = this.wanted(key, next);
      if (this.namespacesWatched && this.awaitNamespace(next, key, want)) continue;
      if (want?.sig !== this.held.get(key)?.sig) next.set(key, want);
      else next.delete(key);
    }
  }

  /**
   * The numbers whose CiliumIdentity the engine holds and that narrow outside `next` (`MirrorBatch.stale`), with their
   * keys: an identity waiting in `dirty` (left by the halving's limit) or in `refused` (refused alone) whose wanted
   * meaning is a stand-in or nothing. Numbers the engine does not hold have no previous reading and are left out, and
   * so are readable changes (a stand-in turning readable widens; Cilium never gives a number other labels), as in the
   * agent's `staleVetoOf` for the etcd source.
   */
  private staleNumbers(next: ReadonlyMap<string, Held | undefined>): Map<number, string> {
    const stale = new Map<number, string>();
    for (const key of [...this.dirty, ...this.refused]) {
      const id = next.has(key) ? undefined : this.narrowing(key);
      if (id !== undefined) stale.set(id, key);
    }
    return stale;
  }

  /** The number of `key` if it is a CiliumIdentity the engine holds whose wanted meaning is a stand-in or nothing. */
  private narrowing(key: string): number | undefined {
    if (!key.startsWith('CiliumIdentity/')) return undefined;
    const had = this.held.get(key);
    if (had?.kind !== 'Identity') return undefined;
    const want = this.wanted(key);
    if (want?.sig === had.sig) return undefined;
    return want === undefined || (want.kind === 'Identity' && want.unreadable === true) ? had.id : undefined;
  }

  /**
   * The identities pod `key` is to be sent with (`rejoins`): those of them that still narrow, if its own version is
   * wanted and differs from what the engine holds; otherwise undefined (and forgotten, unless it is held fail-closed).
   */
  private rejoinOf(key: string): string[] | undefined {
    const ids = this.rejoins.get(key);
    if (ids === undefined || this.forms.has(key)) return undefined;
    const waiting = [...ids].filter((k) => this.narrowing(k) !== undefined);
    if (waiting.length > 0 && this.wanted(key)?.sig !== this.held.get(key)?.sig) return waiting;
    this.rejoins.delete(key);
    return undefined;
  }

  /**
   * The identities a vetoed batch waited for (`joinStale`) join this batch: removed from `dirty` and `refused`, and
   * sent whatever the limit. The keys that joined (the batch then commits or waits as a whole, like
   * `joinRefusedPolicies`).
   */
  private joinStaleIdentities(next: Map<string, Held | undefined>): Set<string> {
    const joined = new Set<string>();
    for (const key of this.joinStale) {
      this.dirty.delete(key);
      this.refused.delete(key);
      const want = this.wanted(key);
      if (next.has(key)) continue;
      // Back to what the engine holds: taken out of `dirty` here, so no flush clears it from `lagging` (finding 2441).
      if (want?.sig === this.held.get(key)?.sig) {
        this.lagging.delete(key);
        continue;
      }
      this.debug('a batch that would admit a number whose identity narrows waits for it: retried together', { key });
      next.set(key, want);
      joined.add(key);
    }
    this.joinStale.clear();
    return joined;
  }

  /**
   * One object (or a joined batch) refused for admitting a number of `stale` (finding 2373): it goes back to the head
   * of `dirty`, alone in the next flush (finding 2440: what arrived meanwhile does not wait with it), and those
   * identities join that batch (`joinStaleIdentities`), which commits with them or waits as a whole in `refused`. The
   * identities joined to this batch stay joined (`joinedStale`: the limit would leave them in `dirty`, and two waiting
   * identities would take turns being vetoed), so each veto joins more identities and a batch is vetoed at most once
   * per waiting identity.
   */
  private rollbackVetoed(next: ReadonlyMap<string, Held | undefined>, stale: ReadonlyMap<number, string>, joinedStale: ReadonlySet<string>): void {
    for (const key of [...stale.values(), ...joinedStale]) this.joinStale.add(key);
    const rest = [...this.dirty];
    this.dirty.clear();
    for (const key of [...next.keys()].filter((k) => !joinedStale.has(k)).concat(rest)) this.dirty.add(key);
    this.limit = Math.min(this.limit, Math.max(1, next.size - joinedStale.size));
  }

  /**
   * A policy delete never commits apart from a policy upsert the engine refused (attack finding
   * 743): the refused object may be the deleted one's replacement (a relist listing `deny-b`
   * instead of `deny-a`), and the delete alone would allow what both the old and the listed state
   * deny. So the refused policies join a batch that deletes a policy, and if that batch is refused
   * too, all of it waits (`rollback`), retried after the next commit. The delete may also be what
   * the refused object conflicted with: then the joined batch commits. (Cilium keeps an endpoint's
   * last realized policy while its regeneration fails.) True when refused policies joined.
   */
  private joinRefusedPolicies(next: Map<string, Held | undefined>): boolean {
    let deletesPolicy = false;
    for (const [key, want] of next) if (want === undefined && this.held.get(key)?.kind === 'Policy') deletesPolicy = true;
    if (!deletesPolicy) return false;
    let joined = false;
    for (const key of this.refused) {
      const want = this.wanted(key);
      if (want?.kind !== 'Policy' || next.has(key) || want.sig === this.held.get(key)?.sig) continue;
      this.debug('a policy delete waits for a refused policy: retried together', { key });
      next.set(key, want);
      this.refused.delete(key);
      joined = true;
    }
    return joined;
  }

  private rollback(next: Map<string, Held | undefined>, joined: boolean, joinedStale: ReadonlySet<string>): void {
    const [only] = next;
    if (next.size === 1 && !joined && only !== undefined && (this.takeFailClosed(only[0], only[1]) || this.holdRelabelled(only[0], only[1]))) return;
    if (this.denySideBesideStale(next, joinedStale)) return;
    if (!joined && next.size > 1 && this.units(next) === 1 && this.takeSlicesFailClosed(next)) return;
    if (this.units(next) === 1 || joined) {
      for (const key of next.keys()) this.refused.add(key), this.lagging.add(key);
      return;
    }
    this.halve(next);
  }

  /**
   * A batch of the API server's slices alone refused, one object for the halving (`units`): each slice is held
   * fail-closed as one refused alone is (`HeldForms.takeSlicesFailClosed`, finding 3670), first in the next flush;
   * those with no new held form wait in `refused`. False when none has one.
   */
  private takeSlicesFailClosed(next: ReadonlyMap<string, Held | undefined>): boolean {
    const taken = this.forms.takeSlicesFailClosed(next);
    if (taken.length === 0) return false;
    for (const key of taken) this.first(key);
    for (const key of next.keys()) if (!taken.includes(key)) this.refused.add(key), this.lagging.add(key);
    return true;
  }

  /**
   * One policy upsert vetoed alone and refused with the identities it was joined to (finding 2521): held at its deny
   * side as if refused alone (`takeFailClosed`, finding 2433), the identities waiting in `refused`. Waiting with them
   * kept its last version, whose allows the update and every later input deny, while the rest committed. A pod so is
   * held fail-closed (finding 2524: at its old identity an address both inputs move to a denied number kept its
   * allows), and retried with those identities joined (`rejoins`). A policy's deny
   * side vetoed and refused so in turn (it removes a deny of the version in force, which may admit a waiting number):
   * held at a deny side that keeps the denies and the isolation of the version in force (findings 2523, 2670; for a
   * ClusterNetworkPolicy both versions' Deny and Pass rules as Denies at the higher precedence for the old subject,
   * 2671), which removes none; vetoed and refused so
   * too, at the deny-all side of both (finding 2672), whose wildcard denies upsert no allow. Refused again: it waits as
   * before.
   */
  private denySideBesideStale(next: ReadonlyMap<string, Held | undefined>, joinedStale: ReadonlySet<string>): boolean {
    if (joinedStale.size === 0 || next.size !== joinedStale.size + 1) return false;
    const [key, want] = [...next].find(([k]) => !joinedStale.has(k)) as [string, Held | undefined];
    if (want?.kind === 'Pod' || (want?.kind === 'Policy' && want.denySide !== true)) {
      if (!this.takeFailClosed(key, want)) return false;
      if (want.kind === 'Pod') this.rejoins.set(key, new Set(joinedStale));
    } else {
      // Vetoed even so (an allow it drops unmasks a plain allow under a redirect: finding 2672): its deny-all side.
      if (want?.kind !== 'Policy' || !this.forms.keepDenies(key)) return false;
      this.first(key);
    }
    for (const k of joinedStale) this.refused.add(k), this.lagging.add(k);
    return true;
  }

  /** `key` first in the next flush. */
  private first(key: string): void {
    const rest = [...this.dirty];
    this.dirty.clear();
    for (const k of [key, ...rest]) this.dirty.add(k);
  }

  /**
   * A refused batch of several objects is retried in halves: its objects go back to the head of `dirty` and the next
   * flushes take at most half of them each (`limit`). A vetoed batch too (finding 2440): each part is vetoed on its
   * own, so a part that opens no waiting number commits; held first like a refused one (finding 3032 = 3360), or a
   * part that opens something else committed alone could allow what the inputs before and after the batch deny.
   */
  private halve(next: ReadonlyMap<string, Held | undefined>): void {
    // Retried in the batch's order (upserts before deletes, finding 743).
    // Within a split batch, those at their narrowing forms before those with none (`holdStep`).
    const formless = (key: string): number => (this.forms.isFormless(key) ? 10 : 0);
    const order = (key: string, want: Held | undefined): number => formless(key) + rank(want ?? (this.held.get(key) as Held), want !== undefined);
    const all = [...next].sort(([ka, a], [kb, b]) => order(ka, a) - order(kb, b)).map(([key]) => key);
    // Objects new to a batch of a split step wait behind it (finding 3673): held with it, one new object per round kept
    // the step from ever releasing its own forms (`releaseSplit`), its objects fail-closed for good.
    const isNew = (k: string): boolean => this.forms.isNew(k);
    const later = all.some((k) => !isNew(k)) ? all.filter(isNew) : [];
    const waiting = new Set(later);
    const sorted = all.filter((k) => !waiting.has(k));
    const keys = this.forms.holdStep(sorted);
    const rest = [...this.dirty];
    this.dirty.clear();
    for (const key of [...keys, ...later, ...rest]) this.dirty.add(key);
    // A batch held just now is sent whole first (its narrowing forms may fit); else in halves.
    this.limit = keys === sorted ? Math.max(1, Math.ceil((this.units(next) - later.length) / 2)) : keys.length;
  }

  /**
   * Once every object of a split batch has committed at its narrowing form or was refused so (none waits in `dirty`),
   * their own forms are sent: each part then allows no more than the input after the batch. Those refused (still at
   * the version before the batch) go first, alone: the others are then at their narrowing forms (3024).
   */
  private releaseSplit(): void {
    const split = this.forms.splitKeys;
    if (split.size === 0) return;
    for (const key of split) if (this.dirty.has(key)) return;
    const keys = [...split].sort((a, b) => Number(this.refused.has(b)) - Number(this.refused.has(a)));
    if (this.refused.has(keys[0]!)) this.limit = 1;
    const rest = [...this.dirty];
    this.dirty.clear();
    this.forms.release();
    for (const key of keys) {
      this.refused.delete(key);
      this.dirty.add(key);
    }
    for (const key of rest) this.dirty.add(key);
  }

  private commit(next: Map<string, Held | undefined>): void {
    // Past the refused object: larger steps again.
    if (this.limit !== Infinity) this.limit *= 2;
    this.forms.committed(next);
    this.releaseSplit();
    // Once the backlog is through, what the engine refused alone is tried again (what it conflicted with may have gone).
    if (next.size > 0 && this.dirty.size === 0) {
      // A pod to be sent with the identities it waits for goes before them (`rejoins`): they join its batch.
      for (const key of [...this.refused].sort((a, b) => Number(this.rejoins.has(b)) - Number(this.rejoins.has(a)))) this.dirty.add(key);
      this.refused.clear();
      // A pod held fail-closed is read again, unless this commit was only fail-closed versions (refused just now).
      for (const key of this.forms.readAgain(next)) this.lagging.add(key), this.dirty.add(key);
    }
    if ([...next.keys()].some((key) => !key.startsWith('Pod/'))) this.rejoins.clear();
    for (const [key, want] of next) {
      this.rejoins.delete(key);
      this.lagging.delete(key);
      this.claimsChanged(this.held.get(key), want, key);
      if (want === undefined) this.held.delete(key);
      else this.held.set(key, want);
      this.forms.engineHolds(key, want);
      if (want === undefined && key.startsWith('Namespace/')) this.dropNamespace(key.slice('Namespace//'.length));
      if (want !== undefined && key.startsWith('Namespace/')) this.podsWaitingIn(key.slice('Namespace//'.length));
    }
    for (const key of this.relabelling) if (next.has(key)) this.endRelabel(key);
    for (const key of this.forms.releasedKeys) if (this.dirty.has(key)) this.lagging.add(key);
    // Unreadable groups kept for a policy that read groups (`wanted`): removed once none does.
    const kept = [...this.unreadableGroups].filter((key) => this.held.has(key));
    if (kept.length > 0 && !this.heldReadsGroups()) for (const key of kept) this.dirty.add(key);
  }

  /**
   * A single object the engine refused alone takes its next held form (`HeldForms.takeFailClosed`), first in the next
   * flush: a policy delete the halving left behind must not commit before it (finding 743). False when it has none.
   */
  private takeFailClosed(key: string, wanted: Held | undefined): boolean {
    if (!this.forms.takeFailClosed(key, wanted)) return false;
    this.first(key);
    return true;
  }

  /**
   * A namespace upsert the engine refused alone, with pods in the engine (finding 2430): sent again at the next flush
   * with its pods fail-closed (`relabelling`), the pods first (with a halving limit, each step only narrows). Refused
   * again so (or with no pod): false, it waits in `refused` like every other object, its pods staying fail-closed.
   */
  private holdRelabelled(key: string, want: Held | undefined): boolean {
    if (want?.kind !== 'Namespace' || this.relabelling.has(key)) return false;
    const pods = [...this.held].filter(([, h]) => h.kind === 'Pod' && h.pod.namespace === want.name).map(([k]) => k);
    if (pods.length === 0) return false;
    this.relabelling.add(key);
    this.lagging.add(key);
    const rest = [...this.dirty];
    this.dirty.clear();
    for (const k of [...pods, key, ...rest]) this.dirty.add(k);
    this.warn('namespace refused by the engine: its pods are held fail-closed (their addresses denied by every local map, their endpoints denying both ways) while it is relabelled, then read again under its new labels', { key, pods: pods.length });
    return true;
  }

  /** The relabelled namespace committed: its pods are read again at the next flush under its new labels. */
  private endRelabel(key: string): void {
    this.relabelling.delete(key);
    const ns = key.slice('Namespace//'.length);
    for (const k of this.states.keysIn(ns)) {
      const h = this.held.get(k);
      if (h?.kind !== 'Pod' || this.forms.has(k) || this.wanted(k)?.sig === h.sig) continue;
      this.lagging.add(k);
      this.dirty.add(k);
    }
  }

  /** The namespace is held now: its pods that waited for it (`awaitNamespaces`) are sent at the next flush. */
  private podsWaitingIn(ns: string): void {
    for (const key of this.states.keysIn(ns)) {
      if (this.states.get(key)?.desired?.kind === 'Pod' && !this.held.has(key)) this.dirty.add(key);
    }
  }

  /**
   * A pod's addresses in the engine changed: the expired pods at them are read again (`HeldForms.expiredAtFree` gives
   * an address up only to a claimant the engine holds, finding 3042).
   */
  private claimsChanged(had: Held | undefined, has: Held | undefined, key: string): void {
    if (!this.states.hasExpired) return;
    const ips = [had, has].flatMap((h) => (h?.kind === 'Pod' ? podIps(h.pod).map((ip) => ip.text) : []));
    if (ips.length > 0) this.states.rereadExpiredAt(ips, key);
  }

  /** The engine deleted everything in the namespace with it: what is still wanted is re-sent at the next flush. */
  private dropNamespace(ns: string): void {
    for (const [key, h] of this.held) {
      if (namespaceOfHeld(h) !== ns) continue;
      this.claimsChanged(h, undefined, key);
      this.held.delete(key);
      this.forms.engineHolds(key, undefined);
      this.dirty.add(key);
    }
  }
}
