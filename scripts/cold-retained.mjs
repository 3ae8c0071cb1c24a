// What the engine keeps after a trace's cold start (perf20's method): a heap snapshot holding the
// parsed trace only, then one holding the trace and the engine after `apply` of its initial phase;
// prints the difference of self bytes by V8 type:constructor (top TOP rows) and the total. Counts
// and bytes do not depend on the machine's load. One fresh process per build.
// Usage: node scripts/cold-retained.mjs TRACE [TOP=20] DIST...
import { execFileSync } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeHeapSnapshot } from 'node:v8';
import { initialEvents } from './initial-events.mjs';

/** Self bytes and counts by `type:name` in a snapshot file. */
function bySelf(file) {
  const snap = JSON.parse(readFileSync(file, 'utf8'));
  const f = snap.snapshot.meta.node_fields;
  const types = snap.snapshot.meta.node_types[0];
  const [ti, ni, si] = ['type', 'name', 'self_size'].map((n) => f.indexOf(n));
  const out = new Map();
  const nodes = snap.nodes;
  for (let i = 0; i < nodes.length; i += f.length) {
    const type = types[nodes[i + ti]];
    const key = `${type}:${type === 'object' || type === 'closure' ? snap.strings[nodes[i + ni]] : ''}`;
    const e = out.get(key) ?? { bytes: 0, count: 0 };
    e.bytes += nodes[i + si];
    e.count++;
    out.set(key, e);
  }
  return out;
}

async function child(dist, tracePath) {
  const { parseTrace } = await import(resolve(dist, 'churn/trace.js'));
  const { Engine } = await import(resolve(dist, 'engine/engine.js'));
  const trace = parseTrace(readFileSync(tracePath, 'utf8'), tracePath, { manifests: false });
  const initial = initialEvents(trace);
  const a = join(tmpdir(), `cold-retained-${process.pid}-a.heapsnapshot`);
  const b = join(tmpdir(), `cold-retained-${process.pid}-b.heapsnapshot`);
  globalThis.gc();
  writeHeapSnapshot(a);
  const engine = new Engine({});
  engine.apply(initial);
  globalThis.gc();
  writeHeapSnapshot(b);
  const before = bySelf(a);
  const after = bySelf(b);
  rmSync(a);
  rmSync(b);
  const rows = [];
  let total = 0;
  for (const [k, e] of after) {
    const o = before.get(k) ?? { bytes: 0, count: 0 };
    const d = { key: k, bytes: e.bytes - o.bytes, count: e.count - o.count };
    total += d.bytes;
    rows.push(d);
  }
  rows.sort((x, y) => y.bytes - x.bytes);
  process.stdout.write(JSON.stringify({ total, rows: rows.slice(0, 60), keep: engine.sizes().identities + initial.length }));
}

const argv = process.argv.slice(2);
if (argv[0] === '--child') {
  await child(argv[1], argv[2]);
} else {
  const [trace, topArg, ...dists] = argv;
  const top = Number(topArg ?? 20);
  const self = fileURLToPath(import.meta.url);
  for (const dist of dists) {
    const out = JSON.parse(execFileSync(process.execPath, ['--expose-gc', '--max-old-space-size=8192', self, '--child', dist, trace], { maxBuffer: 1 << 26 }).toString());
    console.log(`# ${dist} ${trace}: retained ${(out.total / 1e6).toFixed(1)} MB`);
    for (const r of out.rows.slice(0, top)) console.log(`${(r.bytes / 1e6).toFixed(2).padStart(8)} ${String(r.count).padStart(8)} ${r.key}`);
  }
}
