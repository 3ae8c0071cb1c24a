// Where a delta relabel's time goes, with timers on two stage methods only (issue 18, sixth
// session): replays TRACE as tail-attrib.mjs does and, for every pod-relabel that changes a map,
// prints µs for the engine's apply, the policy resolver's onPeerChange (contributions into map
// states) and Commit.run (settle, deltas) inside it, then the backend: grouping per endpoint,
// planWrites, and writePlan on the MemoryBackend. One JSON line per run, with commit, Node, CPU
// model, date and load.
//   node scripts/tail-split.mjs DIST TRACE
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { splitTrace } from './lib/initial.mjs';

const [dist, tracePath] = process.argv.slice(2);
const base = pathToFileURL(resolve(dist)).href;
const { Engine } = await import(`${base}/engine/engine.js`);
const { parseTrace } = await import(`${base}/churn/trace.js`);
const { applyChangeSet, writePlan } = await import(`${base}/backend/backend.js`);
const { planWrites } = await import(`${base}/backend/write-plan.js`);
const { MemoryBackend } = await import(`${base}/backend/memory.js`);
const { reconcile } = await import(`${base}/node/restart.js`);
const acc = { onPeerChange: 0n, run: 0n };
const wrap = (cls, name) => {
  const orig = cls.prototype[name];
  cls.prototype[name] = function (...a) {
    const t = process.hrtime.bigint();
    try {
      return orig.apply(this, a);
    } finally {
      acc[name] += process.hrtime.bigint() - t;
    }
  };
};
wrap((await import(`${base}/engine/commit.js`)).Commit, 'run');
wrap((await import(`${base}/engine/policy-resolver.js`)).PolicyResolver, 'onPeerChange');
const trace = parseTrace(readFileSync(tracePath, 'utf8'), tracePath);
const { initial, churn } = splitTrace(trace);
const backend = new MemoryBackend();
reconcile(new Engine(), backend);
const engine = new Engine();
applyChangeSet(backend, engine.apply(initial));
const us = (a, b) => Math.round(Number(b - a) / 100) / 10;
const rows = [];
for (const item of churn) {
  acc.onPeerChange = 0n;
  acc.run = 0n;
  const t0 = process.hrtime.bigint();
  const cs = engine.apply([item.event]);
  const t1 = process.hrtime.bigint();
  // applyChangeSet, step by step.
  for (const ep of cs.endpointsRemoved) backend.remove(ep);
  for (const ep of cs.endpointsAdded) backend.create(ep);
  const byEndpoint = new Map();
  for (const d of cs.deltas) {
    let l = byEndpoint.get(d.endpoint);
    if (!l) byEndpoint.set(d.endpoint, (l = []));
    l.push(d);
  }
  const writes = [...byEndpoint].map(([endpoint, deltas]) => ({ endpoint, deltas, size: backend.size(endpoint) }));
  const t2 = process.hrtime.bigint();
  const plan = planWrites(writes, backend.capacity, (ep) => backend.dump(ep));
  const t3 = process.hrtime.bigint();
  writePlan(backend, plan);
  const t4 = process.hrtime.bigint();
  if (item.tag !== 'pod-relabel' || cs.deltas.length === 0) continue;
  rows.push({ line: item.line, engine: us(t0, t1), onPeerChange: us(0n, acc.onPeerChange), commitRun: us(0n, acc.run), group: us(t1, t2), plan: us(t2, t3), write: us(t3, t4), total: us(t0, t4) });
}
let commit = 'unknown';
try {
  commit = execFileSync('git', ['-C', dirname(resolve(dist)), 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();
} catch {}
process.stdout.write(`${JSON.stringify({ dist, commit, node: process.version, cpu: cpus()[0]?.model ?? 'unknown', date: new Date().toISOString(), load: loadavg()[0], rows })}\n`);
