// Steady-state cost of an identity's lifecycle (issue 18): after TRACE's initial phase, adds a
// remote pod with labels no other pod has (a new identity; the first identity-add churn event of
// the trace as template) and deletes it, N times, each its own transaction. Prints µs per
// add + delete; run it under `node --cpu-prof` for the steady-state profile of that path.
//   node [--cpu-prof] scripts/identity-cycle.mjs DIST TRACE [N=20000]
import { engineBeforeLine } from './lib/initial.mjs';

const [dist, tracePath, nArg] = process.argv.slice(2);
if (!dist || !tracePath) {
  process.stderr.write('usage: node scripts/identity-cycle.mjs DIST TRACE [N]\n');
  process.exit(2);
}
// No churn line: the engine after the initial phase only.
const { engine, churn } = await engineBeforeLine(dist, tracePath, -1);
const template = churn.find((i) => i.tag === 'identity-add')?.event;
if (template?.type !== 'upsertPod') throw new Error(`${tracePath}: no identity-add churn event to use as a template`);
const n = Number(nArg ?? 20000);
const t0 = process.hrtime.bigint();
for (let i = 0; i < n; i++) {
  const [a, b] = [(i >> 8) & 255, i & 255];
  const ip = { family: 'ipv4', text: `10.200.${a}.${b}`, value: BigInt(((10 << 24) | (200 << 16) | (a << 8) | b) >>> 0) };
  const pod = { ...template.pod, name: `cycle-${i}`, labels: { app: `cycle-${i}` }, ip };
  engine.apply([{ ...template, pod }]);
  engine.apply([{ type: 'deletePod', namespace: pod.namespace, name: pod.name }]);
}
process.stdout.write(`${JSON.stringify({ cycles: n, usPerAddAndDelete: Math.round(Number(process.hrtime.bigint() - t0) / 1e2 / n) / 10 })}\n`);
