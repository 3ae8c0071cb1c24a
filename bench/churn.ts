/**
 * Churn benchmarks (`npm run bench`): for each profile, cold start (time, heap), per-event latency
 * by event type, and incremental vs full recompute on the *same* events in the same run; then a
 * scaling series (benny) showing per-event cost at cluster ×1, ×2, ×5, ×10 with fixed impact.
 * Writes bench/results/churn.json and the plots docs/img/*.svg (vega-lite, rendered headless).
 *
 *   BENCH_PROFILES=small,cilium-2019   restrict the profiles
 *   BENCH_FULL_EVENTS=20               churn events replayed in full mode for the ratio
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import b from 'benny';
import { generateTrace, PROFILES } from '../src/churn/profiles.js';
import { replay, ReplayResult } from '../src/churn/replay.js';
import { parseTrace, Trace } from '../src/churn/trace.js';
import { Engine } from '../src/engine/engine.js';
import type { EngineEvent } from '../src/engine/events.js';
import { parseIp } from '../src/model/cidr.js';
import { parseManifest } from '../src/policy/manifest.js';
import { renderPlots } from './plots.js';

const repo = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const profiles = (process.env.BENCH_PROFILES ?? PROFILES.map((p) => p.name).join(',')).split(',');
const FULL_EVENTS = Number(process.env.BENCH_FULL_EVENTS ?? 20);

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, c) => a - c);
  return s.length === 0 ? NaN : (s[Math.floor(s.length / 2)] as number);
}

interface ProfileResult {
  profile: string;
  coldStartMs: number;
  coldStartHeapMB: number;
  peakHeapMB: number;
  endpoints: number;
  mapEntries: number;
  latencyUs: ReplayResult['latencyUs'];
  /** Per tag: median over the same events of full-recompute latency / incremental latency. */
  fullVsIncremental: Record<string, { events: number; incrementalP50Us: number; fullP50Us: number; ratio: number }>;
}

function profileRun(name: string): ProfileResult {
  const trace: Trace = parseTrace(generateTrace({ profile: name, seed: 1 }), `${name}.jsonl`);
  const inc = replay(trace, { mode: 'incremental' });
  // The same first N churn events, in both modes, in this run.
  const incN = replay(trace, { mode: 'incremental', limit: FULL_EVENTS, keepSamples: true });
  const fullN = replay(trace, { mode: 'full', limit: FULL_EVENTS, keepSamples: true });
  const byTag = new Map<string, { inc: number[]; full: number[]; ratios: number[] }>();
  (incN.samples ?? []).forEach((s, i) => {
    const f = fullN.samples?.[i];
    if (!f) return;
    let t = byTag.get(s.tag);
    if (!t) byTag.set(s.tag, (t = { inc: [], full: [], ratios: [] }));
    t.inc.push(s.us);
    t.full.push(f.us);
    t.ratios.push(f.us / s.us);
  });
  const fullVsIncremental: ProfileResult['fullVsIncremental'] = {};
  for (const [tag, t] of byTag) fullVsIncremental[tag] = { events: t.inc.length, incrementalP50Us: Math.round(median(t.inc) * 10) / 10, fullP50Us: Math.round(median(t.full)), ratio: Math.round(median(t.ratios)) };
  return {
    profile: name,
    coldStartMs: inc.coldStart.ms,
    coldStartHeapMB: Math.round(inc.coldStart.heapBytes / 1e5) / 10,
    peakHeapMB: Math.round(inc.peakHeapBytes / 1e5) / 10,
    endpoints: inc.endpoints,
    mapEntries: inc.mapEntries,
    latencyUs: inc.latencyUs,
    fullVsIncremental,
  };
}

/** Engine over the cilium-ci shape at `scale` (×1 = scale 0.1 of the published 30,000 pods). */
function scaledEngine(scale: number): Engine {
  const trace = parseTrace(generateTrace({ profile: 'cilium-ci', seed: 1, scale, churnEvents: 0 }), 'scaled');
  const e = new Engine();
  e.apply(trace.items.flatMap((i) => (i.kind === 'event' ? [i.event] : [])));
  return e;
}

interface ScalingPoint {
  factor: number;
  case: string;
  usPerCycle: number;
  /** Work counters per cycle: constant when the work is proportional to the impact. */
  selectorEvaluationsPerCycle?: number;
  mapEntriesVisitedPerCycle?: number;
}

async function scalingSeries(): Promise<ScalingPoint[]> {
  const points: ScalingPoint[] = [];
  for (const factor of [1, 2, 5, 10]) {
    const engine = scaledEngine(0.1 * factor);
    // Fixed impact whatever the scale: a new identity selected by app-7's peers' rules, and a
    // policy selecting local app-0 from app-7.
    const pod = (i: number): EngineEvent => ({ type: 'upsertPod', pod: { namespace: 'ns-7', name: `bench-${i}`, labels: { app: 'app-7', extra: `e${i}` }, ip: parseIp('10.250.0.1'), serviceAccount: 'default', ports: [] } });
    const policy: EngineEvent = {
      type: 'upsertPolicy',
      policy: parseManifest({ apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { namespace: 'ns-0', name: 'bench' }, spec: { endpointSelector: { matchLabels: { app: 'app-0' } }, ingress: [{ fromEndpoints: [{ matchLabels: { app: 'app-7' } }], toPorts: [{ ports: [{ port: '9999', protocol: 'TCP' }] }] }] } }, 'bench'),
    };
    let n = 0;
    const cycles: Record<string, () => void> = {
      'identity add + remove': () => {
        const i = n++;
        engine.apply([pod(i)]);
        engine.apply([{ type: 'deletePod', namespace: 'ns-7', name: `bench-${i}` }]);
      },
      'policy add + remove': () => {
        engine.apply([policy]);
        engine.apply([{ type: 'deletePolicy', ref: { kind: 'CiliumNetworkPolicy', namespace: 'ns-0', name: 'bench' } }]);
      },
    };
    // Building the cluster leaves garbage behind; collect it so it does not land in the samples.
    (globalThis as { gc?: () => void }).gc?.();
    await b.suite(
      `cilium-ci shape ×${factor}`,
      b.configure({ cases: { minSamples: 30, maxTime: 3 } }),
      ...Object.entries(cycles).map(([name, run]) => b.add(name, run)),
      b.cycle(),
      b.complete((summary) => {
        for (const r of summary.results) points.push({ factor, case: r.name, usPerCycle: Math.round((1e6 / r.ops) * 10) / 10 });
      }),
    );
    // The same cycles again, counting work instead of time.
    for (const [name, run] of Object.entries(cycles)) {
      const before = engine.stats();
      for (let k = 0; k < 100; k++) run();
      const after = engine.stats();
      const point = points.find((p) => p.factor === factor && p.case === name);
      if (point) {
        point.selectorEvaluationsPerCycle = (after.selectorEvaluations - before.selectorEvaluations) / 100;
        point.mapEntriesVisitedPerCycle = (after.mapEntriesVisited - before.mapEntriesVisited) / 100;
      }
    }
  }
  return points;
}

/** The commit the numbers come from; `+dirty` when the measured code (src, the bench) differs from it. */
function gitCommit(): string {
  try {
    const head = execFileSync('git', ['-C', repo, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();
    const dirty = execFileSync('git', ['-C', repo, 'status', '--porcelain', '--untracked-files=no', '--', 'src', 'bench/churn.ts', 'bench/plots.ts'], { encoding: 'utf8' }).trim() !== '';
    return dirty ? `${head}+dirty` : head;
  } catch {
    return 'unknown';
  }
}

async function main(): Promise<void> {
  const commit = gitCommit(); // before the run: the code measured
  const results: ProfileResult[] = [];
  for (const p of profiles) {
    process.stderr.write(`profile ${p}...\n`);
    results.push(profileRun(p));
  }
  const scaling = await scalingSeries();
  mkdirSync(join(repo, 'bench', 'results'), { recursive: true });
  writeFileSync(join(repo, 'bench', 'results', 'churn.json'), JSON.stringify({ date: new Date().toISOString(), commit, node: process.version, cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length, loadavg: loadavg(), results, scaling }, null, 2) + '\n');
  const img = join(repo, 'docs', 'img');
  mkdirSync(img, { recursive: true });
  await renderPlots({ results, scaling }, img);
  console.log(JSON.stringify({ results: results.map((r) => ({ ...r, latencyUs: undefined })), scaling }, null, 1));
}

void main();
