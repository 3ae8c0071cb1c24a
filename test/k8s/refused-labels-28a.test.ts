import { describe, expect, it } from 'vitest';
import { parseIp } from '../../src/model/cidr.js';
import { rollingMirrorAgent } from './mirror-agent.js';

/**
 * Findings 2431 and 2432 (not fixed, pinned with `it.fails`: each passes while the hole is open and fails once it is
 * closed). A CiliumCIDRGroup or Node relabel the engine refuses alone (here an endpoint map over its capacity once the
 * new labels are selected by a deny on 20–40 ports) keeps its last labels while the policy change around it commits:
 * the deny on the new labels misses the object, the wildcard allow admits it. Old input: labels a, deny on a; new
 * input: labels b, deny on b (both deny port 80); the engine holds deny on b with labels a, and the flow stays allowed
 * at every later change. Finding 2430 closed the namespace case by holding the namespace's pods fail-closed; a group's
 * prefixes and a node's addresses have no fail-closed reading in the engine yet (docs/attack-findings-28a.md).
 */
type Obj = Record<string, unknown>;
const line = (type: string, object: Obj): string => JSON.stringify({ type, object });
const md = (name: string, rv: number, extra: Obj = {}): Obj => ({ name, resourceVersion: String(rv), ...extra });
const namespace: Obj = { apiVersion: 'v1', kind: 'Namespace', metadata: md('x', 2) };
const server: Obj = { apiVersion: 'v1', kind: 'Pod', metadata: md('server', 3, { namespace: 'x', labels: { app: 'server' } }), spec: { nodeName: 'n1', containers: [] }, status: { phase: 'Running', podIP: '10.0.0.1' } };
const other: Obj = { apiVersion: 'v1', kind: 'Namespace', metadata: md('unrelated', 99) };

/** A mirror feeding an engine of small maps; `verdict` reads x/server's map for the peer at `ip`, port 80/TCP. */
function node(mapCapacity: number) {
  const { feed, engine, mirror } = rollingMirrorAgent({ mapCapacity });
  const verdict = (ip: string, dir: 'ingress' | 'egress'): string => {
    const hit = engine.lookup('x/server', engine.identityOfIp(parseIp(ip)), dir, 6, 80);
    return hit === undefined ? 'none' : hit.entry.deny ? 'deny' : 'allow';
  };
  return { feed, verdict, mirror };
}

describe('2431: a CiliumCIDRGroup relabel the engine refuses alone', () => {
  const group = (rv: number, env: string): Obj => ({ apiVersion: 'cilium.io/v2', kind: 'CiliumCIDRGroup', metadata: md('g', rv, { labels: { env } }), spec: { externalCIDRs: ['198.51.100.0/24'] } });
  const cnp = (name: string, rv: number, spec: Obj): Obj => ({ apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: md(name, rv, { namespace: 'x' }), spec: { endpointSelector: { matchLabels: { app: 'server' } }, ...spec } });
  const ports = Array.from({ length: 40 }, (_, i) => ({ port: String(70 + i), protocol: 'TCP' }));
  const denyEnv = (rv: number, env: string, many: boolean): Obj => cnp('deny-env', rv, { ingressDeny: [{ fromCIDRSet: [{ cidrGroupSelector: { matchLabels: { env } } }], ...(many ? { toPorts: [{ ports }] } : {}) }] });
  it.fails('keeps its old labels: 198.51.100.7 → x/server stays allowed though both inputs deny it', () => {
    const n = node(24);
    n.feed(line('ADDED', namespace), line('ADDED', server), line('ADDED', group(20, 'a')), line('ADDED', cnp('allow-world', 10, { ingress: [{ fromEntities: ['world'] }] })), line('ADDED', denyEnv(11, 'a', false)));
    expect(n.verdict('198.51.100.7', 'ingress')).toBe('deny');
    n.feed(line('MODIFIED', denyEnv(12, 'b', true)));
    n.feed(line('MODIFIED', group(21, 'b')));
    expect(n.mirror.refusedObjects()).toEqual(['CiliumCIDRGroup//g']);
    n.feed(line('ADDED', other));
    expect(n.verdict('198.51.100.7', 'ingress')).toBe('deny');
  });
});

describe('2432: a Node relabel the engine refuses alone', () => {
  const nodeObj = (rv: number, role: string): Obj => ({ apiVersion: 'v1', kind: 'Node', metadata: md('n2', rv, { labels: { role } }), status: { addresses: [{ type: 'InternalIP', address: '172.16.0.2' }] } });
  const protocols = Array.from({ length: 20 }, (_, i) => ({ tcp: { destinationPort: { number: 70 + i } } }));
  const denyNodes = (rv: number, role: string, many: boolean): Obj => ({
    apiVersion: 'policy.networking.k8s.io/v1beta1',
    kind: 'ClusterNetworkPolicy',
    metadata: md('deny-nodes', rv),
    spec: { tier: 'Admin', priority: 5, subject: { namespaces: {} }, egress: [{ action: 'Deny', to: [{ nodes: { matchLabels: { role } } }], ...(many ? { protocols } : {}) }] },
  });
  it.fails('keeps its old labels: x/server → n2 stays allowed though both inputs deny it', () => {
    const n = node(14);
    n.feed(line('ADDED', namespace), line('ADDED', server), line('ADDED', nodeObj(20, 'a')), line('ADDED', denyNodes(11, 'a', false)));
    expect(n.verdict('172.16.0.2', 'egress')).toBe('deny');
    n.feed(line('MODIFIED', denyNodes(12, 'b', true)));
    n.feed(line('MODIFIED', nodeObj(21, 'b')));
    expect(n.mirror.refusedObjects()).toEqual(['Node//n2']);
    n.feed(line('ADDED', other));
    expect(n.verdict('172.16.0.2', 'egress')).toBe('deny');
  });
});
