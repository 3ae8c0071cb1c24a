// Cluster-model bookkeeping per event, 30,000 pods in 100 namespaces, one fresh process per variant:
// whole-Map copy (the replay before), immer on a flat Map, immer nested per namespace (with and without
// produceWithPatches), immutable.js Map, and a mutable Map (what src/harness/mutable-cluster.ts does).
//   npm i --no-save immer@11 immutable@5 && node scripts/cluster-model-bench.mjs VARIANT [OPS]
import { produce, produceWithPatches, enableMapSet, enablePatches } from 'immer';
import { Map as IMap } from 'immutable';
enableMapSet();
enablePatches();
const N = 30000, NS = 100, OPS = +(process.argv[3] ?? 3000);
const pod = (i, v) => ({ namespace: `ns${i % NS}`, name: `p${i}`, labels: { app: `a${i % 50}`, v: String(v) } });
const ops = []; let x = 12345; const rnd = () => (x = (x * 1103515245 + 12345) & 0x7fffffff) % N;
for (let i = 0; i < OPS; i++) ops.push([i % 3 === 0 ? 'del' : 'up', rnd(), i]);
const variants = {
  copy: () => { let m = new Map(); for (let i = 0; i < N; i++) { const p = pod(i, 0); m.set(`${p.namespace}/${p.name}`, p); }
    return () => { for (const [op, k, v] of ops) { const p = pod(k, v); const key = `${p.namespace}/${p.name}`; const o = new Map(m); if (op === 'del') o.delete(key); else o.set(key, p); m = o; } return m.size; }; },
  immerFlat: () => { let m = new Map(); for (let i = 0; i < N; i++) { const p = pod(i, 0); m.set(`${p.namespace}/${p.name}`, p); }
    return () => { for (const [op, k, v] of ops) { const p = pod(k, v); const key = `${p.namespace}/${p.name}`; m = produce(m, (d) => { if (op === 'del') d.delete(key); else d.set(key, p); }); } return m.size; }; },
  immerNested: () => { let s = { pods: new Map() }; for (let i = 0; i < N; i++) { const p = pod(i, 0); if (!s.pods.has(p.namespace)) s.pods.set(p.namespace, new Map()); s.pods.get(p.namespace).set(p.name, p); }
    return () => { for (const [op, k, v] of ops) { const p = pod(k, v); s = produce(s, (d) => { const nsm = d.pods.get(p.namespace); if (op === 'del') nsm.delete(p.name); else nsm.set(p.name, p); }); } return s.pods.size; }; },
  immerNestedPatches: () => { let s = { pods: new Map() }; for (let i = 0; i < N; i++) { const p = pod(i, 0); if (!s.pods.has(p.namespace)) s.pods.set(p.namespace, new Map()); s.pods.get(p.namespace).set(p.name, p); }
    return () => { let n = 0; for (const [op, k, v] of ops) { const p = pod(k, v); let patches; [s, patches] = produceWithPatches(s, (d) => { const nsm = d.pods.get(p.namespace); if (op === 'del') nsm.delete(p.name); else nsm.set(p.name, p); }); n += patches.length; } return n; }; },
  immutableJs: () => { let m = IMap().asMutable(); for (let i = 0; i < N; i++) { const p = pod(i, 0); m.set(`${p.namespace}/${p.name}`, p); } m = m.asImmutable();
    return () => { for (const [op, k, v] of ops) { const p = pod(k, v); const key = `${p.namespace}/${p.name}`; m = op === 'del' ? m.delete(key) : m.set(key, p); } return m.size; }; },
  mutable: () => { const m = new Map(); for (let i = 0; i < N; i++) { const p = pod(i, 0); m.set(`${p.namespace}/${p.name}`, p); }
    return () => { for (const [op, k, v] of ops) { const p = pod(k, v); const key = `${p.namespace}/${p.name}`; if (op === 'del') m.delete(key); else m.set(key, p); } return m.size; }; },
};
const v = process.argv[2]; const run = variants[v]();
const t = process.hrtime.bigint(); run(); const ns = Number(process.hrtime.bigint() - t);
console.log(JSON.stringify({ variant: v, ops: OPS, usPerOp: +(ns / 1e3 / OPS).toFixed(3) }));
