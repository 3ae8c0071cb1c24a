// Same-run A/B of two builds on one trace: runs `distill replay --json` alternately with each
// build's dist/ (fresh process each), and prints one JSON line per run plus a header line with
// the commits, Node version, CPU model and date. Usage:
//   node scripts/replay-ab.mjs OLD_DIST NEW_DIST TRACE [RUNS=3] [-- REPLAY_ARGS...] > bench/results/NAME.jsonl
// REPLAY_ARGS (e.g. --verify-every 100) go to both builds' `distill replay`.
import { execFileSync } from 'node:child_process';
import { cpus } from 'node:os';
import { dirname, resolve } from 'node:path';

const argv = process.argv.slice(2);
const dash = argv.indexOf('--');
const replayArgs = dash < 0 ? [] : argv.slice(dash + 1);
const [oldDist, newDist, trace, runsArg] = dash < 0 ? argv : argv.slice(0, dash);
if (!oldDist || !newDist || !trace) {
  process.stderr.write('usage: node scripts/replay-ab.mjs OLD_DIST NEW_DIST TRACE [RUNS]\n');
  process.exit(2);
}
const runs = Number(runsArg ?? 3);
const commitOf = (dist) => {
  try {
    return execFileSync('git', ['-C', dirname(resolve(dist)), 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();
  } catch {
    return 'unknown';
  }
};
const header = { date: new Date().toISOString(), node: process.version, cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length, old: commitOf(oldDist), new: commitOf(newDist), trace, replayArgs, load: (await import('node:os')).loadavg() };
process.stdout.write(`${JSON.stringify({ header })}\n`);
for (let i = 0; i < runs; i++) {
  for (const [build, dist] of [['old', oldDist], ['new', newDist]]) {
    const out = execFileSync('node', [resolve(dist, 'cli/main.js'), 'replay', trace, '--json', ...replayArgs], { encoding: 'utf8', maxBuffer: 1 << 26 });
    const r = JSON.parse(out);
    const pick = (q) => Object.fromEntries(Object.entries(r.latencyUs).map(([type, l]) => [type, l[q]]));
    process.stdout.write(`${JSON.stringify({ build, run: i, coldMs: r.coldStart.ms ?? r.coldStart, ...(r.warmUpMs === undefined ? {} : { warmUpMs: r.warmUpMs }), peakHeapMB: Math.round(r.peakHeapBytes / 2 ** 20), p50: pick('p50'), p99: pick('p99') })}\n`);
  }
}
