// Where one churn event's time goes (issue 18): replays TRACE up to trace line LINE, wraps every
// method of every class exported by DIST's engine/, model/ and backend/ modules with a timer, then
// applies that one event and prints inclusive µs and calls per method. The wrappers inflate the
// total (a timer pair per call): compare shares, not absolute numbers.
//   node scripts/event-breakdown.mjs DIST TRACE LINE [TOP=40]
import { readdirSync } from 'node:fs';
import { resolve } from 'node:path';
import { engineBeforeLine } from './lib/initial.mjs';

const [dist, tracePath, lineArg, topArg] = process.argv.slice(2);
if (!dist || !tracePath || !lineArg) {
  process.stderr.write('usage: node scripts/event-breakdown.mjs DIST TRACE LINE [TOP]\n');
  process.exit(2);
}
const line = Number(lineArg);
const { engine, base, churn, idx } = await engineBeforeLine(dist, tracePath, line);
if (idx < 0) throw new Error(`${tracePath}:${line}: not a churn event`);

const ns = new Map();
const calls = new Map();
for (const dir of ['engine', 'model', 'backend']) {
  for (const f of readdirSync(resolve(dist, dir)).filter((n) => n.endsWith('.js'))) {
    for (const [name, C] of Object.entries(await import(`${base}/${dir}/${f}`))) {
      if (typeof C !== 'function' || !C.prototype) continue;
      for (const k of Object.getOwnPropertyNames(C.prototype)) {
        const orig = Object.getOwnPropertyDescriptor(C.prototype, k)?.value;
        if (k === 'constructor' || typeof orig !== 'function') continue;
        const label = `${name}.${k}`;
        C.prototype[k] = function (...args) {
          const t0 = process.hrtime.bigint();
          try {
            return orig.apply(this, args);
          } finally {
            ns.set(label, (ns.get(label) ?? 0n) + (process.hrtime.bigint() - t0));
            calls.set(label, (calls.get(label) ?? 0) + 1);
          }
        };
      }
    }
  }
}
const t0 = process.hrtime.bigint();
const cs = engine.apply([churn[idx].event]);
const total = Number(process.hrtime.bigint() - t0) / 1e3;
process.stdout.write(`line ${line} (${churn[idx].tag}): ${total.toFixed(0)} µs wrapped, ${cs.deltas.length} deltas\n`);
for (const [k, v] of [...ns].sort((a, b) => (b[1] > a[1] ? 1 : b[1] < a[1] ? -1 : 0)).slice(0, Number(topArg ?? 40))) {
  process.stdout.write(`${(Number(v) / 1e3).toFixed(1).padStart(8)} µs ${String(calls.get(k)).padStart(6)} calls  ${k}\n`);
}
