// Same-run A/B of a replay's per-event latencies (issue 18): runs scripts/tail-attrib.mjs for each
// arm alternately, a fresh process per run, and prints a header line (commits, Node, CPU model,
// date, load) and one JSON line per run (per tag p50/p99 wall and on-CPU µs, KB allocated per
// event, the churn's GCs, cold-start and churn CPU ms, the change-set hash).
// An arm is DIST or DIST@NODE_FLAGS (comma-separated), e.g. new/dist@--max-semi-space-size=64.
// Usage: node scripts/tail-ab.mjs TRACE RUNS ARM... > bench/results/NAME.jsonl
import { execFileSync } from 'node:child_process';
import { cpus, loadavg } from 'node:os';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const [trace, runsArg, ...arms] = process.argv.slice(2);
if (!trace || arms.length === 0) {
  process.stderr.write('usage: node scripts/tail-ab.mjs TRACE RUNS ARM...\n');
  process.exit(2);
}
const attrib = resolve(dirname(fileURLToPath(import.meta.url)), 'tail-attrib.mjs');
const parsed = arms.map((a) => {
  const at = a.indexOf('@');
  return { arm: a, dist: at < 0 ? a : a.slice(0, at), flags: at < 0 ? [] : a.slice(at + 1).split(',') };
});
const commitOf = (dist) => {
  try {
    return execFileSync('git', ['-C', dirname(resolve(dist)), 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();
  } catch {
    return 'unknown';
  }
};
const header = { date: new Date().toISOString(), node: process.version, cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length, trace, arms: parsed.map((p) => ({ arm: p.arm, commit: commitOf(p.dist), flags: p.flags })), load: loadavg() };
process.stdout.write(`${JSON.stringify({ header })}\n`);
for (let i = 0; i < Number(runsArg ?? 3); i++) {
  for (const p of parsed) {
    const out = JSON.parse(execFileSync('node', [...p.flags, attrib, p.dist, trace, '100', '--hash'], { encoding: 'utf8', maxBuffer: 1 << 26 }));
    const slowByCause = {};
    for (const s of out.slow) {
      const cause = s.gc ? 'gc' : s.waitUs > 0.3 * s.us ? 'run-queue' : s.first ? 'first' : 'other';
      slowByCause[s.tag] ??= {};
      slowByCause[s.tag][cause] = (slowByCause[s.tag][cause] ?? 0) + 1;
    }
    process.stdout.write(`${JSON.stringify({ arm: p.arm, run: i, load: loadavg()[0], stats: out.stats, churnGcs: out.churnGcs, coldCpuMs: out.coldCpuMs, churnCpuMs: out.churnCpuMs, hash: out.hash, over100usByCause: slowByCause })}\n`);
  }
}
