import { ANY_IDENTITY, IdentityId } from '../model/identity.js';
import { wildcardKey } from '../model/policy-map.js';
import { Direction, DIRECTIONS, Policy, policyRefKey, type RuleOrigin } from '../model/rules.js';
import type { L4Match } from '../model/ports.js';
import type { EngineContext } from './context.js';
import { clauseContribution, Contribution, DEFAULT_ALLOW, unitContribution } from './contribution.js';
import type { IdentityRecord, IdentityTable, NamedPortListener } from './identities.js';
import { clauseEntry, compilePolicy, EnforcementUnit, NamedPortResolver, PortKey, portKeys, RuleUnit } from './rule-units.js';
import type { CachedSelector, SelectionListener, SelectorCache } from './selector-cache.js';
import type { LocalIdentity, SharedMapState, SharedMaps } from './shared-maps.js';
import { TombstoneMap } from './tombstone-map.js';
import { flat } from '../model/intern.js';

/** One clause of an attached unit: its port match, its map keys unless they depend on named ports, and what it contributes. */
interface AttachedClause {
  readonly l4: L4Match;
  readonly keys: readonly PortKey[] | null;
  readonly contribution: Contribution;
}

/**
 * A rule unit of a stored policy, wired to the selector caches. It is its own subject listener
 * (no listener object per unit): most units are attached and never adopted.
 */
export class AttachedUnit implements SelectionListener {
  subject: CachedSelector | null = null;
  /** Built when some local identity first adopts the unit (most never are), and kept after. */
  wiring: UnitWiring | null = null;

  constructor(
    private readonly resolver: PolicyResolver,
    readonly unit: RuleUnit,
    /** Its number (contribution labels). */
    readonly n: number,
  ) {}

  /** `NO_CLAUSES` until its peers are first registered. */
  get clauses(): readonly AttachedClause[] {
    return this.wiring?.clauses ?? NO_CLAUSES;
  }

  /** Its peer selectors are registered (some local identity is selected) and `targets` is kept current. */
  get peersRegistered(): boolean {
    return this.wiring?.registered ?? false;
  }

  /** Peer identities and how many of this unit's peer selectors select each (`NO_TARGETS` while peers are unregistered). */
  get targets(): Map<IdentityId, number> {
    return this.wiring?.targets ?? NO_TARGETS;
  }

  get origin(): RuleOrigin {
    return this.unit.origin;
  }

  selectionChanged(_cs: CachedSelector, added: readonly IdentityId[], removed: readonly IdentityId[]): void {
    this.resolver.onSubjectChange(this, added, removed);
  }
}

/** What an adopted unit adds: its clauses, peer registrations and targets (an object apart, so the many units never adopted stay small). */
class UnitWiring {
  registered = false;
  peers: CachedSelector[] = NO_PEERS;
  targets: Map<IdentityId, number> = NO_TARGETS;
  /** CIDR identities this unit keeps allocated. */
  cidrRefs: IdentityRecord[] = NO_CIDR_REFS;

  constructor(
    readonly clauses: readonly AttachedClause[],
    readonly peerListener: SelectionListener,
  ) {}
}

/** An enforcement unit (a policy making a direction default-deny for its subject), wired to the subject cache as its own listener. */
export class AttachedEnforcement implements SelectionListener {
  subject: CachedSelector | null = null;

  constructor(
    private readonly resolver: PolicyResolver,
    readonly unit: EnforcementUnit,
  ) {}

  get origin(): RuleOrigin {
    return this.unit.origin;
  }

  selectionChanged(_cs: CachedSelector, added: readonly IdentityId[], removed: readonly IdentityId[]): void {
    this.resolver.onEnforcementChange(this, added, removed);
  }
}

/** One array for a policy's units and enforcements (most policies have one of each): Maps keyed by uid would cost ~200 bytes each. */
interface PolicyRecord {
  readonly policy: Policy;
  readonly attached: readonly (AttachedUnit | AttachedEnforcement)[];
}

const keyed = (c: AttachedClause): boolean => c.keys !== null;

/** The targets of every unit whose peers are not registered; never written. */
const NO_TARGETS: Map<IdentityId, number> = new Map();
/** The clauses of every unit never adopted (no wiring yet); never written. */
const NO_CLAUSES: readonly AttachedClause[] = Object.freeze([]);
const NO_PEERS: CachedSelector[] = [];
const NO_CIDR_REFS: IdentityRecord[] = [];

/** A unit's peer listener (built once some local identity adopts the unit). */
class PeerListener implements SelectionListener {
  constructor(
    private readonly resolver: PolicyResolver,
    private readonly a: AttachedUnit,
  ) {}

  get origin(): RuleOrigin {
    return this.a.unit.origin;
  }

  selectionChanged(_cs: CachedSelector, added: readonly IdentityId[], removed: readonly IdentityId[]): void {
    this.resolver.onPeerChange(this.a, added, removed);
  }
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
export class PolicyResolver implements NamedPortListener {
  private readonly policies = new TombstoneMap<string, PolicyRecord>();
  /** Named-port-on-egress units by port name: a peer's named ports changing touches only these. */
  private readonly namedEgressUnits = new Map<string, Set<AttachedUnit>>();
  private nextUnit = 1;
  /** Contributions taken out while named ports change, put back after. */
  private namedPortPairs: Map<AttachedUnit, Set<IdentityId>> | null = null;

  constructor(
    private readonly ctx: EngineContext,
    private readonly identities: IdentityTable,
    private readonly maps: SharedMaps,
    private readonly subjectCache: SelectorCache,
    private readonly peerCache: SelectorCache,
  ) {}

  // ---------------------------------------------------------------- policies

  upsertPolicy(policy: Policy): void {
    // Flattened (a concatenation is a tree of pieces); not interned: unique per policy, and interning costs ~7x more.
    const key = flat(policyRefKey(policy.ref));
    const old = this.policies.get(key);
    const compiled = compilePolicy(policy);
    let kept: Map<string, AttachedUnit | AttachedEnforcement> | undefined;
    if (old) {
      // Uids are distinct within a compiled policy (units and enforcements apart), and only computed when there is an old version.
      const keepUnits = new Set(compiled.units.map((u) => u.uid));
      const keepEnf = new Set(compiled.enforcements.map((u) => u.uid));
      kept = new Map();
      for (const a of old.attached) {
        const isUnit = a instanceof AttachedUnit;
        if ((isUnit ? keepUnits : keepEnf).has(a.unit.uid)) kept.set(`${isUnit ? 'u' : 'e'}${a.unit.uid}`, a);
        else if (isUnit) this.detachUnit(a);
        else this.detachEnforcement(a);
      }
    }
    // Exactly sized: an array grown by push keeps room for 16 more (136 bytes).
    const { units: us, enforcements: es } = compiled;
    const attached = new Array<AttachedUnit | AttachedEnforcement>(us.length + es.length);
    for (let i = 0; i < us.length; i++) attached[i] = kept?.get(`u${us[i]!.uid}`) ?? this.attachUnit(us[i]!);
    for (let i = 0; i < es.length; i++) attached[us.length + i] = kept?.get(`e${es[i]!.uid}`) ?? this.attachEnforcement(es[i]!);
    this.policies.set(key, { policy, attached });
    this.ctx.onUndo(() => (old ? this.upsertPolicy(old.policy) : this.deletePolicy(key)));
  }

  deletePolicy(key: string): void {
    const rec = this.policies.get(key);
    if (!rec) throw new Error(`internal: policy ${key} vanished`);
    for (const a of rec.attached) {
      if (a instanceof AttachedUnit) this.detachUnit(a);
      else this.detachEnforcement(a);
    }
    this.policies.delete(key);
    this.ctx.onUndo(() => this.upsertPolicy(rec.policy));
  }

  /** A deleted namespace takes its namespaced policies with it. */
  deletePoliciesIn(namespace: string): void {
    for (const [k, rec] of [...this.policies]) if (rec.policy.ref.namespace === namespace) this.deletePolicy(k);
  }

  // ---------------------------------------------------------------- map states

  /** Computes a new map state from its identity's policy. */
  populate(m: SharedMapState): void {
    this.ctx.dirtyMaps.add(m);
    if (m.local.pending) return;
    for (const d of DIRECTIONS) if (m.local.enforcing[d].size === 0) m.state.add(wildcardKey(ANY_IDENTITY, d), DEFAULT_ALLOW);
    for (const a of m.local.units) this.contributeTargets(a, m, +1);
  }

  /** Adds (or removes) what unit `a` says about `peer` to map state `m`. */
  private contribute(a: AttachedUnit, peer: IdentityId, m: SharedMapState, sign: 1 | -1): void {
    if (this.ctx.faultHook) this.ctx.fault('contribute');
    const direction = a.unit.direction;
    // Baseline applies only where no NetworkPolicy-tier policy isolates the identity in this direction.
    if (a.unit.baseline && m.local.enforcing[direction].size > 0) return;
    this.ctx.dirtyMaps.add(m);
    for (const c of a.clauses) m.state.change(peer, direction, c.keys ?? portKeys(c.l4, this.namedResolver(a.unit, peer, m)), c.contribution, sign);
  }

  /** Where a named port of `unit` resolves: the subject's ports (ingress), the peer's (egress). */
  private namedResolver(unit: RuleUnit, peer: IdentityId, m: SharedMapState): NamedPortResolver {
    if (unit.peerNamedPorts) return this.identities.resolveNamedShared(peer);
    if (!unit.namedEgress) return m.resolveNamed;
    return unit.verdict === 'deny' ? this.identities.resolveNamedAnyPod : this.identities.resolveNamedEgress(peer);
  }

  /** Every target of `a` (the any-peer key first) into or out of one map state. */
  private contributeTargets(a: AttachedUnit, m: SharedMapState, sign: 1 | -1): void {
    if (a.unit.anyPeer) this.contribute(a, ANY_IDENTITY, m, sign);
    if (a.targets.size === 0) return;
    // Clauses whose keys do not depend on the peer: every target in one map-state call.
    if (!a.clauses.every(keyed)) {
      for (const t of a.targets.keys()) this.contribute(a, t, m, sign);
      return;
    }
    if (this.ctx.faultHook) for (let i = 0; i < a.targets.size; i++) this.ctx.fault('contribute');
    if (a.unit.baseline && m.local.enforcing[a.unit.direction].size > 0) return;
    this.ctx.dirtyMaps.add(m);
    m.state.changeEach(a.targets.keys(), a.unit.direction, a.clauses, sign);
  }

  /**
   * One peer into or out of every map state `a` contributes to. Invariant: `a` contributes to X's
   * map states iff X has adopted it (`X.units`), not merely when its subject selects X: while a
   * unit registers its peers, the CIDR identities it allocates notify it before X has adopted it,
   * and X's adoption then adds every target at once.
   */
  private contributePeer(a: AttachedUnit, peer: IdentityId, sign: 1 | -1): void {
    if (!a.subject) return;
    for (const x of a.subject.selected) {
      const local = this.maps.locals.get(x);
      if (local && local.units.has(a)) for (const m of local.maps.values()) this.contribute(a, peer, m, sign);
    }
  }

  // ---------------------------------------------------------------- named ports

  get resolvesNamedEgress(): boolean {
    return this.namedEgressUnits.size > 0;
  }

  namedPortsChanging(identity: IdentityId, names: ReadonlySet<string>, clusterWide: ReadonlySet<string>): void {
    const pairs = new Map<AttachedUnit, Set<IdentityId>>();
    const pair = (a: AttachedUnit, t: IdentityId): void => {
      let s = pairs.get(a);
      if (!s) pairs.set(a, (s = new Set()));
      s.add(t);
    };
    for (const name of names) for (const a of this.namedEgressUnits.get(name) ?? []) if (a.targets.has(identity)) pair(a, identity);
    for (const name of clusterWide) {
      for (const a of this.namedEgressUnits.get(name) ?? []) {
        if (a.unit.anyPeer) pair(a, ANY_IDENTITY);
        for (const t of a.targets.keys()) pair(a, t);
      }
    }
    for (const [a, ts] of pairs) for (const t of ts) this.contributePeer(a, t, -1);
    this.namedPortPairs = pairs;
  }

  namedPortsChanged(): void {
    const pairs = this.namedPortPairs;
    this.namedPortPairs = null;
    for (const [a, ts] of pairs ?? []) for (const t of ts) this.contributePeer(a, t, +1);
  }

  // ---------------------------------------------------------------- rule units

  private attachUnit(unit: RuleUnit): AttachedUnit {
    if (this.ctx.faultHook) this.ctx.fault('attachUnit');
    const a = new AttachedUnit(this, unit, this.nextUnit++);
    a.subject = this.subjectCache.register(unit.subject, a);
    // No array for the (many) units that select no local identity.
    if (a.subject.selected.size > 0) this.onSubjectChange(a, [...a.subject.selected], []);
    return a;
  }

  private detachUnit(a: AttachedUnit): void {
    const cs = a.subject as CachedSelector;
    if (cs.selected.size > 0) this.onSubjectChange(a, [], [...cs.selected], true);
    this.subjectCache.unregister(cs, a);
    a.subject = null;
  }

  /** The unit's clauses with their map keys and contributions. */
  private static clausesOf(a: AttachedUnit): AttachedClause[] {
    const unit = a.unit;
    const plain = unitContribution(a.n, unit.origin, unit.entry ?? clauseEntry(unit.verdict, undefined));
    return unit.clauses.map((c, i) => {
      const l7 = unit.verdict === 'allow' ? c.l7 : undefined;
      return {
        l4: c.l4,
        keys: c.l4.kind === 'named' ? null : portKeys(c.l4, () => [], l7 !== undefined),
        contribution: l7 ? clauseContribution(a.n, i, unit.origin, clauseEntry(unit.verdict, l7), l7) : plain,
      };
    });
  }

  /** Registers the unit's peers once some local identity needs it. */
  private registerPeers(a: AttachedUnit, w: UnitWiring): void {
    if (this.ctx.faultHook) this.ctx.fault('registerPeers');
    const listener = w.peerListener;
    w.peers = [];
    w.cidrRefs = [];
    w.targets = new Map();
    for (const sel of a.unit.peers) {
      if (a.unit.anyPeer && sel.kind === 'labels' && sel.selector.requirements.length === 0) continue;
      if (sel.kind === 'cidr') {
        // The prefixes a policy mentions get identities, so external addresses resolve to them.
        for (const c of [sel.cidr, ...sel.except]) w.cidrRefs.push(this.identities.acquireCidr(c));
      }
      // An FQDN selector's own identity exists before any answer: a first IP costs no map write.
      if (sel.kind === 'fqdn') w.cidrRefs.push(this.identities.acquireFqdnSelector(sel.fqdn));
      const cs = this.peerCache.register(sel, listener);
      w.peers.push(cs);
      for (const id of cs.selected) w.targets.set(id, (w.targets.get(id) ?? 0) + 1);
    }
    if (a.unit.namedEgress || a.unit.peerNamedPorts) {
      for (const c of a.unit.clauses) {
        if (c.l4.kind !== 'named') continue;
        let s = this.namedEgressUnits.get(c.l4.name);
        if (!s) this.namedEgressUnits.set(c.l4.name, (s = new Set()));
        s.add(a);
      }
    }
  }

  private unregisterPeers(a: AttachedUnit, w: UnitWiring): void {
    for (const cs of w.peers) this.peerCache.unregister(cs, w.peerListener);
    w.peers = NO_PEERS;
    w.targets = NO_TARGETS;
    for (const rec of w.cidrRefs) this.identities.release(rec);
    w.cidrRefs = NO_CIDR_REFS;
    if (a.unit.namedEgress || a.unit.peerNamedPorts) {
      for (const c of a.unit.clauses) {
        if (c.l4.kind !== 'named') continue;
        const s = this.namedEgressUnits.get(c.l4.name);
        s?.delete(a);
        if (s?.size === 0) this.namedEgressUnits.delete(c.l4.name);
      }
    }
  }

  /** Local identities entering or leaving the unit's subject selection. */
  onSubjectChange(a: AttachedUnit, added: readonly IdentityId[], removed: readonly IdentityId[], detaching = false): void {
    if (added.length > 0 && !a.peersRegistered) {
      const w = (a.wiring ??= new UnitWiring(PolicyResolver.clausesOf(a), new PeerListener(this, a)));
      w.registered = true;
      this.registerPeers(a, w);
    }
    for (const x of added) {
      const local = this.maps.locals.get(x);
      if (!local) continue;
      this.ctx.stats.policyResolutions++;
      local.units.add(a);
      if (a.clauses.some((c) => c.contribution.l7 !== undefined)) this.ctx.adoptedL7.add(local);
      for (const m of local.maps.values()) this.contributeTargets(a, m, +1);
    }
    for (const x of removed) {
      const local = this.maps.locals.get(x);
      if (!local || !local.units.has(a)) continue;
      this.ctx.stats.policyResolutions++;
      for (const m of local.maps.values()) this.contributeTargets(a, m, -1);
      local.units.delete(a);
    }
    const stillSelected = detaching ? 0 : (a.subject?.selected.size ?? 0);
    const w = a.wiring;
    if (w?.registered && stillSelected === 0) {
      w.registered = false;
      this.unregisterPeers(a, w);
    }
  }

  onPeerChange(a: AttachedUnit, added: readonly IdentityId[], removed: readonly IdentityId[]): void {
    if (this.ctx.faultHook) this.ctx.fault('peerChange');
    for (const id of added) {
      const n = a.targets.get(id) ?? 0;
      a.targets.set(id, n + 1);
      if (n === 0) this.contributePeer(a, id, +1);
    }
    for (const id of removed) {
      const n = a.targets.get(id) ?? 0;
      if (n === 0) throw new Error(`internal: unit lost peer ${id} it never had`);
      if (n === 1) {
        this.contributePeer(a, id, -1);
        a.targets.delete(id);
      } else {
        a.targets.set(id, n - 1);
      }
    }
  }

  // ---------------------------------------------------------------- enforcement

  private attachEnforcement(unit: EnforcementUnit): AttachedEnforcement {
    const e = new AttachedEnforcement(this, unit);
    e.subject = this.subjectCache.register(unit.subject, e);
    if (e.subject.selected.size > 0) this.onEnforcementChange(e, [...e.subject.selected], []);
    return e;
  }

  private detachEnforcement(e: AttachedEnforcement): void {
    const cs = e.subject as CachedSelector;
    if (cs.selected.size > 0) this.onEnforcementChange(e, [], [...cs.selected]);
    this.subjectCache.unregister(cs, e);
    e.subject = null;
  }

  /** The first enforcement of a direction removes the identity's default allow; the last one brings it back. */
  onEnforcementChange(e: AttachedEnforcement, added: readonly IdentityId[], removed: readonly IdentityId[]): void {
    if (this.ctx.faultHook) this.ctx.fault('enforcementChange');
    const d = e.unit.direction;
    const allowAll = wildcardKey(ANY_IDENTITY, d);
    for (const x of added) {
      const local = this.maps.locals.get(x);
      if (!local || local.enforcing[d].has(e)) continue;
      this.ctx.stats.policyResolutions++;
      // Withdraw the Baseline entries while the direction is still open (`contribute` reads it).
      if (local.enforcing[d].size === 0) this.contributeBaseline(local, d, -1);
      local.enforcing[d].add(e);
      if (local.enforcing[d].size !== 1) continue;
      for (const m of local.maps.values()) {
        this.ctx.dirtyMaps.add(m);
        m.state.remove(allowAll, DEFAULT_ALLOW);
      }
    }
    for (const x of removed) {
      const local = this.maps.locals.get(x);
      if (!local || !local.enforcing[d].has(e)) continue;
      this.ctx.stats.policyResolutions++;
      local.enforcing[d].delete(e);
      if (local.enforcing[d].size !== 0) continue;
      for (const m of local.maps.values()) {
        this.ctx.dirtyMaps.add(m);
        m.state.add(allowAll, DEFAULT_ALLOW);
      }
      this.contributeBaseline(local, d, +1);
    }
  }

  /** The Baseline units `local` adopted for direction `d`, into or out of its map states. */
  private contributeBaseline(local: LocalIdentity, d: Direction, sign: 1 | -1): void {
    for (const a of local.units) {
      if (!a.unit.baseline || a.unit.direction !== d) continue;
      for (const m of local.maps.values()) this.contributeTargets(a, m, sign);
    }
  }
}
