// Per-transaction cost of small transactions: one remote pod added, then deleted, N times, after the
// trace's initial phase. Usage: N=20000 node scripts/txn-micro.mjs DIST TRACE (DIST: a build's dist/ dir).
// Prints DIST, wall µs and CPU µs (user + system of this process) per transaction: on a shared
// machine CPU time moves less with other people's load than wall time.
import { engineAfterInitial } from './lib/initial.mjs';

const [dist, trace] = process.argv.slice(2);
const { engine: e, initial } = await engineAfterInitial(dist, trace);
const pods = initial.filter((x) => x.type === 'upsertPod' && !x.local).slice(0, 2000);
// Re-add existing remote pods as new pods with fresh names: pod add + delete per transaction.
const N = Number(process.env.N ?? 4000);
const t0 = process.hrtime.bigint();
const c0 = process.cpuUsage();
for (let i = 0; i < N; i++) {
  const p = pods[i % pods.length].pod;
  const np = { ...p, name: `${p.name}-x${i}` };
  e.apply([{ type: 'upsertPod', pod: np, local: false }]);
  e.apply([{ type: 'deletePod', namespace: np.namespace, name: np.name }]);
}
const us = Number(process.hrtime.bigint() - t0) / 1e3 / (2 * N);
const cpu = process.cpuUsage(c0);
console.log(dist, us.toFixed(2), ((cpu.user + cpu.system) / (2 * N)).toFixed(2));
