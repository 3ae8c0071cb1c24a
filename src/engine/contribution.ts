import type { L7Rules, RuleOrigin } from '../model/rules.js';
import type { PolicyEntry } from '../model/policy-map.js';
import { PRECEDENCE_DEFAULT_ALLOW } from '../model/policy-map.js';

/**
 * Who asks a map state for an entry. Map states count contributions by object identity: each is
 * created once (per attached rule unit, per L7 clause of it, and the default allow) and always
 * carries the same entry, so nothing is ever formatted into a string and parsed back to find the
 * rule or the L7 rules behind a map entry.
 */
export interface Contribution {
  /** The rule behind it; null for the default allow of a direction nobody enforces. */
  readonly origin: RuleOrigin | null;
  readonly entry: PolicyEntry;
  /** The L7 rules a redirect entry carries (only for the L7 clauses of allow rules). */
  readonly l7?: L7Rules;
  /** For diagnostics: `u<unit>` or `u<unit>.<clause>`. */
  readonly label: string;
}

/**
 * Every contribution has this one shape (L7 rules or not, copies and cells too): the map-state
 * code that reads them then sees a single hidden class instead of one per kind.
 */
class ContributionRecord implements Contribution {
  constructor(
    readonly origin: RuleOrigin | null,
    readonly entry: PolicyEntry,
    readonly l7: L7Rules | undefined,
    readonly label: string,
  ) {}
}

/** A contribution made inside the map state (Pass-band copies, same-priority cells). */
export function derivedContribution(origin: RuleOrigin | null, entry: PolicyEntry, l7: L7Rules | undefined, label: string): Contribution {
  return new ContributionRecord(origin, entry, l7, label);
}

/**
 * The allow-all wildcard entry of a direction no policy enforces (Kubernetes' default allow), at the
 * default-allow level: below the Baseline tier and the NetworkPolicy tier.
 */
export const DEFAULT_ALLOW: Contribution = new ContributionRecord(null, { deny: false, proxyPort: 0, precedence: PRECEDENCE_DEFAULT_ALLOW }, undefined, 'default-allow');

/** The contribution of a rule unit's clauses without L7 rules. */
export function unitContribution(unit: number, origin: RuleOrigin, entry: PolicyEntry): Contribution {
  return new ContributionRecord(origin, entry, undefined, `u${unit}`);
}

/** The contribution of one L7 clause of a rule unit: its own, so redirects know whose L7 rules they carry. */
export function clauseContribution(unit: number, clause: number, origin: RuleOrigin, entry: PolicyEntry, l7: L7Rules): Contribution {
  return new ContributionRecord(origin, entry, l7, `u${unit}.${clause}`);
}
