// The stored policies of the resolver (policy-resolver.ts), grouped by subject: a policy is
// compiled and its items attached only once a subject group of it selects a local identity.
import type { IdentityId } from '../model/identity.js';
import type { Policy, RuleOrigin } from '../model/rules.js';
import { AttachedEnforcement, AttachedUnit, PeerListener } from './attached-units.js';
import type { PolicyFact } from './policy-facts.js';
import type { compilePolicy, EnforcementUnit, RuleUnit } from './rule-units.js';
import type { CachedSelector, SelectionListener } from './selector-cache.js';

/** What a subject group reports to (the resolver). */
export interface GroupListener {
  onGroupChange(g: SubjectGroup, added: readonly IdentityId[], removed: readonly IdentityId[]): void;
  groupOrigins(g: SubjectGroup): RuleOrigin[];
}

export type Attached = AttachedUnit | AttachedEnforcement;
export type Compiled = ReturnType<typeof compilePolicy>;

/**
 * A stored policy (one record per policy key, updated in place). Its items are its compiled
 * units then its enforcements, numbered `seq + i` (or `seq[i]` after an update): the order they
 * were registered in, which is the order a subject group notifies them. Compiled once a subject
 * group of it is active (a ClusterNetworkPolicy's at upsert: its compilation reads the node
 * table as it is then).
 */
export class PolicyRecord implements PolicyFact {
  // Declared, set in the constructor: field initializers run as one more call per record (one per policy upsert).
  /** What the resolver compiles: `given` without API server stand-ins once their addresses are known. */
  declare policy: Policy;
  /** The policy as its event gave it: what the committed model rebuilds from (policy-facts.ts). */
  declare given: Policy;
  declare compiled: Compiled | null;
  declare seq: number | readonly number[];
  /** Aligned with the items once compiled; null for an item whose subject group is pending. */
  declare attached: (Attached | null)[] | null;

  constructor(policy: Policy, given: Policy, compiled: Compiled | null, seq: number | readonly number[]) {
    this.policy = policy;
    this.given = given;
    this.compiled = compiled;
    this.seq = seq;
    this.attached = null;
  }

  seqOf(i: number): number {
    return typeof this.seq === 'number' ? this.seq + i : (this.seq[i] as number);
  }
}

/** Item `i` of a compiled policy: its units, then its enforcements. */
export function itemOf(c: Compiled, i: number): RuleUnit | EnforcementUnit {
  return (i < c.units.length ? c.units[i] : c.enforcements[i - c.units.length]) as RuleUnit | EnforcementUnit;
}

export const itemCount = (c: Compiled): number => c.units.length + c.enforcements.length;

const NO_RECORDS: PolicyRecord[] = [];

/**
 * The stored policies with units or enforcements of one subject (by selector key), registered in
 * the subject cache as one listener. Pending until the subject first selects a local identity:
 * then (active) each item gets its attached state, in registration order, and from then on every
 * item of the subject is attached as it comes, and notified in that order.
 */
export class SubjectGroup implements SelectionListener {
  private static readonly SMALL = 16;
  /** Its policies: an exact-size array while few (most groups; a Map per group cost ~60 bytes per policy), a Set past `SMALL`. */
  private small: PolicyRecord[] | null = NO_RECORDS;
  private big: Set<PolicyRecord> | null = null;
  /** Null while pending; in registration order (a new item's number is above every attached one's). */
  active: Set<Attached> | null = null;

  /** Set right after construction (the cache registers the group as its listener). */
  cs!: CachedSelector;

  constructor(
    readonly resolver: GroupListener,
    readonly key: string,
  ) {}

  selectionChanged(_cs: CachedSelector, added: readonly IdentityId[], removed: readonly IdentityId[]): void {
    this.resolver.onGroupChange(this, added, removed);
  }

  get records(): Iterable<PolicyRecord> {
    return this.small ?? (this.big as Set<PolicyRecord>);
  }

  get size(): number {
    return this.small !== null ? this.small.length : (this.big as Set<PolicyRecord>).size;
  }

  add(r: PolicyRecord): void {
    const small = this.small;
    if (small === null) {
      (this.big as Set<PolicyRecord>).add(r);
    } else if (!small.includes(r)) {
      if (small.length >= SubjectGroup.SMALL) {
        this.big = new Set(small).add(r);
        this.small = null;
        return;
      }
      const next = new Array<PolicyRecord>(small.length + 1);
      for (let i = 0; i < small.length; i++) next[i] = small[i] as PolicyRecord;
      next[small.length] = r;
      this.small = next;
    }
  }

  /** False when it was not there. */
  delete(r: PolicyRecord): boolean {
    if (this.small === null) return (this.big as Set<PolicyRecord>).delete(r);
    const i = this.small.indexOf(r);
    if (i < 0) return false;
    this.small.splice(i, 1);
    return true;
  }
}


/**
 * The origins of the rules a selector's listener stands for when it is a share's or a subject
 * group's, else null (explain.ts `selectors`).
 */
export function sharedListenerOrigins(l: SelectionListener): RuleOrigin[] | null {
  if (l instanceof PeerListener) return l.share.origins();
  return l instanceof SubjectGroup ? l.resolver.groupOrigins(l) : null;
}
