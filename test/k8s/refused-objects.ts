import type { Engine } from '../../src/engine/engine.js';
import { parseIp } from '../../src/model/cidr.js';

/** Objects of the refused-relabel tests (28a, 29b): namespace x, x/server on n1, group g, node n2, a deny on group labels. */
export type Obj = Record<string, unknown>;
export const line = (type: string, object: Obj): string => JSON.stringify({ type, object });
export const md = (name: string, rv: number, extra: Obj = {}): Obj => ({ name, resourceVersion: String(rv), ...extra });
export const namespace: Obj = { apiVersion: 'v1', kind: 'Namespace', metadata: md('x', 2) };
export const server: Obj = { apiVersion: 'v1', kind: 'Pod', metadata: md('server', 3, { namespace: 'x', labels: { app: 'server' } }), spec: { nodeName: 'n1', containers: [] }, status: { phase: 'Running', podIP: '10.0.0.1' } };
export const other: Obj = { apiVersion: 'v1', kind: 'Namespace', metadata: md('unrelated', 99) };
export const cnp = (name: string, rv: number, spec: Obj): Obj => ({ apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: md(name, rv, { namespace: 'x' }), spec: { endpointSelector: { matchLabels: { app: 'server' } }, ...spec } });
export const group = (rv: number, env: string): Obj => ({ apiVersion: 'cilium.io/v2', kind: 'CiliumCIDRGroup', metadata: md('g', rv, { labels: { env } }), spec: { externalCIDRs: ['198.51.100.0/24'] } });
const ports = Array.from({ length: 40 }, (_, i) => ({ port: String(70 + i), protocol: 'TCP' }));
/** An ingress deny of `cidrGroupSelector env` at x/server, on 40 ports (`many`, over a small map once it selects) or every port. */
export const denyEnv = (rv: number, env: string, many: boolean): Obj => cnp('deny-env', rv, { ingressDeny: [{ fromCIDRSet: [{ cidrGroupSelector: { matchLabels: { env } } }], ...(many ? { toPorts: [{ ports }] } : {}) }] });
export const nodeObj = (rv: number, role: string): Obj => ({ apiVersion: 'v1', kind: 'Node', metadata: md('n2', rv, { labels: { role } }), status: { addresses: [{ type: 'InternalIP', address: '172.16.0.2' }] } });
/** 20 ClusterNetworkPolicy ports, 70–89/TCP. */
export const protocols = Array.from({ length: 20 }, (_, i) => ({ tcp: { destinationPort: { number: 70 + i } } }));
/** An Admin ClusterNetworkPolicy Accepting `networks: [cidr]` from every pod on the first `ports` of `protocols` (30s, 31r). */
export const acceptNetworks = (rv: number, cidr: string, ports: number): Obj => ({
  apiVersion: 'policy.networking.k8s.io/v1beta1',
  kind: 'ClusterNetworkPolicy',
  metadata: md('accept-net', rv),
  spec: { tier: 'Admin', priority: 10, subject: { namespaces: {} }, egress: [{ action: 'Accept', to: [{ networks: [cidr] }], protocols: protocols.slice(0, ports) }] },
});
/** x/server's egress verdict towards `ip` on TCP `port`, as the engine's maps read it. */
export const egressVerdict =
  (engine: Engine) =>
  (ip: string, port: number): string => {
    const hit = engine.lookup('x/server', engine.identityOfIp(parseIp(ip)), 'egress', 6, port);
    return hit === undefined || hit.entry.deny ? 'deny' : 'allow';
  };
