// Same-run A/B of the pod relabels that change a map (issue 18, eighth session): runs
// scripts/tail-attrib.mjs (threshold 0, so every event is listed) for each DIST alternately, a
// fresh process per run, and prints per run the on-CPU µs of each delta relabel of the cilium-ci
// trace (`gen --profile cilium-ci --seed 7`: lines below) and the on-CPU p99 of pod-relabel,
// identity-add and pod-add; then per arm the medians. Header: commits, Node, CPU, date, load.
// An arm is DIST or DIST@NODE_FLAGS (comma-separated), as in tail-ab.mjs.
// WARM_UP=1: each run does DIST's built-in warm-up after the cold start, as `distill replay` does (perf32tail).
//   node scripts/tail-delta-ab.mjs TRACE RUNS ARM... > bench/results/NAME.jsonl
import { execFileSync } from 'node:child_process';
import { cpus, loadavg } from 'node:os';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const [trace, runs, ...arms] = process.argv.slice(2);
const attrib = resolve(dirname(fileURLToPath(import.meta.url)), 'tail-attrib.mjs');
const LINES = (process.env.LINES ?? '60515,60582,61116,61336,61575,61736').split(',').map(Number);
const commitOf = (dist) => {
  try {
    return execFileSync('git', ['-C', dirname(resolve(dist)), 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();
  } catch {
    return 'unknown';
  }
};
const distOf = (a) => (a.includes('@') ? a.slice(0, a.indexOf('@')) : a);
const flagsOf = (a) => (a.includes('@') ? a.slice(a.indexOf('@') + 1).split(',') : []);
const out = (o) => process.stdout.write(`${JSON.stringify(o)}\n`);
out({ header: { date: new Date().toISOString(), node: process.version, cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length, trace, lines: LINES, warmUp: process.env.WARM_UP === '1', arms: arms.map((a) => ({ arm: a, commit: commitOf(distOf(a)), flags: flagsOf(a) })), load: loadavg() } });
const rows = new Map(arms.map((a) => [a, []]));
for (let i = 0; i < Number(runs ?? 3); i++) {
  for (const a of arms) {
    const r = JSON.parse(execFileSync('node', [...flagsOf(a), attrib, distOf(a), trace, '0', ...(process.env.WARM_UP === '1' ? ['--warm-up'] : [])], { encoding: 'utf8', maxBuffer: 1 << 28 }));
    const onCpu = new Map(r.slow.map((s) => [s.line, s.us - s.waitUs]));
    const row = { arm: a, run: i, load: loadavg()[0], deltaRelabelsOnCpuUs: LINES.map((l) => onCpu.get(l) ?? null), onCpuP99: Object.fromEntries(['pod-relabel', 'identity-add', 'pod-add'].map((t) => [t, r.stats[t].onCpuP99])) };
    rows.get(a).push(row);
    out(row);
  }
}
const med = (xs) => [...xs].sort((x, y) => x - y)[Math.floor((xs.length - 1) / 2)];
for (const [a, rs] of rows) {
  out({ summary: a, deltaRelabelsMedianUs: LINES.map((_, j) => med(rs.map((r) => r.deltaRelabelsOnCpuUs[j]))), laterFiveMeanMedianUs: Math.round(med(rs.map((r) => r.deltaRelabelsOnCpuUs.slice(1).reduce((x, y) => x + y, 0) / (LINES.length - 1)))), onCpuP99Median: Object.fromEntries(['pod-relabel', 'identity-add', 'pod-add'].map((t) => [t, med(rs.map((r) => r.onCpuP99[t]))])) });
}
