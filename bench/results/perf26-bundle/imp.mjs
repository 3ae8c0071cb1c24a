// perf26 experiment (not a product build): run from /tmp/p26/bundle (entry.mjs, out/bundle.mjs there). See docs/benchmarks.md, twenty-sixth session.
// fresh process: main-thread CPU of importing the modules (bundle or dist), then the cold start
import { readFileSync } from 'node:fs';
const mainMs = () => Number(readFileSync('/proc/thread-self/schedstat', 'utf8').split(' ')[0]) / 1e6;
const which = process.argv[2];
const m0 = mainMs(); const p0 = process.cpuUsage();
let mod;
if (which === 'bundle') mod = await import('/tmp/p26/bundle/out/bundle.mjs');
else mod = await import('/tmp/p26/bundle/entry.mjs');
const m1 = mainMs(); const p1 = process.cpuUsage(p0);
const { initialEvents } = await import('/work/h-perf26/scripts/initial-events.mjs');
const t = mod.parseTrace(readFileSync('/tmp/c2019.jsonl', 'utf8'), '/tmp/c2019.jsonl', { manifests: false });
const ini = initialEvents(t);
const m2 = mainMs();
const cs = new mod.Engine({}).apply(ini);
const m3 = mainMs();
console.log(JSON.stringify({ which, importMain: Math.round(m1 - m0), importProc: Math.round((p1.user + p1.system) / 1000), parseMain: Math.round(m2 - m1), applyMain: Math.round(m3 - m2), deltas: cs.deltas.length, work: JSON.stringify(cs.work).length }));
