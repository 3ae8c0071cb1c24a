// Garbage of a trace's cold start (the initial phase as one transaction, as `distill replay` does),
// per build: a fresh `node --trace-gc` process per build and run, alternating. Per run it reports
// the scavenges and mark-compacts during the transaction and the MB they freed (its garbage, which
// unlike time does not depend on the machine's load), the heap after the last one, and the sum of
// their main-thread pauses as --trace-gc prints them (wall ms: inflated by load, unlike the rest).
// Usage: node scripts/cold-gc.mjs TRACE RUNS DIST... > bench/results/NAME.jsonl
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { initialEvents } from './initial-events.mjs';

async function child(dist, tracePath) {
  const { parseTrace } = await import(resolve(dist, 'churn/trace.js'));
  const { Engine } = await import(resolve(dist, 'engine/engine.js'));
  const trace = parseTrace(readFileSync(tracePath, 'utf8'), tracePath, { manifests: false });
  const initial = initialEvents(trace);
  globalThis.gc();
  process.stdout.write('MARK-BEGIN\n');
  new Engine({}).apply(initial);
  process.stdout.write('MARK-END\n');
}

const argv = process.argv.slice(2);
if (argv[0] === '--child') {
  await child(argv[1], argv[2]);
} else {
  const [trace, runsArg, ...dists] = argv;
  if (!trace || dists.length === 0) {
    process.stderr.write('usage: node scripts/cold-gc.mjs TRACE RUNS DIST...\n');
    process.exit(2);
  }
  const self = fileURLToPath(import.meta.url);
  const commitOf = (dist) => execFileSync('git', ['-C', dirname(resolve(dist)), 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();
  process.stdout.write(`${JSON.stringify({ header: { date: new Date().toISOString(), node: process.version, cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length, builds: dists.map((d) => ({ dist: d, commit: commitOf(d) })), trace, load: loadavg() } })}\n`);
  for (let i = 0; i < Number(runsArg ?? 3); i++) {
    for (const dist of dists) {
      const p = spawnSync('node', ['--expose-gc', '--trace-gc', self, '--child', dist, trace], { encoding: 'utf8', maxBuffer: 1 << 26 });
      if (p.status !== 0) throw new Error(`child failed: ${p.stderr}`);
      let on = false;
      const r = { scavenges: 0, markCompacts: 0, freedMB: 0, heapAfterLastGcMB: 0, scavengePauseMs: 0, markCompactPauseMs: 0 };
      for (const l of p.stdout.split('\n')) {
        if (l === 'MARK-BEGIN' || l === 'MARK-END') on = l === 'MARK-BEGIN';
        const m = on ? /(Scavenge|Mark-Compact)\D*([\d.]+) \([\d.]+\) -> ([\d.]+) \([\d.]+\) MB, ([\d.]+) \//.exec(l) : null;
        if (!m) continue;
        if (m[1] === 'Scavenge') {
          r.scavenges++;
          r.scavengePauseMs += Number(m[4]);
        } else {
          r.markCompacts++;
          r.markCompactPauseMs += Number(m[4]);
        }
        r.freedMB += Number(m[2]) - Number(m[3]);
        r.heapAfterLastGcMB = Number(m[3]);
      }
      r.freedMB = Math.round(r.freedMB * 10) / 10;
      r.scavengePauseMs = Math.round(r.scavengePauseMs);
      r.markCompactPauseMs = Math.round(r.markCompactPauseMs);
      process.stdout.write(`${JSON.stringify({ commit: commitOf(dist), run: i, load: loadavg()[0], ...r })}\n`);
    }
  }
}
