// Same-process A/B of the pod IP-owner table (PodFacts setOwner/ownerOf) of two builds on a trace's
// pod addresses, alternating builds per round: a cold start's pattern (every IP set on empty tables,
// then each looked up twice, as the commit's ipcache reads do) and a churn transaction's (each IP set
// again with the rollback bookkeeping, then committed). Main-thread CPU µs per round (Linux schedstat,
// process CPU elsewhere); the median and minimum over rounds are the numbers to read on a loaded machine.
// Usage: node --expose-gc scripts/owner-table-ab.mjs OLD_DIST NEW_DIST TRACE [ROUNDS=30]
import { readFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { resolve } from 'node:path';
import { initialEvents } from './initial-events.mjs';

const [oldDist, newDist, tracePath, roundsArg] = process.argv.slice(2);
if (!oldDist || !newDist || !tracePath || typeof globalThis.gc !== 'function') {
  process.stderr.write('usage: node --expose-gc scripts/owner-table-ab.mjs OLD_DIST NEW_DIST TRACE [ROUNDS=30]\n');
  process.exit(2);
}
const rounds = Number(roundsArg ?? 30);
const cpuUs = () => {
  try {
    return Number(readFileSync('/proc/thread-self/schedstat', 'utf8').split(' ')[0]) / 1e3;
  } catch {
    const c = process.cpuUsage();
    return c.user + c.system;
  }
};
const { parseTrace } = await import(resolve(newDist, 'churn/trace.js'));
const trace = parseTrace(readFileSync(tracePath, 'utf8'), tracePath, { manifests: false });
const recs = [];
for (const e of initialEvents(trace)) if (e.type === 'upsertPod') recs.push({ pod: e.pod, local: false });
const builds = [
  { name: 'old', dist: oldDist, PodFacts: (await import(resolve(oldDist, 'engine/pod-facts.js'))).PodFacts, cold: [], churn: [] },
  { name: 'new', dist: newDist, PodFacts: (await import(resolve(newDist, 'engine/pod-facts.js'))).PodFacts, cold: [], churn: [] },
];

function round(PodFacts) {
  const f = new PodFacts();
  const t0 = cpuUs();
  f.begin();
  for (const r of recs) f.setOwner(r.pod.ip.text, r);
  let hits = 0;
  for (let k = 0; k < 2; k++) for (const r of recs) if (f.ownerOf(r.pod.ip.text) === r) hits++;
  f.commit();
  const t1 = cpuUs();
  f.begin();
  for (const r of recs) f.setOwner(r.pod.ip.text, r);
  f.commit();
  const t2 = cpuUs();
  if (hits !== 2 * recs.length) throw new Error('lookups missed');
  return [t1 - t0, t2 - t1];
}

for (let i = 0; i < rounds; i++) {
  for (const b of i % 2 === 0 ? builds : [...builds].reverse()) {
    globalThis.gc();
    const [cold, churn] = round(b.PodFacts);
    b.cold.push(cold);
    b.churn.push(churn);
  }
}
const stat = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return { median: Math.round(s[s.length >> 1]), min: Math.round(s[0]), max: Math.round(s[s.length - 1]) };
};
process.stdout.write(`${JSON.stringify({ header: { date: new Date().toISOString(), node: process.version, cpu: cpus()[0]?.model, trace: tracePath, ips: recs.length, rounds, load: loadavg().map((x) => Math.round(x * 10) / 10) } })}\n`);
for (const b of builds) process.stdout.write(`${JSON.stringify({ build: b.name, dist: b.dist, coldUs: stat(b.cold), churnUs: stat(b.churn) })}\n`);
