/**
 * Environment knobs for the property tests that had none (the others read the same names):
 * `DISTILL_RUNS=n` runs n cases per property instead of the test's own count, and
 * `DISTILL_SEED=s [DISTILL_PATH=p]` replays what fast-check printed, or runs seed s.
 * Unset, a test keeps its own count and seed.
 */
export function fcRuns(defaultRuns: number): number {
  const n = process.env.DISTILL_RUNS;
  return n === undefined ? defaultRuns : Number(n);
}

/** Seed and path to replay; `fallback` is the test's own seed (kept when DISTILL_SEED is unset). */
export function fcReplay(fallback?: number): { seed?: number; path?: string } {
  const seed = process.env.DISTILL_SEED;
  if (seed === undefined) return fallback === undefined ? {} : { seed: fallback };
  const path = process.env.DISTILL_PATH;
  return { seed: Number(seed), ...(path === undefined ? {} : { path }) };
}
