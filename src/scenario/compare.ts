import type { ProbeResult, ScenarioRun } from './run.js';

/** A probe whose result differs between two runs of one scenario (`distill verify`: engine and oracle). */
export interface Disagreement extends Pick<ProbeResult, 'step' | 'probe' | 'from' | 'to' | 'port' | 'protocol'> {
  readonly engine: RunVerdict;
  readonly naive: RunVerdict;
}

type RunVerdict = 'allowed' | 'proxied' | 'denied' | 'missing';

function verdict(x: { allowed: boolean; proxied: boolean } | undefined): RunVerdict {
  return x === undefined ? 'missing' : x.allowed ? (x.proxied ? 'proxied' : 'allowed') : 'denied';
}

/** Compares every probe result of the engine's run with the oracle's (allowed and proxied); `results` counts the engine's. */
export function compareRuns(engine: ScenarioRun, naive: ScenarioRun): { results: number; disagreements: Disagreement[] } {
  let results = 0;
  const disagreements: Disagreement[] = [];
  engine.steps.forEach((step, si) => {
    step.results.forEach((r, ri) => {
      results++;
      const o = naive.steps[si]?.results[ri];
      if (o && o.allowed === r.allowed && o.proxied === r.proxied) return;
      disagreements.push({ step: r.step, probe: r.probe, from: r.from, to: r.to, port: r.port, protocol: r.protocol, engine: verdict(r), naive: verdict(o) });
    });
  });
  return { results, disagreements };
}
