// A profile of a trace's cold start only (engine.apply of the initial phase + applyChangeSet to a
// MemoryBackend, as `distill replay` times it), through the inspector:
//   cpu:   a CPU profile (.cpuprofile, sampling every INTERVAL µs, default 100) to OUT;
//   alloc: a sampling heap profile (every 1 KB allocated, collected objects included), summarized
//          as MB per (function <- caller), then per function inclusive of its callees, to OUT and stdout.
// Summarize CPU profiles with scripts/profile-summary.mjs.
// Usage: node --expose-gc scripts/cold-profile.mjs cpu|alloc DIST TRACE OUT [INTERVAL]
import { readFileSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { Session } from 'node:inspector/promises';
import { initialEvents } from './initial-events.mjs';

const [mode, dist, tracePath, out, intervalArg] = process.argv.slice(2);
if ((mode !== 'cpu' && mode !== 'alloc') || !dist || !tracePath || !out) {
  process.stderr.write('usage: node --expose-gc scripts/cold-profile.mjs cpu|alloc DIST TRACE OUT [INTERVAL]\n');
  process.exit(2);
}
const { parseTrace } = await import(resolve(dist, 'churn/trace.js'));
const { Engine } = await import(resolve(dist, 'engine/engine.js'));
const { MemoryBackend } = await import(resolve(dist, 'backend/memory.js'));
const { applyChangeSet } = await import(resolve(dist, 'backend/backend.js'));
const trace = parseTrace(readFileSync(tracePath, 'utf8'), tracePath, { manifests: false });
const initial = initialEvents(trace);
globalThis.gc?.();
const s = new Session();
s.connect();
if (mode === 'cpu') {
  await s.post('Profiler.enable');
  await s.post('Profiler.setSamplingInterval', { interval: Number(intervalArg ?? 100) });
  await s.post('Profiler.start');
} else {
  await s.post('HeapProfiler.enable');
  await s.post('HeapProfiler.startSampling', { samplingInterval: 1024, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
}
const c0 = process.cpuUsage();
const t0 = process.hrtime.bigint();
const engine = new Engine({});
const cs = engine.apply(initial);
applyChangeSet(new MemoryBackend(), cs);
const ms = Number(process.hrtime.bigint() - t0) / 1e6;
const cpu = process.cpuUsage(c0);
if (mode === 'cpu') {
  const { profile } = await s.post('Profiler.stop');
  writeFileSync(out, JSON.stringify(profile));
} else {
  const { profile } = await s.post('HeapProfiler.stopSampling');
  const self = new Map();
  let total = 0;
  const name = (n) => `${n.callFrame.functionName || '(anon)'} ${(n.callFrame.url || '').replace(/.*\/dist\//, '')}:${n.callFrame.lineNumber + 1}`;
  const walk = (n, caller) => {
    if (n.selfSize > 0) {
      const k = `${name(n)}  <-  ${caller}`;
      self.set(k, (self.get(k) ?? 0) + n.selfSize);
      total += n.selfSize;
    }
    for (const c of n.children) walk(c, name(n));
  };
  walk(profile.head, '');
  const lines = [`total sampled MB ${(total / 2 ** 20).toFixed(1)}`];
  for (const [k, b] of [...self].sort((a, b) => b[1] - a[1]).slice(0, 50)) lines.push(`${(b / 2 ** 20).toFixed(2).padStart(7)} MB ${k}`);
  lines.push('--- inclusive (a function counted once per stack, recursion included)');
  for (const [k, b] of [...inclusiveBytes(profile.head, name)].sort((a, b) => b[1] - a[1]).slice(0, 50)) lines.push(`${(b / 2 ** 20).toFixed(2).padStart(7)} MB ${k}`);
  writeFileSync(out, `${lines.join('\n')}\n`);
  process.stdout.write(`${lines.join('\n')}\n`);
}
process.stderr.write(`${JSON.stringify({ ms: Math.round(ms), cpuMs: Math.round((cpu.user + cpu.system) / 1000), deltas: cs.deltas.length, work: engine.stats() })}\n`);

/** Bytes allocated under each function (its callees' included), a function counted once per stack. */
function inclusiveBytes(head, name) {
  const below = new Map();
  const sum = (n) => {
    let t = n.selfSize;
    for (const c of n.children) t += sum(c);
    below.set(n, t);
    return t;
  };
  sum(head);
  const out = new Map();
  const visit = (n, onStack) => {
    const k = name(n);
    const fresh = !onStack.has(k);
    if (fresh) {
      out.set(k, (out.get(k) ?? 0) + below.get(n));
      onStack.add(k);
    }
    for (const c of n.children) visit(c, onStack);
    if (fresh) onStack.delete(k);
  };
  visit(head, new Set());
  return out;
}
