// What a ClusterNetworkPolicy with `networks` peers or an egress destinationNamedPort costs through
// the identity splits (src/engine/network-splits.ts): counts, not times (deterministic).
// Usage: node scripts/network-splits-cost.mjs [DIST=dist] > bench/results/network-splits-cost.json
import { execSync } from 'node:child_process';
import { cpus } from 'node:os';
import { resolve } from 'node:path';

const dist = resolve(process.argv[2] ?? 'dist');
const { Engine, parseIp, parseManifest } = await import(`${dist}/index.js`);

const NAMESPACES = 20;
const PODS = 30;
const APPS = ['web', 'api', 'db', 'cache', 'queue', 'auth'];

function cluster() {
  const events = [];
  for (let n = 0; n < NAMESPACES; n++) {
    events.push({ type: 'upsertNamespace', name: `ns${n}`, labels: { team: `t${n % 4}` } });
    for (let i = 0; i < PODS; i++) {
      const app = APPS[i % APPS.length];
      // Pods of one app disagree on what `http` means: every fourth pod serves it on 8080.
      const ports = [{ name: 'http', port: i % 4 === 0 ? 8080 : 80, protocol: 'TCP' }];
      events.push({ type: 'upsertPod', pod: { namespace: `ns${n}`, name: `p${i}`, labels: { app }, ip: parseIp(`10.244.${n}.${i + 2}`), serviceAccount: 'default', ports }, local: true });
    }
    const np = { apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { name: 'from-web', namespace: `ns${n}` }, spec: { podSelector: { matchLabels: { app: 'db' } }, ingress: [{ from: [{ podSelector: { matchLabels: { app: 'web' } } }], ports: [{ port: 5432 }] }] } };
    events.push({ type: 'upsertPolicy', policy: parseManifest(np, 'bench') });
  }
  return events;
}

const cnp = (egress) => ({
  type: 'upsertPolicy',
  policy: parseManifest({ apiVersion: 'policy.networking.k8s.io/v1alpha2', kind: 'ClusterNetworkPolicy', metadata: { name: 'probe' }, spec: { tier: 'Admin', priority: 5, subject: { namespaces: { matchLabels: { team: 't0' } } }, egress } }, 'bench'),
});

const CASES = [
  ['networks: one pod /32', [{ action: 'Deny', to: [{ networks: ['10.244.3.7/32'] }] }]],
  ['networks: one namespace /24', [{ action: 'Deny', to: [{ networks: ['10.244.3.0/24'] }] }]],
  ['networks: external only (8.8.8.8/32)', [{ action: 'Deny', to: [{ networks: ['8.8.8.8/32'] }] }]],
  ['networks: 0.0.0.0/0', [{ action: 'Deny', to: [{ networks: ['0.0.0.0/0'] }] }]],
  ['networks: 0.0.0.0/0 and ::/0 (every address: one identity-0 key)', [{ action: 'Deny', to: [{ networks: ['0.0.0.0/0', '::/0'] }] }]],
  ['networks: 10.0.0.0/8 (every pod, no split)', [{ action: 'Deny', to: [{ networks: ['10.0.0.0/8'] }] }]],
  ['pods selector, no split (reference)', [{ action: 'Deny', to: [{ pods: { namespaceSelector: {}, podSelector: { matchLabels: { app: 'db' } } } }] }]],
  ['destinationNamedPort http (the pods of each app disagree)', [{ action: 'Deny', to: [{ namespaces: {} }], protocols: [{ destinationNamedPort: 'http' }] }]],
];

const rows = [];
for (const [name, egress] of CASES) {
  const e = new Engine({ mapCapacity: 1 << 20 });
  e.apply(cluster());
  const identitiesBefore = e.sizes().identities;
  const add = e.apply([cnp(egress)]);
  const identitiesWith = e.sizes().identities;
  const del = e.apply([{ type: 'deletePolicy', ref: { kind: 'ClusterNetworkPolicy', name: 'probe' } }]);
  rows.push({
    case: name,
    add: { deltas: add.deltas.length, ipcache: add.ipcache.length, identitiesBefore, identitiesWith },
    delete: { deltas: del.deltas.length, ipcache: del.ipcache.length, identitiesAfter: e.sizes().identities },
  });
}
const commit = execSync('git rev-parse --short HEAD').toString().trim();
console.log(JSON.stringify({ commit, node: process.version, cpu: cpus()[0]?.model, date: new Date().toISOString(), endpoints: NAMESPACES * PODS, rows }, null, 2));
