import { ANY_IDENTITY, IdentityId, RESERVED_IDENTITIES, UNALLOCATED_POD_IDENTITY } from '../model/identity.js';
import { wildcardKey } from '../model/policy-map.js';
import { Direction, DIRECTIONS, Policy, policyRefKey, type RuleOrigin } from '../model/rules.js';
import type { ContainerPort } from '../model/ports.js';
import type { EngineContext } from './context.js';
import { AttachedClause, AttachedEnforcement, AttachedUnit, NO_CIDR_REFS, NO_PEERS, NO_TARGETS, PeerChangeListener, UnitShare } from './attached-units.js';
import { DEFAULT_ALLOW, LOCALHOST_ALLOW, UNALLOCATED_DENY, UNREADABLE_DENY } from './contribution.js';
import type { IdentityTable } from './identities.js';
import type { NamedPortListener } from './named-ports.js';
import { compilePolicy, EnforcementUnit, NamedPortResolver, policySubjects, portKeys, RuleUnit, shareKey } from './rule-units.js';
import type { CachedSelector, IdentitySelector, SelectorCache } from './selector-cache.js';
import { Attached, Compiled, GroupListener, itemCount, itemOf, PolicyRecord, SubjectGroup } from './subject-groups.js';
import type { LocalIdentity, SharedMapState, SharedMaps } from './shared-maps.js';
import type { PolicyFacts } from './policy-facts.js';

/** Cilium's `localHostKey`: ingress from the local host (reserved identity 1), every protocol and port. */
const LOCALHOST_KEY = wildcardKey(RESERVED_IDENTITIES.host, 'ingress');
const NO_IDS: readonly IdentityId[] = [];
const DIRECTION_BIT: Readonly<Record<Direction, number>> = { ingress: 1, egress: 2 };

/** Whether map state `m` holds the denies of `deniedEverywhere` in direction `d` (`SharedMapState.deniesPlaced`). */
function deniesPlacedIn(m: SharedMapState, d: Direction): boolean {
  return (m.deniesPlaced & DIRECTION_BIT[d]) !== 0;
}

/**
 * The per-identity policy: stored policies compiled into rule units and enforcement units, each
 * registered in the selector caches, and the contributions they make to the map states of the
 * local identities their subjects select.
 *
 * Contract: consumes policy upserts/deletes, selector notifications (subject and peer caches) and
 * named-port changes; emits contributions (add/remove) to map states and marks them dirty. Never
 * reads or writes kernel-layer entries: that is the map state's `settle()` at commit.
 */
export class PolicyResolver implements NamedPortListener, GroupListener, PeerChangeListener {
  /** Subject groups by selector key. */
  private readonly groups = new Map<string, SubjectGroup>();
  /** The next item number (`PolicyRecord.seqOf`). */
  private nextSeq = 0;
  /** Named-port-on-egress shares by port name: a peer's named ports changing touches only these. */
  private readonly namedEgressUnits = new Map<string, Set<UnitShare>>();
  /** Shares of equal units by `shareKey`. */
  private readonly shares = new Map<string, UnitShare>();
  private nextUnit = 1;
  /** The number of the last pass over a local identity's units that must see each share once. */
  private pass = 0;
  /** Contributions taken out while named ports change, put back after. */
  private namedPortPairs: Map<UnitShare, Set<IdentityId>> | null = null;
  /** The shares whose named L7 filters `namedPortsChanging` took out, put back by `namedPortsChanged`. */
  private namedL7Shares: ReadonlySet<UnitShare> = NO_SHARES;
  /**
   * Policy keys by namespace, built at the first namespace deletion (as ModelStore's): until then no
   * upsert pays for a Set entry nobody reads; after it a transaction deleting k namespaces reads k
   * sets, not k times every stored policy (finding 1926).
   */
  private byNamespace: Map<string, Set<string>> | null = null;
  /** `allow-localhost: always`: every map state gets the local host's ingress allow (`LOCALHOST_ALLOW`). Set once, before any event. */
  allowLocalhost = true;
  /**
   * External identities distill cannot read, and `UNALLOCATED_POD_IDENTITY` while some pod holds it
   * (`setDeniedEverywhere`): every map state denies them.
   */
  private readonly deniedEverywhere = new Set<IdentityId>();

  constructor(
    private readonly ctx: EngineContext,
    /** The stored policies, shared with the committed model (policy-facts.ts). */
    private readonly policies: PolicyFacts<PolicyRecord>,
    private readonly identities: IdentityTable,
    private readonly maps: SharedMaps,
    private readonly subjectCache: SelectorCache,
    private readonly peerCache: SelectorCache,
  ) {}

  // ---------------------------------------------------------------- policies

  /**
   * `key` is `policyRefKey(policy.ref)` (flat); not interned: unique per policy, and interning costs ~7x more.
   * A NetworkPolicy-tier policy is compiled only once one of its subject groups is active: until
   * then it is one record and one entry per distinct subject (compiling cannot fail: validation did).
   * `given` is the policy as its event gave it (`policy` is it without API server stand-ins once their addresses are known).
   */
  upsertPolicy(policy: Policy, key: string = policyRefKey(policy.ref), given: Policy = policy): void {
    if (this.ctx.faultHook) this.ctx.fault('attachUnit');
    const old = this.policies.get(key);
    const oldPolicy = old?.policy;
    const oldGiven = old?.given;
    if (old) this.policies.setGiven(key, old, given);
    const rec = old ? this.replace(old, policy) : this.fresh(policy, given);
    if (!old) {
      this.policies.add(key, rec);
      if (this.byNamespace !== null) this.indexNamespace(rec.policy, key, true);
    }
    const subjects = this.subjectsOf(rec);
    let active = false;
    let g: SubjectGroup | undefined;
    for (let k = 0; k < subjects.length; k++) {
      g = this.groupOf(subjects[k] as IdentitySelector);
      g.add(rec);
      if (g.active !== null) active = true;
    }
    if (active) {
      // In item order, as they were registered: the order their groups notify them in.
      const c = this.compiled(rec);
      const attached = rec.attached as (Attached | null)[];
      const only = subjects.length === 1 ? g : undefined;
      // The subject cache holds local identities only, which nothing here adds or removes: one list
      // of a group's selection serves every item it notifies (a policy's unit and enforcement).
      let listed: SubjectGroup | undefined;
      let selected: readonly IdentityId[] = NO_IDS;
      for (let i = 0; i < attached.length; i++) {
        const gi = only ?? (this.groups.get(itemOf(c, i).subject.key) as SubjectGroup);
        if (gi.active === null || attached[i] !== null) continue;
        // Notified here, not through a helper: one call fewer per item of every adopted policy.
        const a = this.attach(rec, i, gi);
        if (gi.cs.selected.size === 0) continue;
        if (listed !== gi) {
          listed = gi;
          selected = [...gi.cs.selected];
        }
        if (a instanceof AttachedUnit) this.onSubjectChange(a, selected, NO_IDS);
        else this.onEnforcementChange(a, selected, NO_IDS);
      }
    }
    if (this.ctx.undoLog !== null) this.undoUpsert(key, oldPolicy, oldGiven);
  }

  /** A new policy's record: a ClusterNetworkPolicy's compiled now (it reads the node table as it is). */
  private fresh(policy: Policy, given: Policy): PolicyRecord {
    const compiled = policy.tiered ? compilePolicy(policy, this.ctx.nodeCover) : null;
    const seq = this.nextSeq;
    // Numbers for every item it may compile to (at most two units per rule).
    this.nextSeq += compiled ? itemCount(compiled) : 2 * policy.rules.length + policy.enforcements.length;
    const rec = new PolicyRecord(policy, given, compiled, seq);
    if (compiled) rec.attached = new Array<Attached | null>(itemCount(compiled)).fill(null);
    return rec;
  }

  /** The record's compiled items, compiling a NetworkPolicy-tier policy on first use (pure: it reads nothing but the policy). */
  private compiled(rec: PolicyRecord): Compiled {
    if (rec.compiled === null) {
      rec.compiled = compilePolicy(rec.policy, this.ctx.nodeCover);
      rec.attached = new Array<Attached | null>(itemCount(rec.compiled)).fill(null);
    }
    return rec.compiled;
  }

  /** The distinct subjects of the record's items, in item order. */
  private subjectsOf(rec: PolicyRecord): readonly IdentitySelector[] {
    const c = rec.compiled;
    if (c === null || !rec.policy.tiered) return policySubjects(rec.policy);
    const out: IdentitySelector[] = [];
    for (let i = 0; i < itemCount(c); i++) {
      const sel = itemOf(c, i).subject;
      if (!out.some((x) => x.key === sel.key)) out.push(sel);
    }
    return out;
  }

  /**
   * Updates a policy's record. Items of equal uid keep their number and attached state (an
   * unchanged rule keeps its work); the others are detached, and the record leaves the groups it
   * keeps no item in (a group left empty goes) before the new items join theirs.
   */
  private replace(old: PolicyRecord, policy: Policy): PolicyRecord {
    const was = this.compiled(old);
    const now = compilePolicy(policy, this.ctx.nodeCover);
    const oldAt = new Map<string, number>();
    for (let j = 0; j < itemCount(was); j++) oldAt.set(`${j < was.units.length ? 'u' : 'e'}${itemOf(was, j).uid}`, j);
    const seqs = new Array<number>(itemCount(now));
    const attached = new Array<Attached | null>(itemCount(now)).fill(null);
    const kept = new Set<number>();
    const units: RuleUnit[] = [];
    const enforcements: EnforcementUnit[] = [];
    for (let i = 0; i < itemCount(now); i++) {
      const isUnit = i < now.units.length;
      const j = oldAt.get(`${isUnit ? 'u' : 'e'}${itemOf(now, i).uid}`);
      if (j !== undefined) kept.add(j);
      // A kept item is the old one (its attached state holds it).
      const item = j === undefined ? itemOf(now, i) : itemOf(was, j);
      if (isUnit) units.push(item as RuleUnit);
      else enforcements.push(item as EnforcementUnit);
      seqs[i] = j === undefined ? this.nextSeq++ : old.seqOf(j);
      attached[i] = j === undefined ? null : ((old.attached as (Attached | null)[])[j] as Attached | null);
    }
    const keptSubjects = new Set<string>();
    for (let j = 0; j < itemCount(was); j++) {
      if (kept.has(j)) keptSubjects.add(itemOf(was, j).subject.key);
      else this.detach(old, j);
    }
    for (const sel of this.subjectsOf(old)) if (!keptSubjects.has(sel.key)) this.leaveGroup(sel.key, old);
    old.policy = policy;
    old.compiled = { units, enforcements };
    old.seq = seqs;
    old.attached = attached;
    return old;
  }

  /** Apart: a closure in `upsertPolicy` would allocate its context on every call, undo log or not (a cold start has none). */
  private undoUpsert(key: string, old: Policy | undefined, oldGiven: Policy | undefined): void {
    this.ctx.onUndo(() => (old ? this.upsertPolicy(old, key, oldGiven) : this.deletePolicy(key)));
  }

  deletePolicy(key: string): void {
    const rec = this.policies.get(key);
    if (!rec) throw new Error(`internal: policy ${key} vanished`);
    if (rec.compiled !== null) for (let i = 0; i < itemCount(rec.compiled); i++) this.detach(rec, i);
    for (const sel of this.subjectsOf(rec)) this.leaveGroup(sel.key, rec);
    this.policies.delete(key);
    if (this.byNamespace !== null) this.indexNamespace(rec.policy, key, false);
    const { policy, given } = rec;
    this.ctx.onUndo(() => this.upsertPolicy(policy, key, given));
  }

  /** The keys of the namespace's policies (a namespace's deletion deletes each as a `deletePolicy` would). */
  policiesIn(namespace: string): string[] {
    if (this.byNamespace === null) {
      this.byNamespace = new Map();
      for (const [k, rec] of this.policies.entries()) this.indexNamespace(rec.policy, k, true);
    }
    return [...(this.byNamespace.get(namespace) ?? [])];
  }

  private indexNamespace(policy: Policy, key: string, add: boolean): void {
    const ns = policy.ref.namespace;
    const byNs = this.byNamespace as Map<string, Set<string>>;
    if (ns === undefined) return;
    let keys = byNs.get(ns);
    if (add) {
      if (keys === undefined) byNs.set(ns, (keys = new Set()));
      keys.add(key);
    } else if (keys !== undefined) {
      keys.delete(key);
      if (keys.size === 0) byNs.delete(ns);
    }
  }

  // ---------------------------------------------------------------- map states

  /** Computes a new map state from its identity's policy. */
  populate(m: SharedMapState): void {
    this.ctx.dirtyMaps.add(m);
    if (m.local.pending) return;
    for (const d of DIRECTIONS) if (m.local.enforcing[d].size === 0) m.state.add(wildcardKey(ANY_IDENTITY, d), DEFAULT_ALLOW);
    if (this.allowLocalhost) m.state.add(LOCALHOST_KEY, LOCALHOST_ALLOW);
    const pass = ++this.pass;
    for (const a of m.local.units) {
      const share = a.share as UnitShare;
      if (share.visited === pass) continue;
      share.visited = pass;
      this.contributeTargets(share, m, +1);
    }
  }

  /** The numbers every map state denies now (`setDeniedEverywhere`), ascending: a few, read at a scrape or a flush. */
  deniedEverywhereIds(): IdentityId[] {
    return [...this.deniedEverywhere].sort((a, b) => a - b);
  }

  /** Whether every map state denies `id` now (`setDeniedEverywhere`). */
  denies(id: IdentityId): boolean {
    return this.deniedEverywhere.has(id);
  }

  /**
   * An external identity became (or stopped being) one distill cannot read (finding 1936), or the
   * first pod took (the last pod left) `UNALLOCATED_POD_IDENTITY` (finding 2002): every local map
   * state but the pending ones (which are empty, default deny) denies it in both directions. No
   * selector names such a number, so only an identity-0 key that is no deny can admit it (the
   * datapath's two lookups, `datapathLookup`): its deny entry is held only in the directions where the
   * map has one (`placeDenies`, finding 2132); elsewhere it is dropped without an entry.
   */
  setDeniedEverywhere(id: IdentityId, denied: boolean): void {
    if (denied) this.deniedEverywhere.add(id);
    else this.deniedEverywhere.delete(id);
    for (const local of this.maps.locals.values()) {
      if (local.pending) continue;
      for (const m of local.maps.values()) {
        for (const d of DIRECTIONS) if (deniesPlacedIn(m, d)) this.denyEntry(m, id, d, denied ? 1 : -1);
      }
    }
    this.ctx.onUndo(() => this.setDeniedEverywhere(id, !denied));
  }

  /**
   * At commit, before settling: each changed map state holds the denies of `deniedEverywhere` in
   * exactly the directions where its raw layer has an identity-0 key that is no deny
   * (`MapState.admitsEvery`), a superset of where its kernel entries admit every number. A deny is an
   * identity key of its own, so placing it never changes `admitsEvery`: one pass suffices. Every
   * map state whose content changed is in `dirtyMaps`, so the placement follows identity 0's
   * entries as they come and go; a new map state starts with none placed and is dirty.
   */
  placeDenies(): void {
    if (this.ctx.dirtyMaps.size === 0) return;
    for (const m of this.ctx.dirtyMaps) {
      if (m.local.pending) continue;
      for (const d of DIRECTIONS) {
        const want = m.state.admitsEvery(d);
        if (want !== deniesPlacedIn(m, d)) this.placeIn(m, d, want);
      }
    }
  }

  private placeIn(m: SharedMapState, d: Direction, placed: boolean): void {
    m.deniesPlaced ^= DIRECTION_BIT[d];
    if (this.deniedEverywhere.size > 0) for (const id of this.deniedEverywhere) this.denyEntry(m, id, d, placed ? 1 : -1);
    this.ctx.onUndo(() => this.placeIn(m, d, !placed));
  }

  private denyEntry(m: SharedMapState, id: IdentityId, d: Direction, sign: 1 | -1): void {
    this.ctx.dirtyMaps.add(m);
    const deny = id === UNALLOCATED_POD_IDENTITY ? UNALLOCATED_DENY : UNREADABLE_DENY;
    if (sign > 0) m.state.add(wildcardKey(id, d), deny);
    else m.state.remove(wildcardKey(id, d), deny);
  }

  /** Adds (or removes) what share `s` says about `peer` to map state `m`. */
  private contribute(s: UnitShare, peer: IdentityId, m: SharedMapState, sign: 1 | -1): void {
    if (this.ctx.faultHook) this.ctx.fault('contribute');
    const direction = s.unit.direction;
    // Baseline applies only where no NetworkPolicy-tier policy isolates the identity in this direction.
    if (s.unit.baseline && m.local.enforcing[direction].size > 0) return;
    this.ctx.dirtyMaps.add(m);
    const clauses = s.clauses;
    for (let i = 0; i < clauses.length; i++) {
      const c = clauses[i] as AttachedClause;
      m.state.change(peer, direction, c.keys ?? portKeys(c.l4, this.namedResolver(s.unit, peer, m)), c.contribution, sign);
    }
  }

  /** Where a named port of `unit` resolves: the subject's ports (ingress), the peer's (egress). */
  private namedResolver(unit: RuleUnit, peer: IdentityId, m: SharedMapState): NamedPortResolver {
    if (unit.peerNamedPorts) return this.identities.namedPorts.resolveNamedShared(peer);
    if (!unit.namedEgress) return m.resolveNamed;
    return unit.verdict === 'deny' ? this.identities.namedPorts.resolveNamedAnyPod : this.identities.namedPorts.resolveNamedEgress(peer);
  }

  /**
   * Every target of `s` (the any-peer key first) into or out of one map state, one `contribute`
   * per target: the cold start runs the code a peer change runs (a separate bulk routine left the
   * churn's rare peer changes to code that had never run).
   */
  private contributeTargets(s: UnitShare, m: SharedMapState, sign: 1 | -1): void {
    if (s.unit.anyPeer) this.contribute(s, ANY_IDENTITY, m, sign);
    for (const t of s.targets.keys()) this.contribute(s, t, m, sign);
    if (s.hasL7) this.countFilters(s, m, sign);
  }

  /**
   * The L7 clauses of `s` as filters of their proxy IDs (L7Tables `countFilters`): a numbered or range one at its first
   * port, a named one at the port its name resolves to, node-wide on egress, the map's own ports on ingress (Cilium's
   * `Endpoint.proxyID` → `GetNamedPort`).
   */
  private countFilters(s: UnitShare, m: SharedMapState, sign: 1 | -1): void {
    const unit = s.unit;
    if (unit.verdict !== 'allow' || unit.peerNamedPorts || unit.baseline) return;
    const resolve = unit.direction === 'egress' ? this.identities.namedPorts.resolveNamedNodeWide : m.resolveNamed;
    if (m.state.l7.countFilters(unit.direction, s.clauses, resolve, sign)) this.ctx.dirtyMaps.add(m);
  }

  /**
   * One peer into or out of every map state `s` contributes to. Invariant: `s` contributes to X's
   * map states iff X has adopted one of its units (`s.adopters`), not merely when their subject
   * selects X: while a share registers its peers, the CIDR identities it allocates notify it
   * before X has adopted a unit, and X's adoption then adds every target at once.
   */
  private contributePeer(s: UnitShare, peer: IdentityId, sign: 1 | -1): void {
    for (const local of s.adopters.keys()) for (const m of local.maps.values()) this.contribute(s, peer, m, sign);
  }

  // ---------------------------------------------------------------- named ports

  get resolvesNamedEgress(): boolean {
    return this.namedEgressUnits.size > 0;
  }

  namedPortsChanging(identity: IdentityId, own: ReadonlyMap<string, unknown>, ports: readonly ContainerPort[], clusterWide: ReadonlySet<string>): void {
    // Built on the first pair: most pod moves touch no named-port rule's target. A name seen twice
    // adds nothing new (the pairs are sets), so the pairs' order is that of the names' union.
    let pairs: Map<UnitShare, Set<IdentityId>> | null = null;
    for (const name of own.keys()) for (const s of this.namedEgressUnits.get(name) ?? []) if (s.targets.has(identity)) pairs = addPair(pairs, s, identity);
    for (const p of ports) {
      if (p.name === undefined) continue;
      for (const s of this.namedEgressUnits.get(p.name) ?? []) if (s.targets.has(identity)) pairs = addPair(pairs, s, identity);
    }
    for (const name of clusterWide) {
      for (const s of this.namedEgressUnits.get(name) ?? []) {
        if (s.unit.anyPeer) pairs = addPair(pairs, s, ANY_IDENTITY);
        for (const t of s.targets.keys()) pairs = addPair(pairs, s, t);
      }
    }
    for (const [s, ts] of pairs ?? []) for (const t of ts) this.contributePeer(s, t, -1);
    this.namedPortPairs = pairs;
    this.namedL7Shares = this.namedL7SharesOn(clusterWide);
    for (const s of this.namedL7Shares) for (const local of s.adopters.keys()) for (const m of local.maps.values()) this.countFilters(s, m, -1);
  }

  namedPortsChanged(): void {
    const pairs = this.namedPortPairs;
    this.namedPortPairs = null;
    for (const [s, ts] of pairs ?? []) for (const t of ts) this.contributePeer(s, t, +1);
    const shares = this.namedL7Shares;
    this.namedL7Shares = NO_SHARES;
    for (const s of shares) for (const local of s.adopters.keys()) for (const m of local.maps.values()) this.countFilters(s, m, +1);
  }

  /** The shares with L7 rules on a name whose node-wide ports change: their filters move (`countFilters`). */
  private namedL7SharesOn(names: ReadonlySet<string>): ReadonlySet<UnitShare> {
    let out: Set<UnitShare> | null = null;
    for (const name of names) for (const s of this.namedEgressUnits.get(name) ?? []) if (s.hasL7 && s.unit.namedEgress) (out ??= new Set()).add(s);
    return out ?? NO_SHARES;
  }

  // ---------------------------------------------------------------- subject groups

  /** The group of a subject, registered in the subject cache when new (active at once when it selects a local identity). */
  private groupOf(sel: IdentitySelector): SubjectGroup {
    let g = this.groups.get(sel.key);
    if (g === undefined) {
      g = new SubjectGroup(this, sel.key);
      this.groups.set(sel.key, g);
      g.cs = this.subjectCache.register(sel, g);
      if (g.cs.selected.size > 0) g.active = new Set();
    }
    return g;
  }

  /** The record leaves the group of `key` (if it is still in it); a group left empty goes. */
  private leaveGroup(key: string, rec: PolicyRecord): void {
    const g = this.groups.get(key);
    if (g === undefined || !g.delete(rec) || g.size > 0) return;
    this.subjectCache.unregister(g.cs, g);
    this.groups.delete(key);
  }

  /** Local identities entering or leaving a group's subject selection: the first one activates it. */
  onGroupChange(g: SubjectGroup, added: readonly IdentityId[], removed: readonly IdentityId[]): void {
    if (g.active === null) {
      if (added.length === 0) return;
      this.activate(g);
    }
    for (const a of [...(g.active as Set<Attached>)]) {
      if (a instanceof AttachedUnit) this.onSubjectChange(a, added, removed);
      else this.onEnforcementChange(a, added, removed);
    }
  }

  /** Attaches every item of the group's subject, in registration order. Builds objects only: nothing here can fail. */
  private activate(g: SubjectGroup): void {
    const todo: { seq: number; rec: PolicyRecord; i: number }[] = [];
    for (const rec of g.records) {
      const c = this.compiled(rec);
      for (let i = 0; i < itemCount(c); i++) if (itemOf(c, i).subject.key === g.key) todo.push({ seq: rec.seqOf(i), rec, i });
    }
    todo.sort((x, y) => x.seq - y.seq);
    g.active = new Set();
    for (const t of todo) this.attach(t.rec, t.i, g);
  }

  /** Item `i`'s attached state, in its (active) group. */
  private attach(rec: PolicyRecord, i: number, g: SubjectGroup): Attached {
    const c = rec.compiled as Compiled;
    const a = i < c.units.length ? new AttachedUnit(c.units[i] as RuleUnit, this.nextUnit++) : new AttachedEnforcement(c.enforcements[i - c.units.length] as EnforcementUnit);
    a.subject = g.cs;
    (rec.attached as (Attached | null)[])[i] = a;
    (g.active as Set<Attached>).add(a);
    return a;
  }

  /** Item `i` of the record, if attached, leaves every identity its subject selects and its group. */
  private detach(rec: PolicyRecord, i: number): void {
    const a = rec.attached?.[i];
    if (a === null || a === undefined) return;
    const cs = a.subject as CachedSelector;
    if (a instanceof AttachedUnit) {
      if (cs.selected.size > 0) this.onSubjectChange(a, [], [...cs.selected]);
      if (a.share) this.leaveShare(a, a.share);
    } else if (cs.selected.size > 0) {
      this.onEnforcementChange(a, [], [...cs.selected]);
    }
    a.subject = null;
    (rec.attached as (Attached | null)[])[i] = null;
    this.groups.get(cs.selector.key)?.active?.delete(a);
  }

  /** The origins of the rules registered under a group's subject (explain.ts `selectors`; compiles pending policies without keeping them). */
  groupOrigins(g: SubjectGroup): RuleOrigin[] {
    const out: RuleOrigin[] = [];
    for (const rec of g.records) {
      const c = rec.compiled ?? compilePolicy(rec.policy, this.ctx.nodeCover);
      for (let i = 0; i < itemCount(c); i++) if (itemOf(c, i).subject.key === g.key) out.push(itemOf(c, i).origin);
    }
    return out;
  }

  /** The share of `a`'s content, joined; a new one when no adopted unit has that content. */
  private joinShare(a: AttachedUnit): UnitShare {
    const key = shareKey(a.unit);
    const found = key === null ? undefined : this.shares.get(key);
    if (found) {
      found.members.push(a);
      return (a.share = found);
    }
    const s = new UnitShare(key, a, this);
    if (key !== null) this.shares.set(key, s);
    return (a.share = s);
  }

  /** A detached unit leaves its share (no longer adopted anywhere): the next member leads, or the last one takes the share with it. */
  private leaveShare(a: AttachedUnit, s: UnitShare): void {
    a.share = null;
    const i = s.members.indexOf(a);
    s.members.splice(i, 1);
    if (s.members.length > 0) {
      s.unit = (s.members[0] as AttachedUnit).unit;
      return;
    }
    if (s.registered) {
      s.registered = false;
      this.unregisterPeers(s);
    }
    if (s.key !== null) this.shares.delete(s.key);
  }

  /** Registers the share's peers once some local identity needs them. */
  private registerPeers(s: UnitShare): void {
    if (this.ctx.faultHook) this.ctx.fault('registerPeers');
    const listener = s.peerListener;
    const unit = s.unit;
    s.peers = [];
    s.cidrRefs = [];
    s.targets = new Map();
    for (const sel of unit.peers) {
      if (unit.anyPeer && sel.kind === 'labels' && sel.selector.requirements.length === 0) continue;
      if (sel.kind === 'cidr') {
        // The prefixes a policy mentions get identities, so external addresses resolve to them.
        for (const c of [sel.cidr, ...sel.except]) s.cidrRefs.push(this.identities.acquireCidr(c));
      }
      // A group item's exceptions are ipcache prefixes too (CIDRSelector.GetCIDRPrefixes); its groups' prefixes are held by the CIDR group table.
      if (sel.kind === 'cidrGroup') for (const c of sel.except) s.cidrRefs.push(this.identities.acquireCidr(c));
      // An FQDN selector's own identity exists before any answer: a first IP costs no map write.
      if (sel.kind === 'fqdn') s.cidrRefs.push(this.identities.acquireFqdnSelector(sel.fqdn));
      const cs = this.peerCache.register(sel, listener);
      s.peers.push(cs);
      for (const id of cs.selected) s.targets.set(id, (s.targets.get(id) ?? 0) + 1);
    }
    if (unit.namedEgress || unit.peerNamedPorts) {
      for (const c of unit.clauses) {
        if (c.l4.kind !== 'named') continue;
        let set = this.namedEgressUnits.get(c.l4.name);
        if (!set) this.namedEgressUnits.set(c.l4.name, (set = new Set()));
        set.add(s);
      }
    }
  }

  private unregisterPeers(s: UnitShare): void {
    for (const cs of s.peers) this.peerCache.unregister(cs, s.peerListener);
    s.peers = NO_PEERS;
    s.targets = NO_TARGETS;
    for (const rec of s.cidrRefs) this.identities.release(rec);
    s.cidrRefs = NO_CIDR_REFS;
    if (s.unit.namedEgress || s.unit.peerNamedPorts) {
      for (const c of s.unit.clauses) {
        if (c.l4.kind !== 'named') continue;
        const set = this.namedEgressUnits.get(c.l4.name);
        set?.delete(s);
        if (set?.size === 0) this.namedEgressUnits.delete(c.l4.name);
      }
    }
  }

  /** Local identities entering or leaving the unit's subject selection. */
  onSubjectChange(a: AttachedUnit, added: readonly IdentityId[], removed: readonly IdentityId[]): void {
    const s = added.length > 0 ? (a.share ?? this.joinShare(a)) : a.share;
    if (!s) return;
    if (added.length > 0 && !s.registered) {
      s.registered = true;
      this.registerPeers(s);
    }
    // Indexed loops: the cold start runs this once per adopted unit, mostly in the interpreter, where for-of allocates per step.
    for (let i = 0; i < added.length; i++) {
      const local = this.maps.locals.get(added[i] as IdentityId);
      if (!local) continue;
      this.ctx.stats.policyResolutions++;
      local.units.add(a);
      if (s.hasL7) this.ctx.adoptedL7.add(local);
      const n = s.adopters.get(local) ?? 0;
      s.adopters.set(local, n + 1);
      if (n === 0) for (const m of local.maps.values()) this.contributeTargets(s, m, +1);
    }
    for (let i = 0; i < removed.length; i++) {
      const local = this.maps.locals.get(removed[i] as IdentityId);
      if (!local || !local.units.has(a)) continue;
      this.ctx.stats.policyResolutions++;
      const n = s.adopters.get(local) ?? 0;
      if (n === 1) {
        for (const m of local.maps.values()) this.contributeTargets(s, m, -1);
        s.adopters.delete(local);
      } else {
        s.adopters.set(local, n - 1);
      }
      local.units.delete(a);
    }
    if (s.registered && s.adopters.size === 0) {
      s.registered = false;
      this.unregisterPeers(s);
    }
  }

  onPeerChange(s: UnitShare, added: readonly IdentityId[], removed: readonly IdentityId[]): void {
    if (this.ctx.faultHook) this.ctx.fault('peerChange');
    for (let i = 0; i < added.length; i++) {
      const id = added[i] as IdentityId;
      const n = s.targets.get(id) ?? 0;
      s.targets.set(id, n + 1);
      // The adopters' map states directly: a peer change is rare, so each layer it runs is code in its first executions.
      if (n === 0) for (const local of s.adopters.keys()) for (const m of local.maps.values()) this.contribute(s, id, m, +1);
    }
    for (let i = 0; i < removed.length; i++) {
      const id = removed[i] as IdentityId;
      const n = s.targets.get(id) ?? 0;
      if (n === 0) throw new Error(`internal: unit lost peer ${id} it never had`);
      if (n === 1) {
        for (const local of s.adopters.keys()) for (const m of local.maps.values()) this.contribute(s, id, m, -1);
        s.targets.delete(id);
      } else {
        s.targets.set(id, n - 1);
      }
    }
  }

  // ---------------------------------------------------------------- enforcement

  /** The first enforcement of a direction removes the identity's default allow; the last one brings it back. */
  onEnforcementChange(e: AttachedEnforcement, added: readonly IdentityId[], removed: readonly IdentityId[]): void {
    if (this.ctx.faultHook) this.ctx.fault('enforcementChange');
    const d = e.unit.direction;
    for (let i = 0; i < added.length; i++) {
      const local = this.maps.locals.get(added[i] as IdentityId);
      if (!local || local.enforcing[d].has(e)) continue;
      this.ctx.stats.policyResolutions++;
      // Withdraw the Baseline entries while the direction is still open (`contribute` reads it).
      if (local.enforcing[d].size === 0) this.contributeBaseline(local, d, -1);
      local.enforcing[d].add(e);
      if (local.enforcing[d].size !== 1) continue;
      for (const m of local.maps.values()) {
        this.ctx.dirtyMaps.add(m);
        m.state.remove(wildcardKey(ANY_IDENTITY, d), DEFAULT_ALLOW);
      }
    }
    for (let i = 0; i < removed.length; i++) {
      const local = this.maps.locals.get(removed[i] as IdentityId);
      if (!local || !local.enforcing[d].has(e)) continue;
      this.ctx.stats.policyResolutions++;
      local.enforcing[d].delete(e);
      if (local.enforcing[d].size !== 0) continue;
      for (const m of local.maps.values()) {
        this.ctx.dirtyMaps.add(m);
        m.state.add(wildcardKey(ANY_IDENTITY, d), DEFAULT_ALLOW);
      }
      this.contributeBaseline(local, d, +1);
    }
  }

  /** The Baseline units `local` adopted for direction `d`, into or out of its map states. */
  private contributeBaseline(local: LocalIdentity, d: Direction, sign: 1 | -1): void {
    const pass = ++this.pass;
    for (const a of local.units) {
      const s = a.share as UnitShare;
      if (!s.unit.baseline || s.unit.direction !== d || s.visited === pass) continue;
      s.visited = pass;
      for (const m of local.maps.values()) this.contributeTargets(s, m, sign);
    }
  }
}

const NO_SHARES: ReadonlySet<UnitShare> = new Set<UnitShare>();

/** Adds (share, target) to the pairs, creating them on the first. */
function addPair(pairs: Map<UnitShare, Set<IdentityId>> | null, s: UnitShare, t: IdentityId): Map<UnitShare, Set<IdentityId>> {
  const out = pairs ?? new Map<UnitShare, Set<IdentityId>>();
  let ts = out.get(s);
  if (!ts) out.set(s, (ts = new Set()));
  ts.add(t);
  return out;
}
