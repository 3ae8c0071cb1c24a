// Shared by the micro-benchmarks: a build's Engine after a trace's initial phase (one transaction).
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

/** A parsed trace's initial-phase events and its churn items (events after the first other phase). */
export function splitTrace(t) {
  const firstChurn = t.items.findIndex((i) => i.kind === 'phase' && i.name !== 'initial');
  const initial = t.items.slice(0, firstChurn).flatMap((i) => (i.kind === 'event' ? [i.event] : []));
  const churn = t.items.slice(firstChurn).flatMap((i) => (i.kind === 'event' ? [i] : []));
  return { initial, churn };
}

/** Loads `dist` (a build's dist/ dir; relative to the working directory), applies the trace's initial phase; returns the engine and those events. */
export async function engineAfterInitial(dist, trace) {
  const base = pathToFileURL(resolve(dist)).href;
  const { Engine } = await import(`${base}/engine/engine.js`);
  const { parseTrace } = await import(`${base}/churn/trace.js`);
  const t = parseTrace(readFileSync(trace, 'utf8'), 't');
  const { initial } = splitTrace(t);
  const engine = new Engine();
  engine.apply(initial);
  return { engine, initial };
}

/**
 * A build's Engine after the initial phase and every churn event before trace line `line`, one
 * event per transaction; returns it with the build's URL, the parsed trace, the churn items and
 * the index of `line`'s item among them (-1 when `line` is no churn event).
 */
export async function engineBeforeLine(dist, trace, line) {
  const base = pathToFileURL(resolve(dist)).href;
  const { Engine } = await import(`${base}/engine/engine.js`);
  const { parseTrace } = await import(`${base}/churn/trace.js`);
  const t = parseTrace(readFileSync(trace, 'utf8'), trace);
  const { initial, churn } = splitTrace(t);
  const idx = churn.findIndex((i) => i.line === line);
  const engine = new Engine();
  engine.apply(initial);
  for (const it of churn.slice(0, Math.max(idx, 0))) engine.apply([it.event]);
  return { engine, base, trace: t, churn, idx };
}
