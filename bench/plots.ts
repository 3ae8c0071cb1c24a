/**
 * The plots of docs/benchmarks.md, from bench/results/churn.json (vega-lite, rendered headless).
 * `npm run bench` calls this after a run; `npm run bench:plots` redraws from the committed JSON.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as vega from 'vega';
import * as vl from 'vega-lite';

interface Latency {
  readonly p50: number;
  readonly p99: number;
}
export interface PlotData {
  readonly results: readonly {
    readonly profile: string;
    readonly latencyUs: Record<string, Latency>;
    readonly fullVsIncremental: Record<string, { readonly ratio: number }>;
  }[];
  readonly scaling: readonly { readonly case: string; readonly factor: number; readonly usPerCycle: number }[];
}

async function svg(spec: vl.TopLevelSpec, file: string): Promise<void> {
  const view = new vega.View(vega.parse(vl.compile(spec).spec), { renderer: 'none' });
  writeFileSync(file, await view.toSVG());
}

/** Legends on the right keep their whole labels (vega-lite cuts them at 160 px by default). */
const LEGEND = { labelLimit: 0, titleLimit: 0 };

function latencySpec(d: PlotData): vl.TopLevelSpec {
  const rows = d.results.flatMap((r) => Object.entries(r.latencyUs).flatMap(([tag, l]) => [
    { profile: r.profile, event: tag, stat: 'p50', us: Math.max(l.p50, 0.1) },
    { profile: r.profile, event: tag, stat: 'p99', us: Math.max(l.p99, 0.1) },
  ]));
  return {
    title: 'Per-event latency by event type (incremental engine, µs, log scale)',
    data: { values: rows },
    mark: 'point',
    encoding: {
      row: { field: 'profile', type: 'nominal' },
      x: { field: 'us', type: 'quantitative', scale: { type: 'log' }, title: 'µs' },
      y: { field: 'event', type: 'nominal' },
      color: { field: 'stat', type: 'nominal', legend: LEGEND },
      shape: { field: 'stat', type: 'nominal' },
    },
  };
}

function scalingSpec(d: PlotData): vl.TopLevelSpec {
  const factors = [...new Set(d.scaling.map((p) => p.factor))].sort((a, b) => a - b);
  return {
    title: 'Per-event cost vs cluster size (cilium-ci shape, fixed impact)',
    data: { values: [...d.scaling] },
    mark: { type: 'line', point: true },
    encoding: {
      x: {
        field: 'factor',
        type: 'quantitative',
        title: 'cluster size (×, 1 = 3,000 pods / 3,000 policies)',
        // Exactly the measured factors, each labelled (a log axis drops the end label otherwise).
        scale: { type: 'log', domain: [factors[0] ?? 1, factors.at(-1) ?? 10], nice: false },
        axis: { values: factors, labelExpr: "'×' + datum.value", labelFlush: true, grid: true },
      },
      y: { field: 'usPerCycle', type: 'quantitative', title: 'µs per add+remove cycle', scale: { zero: true } },
      color: { field: 'case', type: 'nominal', legend: { ...LEGEND, orient: 'bottom', direction: 'vertical' } },
    },
  };
}

function ratioSpec(d: PlotData): vl.TopLevelSpec {
  const rows = d.results.flatMap((r) => Object.entries(r.fullVsIncremental).map(([tag, v]) => ({ profile: r.profile, event: tag, ratio: Math.max(v.ratio, 1) })));
  return {
    title: 'Full recompute / incremental, same events, same run (median, log scale)',
    data: { values: rows },
    // A bar from 0 has no length on a log scale: bars start at ×1 (equal cost).
    mark: 'bar',
    encoding: {
      y: { field: 'event', type: 'nominal' },
      x: { field: 'ratio', type: 'quantitative', scale: { type: 'log', domainMin: 1 }, title: '× faster incremental (bars from ×1)' },
      x2: { datum: 1 },
      row: { field: 'profile', type: 'nominal' },
    },
  };
}

export async function renderPlots(d: PlotData, imgDir: string): Promise<void> {
  await svg(latencySpec(d), join(imgDir, 'latency.svg'));
  await svg(scalingSpec(d), join(imgDir, 'scaling.svg'));
  await svg(ratioSpec(d), join(imgDir, 'ratio.svg'));
}

const here = fileURLToPath(import.meta.url);
if (process.argv[1] === here) {
  const repo = join(dirname(here), '..', '..');
  const data = JSON.parse(readFileSync(join(repo, 'bench', 'results', 'churn.json'), 'utf8')) as PlotData;
  await renderPlots(data, join(repo, 'docs', 'img'));
}
