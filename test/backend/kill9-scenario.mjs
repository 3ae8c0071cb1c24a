// A large transaction for the kill -9 test, shared by the test (src) and its child process
// (dist): the caller passes its own parseManifestFile and parseIp, so each side builds its own
// events. Stage 1 is the old state, stage 2 the transaction from old to new.
export const CLIENTS = 240;
export const LOCAL = ['web-0', 'web-1', 'web-2', 'web-3'];

const cnp = (name, spec) => `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: ${name}, namespace: prod}
spec:
${spec}`;

function pod(parseIp, name, labels, local, n) {
  const ip = parseIp(`10.251.${n >> 8}.${n & 255}`);
  return { type: 'upsertPod', local, pod: { namespace: 'prod', name, labels, ip, serviceAccount: 'default', ports: [] } };
}

const policy = (parseManifestFile, name, spec) => ({ type: 'upsertPolicy', policy: parseManifestFile(cnp(name, spec), `${name}.yaml`)[0] });

export function stage(n, parseManifestFile, parseIp) {
  if (n === 1) {
    const locals = LOCAL.map((name, i) => pod(parseIp, name, { app: 'web', idx: String(i) }, true, 10 + i));
    const clients = Array.from({ length: CLIENTS }, (_, i) => pod(parseIp, `client-${i}`, { app: 'client', i: String(i) }, false, 100 + i));
    return [
      ...locals,
      ...clients,
      // Every web pod talks to every web pod; web-0 may not reach web-1 on 9000 (a deny in A's egress).
      policy(parseManifestFile, 'web-mesh', `  endpointSelector: {matchLabels: {app: web}}
  egress: [{toEndpoints: [{matchLabels: {app: web}}]}]
  ingress: [{fromEndpoints: [{matchLabels: {app: web}}]}]`),
      policy(parseManifestFile, 'no-9000', `  endpointSelector: {matchLabels: {idx: "0"}}
  egressDeny: [{toEndpoints: [{matchLabels: {idx: "1"}}], toPorts: [{ports: [{port: "9000", protocol: TCP}]}]}]`),
      policy(parseManifestFile, 'clients', `  endpointSelector: {matchLabels: {app: web}}
  ingress: [{fromEndpoints: [{matchLabels: {app: client}}], toPorts: [{ports: [{port: "8000", endPort: 8010, protocol: TCP}]}]}]`),
      policy(parseManifestFile, 'l7', `  endpointSelector: {matchLabels: {idx: "2"}}
  ingress: [{fromEndpoints: [{matchLabels: {app: client}}], toPorts: [{ports: [{port: "80", protocol: TCP}], rules: {http: [{method: GET, path: /public}]}}]}]`),
    ];
  }
  return [
    // The deny moves to web-1's ingress.
    { type: 'deletePolicy', ref: { kind: 'CiliumNetworkPolicy', namespace: 'prod', name: 'no-9000' } },
    policy(parseManifestFile, 'no-9000-in', `  endpointSelector: {matchLabels: {idx: "1"}}
  ingressDeny: [{fromEndpoints: [{matchLabels: {idx: "0"}}], toPorts: [{ports: [{port: "9000", protocol: TCP}]}]}]`),
    // The client range moves and gets a hole; clients get denied UDP.
    policy(parseManifestFile, 'clients', `  endpointSelector: {matchLabels: {app: web}}
  ingress: [{fromEndpoints: [{matchLabels: {app: client}}], toPorts: [{ports: [{port: "8004", endPort: 8030, protocol: TCP}]}]}]
  ingressDeny: [{fromEndpoints: [{matchLabels: {app: client}}], toPorts: [{ports: [{port: "8020", protocol: TCP}, {port: "53", protocol: UDP}]}]}]`),
    // The L7 rule moves from web-2 to web-3, on another port.
    policy(parseManifestFile, 'l7', `  endpointSelector: {matchLabels: {idx: "3"}}
  ingress: [{fromEndpoints: [{matchLabels: {app: client}}], toPorts: [{ports: [{port: "8080", protocol: TCP}], rules: {http: [{method: GET, path: /public}]}}]}]`),
  ];
}
