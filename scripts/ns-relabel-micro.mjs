// Per-transaction cost of namespace relabels (every pod of the namespace re-identified): after
// the trace's initial phase, N relabels cycling over its namespaces (N warm-up ones first).
// Usage: N=400 node scripts/ns-relabel-micro.mjs DIST TRACE (DIST: a build's dist/ dir).
// Prints DIST, namespaces, wall µs and CPU µs (user + system of this process) per relabel.
import { engineAfterInitial } from './lib/initial.mjs';

const [dist, trace] = process.argv.slice(2);
const { engine: e, initial } = await engineAfterInitial(dist, trace);
const nss = initial.filter((x) => x.type === 'upsertNamespace');
const N = Number(process.env.N ?? 400);
const run = (n, off) => {
  for (let i = 0; i < n; i++) {
    const ns = nss[i % nss.length];
    e.apply([{ type: 'upsertNamespace', name: ns.name, labels: { ...ns.labels, flip: String((i + off) % 3) } }]);
  }
};
run(N, 0);
const c0 = process.cpuUsage();
const t0 = process.hrtime.bigint();
run(N, 1);
const us = Number(process.hrtime.bigint() - t0) / 1e3 / N;
const cpu = process.cpuUsage(c0);
console.log(dist, nss.length, us.toFixed(0), ((cpu.user + cpu.system) / N).toFixed(0));
