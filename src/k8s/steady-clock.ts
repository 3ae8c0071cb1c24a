/**
 * `clock` made never backwards: after an NTP step back, a pod whose deletionTimestamp had passed
 * would be an endpoint again at its next MODIFIED or relist (attack-findings-11b, 11b-1). With
 * `elapsed` (monotonic), also never slower than real time: after a step back, a pod's deadline
 * still comes after its grace period (the kubelet's, measured monotonically), not once the wall
 * clock caught up (attack-findings-11c, 340): its IP, freed at CNI DEL, would keep its identity.
 */
export function steadyClock(clock: () => number, elapsed: (() => number) | undefined): () => number {
  let latest = -Infinity;
  let mark = elapsed?.() ?? 0;
  return () => {
    const t = clock();
    if (elapsed) {
      const m = elapsed();
      if (m > mark && latest > -Infinity) latest += m - mark;
      mark = Math.max(mark, m);
    }
    if (t > latest) latest = t;
    return latest;
  };
}
