// Bytes a trace's cold start allocates (the initial phase as one transaction, as `distill replay`
// does), counted without sampling: each child runs with a young generation larger than the
// transaction's allocation, so no GC runs inside it and the heap's growth across `engine.apply` is
// everything it allocated (garbage included). Unlike time this does not depend on the machine's
// load. Also the same for writing the change set to a MemoryBackend (`applyChangeSet`, the write
// plan included), which `distill replay`'s cold-start timer covers and `cold-ab.mjs` does not.
// One fresh process per build and run, builds alternating; `gcs` counts GCs in both (must be 0).
// Usage: node scripts/cold-alloc.mjs TRACE RUNS DIST... > bench/results/NAME.jsonl
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PerformanceObserver } from 'node:perf_hooks';
import { initialEvents } from './initial-events.mjs';

const SEMI_SPACE_MB = 256;

async function child(dist, tracePath) {
  const { getHeapStatistics } = await import('node:v8');
  const { parseTrace } = await import(resolve(dist, 'churn/trace.js'));
  const { Engine } = await import(resolve(dist, 'engine/engine.js'));
  const { MemoryBackend } = await import(resolve(dist, 'backend/memory.js'));
  const { applyChangeSet } = await import(resolve(dist, 'backend/backend.js'));
  const trace = parseTrace(readFileSync(tracePath, 'utf8'), tracePath, { manifests: false });
  const initial = initialEvents(trace);
  let gcs = 0;
  const obs = new PerformanceObserver((list) => (gcs += list.getEntries().length));
  obs.observe({ entryTypes: ['gc'] });
  globalThis.gc();
  await new Promise((r) => setTimeout(r, 10));
  gcs = 0;
  const before = getHeapStatistics().used_heap_size;
  const engine = new Engine({});
  const cs = engine.apply(initial);
  const after = getHeapStatistics().used_heap_size;
  const backend = new MemoryBackend();
  applyChangeSet(backend, cs);
  const written = getHeapStatistics().used_heap_size;
  await new Promise((r) => setTimeout(r, 10));
  obs.disconnect();
  const mb = (b) => Math.round(b / 2 ** 10) / 1024;
  process.stdout.write(JSON.stringify({ allocatedMB: mb(after - before), applyChangeSetMB: mb(written - after), gcs, deltas: cs.deltas.length, work: engine.stats() }));
}

const argv = process.argv.slice(2);
if (argv[0] === '--child') {
  await child(argv[1], argv[2]);
} else {
  const [trace, runsArg, ...dists] = argv;
  if (!trace || !runsArg || dists.length === 0) {
    process.stderr.write('usage: node scripts/cold-alloc.mjs TRACE RUNS DIST...\n');
    process.exit(2);
  }
  const self = fileURLToPath(import.meta.url);
  const commitOf = (dist) => execFileSync('git', ['-C', dirname(resolve(dist)), 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();
  const header = { date: new Date().toISOString(), node: process.version, cpu: cpus()[0]?.model ?? 'unknown', builds: dists.map(commitOf), trace, semiSpaceMB: SEMI_SPACE_MB, load: loadavg() };
  process.stdout.write(`${JSON.stringify({ header })}\n`);
  for (let i = 0; i < Number(runsArg); i++) {
    for (const dist of dists) {
      const out = execFileSync('node', ['--expose-gc', `--min-semi-space-size=${SEMI_SPACE_MB}`, `--max-semi-space-size=${SEMI_SPACE_MB}`, self, '--child', dist, trace], { encoding: 'utf8', maxBuffer: 1 << 26 });
      process.stdout.write(`${JSON.stringify({ build: commitOf(dist), run: i, ...JSON.parse(out) })}\n`);
    }
  }
}
