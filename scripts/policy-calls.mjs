// JavaScript calls per adopted policy in a cold start (V8 precise coverage: deterministic), for a
// build: cilium-2019's shape (one local endpoint, every CiliumNetworkPolicy selecting it, each from
// one of 10 peer groups on one of 3 ports) with 300 and 600 policies, each read by parseManifestFile
// (no list shared between policies, unlike a trace's). The difference over 300 is what one more
// policy costs, no map key added. Prints {dist, callsPerPolicy, functions: {name: calls a policy}}.
// Usage: node scripts/policy-calls.mjs DIST
import { Session } from 'node:inspector/promises';
import { resolve } from 'node:path';

const dist = resolve(process.argv[2] ?? 'dist');
const { parseIp } = await import(resolve(dist, 'model/cidr.js'));
const { Engine } = await import(resolve(dist, 'engine/engine.js'));
const { parseManifestFile } = await import(resolve(dist, 'policy/manifest.js'));
const GROUPS = 10;
const PORTS = 3;

function events(policies) {
  const pod = (name, labels, i, local) => ({ type: 'upsertPod', pod: { namespace: 'bench', name, labels, ip: parseIp(`10.0.0.${i}`), serviceAccount: 'default', ports: [] }, local });
  const out = [{ type: 'upsertNamespace', name: 'bench', labels: {} }, pod('target', { app: 'target' }, 1, true)];
  for (let i = 0; i < 2 * GROUPS; i++) out.push(pod(`peer-${i}`, { app: `peer-${i}`, group: `g-${i % GROUPS}` }, i + 2, false));
  for (let i = 0; i < policies; i++) {
    const yaml = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {namespace: bench, name: rule-${i}}
spec:
  endpointSelector: {matchLabels: {app: target}}
  ingress:
  - fromEndpoints: [{matchLabels: {group: g-${i % GROUPS}}}]
    toPorts: [{ports: [{port: "${8000 + (i % PORTS)}", protocol: TCP}]}]
`;
    out.push({ type: 'upsertPolicy', policy: parseManifestFile(yaml, 'policy.yaml')[0] });
  }
  return out;
}

const s = new Session();
s.connect();
await s.post('Profiler.enable');
await s.post('Profiler.startPreciseCoverage', { callCount: true, detailed: false });

async function calls(batch) {
  await s.post('Profiler.takePreciseCoverage'); // resets the counts: what follows is the cold start only
  new Engine({}).apply(batch);
  const { result } = await s.post('Profiler.takePreciseCoverage');
  const out = new Map();
  for (const script of result) {
    const file = script.url.startsWith('file://') && script.url.includes(dist) ? script.url.slice(script.url.indexOf(dist) + dist.length + 1) : undefined;
    if (file === undefined) continue;
    for (const f of script.functions) {
      const n = f.ranges[0]?.count ?? 0;
      if (n > 0) out.set(`${f.functionName || '(anon)'} ${file}`, (out.get(`${f.functionName || '(anon)'} ${file}`) ?? 0) + n);
    }
  }
  return out;
}

const few = await calls(events(300));
const many = await calls(events(600));
const functions = {};
let total = 0;
for (const [k, n] of many) {
  const d = (n - (few.get(k) ?? 0)) / 300;
  total += d;
  if (d !== 0) functions[k] = d;
}
process.stdout.write(`${JSON.stringify({ dist, callsPerPolicy: total, functions })}\n`);
