// The attached state of a stored policy's units (policy-resolver.ts): an attached unit or
// enforcement per compiled item of an active subject group, and the shares that give units of
// equal content one peer registration and one set of contributions.
import type { IdentityId } from '../model/identity.js';
import type { RuleOrigin } from '../model/rules.js';
import type { L4Match } from '../model/ports.js';
import { clauseContribution, Contribution, ContributionSharers, unitContribution } from './contribution.js';
import type { IdentityRecord } from './identities.js';
import { clauseEntry, EnforcementUnit, PortKey, portKeys, RuleUnit } from './rule-units.js';
import type { CachedSelector, SelectionListener } from './selector-cache.js';
import type { LocalIdentity } from './shared-maps.js';

/** What a share's peer listener reports to (the resolver). */
export interface PeerChangeListener {
  onPeerChange(s: UnitShare, added: readonly IdentityId[], removed: readonly IdentityId[]): void;
}

/** The targets of every share whose peers are not registered; never written. */
export const NO_TARGETS: Map<IdentityId, number> = new Map();
export const NO_PEERS: CachedSelector[] = [];
export const NO_CIDR_REFS: IdentityRecord[] = [];

/** One clause of an attached unit: its port match, its map keys unless they depend on named ports, and what it contributes. */
export interface AttachedClause {
  readonly l4: L4Match;
  readonly keys: readonly PortKey[] | null;
  readonly contribution: Contribution;
}

/**
 * A rule unit of a stored policy, wired to the selector caches: built when its subject group
 * first selects a local identity (`SubjectGroup`), as most units never are.
 */
export class AttachedUnit {
  // Declared, set in the constructor (here and in AttachedEnforcement): field initializers run as
  // one more call per instance, and a cold start builds one per adopted unit, mostly unoptimised.
  declare readonly unit: RuleUnit;
  /** Its number (contribution labels). */
  declare readonly n: number;
  declare subject: CachedSelector | null;
  /** Joined when some local identity first adopts the unit (most never are), and kept until it is detached. */
  declare share: UnitShare | null;

  constructor(unit: RuleUnit, n: number) {
    this.unit = unit;
    this.n = n;
    this.subject = null;
    this.share = null;
  }

  /** Peer identities and how many of the unit's peer selectors select each (`NO_TARGETS` while its share's peers are unregistered). */
  get targets(): Map<IdentityId, number> {
    return this.share?.targets ?? NO_TARGETS;
  }

  get origin(): RuleOrigin {
    return this.unit.origin;
  }
}

/**
 * The adopted units of equal content (`shareKey`; a ClusterNetworkPolicy unit is alone in its
 * own): one peer registration, one set of targets and one contribution per (peer, map key), made
 * while some member is adopted. The other members are followers, listed in each local identity's
 * units (explain, L7 conflicts, resolution counts) and in the origins the contributions report;
 * when the leader goes, the next member names the contributions and no map changes.
 */
export class UnitShare implements ContributionSharers {
  registered = false;
  peers: CachedSelector[] = NO_PEERS;
  targets: Map<IdentityId, number> = NO_TARGETS;
  /** CIDR identities this share keeps allocated. */
  cidrRefs: IdentityRecord[] = NO_CIDR_REFS;
  /** Local identities that adopted some member, with how many: the share contributes to exactly their map states. */
  readonly adopters = new Map<LocalIdentity, number>();
  /** In joining order; the first is the leader. */
  readonly members: AttachedUnit[];
  readonly clauses: readonly AttachedClause[];
  /** Some clause carries L7 rules (its adopters need the L7 pass). */
  readonly hasL7: boolean;
  readonly peerListener: PeerListener;
  /** The leader's unit (the content every member has). */
  unit: RuleUnit;
  /** The pass that last visited it (`PolicyResolver.visit`). */
  visited = 0;

  constructor(
    readonly key: string | null,
    first: AttachedUnit,
    resolver: PeerChangeListener,
  ) {
    this.unit = first.unit;
    // A literal: exactly one slot, where a push onto [] reserves 17 (most shares keep one member).
    this.members = [first];
    this.clauses = clausesOf(first.unit, first.n, this);
    let l7 = false;
    for (let i = 0; i < this.clauses.length; i++) if ((this.clauses[i] as AttachedClause).contribution.l7 !== undefined) l7 = true;
    this.hasL7 = l7;
    this.peerListener = new PeerListener(resolver, this);
  }

  get origin(): RuleOrigin {
    return this.unit.origin;
  }

  origins(): RuleOrigin[] {
    return this.members.map((a) => a.unit.origin);
  }
}

/** The unit's clauses with their map keys and contributions (made for every unit of the share). */
function clausesOf(unit: RuleUnit, n: number, share: UnitShare): AttachedClause[] {
  const plain = unitContribution(n, share, unit.entry ?? clauseEntry(unit.verdict, undefined));
  return unit.clauses.map((c, i) => {
    const l7 = unit.verdict === 'allow' ? c.l7 : undefined;
    return {
      l4: c.l4,
      keys: c.l4.kind === 'named' ? null : portKeys(c.l4, () => []),
      contribution: l7 ? clauseContribution(n, i, share, clauseEntry(unit.verdict, l7), l7) : plain,
    };
  });
}

/** An enforcement unit (a policy making a direction default-deny for its subject), built when its subject group first selects a local identity. */
export class AttachedEnforcement {
  declare readonly unit: EnforcementUnit;
  declare subject: CachedSelector | null;

  constructor(unit: EnforcementUnit) {
    this.unit = unit;
    this.subject = null;
  }

  get origin(): RuleOrigin {
    return this.unit.origin;
  }
}

/** A share's peer listener (built once some local identity adopts one of its units). */
export class PeerListener implements SelectionListener {
  constructor(
    private readonly resolver: PeerChangeListener,
    readonly share: UnitShare,
  ) {}

  get origin(): RuleOrigin {
    return this.share.origin;
  }

  selectionChanged(_cs: CachedSelector, added: readonly IdentityId[], removed: readonly IdentityId[]): void {
    this.resolver.onPeerChange(this.share, added, removed);
  }
}
