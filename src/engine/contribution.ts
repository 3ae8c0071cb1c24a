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
 * The allow-all wildcard entry of a direction no policy enforces (Kubernetes' default allow), at the
 * default-allow level: below the Baseline tier and the NetworkPolicy tier.
 */
export const DEFAULT_ALLOW: Contribution = { origin: null, entry: { deny: false, proxyPort: 0, precedence: PRECEDENCE_DEFAULT_ALLOW }, label: 'default-allow' };

/** The contribution of a rule unit's clauses without L7 rules. */
export function unitContribution(unit: number, origin: RuleOrigin, entry: PolicyEntry): Contribution {
  return { origin, entry, label: `u${unit}` };
}

/** The contribution of one L7 clause of a rule unit: its own, so redirects know whose L7 rules they carry. */
export function clauseContribution(unit: number, clause: number, origin: RuleOrigin, entry: PolicyEntry, l7: L7Rules): Contribution {
  return { origin, entry, l7, label: `u${unit}.${clause}` };
}
