// Same-run A/B of the heap of a whole `distill replay` (issue 18): for two builds, alternating,
// a fresh `node --trace-gc DIST/cli/main.js replay TRACE --json` per run. Per run it reports:
// - replayPeakHeapMB: the replay's own `peakHeapBytes` (V8 used_heap_size, garbage included,
//   sampled after the cold start and every 64 churn events): the number the table quotes;
// - gcPeakHeapMB: the largest used heap any GC started from (--trace-gc "A (B) -> C": max A), i.e.
//   the heap's high-water mark, garbage included, at GC granularity (a scavenge every ~16 MB);
// - maxLiveMB: the largest heap left after a mark-compact (live data, plus what V8 kept);
// - markCompacts, maxRssMB (the process's peak resident set), wall and CPU seconds;
// - outputs: a hash of the replay's JSON without its timing and heap fields (equal for both builds).
// Usage: node scripts/mem-ab.mjs OLD_DIST NEW_DIST TRACE [RUNS=3] > bench/results/NAME.jsonl
import { spawnSync, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpus, loadavg } from 'node:os';
import { dirname, resolve } from 'node:path';

const [oldDist, newDist, trace, runsArg] = process.argv.slice(2);
if (!oldDist || !newDist || !trace) {
  process.stderr.write('usage: node scripts/mem-ab.mjs OLD_DIST NEW_DIST TRACE [RUNS]\n');
  process.exit(2);
}
const commitOf = (dist) => execFileSync('git', ['-C', dirname(resolve(dist)), 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();
const mb = (x) => Math.round(x * 10) / 10;

function run(dist) {
  const p = spawnSync('/usr/bin/time', ['-f', 'TIME %e %U %S %M', 'node', '--trace-gc', resolve(dist, 'cli/main.js'), 'replay', trace, '--json'], { encoding: 'utf8', maxBuffer: 1 << 28 });
  if (p.status !== 0) throw new Error(`replay failed: ${p.stderr}`);
  const lines = p.stdout.split('\n');
  const result = JSON.parse(lines.find((l) => l.startsWith('{')));
  let gcPeak = 0;
  let maxLive = 0;
  let markCompacts = 0;
  for (const l of lines) {
    const m = /: (Scavenge|Mark-Compact|Minor Mark-Compact)[^0-9]* ([0-9.]+) \(([0-9.]+)\) -> ([0-9.]+) \(/.exec(l);
    if (!m) continue;
    gcPeak = Math.max(gcPeak, Number(m[2]));
    if (m[1] === 'Mark-Compact') {
      markCompacts++;
      maxLive = Math.max(maxLive, Number(m[4]));
    }
  }
  const [wall, user, sys, rssKb] = /TIME ([0-9.]+) ([0-9.]+) ([0-9.]+) ([0-9]+)/.exec(p.stderr).slice(1).map(Number);
  const { eventsPerSec: _e, peakHeapBytes, latencyUs, coldStart, ...rest } = result;
  const outputs = { ...rest, coldStart: { events: coldStart.events, deltas: coldStart.deltas }, counts: Object.fromEntries(Object.entries(latencyUs).map(([k, v]) => [k, v.count])) };
  return {
    replayPeakHeapMB: mb(peakHeapBytes / 2 ** 20),
    heapAtEndOfColdMB: mb(coldStart.heapBytes / 2 ** 20),
    gcPeakHeapMB: gcPeak,
    maxLiveMB: maxLive,
    markCompacts,
    maxRssMB: Math.round(rssKb / 1024),
    wallS: wall,
    cpuS: mb(user + sys),
    coldMs: coldStart.ms,
    outputs: createHash('sha256').update(JSON.stringify(outputs)).digest('hex').slice(0, 16),
  };
}

const header = { date: new Date().toISOString(), node: process.version, cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length, old: commitOf(oldDist), new: commitOf(newDist), trace, load: loadavg() };
process.stdout.write(`${JSON.stringify({ header })}\n`);
for (let i = 0; i < Number(runsArg ?? 3); i++) {
  for (const [build, dist] of [['old', oldDist], ['new', newDist]]) {
    process.stdout.write(`${JSON.stringify({ build, run: i, load: loadavg()[0], ...run(dist) })}\n`);
  }
}
