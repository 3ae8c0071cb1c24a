/**
 * Work counters. Tests assert on these (not on time): they are how "work proportional to the
 * event's impact" is checked.
 */
export interface EngineStats {
  /** Transactions applied (refused ones are not counted). */
  transactions: number;
  /** Events applied. */
  events: number;
  /** Full evaluations of one selector against one identity's labels. */
  selectorEvaluations: number;
  /** Times a local identity's policy (the set of rules selecting it) was computed or changed. */
  policyResolutions: number;
  /** Map states (one per local identity and port set, shared by its endpoints) whose entries were touched. */
  mapStateUpdates: number;
  /** Map-state entries looked at or written (contributions, pruning checks, diffs). */
  mapEntriesVisited: number;
  identitiesAllocated: number;
  identitiesReleased: number;
  /** Policy-map deltas emitted. */
  deltas: number;
  /** L7 table deltas emitted. */
  l7Deltas: number;
  /** Proxy ports allocated for new redirects. */
  proxyPortsAllocated: number;
  /** Learnt IPs left unselected because a new FQDN combination identity would pass `maxSelectorCombinations`. */
  fqdnIdentitiesRefused: number;
  /** Learnt IPs whose FQDN identity was recomputed (the FQDN stage's work). */
  fqdnIpsChecked: number;
  /** Learnt IPs looked at to find those inside a CIDR identity that appeared or went. */
  fqdnIpsScanned: number;
}

export function emptyStats(): EngineStats {
  return {
    transactions: 0,
    events: 0,
    selectorEvaluations: 0,
    policyResolutions: 0,
    mapStateUpdates: 0,
    mapEntriesVisited: 0,
    identitiesAllocated: 0,
    identitiesReleased: 0,
    deltas: 0,
    l7Deltas: 0,
    proxyPortsAllocated: 0,
    fqdnIdentitiesRefused: 0,
    fqdnIpsChecked: 0,
    fqdnIpsScanned: 0,
  };
}

/** Field by field (no key list per call: this runs once per transaction). */
export function diffStats(after: EngineStats, before: EngineStats): EngineStats {
  return {
    transactions: after.transactions - before.transactions,
    events: after.events - before.events,
    selectorEvaluations: after.selectorEvaluations - before.selectorEvaluations,
    policyResolutions: after.policyResolutions - before.policyResolutions,
    mapStateUpdates: after.mapStateUpdates - before.mapStateUpdates,
    mapEntriesVisited: after.mapEntriesVisited - before.mapEntriesVisited,
    identitiesAllocated: after.identitiesAllocated - before.identitiesAllocated,
    identitiesReleased: after.identitiesReleased - before.identitiesReleased,
    deltas: after.deltas - before.deltas,
    l7Deltas: after.l7Deltas - before.l7Deltas,
    proxyPortsAllocated: after.proxyPortsAllocated - before.proxyPortsAllocated,
    fqdnIdentitiesRefused: after.fqdnIdentitiesRefused - before.fqdnIdentitiesRefused,
    fqdnIpsChecked: after.fqdnIpsChecked - before.fqdnIpsChecked,
    fqdnIpsScanned: after.fqdnIpsScanned - before.fqdnIpsScanned,
  };
}
