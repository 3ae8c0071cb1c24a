// Work and time of named-port churn against endpoints with named L7 (DNS) rules (review 32t of 3381/3382).
// N local clients (one identity each) adopt an egress rule to kube-system on port name `dns`/UDP with a DNS rule;
// kube-dns pods name 53/UDP `dns`, R remote pods name 8080/TCP `web`. Churn, each kind K times:
//   neutral: a remote pod with dns=53/UDP comes and goes (the name's node-wide ports do not change);
//   other:   a remote pod with web=9090/TCP comes and goes (another name turns ambiguous and back);
//   flip:    a remote pod with dns=5353/UDP comes and goes (dns ambiguous, then 53 again: every client's filter moves);
//   otherProtocol: a remote pod with dns=53/TCP comes and goes (the name's UDP port, the rule's, does not change).
// Usage: node scripts/named-l7-churn-cost.mjs DIST [N] [K]; prints one JSON line per churn kind.
import { resolve } from 'node:path';
const dist = process.argv[2] ?? 'dist';
const N = Number(process.argv[3] ?? 200);
const K = Number(process.argv[4] ?? 50);
const { Engine } = await import(resolve(dist, 'engine/engine.js'));
const { parseIp } = await import(resolve(dist, 'model/cidr.js'));
const { parseManifestFile } = await import(resolve(dist, 'policy/manifest.js'));

const pod = (namespace, name, labels, ip, ports, local) => ({ type: 'upsertPod', pod: { namespace, name, labels, ip: parseIp(ip), serviceAccount: 'default', ports }, local });
const ip = (i) => `10.${1 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`;
const policy = parseManifestFile(
  ['apiVersion: cilium.io/v2', 'kind: CiliumNetworkPolicy', 'metadata: {name: dns, namespace: x}', 'spec:', '  endpointSelector: {matchLabels: {role: client}}', '  egress:',
    '    - toEndpoints: [{matchLabels: {k8s:io.kubernetes.pod.namespace: kube-system}}]', '      toPorts: [{ports: [{port: dns, protocol: UDP}], rules: {dns: [{matchPattern: "*.example"}]}}]'].join('\n'),
  'p.yaml',
)[0];

const engine = new Engine();
const initial = [{ type: 'upsertNamespace', name: 'x', labels: {} }, { type: 'upsertNamespace', name: 'kube-system', labels: {} }, { type: 'upsertNamespace', name: 'r', labels: {} }, { type: 'upsertPolicy', policy }];
for (let i = 0; i < 3; i++) initial.push(pod('kube-system', `dns-${i}`, { app: 'kube-dns' }, ip(10 + i), [{ name: 'dns', port: 53, protocol: 'UDP' }], false));
for (let i = 0; i < N; i++) initial.push(pod('x', `c-${i}`, { role: 'client', id: `c${i}` }, ip(1000 + i), [], true));
for (let i = 0; i < 500; i++) initial.push(pod('r', `w-${i}`, { app: `w${i % 50}` }, ip(5000 + i), [{ name: 'web', port: 8080, protocol: 'TCP' }], false));
const t0 = performance.now();
engine.apply(initial);
const cold = performance.now() - t0;

const kinds = {
  neutral: [{ name: 'dns', port: 53, protocol: 'UDP' }],
  other: [{ name: 'web', port: 9090, protocol: 'TCP' }],
  flip: [{ name: 'dns', port: 5353, protocol: 'UDP' }],
  otherProtocol: [{ name: 'dns', port: 53, protocol: 'TCP' }],
};
const sum = (a, b) => Object.fromEntries(Object.keys(b).map((k) => [k, (a[k] ?? 0) + b[k]]));
console.log(JSON.stringify({ dist, N, K, coldMs: Math.round(cold) }));
for (const [kind, ports] of Object.entries(kinds)) {
  let work = {};
  let ms = 0;
  for (let k = 0; k < K; k++) {
    for (const ev of [pod('r', 'churn', { app: 'churn' }, ip(9000), ports, false), { type: 'deletePod', namespace: 'r', name: 'churn' }]) {
      const t = performance.now();
      const cs = engine.apply([ev]);
      ms += performance.now() - t;
      work = sum(work, cs.work);
    }
  }
  const per = (v) => Math.round((v / (2 * K)) * 10) / 10;
  console.log(JSON.stringify({ kind, perEvent: { ms: per(ms), mapEntriesVisited: per(work.mapEntriesVisited), mapStateUpdates: per(work.mapStateUpdates), deltas: per(work.deltas), l7Deltas: per(work.l7Deltas), policyResolutions: per(work.policyResolutions) } }));
}
