// Per-transaction cost of the fail-closed write plan alone. Usage: node scripts/write-plan-micro.mjs DIST TRACE [ROUNDS]
// (DIST: a build's dist/ dir). The trace's churn events are applied one per transaction after its initial
// phase; each transaction's map writes (and, where the plan asks for them, the maps' entries) are recorded,
// then `planWrites` runs over all of them ROUNDS times (default 20). Prints DIST, transactions, deltas,
// wall and CPU µs (user + system of this process) per planned transaction, the plans' operations, and the CPU ms
// of planning the cold start (every map's entries new, one transaction).
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { engineAfterInitial } from './lib/initial.mjs';

const [dist, trace, roundsArg] = process.argv.slice(2);
const rounds = Number(roundsArg ?? 20);
const base = pathToFileURL(resolve(dist)).href;
const { planWrites } = await import(`${base}/backend/write-plan.js`);
const { policyKeyString } = await import(`${base}/model/policy-map.js`);
const { parseTrace } = await import(`${base}/churn/trace.js`);
const { engine } = await engineAfterInitial(dist, trace);
const t = parseTrace(readFileSync(trace, 'utf8'), 't');
const firstChurn = t.items.findIndex((i) => i.kind === 'phase' && i.name !== 'initial');
const churn = t.items.slice(firstChurn).flatMap((i) => (i.kind === 'event' ? [i.event] : []));

// The maps' contents, kept from the engine's deltas (the cold start's included).
const maps = new Map();
const mapOf = (ep) => maps.get(ep) ?? maps.set(ep, new Map()).get(ep);
const { endpointMaps } = await import(`${base}/harness/cluster-sync.js`);
for (const [ep, m] of endpointMaps(engine)) maps.set(ep, new Map(m));

const CAPACITY = 16384;
// The cold start as one transaction: every entry of every map is new.
const coldWrites = [...maps].map(([endpoint, m]) => ({ endpoint, size: 0, deltas: [...m.values()].map((r) => ({ endpoint, op: 'upsert', key: r.key, entry: r.entry })) }));
const coldDeltas = coldWrites.reduce((n, w) => n + w.deltas.length, 0);
const recorded = [];
let deltaCount = 0;
for (const ev of churn) {
  let cs;
  try {
    cs = engine.apply([ev]);
  } catch {
    continue;
  }
  for (const ep of cs.endpointsRemoved) maps.delete(ep);
  for (const ep of cs.endpointsAdded) maps.set(ep, new Map());
  const by = new Map();
  for (const d of cs.deltas) (by.get(d.endpoint) ?? by.set(d.endpoint, []).get(d.endpoint)).push(d);
  const writes = [...by].map(([endpoint, deltas]) => ({ endpoint, deltas, size: mapOf(endpoint).size }));
  const entries = new Map();
  planWrites(writes, CAPACITY, (ep) => {
    const e = [...mapOf(ep).values()];
    entries.set(ep, e);
    return e;
  });
  recorded.push({ writes, entries });
  deltaCount += cs.deltas.length;
  for (const d of cs.deltas) {
    const m = mapOf(d.endpoint);
    if (d.op === 'upsert') m.set(policyKeyString(d.key), { key: d.key, entry: d.entry });
    else m.delete(policyKeyString(d.key));
  }
}

let ops = 0;
const t0 = process.hrtime.bigint();
const c0 = process.cpuUsage();
for (let r = 0; r < rounds; r++) {
  for (const { writes, entries } of recorded) {
    const plan = planWrites(writes, CAPACITY, (ep) => entries.get(ep) ?? []);
    if (r === 0) for (const b of plan) ops += b.ops.length;
  }
}
const n = recorded.length * rounds;
const coldRounds = Math.max(1, Math.round(rounds / 4));
const c1 = process.cpuUsage();
for (let r = 0; r < coldRounds; r++) planWrites(coldWrites, CAPACITY, () => []);
const coldCpu = process.cpuUsage(c1);
const us = Number(process.hrtime.bigint() - t0) / 1e3 / n;
const cpu = process.cpuUsage(c0);
console.log(JSON.stringify({ dist, transactions: recorded.length, deltas: deltaCount, ops, wallUs: +us.toFixed(3), cpuUs: +((cpu.user + cpu.system) / n).toFixed(3), coldDeltas, coldCpuMs: +((coldCpu.user + coldCpu.system) / coldRounds / 1000).toFixed(2) }));
