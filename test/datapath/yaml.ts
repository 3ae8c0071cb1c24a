/** A CiliumNetworkPolicy in namespace x selecting `app: <selector>`, as scenario YAML (indented for a list item). */
export const cnp = (name: string, selector: string, rule: string): string => `
          apiVersion: cilium.io/v2
          kind: CiliumNetworkPolicy
          metadata: {name: ${name}, namespace: x}
          spec:
            endpointSelector: {matchLabels: {app: ${selector}}}
            ${rule}`;

/**
 * The cluster of attack rounds 10d and 16d: the client's ingress admits the peer only; the server
 * admits the client (but not its TCP/80) and the external `ext` (no program of its own), and sends
 * to the client only; the peer admits the client.
 */
export const CLIENT_SERVER_PEER_EXT = `
namespaces: [{name: x, labels: {}}]
pods:
  - {name: x/client, labels: {app: client}}
  - {name: x/server, labels: {app: server}}
  - {name: x/peer, labels: {app: peer}}
externals: [{name: ext, ip: 20.1.1.1}]
policies:
  - ${cnp('client-in', 'client', 'ingress: [{fromEndpoints: [{matchLabels: {app: peer}}]}]')}
  - ${cnp('server-out', 'server', 'egress: [{toEndpoints: [{matchLabels: {app: client}}]}]')}
  - ${cnp('server-in', 'server', `ingress: [{fromEndpoints: [{matchLabels: {app: client}}]}, {fromCIDR: [20.1.1.1/32]}]
            ingressDeny: [{fromEndpoints: [{matchLabels: {app: client}}], toPorts: [{ports: [{port: "80", protocol: TCP}]}]}]`)}
  - ${cnp('peer-in', 'peer', 'ingress: [{fromEndpoints: [{matchLabels: {app: client}}]}]')}
`;
