// How far warm code alone brings the replay's delta relabels (perf30relabel, 2821): replays TRACE
// through DIST into engine A (cold start, built-in warm-up, one transaction per churn event, no
// backend) with a twin engine B applying every event right after A. At the pod relabels listed in
// LINES the `prewarm` arm has B apply the event *before* A: the same relabel on an engine in the same
// state, so A's timed run finds the path's code, bytecode, feedback and hidden classes warm and its
// own objects as cold as in the replay. The `replay` arm keeps B after A there too. On-CPU µs (wall
// minus run-queue wait) of A's relabel at those lines. One arm per process (a second run in the same
// process would find the code more optimised): alternate fresh processes, e.g.
//   for i in 1 2 3; do for a in replay prewarm; do node scripts/relabel-prewarm.mjs DIST TRACE $a; done; done
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { splitTrace } from './lib/initial.mjs';
import { onCpuUs } from './lib/on-cpu.mjs';

const [dist, tracePath, arm] = process.argv.slice(2);
if (!dist || !tracePath || (arm !== 'replay' && arm !== 'prewarm')) {
  process.stderr.write('usage: node scripts/relabel-prewarm.mjs DIST TRACE replay|prewarm\n');
  process.exit(2);
}
const LINES = new Set((process.env.LINES ?? '60515,60582,61116,61336,61575,61736').split(',').map(Number));
const base = pathToFileURL(resolve(dist)).href;
const { Engine } = await import(`${base}/engine/engine.js`);
const { parseTrace } = await import(`${base}/churn/trace.js`);
const { warmUpEngine } = await import(`${base}/churn/warm-up.js`);
const { initial, churn } = splitTrace(parseTrace(readFileSync(tracePath, 'utf8'), tracePath));
const r1 = (x) => Math.round(x * 10) / 10;

const run = (prewarm) => {
  const a = new Engine();
  const b = new Engine();
  a.apply(initial);
  b.apply(initial);
  warmUpEngine();
  const us = [];
  for (const item of churn) {
    const at = LINES.has(item.line);
    if (at && prewarm) b.apply([item.event]);
    const [t, cs] = onCpuUs(() => a.apply([item.event]));
    if (at) us.push({ line: item.line, us: r1(t), deltas: cs.deltas.length });
    if (!(at && prewarm)) b.apply([item.event]);
  }
  return us;
};
const commit = (() => {
  try {
    return execFileSync('git', ['-C', dirname(resolve(dist)), 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();
  } catch {
    return 'unknown';
  }
})();
const rows = run(arm === 'prewarm');
const median = [...rows.map((r) => r.us)].sort((x, y) => x - y)[rows.length >> 1];
process.stdout.write(`${JSON.stringify({ header: { dist, commit, node: process.version, cpu: cpus()[0]?.model ?? 'unknown', date: new Date().toISOString(), load: loadavg()[0] }, arm, median, rows })}\n`);
