// Heap cost per object of a trace's initial state, for one build (issue 18): the parsed trace,
// then the engine's heap per remote pod (pods and namespaces applied first) and per policy
// (applied after), all after forced full GCs. Memory is deterministic enough to compare builds
// one run each; the CPU times of a noisy machine are not (use replay-ab.mjs for those).
// Usage: node --expose-gc scripts/object-costs.mjs DIST TRACE  → one JSON line
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname, resolve } from 'node:path';
import { getHeapStatistics } from 'node:v8';
import { initialEvents } from './initial-events.mjs';

const [dist, tracePath] = process.argv.slice(2);
if (!dist || !tracePath || typeof globalThis.gc !== 'function') {
  process.stderr.write('usage: node --expose-gc scripts/object-costs.mjs DIST TRACE\n');
  process.exit(2);
}
const heap = () => {
  globalThis.gc();
  globalThis.gc();
  return getHeapStatistics().used_heap_size;
};
const { parseTrace } = await import(resolve(dist, 'churn/trace.js'));
const { Engine } = await import(resolve(dist, 'engine/engine.js'));
const text = readFileSync(tracePath, 'utf8');
const h0 = heap();
const trace = parseTrace(text, tracePath);
const h1 = heap();
const initial = initialEvents(trace);
const policies = initial.filter((e) => e.type === 'upsertPolicy');
const rest = initial.filter((e) => e.type !== 'upsertPolicy');
const pods = rest.filter((e) => e.type === 'upsertPod');
const engine = new Engine({});
const h2 = heap();
engine.apply(rest);
const h3 = heap();
const cs = engine.apply(policies);
const h4 = heap();
const stats = engine.stats();
const commit = execFileSync('git', ['-C', dirname(resolve(dist)), 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();
const kb = (b, n) => Math.round(b / n) / 1000;
console.log(
  JSON.stringify({
    date: new Date().toISOString(),
    commit,
    node: process.version,
    cpu: cpus()[0]?.model ?? 'unknown',
    trace: tracePath,
    traceItems: trace.items.length,
    pods: pods.length,
    localPods: pods.filter((e) => e.local).length,
    policies: policies.length,
    identities: stats.identitiesAllocated,
    mapEntries: cs.deltas.length,
    parsedTraceMB: Math.round((h1 - h0) / 2 ** 20),
    parsedKBPerItem: kb(h1 - h0, trace.items.length),
    engineKBPerRemotePod: kb(h3 - h2, pods.length),
    engineKBPerPolicy: kb(h4 - h3, policies.length),
    engineMB: Math.round((h4 - h2) / 2 ** 20),
  }),
);
globalThis.keep = [trace, engine];
