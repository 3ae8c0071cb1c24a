// Quick latency smoke test of the engine (not the benchmark suite: see issue 5).
// 30 local endpoints, 3,000 remote pods, then 3,000 policies, 2,000 identity adds and deletes,
// one event per transaction. Run after `npm run build`: node scripts/engine-smoke.mjs [--l7]
// With --l7 every third policy carries HTTP rules (a redirect and L7 table rows per peer).
import { Engine } from '../dist/engine/engine.js';
import { parseManifest } from '../dist/policy/manifest.js';
import { parseIp } from '../dist/model/cidr.js';
const e = new Engine();
let n = 2;
const pod = (ns, name, labels, local) => ({ type: 'upsertPod', local, pod: { namespace: ns, name, labels, ip: parseIp(`10.${(n >> 16) & 255}.${(n >> 8) & 255}.${n++ & 255}`), serviceAccount: 'default', ports: [] } });
const l7 = process.argv.includes('--l7');
const rules = (i) => (l7 && i % 3 === 0 ? { rules: { http: [{ method: 'GET', path: `/api/v${i % 7}/.*` }] } } : {});
const pol = (i) => ({ type: 'upsertPolicy', policy: parseManifest({ apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name: `p${i}`, namespace: 'prod' }, spec: { endpointSelector: { matchLabels: { app: `svc-${i % 30}` } }, ingress: [{ fromEndpoints: [{ matchLabels: { app: `client-${i % 200}` } }], toPorts: [{ ports: [{ port: String(80 + (i % 50)), protocol: 'TCP' }], ...rules(i) }] }] } }, 'x') });
for (let i = 0; i < 30; i++) e.apply([pod('prod', `local-${i}`, { app: `svc-${i}` }, true)]);
for (let i = 0; i < 3000; i++) e.apply([pod('prod', `remote-${i}`, { app: `client-${i % 200}`, idx: String(i % 1000) }, false)]);
const pols = Array.from({ length: 3000 }, (_, i) => pol(i));
let t = performance.now();
for (const p of pols) e.apply([p]);
console.log('policy add avg us', ((performance.now() - t) * 1000 / 3000).toFixed(1));
t = performance.now();
for (let i = 0; i < 2000; i++) e.apply([pod('prod', `new-${i}`, { app: `client-${i % 200}`, idx: `n${i}` }, false)]);
console.log('identity add avg us', ((performance.now() - t) * 1000 / 2000).toFixed(1));
t = performance.now();
for (let i = 0; i < 2000; i++) e.apply([{ type: 'deletePod', namespace: 'prod', name: `new-${i}` }]);
console.log('identity del avg us', ((performance.now() - t) * 1000 / 2000).toFixed(1));
console.log(JSON.stringify(e.sizes()));
const redirects = e.endpoints().reduce((n, ep) => n + e.redirects(ep).length, 0);
const rows = e.endpoints().reduce((n, ep) => n + e.l7Table(ep).length, 0);
console.log(JSON.stringify({ redirects, l7Rows: rows, l7Deltas: e.stats().l7Deltas, proxyPortsAllocated: e.stats().proxyPortsAllocated }));
