// Where a delta relabel's time goes by stage, and whether it is per call or per first call (issue 18,
// perf32tail). Replays TRACE through DIST as `distill replay` does (cold start, built-in warm-up, one
// `engine.apply` + `applyChangeSet` to a MemoryBackend per churn event) with timing wrappers on the
// stage methods below (inclusive µs; each wrapper adds ~1 µs). Prints one JSON line: per stage the
// median over the plain pod relabels, and every pod relabel that changes a map with its stages. With
// PERCALL=Label,... (e.g. MapState.settle,PolicyResolver.contribute,MemoryBackend.apply) each call of
// those stages inside such a relabel is listed too (`Label#1`, `Label#2`): the second call of a stage,
// on another map state's data, against the first, is what the code path costs cold (3461).
//   [PERCALL=...] node [NODE_FLAGS] scripts/relabel-stages.mjs DIST TRACE
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { replayParts } from './lib/replay-parts.mjs';
const [dist, tracePath] = process.argv.slice(2);
const base = pathToFileURL(resolve(dist)).href;
const m = async (p) => import(`${base}/${p}`);
const acc = new Map();
const wrap = (cls, name, label = `${cls.name}.${name}`) => {
  const f = cls.prototype[name];
  cls.prototype[name] = function (...a) { const t = process.hrtime.bigint(); try { return f.apply(this, a); } finally { const dt = process.hrtime.bigint() - t; acc.set(label, (acc.get(label) ?? 0n) + dt); if (process.env.PERCALL?.split(',').includes(label)) { let n = 1; while (acc.has(label + '#' + n)) n++; acc.set(label + '#' + n, dt); } } };
};
const { Engine } = await m('engine/engine.js');
wrap((await m('engine/pod-table.js')).PodTable, 'upsertPod');
wrap((await m('engine/pod-table.js')).PodTable, 'removeRecord');
wrap((await m('engine/identities.js')).IdentityTable, 'acquire');
wrap((await m('engine/selector-cache.js')).SelectorCache, 'addIdentity');
wrap((await m('engine/policy-resolver.js')).PolicyResolver, 'onPeerChange');
wrap(Engine, 'commit');
wrap((await m('engine/commit.js')).Commit, 'run');
wrap((await m('engine/map-state.js')).MapState, 'settle');
wrap(Engine, 'transaction');
wrap((await m('engine/policy-resolver.js')).PolicyResolver, 'contribute');
wrap((await m('backend/memory.js')).MemoryBackend, 'apply');
const { engine, backend, initial, churn, applyChangeSet, warmUpEngine } = await replayParts(dist, tracePath);
applyChangeSet(backend, engine.apply(initial));
warmUpEngine({});
const rows = [];
for (const item of churn) {
  acc.clear();
  const t0 = process.hrtime.bigint();
  const cs = engine.apply([item.event]);
  const t1 = process.hrtime.bigint();
  applyChangeSet(backend, cs);
  const t2 = process.hrtime.bigint();
  if (item.tag !== 'pod-relabel') continue;
  const r = { line: item.line, d: cs.deltas.length, total: Number(t2 - t0) / 1e3, apply: Number(t1 - t0) / 1e3, backend: Number(t2 - t1) / 1e3 };
  for (const [k, v] of acc) r[k] = Number(v) / 1e3;
  rows.push(r);
}
const med = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[s.length >> 1]; };
const keys = Object.keys(rows.find((r) => r.d > 0)).filter((k) => k !== 'line' && k !== 'd');
const plain = rows.filter((r) => r.d === 0);
console.log(JSON.stringify({ plainMedian: Object.fromEntries(keys.map((k) => [k, Math.round(med(plain.map((r) => r[k] ?? 0)))])), delta: rows.filter((r) => r.d > 0).map((r) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, Math.round(v)]))) }));
