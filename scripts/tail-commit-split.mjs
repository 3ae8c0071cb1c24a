// What Commit.run and the backend do per delta relabel that a pod-add does not (issue 18, ninth
// session): tail-split.mjs with timers also on MapState.settle and Commit's emit, collect,
// ipcacheDeltas, allocatePorts and movedEndpoints, rows for every pod-add as well as every pod
// relabel that changes a map. Prints the JSON line of tail-split.mjs on stdout and the medians per
// class (pod-add; delta relabels after the first, which compiles) on stderr.
//   node scripts/tail-commit-split.mjs DIST TRACE
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
const acc = { onPeerChange: 0n, run: 0n, settle: 0n, emit: 0n, collect: 0n, ipcacheDeltas: 0n, allocatePorts: 0n, movedEndpoints: 0n };
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
const CommitC = (await import(`${base}/engine/commit.js`)).Commit; for (const n of ['run', 'emit', 'collect', 'ipcacheDeltas', 'allocatePorts', 'movedEndpoints']) wrap(CommitC, n); wrap((await import(`${base}/engine/map-state.js`)).MapState, 'settle');
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
  for (const k of Object.keys(acc)) acc[k] = 0n;
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
  const cls = item.tag === 'pod-relabel' && cs.deltas.length > 0 ? 'delta-relabel' : item.tag === 'pod-add' ? 'pod-add' : item.tag === 'identity-add' ? 'identity-add' : item.tag === 'pod-relabel' ? 'relabel-nodelta' : null; if (cls === null) continue;
  rows.push({ cls, line: item.line, engine: us(t0, t1), onPeerChange: us(0n, acc.onPeerChange), commitRun: us(0n, acc.run), settle: us(0n, acc.settle), emit: us(0n, acc.emit), collect: us(0n, acc.collect), ipcacheDeltas: us(0n, acc.ipcacheDeltas), allocatePorts: us(0n, acc.allocatePorts), movedEndpoints: us(0n, acc.movedEndpoints), group: us(t1, t2), plan: us(t2, t3), write: us(t3, t4), total: us(t0, t4) });
}
let commit = 'unknown';
try {
  commit = execFileSync('git', ['-C', dirname(resolve(dist)), 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();
} catch {}
process.stdout.write(`${JSON.stringify({ dist, commit, node: process.version, cpu: cpus()[0]?.model ?? 'unknown', date: new Date().toISOString(), load: loadavg()[0], rows })}\n`);
const med = (a) => { const s = [...a].sort((x, y) => x - y); return s[Math.floor(s.length / 2)]; };
const summary = {};
for (const cls of ['pod-add', 'delta-relabel']) {
  const rs = rows.filter((r) => r.cls === cls && r.line !== 60515);
  summary[cls] = { n: rs.length };
  for (const f of ['total', 'engine', 'onPeerChange', 'commitRun', 'settle', 'emit', 'collect', 'ipcacheDeltas', 'allocatePorts', 'movedEndpoints', 'group', 'plan', 'write']) summary[cls][f] = med(rs.map((r) => r[f]));
}
process.stderr.write(JSON.stringify(summary) + '\n');
