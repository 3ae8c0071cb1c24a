// Where a churn event's time goes, per engine stage (issue 18, fourth session). Replays TRACE as
// tail-attrib.mjs does, with a timing wrapper on the stage methods named below (inclusive µs; the
// wrappers inflate totals, compare shares), and prints for the events of TAG (default
// pod-relabel) the 14 slowest, one JSON line each ("d": deltas), or with AGG=N the median and
// mean of each column over the N slowest under 1 ms. Experiments, by environment variable:
//   VAL=1            validate each event once before applying it (its objects are then warm)
//   WARM=L,..:A:B    before every churn event, flip a scratch engine built from trace lines L,..
//                    between lines A and B (warms the code of that path, not the engine's data)
//   ALT=LINE         after the replay, flip LINE's pod 16 times between its two label sets
//   FLUSH=1          with ALT: walk a 64 MB buffer before each flip (evicts the CPU caches)
//   node scripts/tail-phases.mjs DIST TRACE [TAG]
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { splitTrace } from './lib/initial.mjs';
const [dist, tracePath, tagArg] = process.argv.slice(2);
const base = pathToFileURL(resolve(dist)).href;
const { Engine } = await import(`${base}/engine/engine.js`);
const { parseTrace } = await import(`${base}/churn/trace.js`);
const { applyChangeSet } = await import(`${base}/backend/backend.js`);
const { MemoryBackend } = await import(`${base}/backend/memory.js`);
const { reconcile } = await import(`${base}/node/restart.js`);
const mods = {
  PodTable: (await import(`${base}/engine/pod-table.js`)).PodTable,
  IdentityTable: (await import(`${base}/engine/identities.js`)).IdentityTable,
  NamedPorts: (await import(`${base}/engine/named-ports.js`)).NamedPorts,
  SelectorCache: (await import(`${base}/engine/selector-cache.js`)).SelectorCache,
  PolicyResolver: (await import(`${base}/engine/policy-resolver.js`)).PolicyResolver,
  Commit: (await import(`${base}/engine/commit.js`)).Commit,
  NetworkSplits: (await import(`${base}/engine/network-splits.js`)).NetworkSplits,
  EngineContext: (await import(`${base}/engine/context.js`)).EngineContext,
  ModelStore: (await import(`${base}/engine/model-store.js`)).ModelStore,
  MapState: (await import(`${base}/engine/map-state.js`)).MapState,
};
const { validateBatch } = await import(`${base}/engine/validate.js`);
const acc = new Map();
let on = false;
function wrap(cls, name, label = `${cls.name}.${name}`) {
  const orig = cls.prototype[name];
  if (!orig) { console.error('no', label); return; }
  cls.prototype[name] = function (...a) {
    if (!on) return orig.apply(this, a);
    const t0 = process.hrtime.bigint();
    try { return orig.apply(this, a); } finally { acc.set(label, (acc.get(label) ?? 0n) + process.hrtime.bigint() - t0); }
  };
}
wrap(mods.PodTable, 'upsertPod'); wrap(mods.PodTable, 'removeRecord'); wrap(mods.PodTable, 'addPod');
wrap(mods.IdentityTable, 'acquire'); wrap(mods.IdentityTable, 'freeUnused'); wrap(mods.IdentityTable, 'releaseForPod');
wrap(mods.SelectorCache, 'addIdentity'); wrap(mods.SelectorCache, 'removeIdentity');
wrap(mods.PolicyResolver, 'onPeerChange');
wrap(mods.Commit, 'run');
wrap(mods.NetworkSplits, 'podJoined'); wrap(mods.NetworkSplits, 'podLeft');
wrap(mods.PodTable, 'identityLabels'); wrap(mods.EngineContext, 'touchIpcacheHost'); wrap(mods.EngineContext, 'onUndo'); wrap(mods.ModelStore, 'apply');
wrap(mods.SelectorCache, 'candidateSelectors'); wrap(mods.SelectorCache, 'indexIdentity'); wrap(mods.NamedPorts, 'changeNamedPorts'); wrap(mods.IdentityTable, 'allocate');
for (const m of ['change', 'settle', 'settleEntries', 'addRawAt']) wrap(mods.MapState, m);
for (const m of ['emit', 'collect', 'ipcacheDeltas', 'allocatePorts', 'movedEndpoints']) wrap(mods.Commit, m);
for (const m of ['apply', 'size', 'dump']) wrap(MemoryBackend, m);
wrap(Engine, 'record'); wrap(Engine, 'commit'); wrap(Engine, 'transaction'); wrap(Engine, 'applyEvents');
const trace = parseTrace(readFileSync(tracePath, 'utf8'), tracePath);
const { initial, churn } = splitTrace(trace);
const backend = new MemoryBackend();
reconcile(new Engine(), backend);
const engine = new Engine();
applyChangeSet(backend, engine.apply(initial));
const rows = [];
let mini = null;
if (process.env.WARM) {
  const [ls, a, b] = process.env.WARM.split(':');
  const lines = new Set(ls.split(',').map(Number));
  const evs = trace.items.filter((i) => i.kind === 'event' && lines.has(i.line)).map((i) => i.event);
  const at = (l) => trace.items.find((i) => i.kind === 'event' && i.line === Number(l)).event;
  mini = { engine: new Engine(), backend: new MemoryBackend(), a: at(a), b: at(b), n: 0 };
  reconcile(new Engine(), mini.backend);
  applyChangeSet(mini.backend, mini.engine.apply(evs));
}
const warm = () => { if (!mini) return; const cs = mini.engine.apply([mini.n++ % 2 === 0 ? mini.a : mini.b]); applyChangeSet(mini.backend, cs); };
for (const item of churn) {
  warm();
  acc.clear(); on = true;
  const tv = process.hrtime.bigint();
  if (process.env.VAL) validateBatch(engine.model, [item.event]);
  acc.set('validateAlone', process.hrtime.bigint() - tv);
  const t0 = process.hrtime.bigint();
  const cs = engine.apply([item.event]);
  const t1 = process.hrtime.bigint();
  applyChangeSet(backend, cs);
  const t2 = process.hrtime.bigint();
  on = false;
  if (item.tag !== (tagArg ?? 'pod-relabel')) continue;
  const r = { line: item.line, d: cs.deltas.length, total: Number(t2 - t0) / 1e3, apply: Number(t1 - t0) / 1e3, backend: Number(t2 - t1) / 1e3 };
  for (const [k, v] of acc) r[k] = Number(v) / 1e3;
  r.applyRest = r.apply - (r['Engine.transaction'] ?? 0) - (r['Engine.record'] ?? 0);
  r.upsertRest = (r['PodTable.upsertPod'] ?? 0) - (r['PodTable.addPod'] ?? 0) - (r['PodTable.removeRecord'] ?? 0);
  r.addPodRest = (r['PodTable.addPod'] ?? 0) - (r['IdentityTable.acquire'] ?? 0) - (r['PodTable.identityLabels'] ?? 0);
  r.txRest = (r['Engine.transaction'] ?? 0) - (r['Engine.applyEvents'] ?? 0) - (r['Engine.commit'] ?? 0);
  rows.push(r);
}
rows.sort((a, b) => b.total - a.total);
const flushBuf = new Uint8Array(64 << 20);
if (process.env.ALT) {
  const line = Number(process.env.ALT);
  const ev = churn.find((i) => i.line === line).event;
  let prev = null;
  for (const it of trace.items) if (it.kind === 'event' && it.line < line && it.event.type === 'upsertPod' && it.event.pod.name === ev.pod.name && it.event.pod.namespace === ev.pod.namespace) prev = it.event;
  for (let i = 0; i < 16; i++) {
    const e = i % 2 === 0 ? prev : ev;
    if (process.env.FLUSH) { let x = 0; for (let j = 0; j < flushBuf.length; j += 64) x += flushBuf[j]++; globalThis.__x = x; }
    acc.clear(); on = true;
    const t0 = process.hrtime.bigint();
    const cs = engine.apply([e]);
    const t1 = process.hrtime.bigint();
    applyChangeSet(backend, cs);
    const t2 = process.hrtime.bigint();
    on = false;
    const r = { i, d: cs.deltas.length, total: Number(t2 - t0) / 1e3, apply: Number(t1 - t0) / 1e3, backend: Number(t2 - t1) / 1e3 };
    for (const [k, v] of acc) r[k] = Number(v) / 1e3;
    console.log(JSON.stringify(r, (k, v) => (typeof v === 'number' ? Math.round(v) : v)));
  }
  process.exit(0);
}
if (process.env.AGG) {
  const top = rows.filter((r) => r.total < 1000).slice(0, Number(process.env.AGG));
  const keys = new Set(top.flatMap((r) => Object.keys(r)));
  for (const k of keys) if (k !== 'line' && k !== 'd') { const v = top.map((r) => r[k] ?? 0).sort((a, b) => a - b); console.log(k.padEnd(32), 'median', v[v.length >> 1].toFixed(1), 'mean', (v.reduce((a, b) => a + b, 0) / v.length).toFixed(1)); }
  process.exit(0);
}
for (const r of rows.slice(0, 14)) console.log(JSON.stringify(r, (k, v) => (typeof v === 'number' ? Math.round(v) : v)));
