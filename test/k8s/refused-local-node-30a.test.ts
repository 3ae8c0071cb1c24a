import { describe, expect, it } from 'vitest';
import { parseIp } from '../../src/model/cidr.js';
import { rollingMirrorAgent } from './mirror-agent.js';
import { line, md, namespace, other, protocols, server, type Obj } from './refused-objects.js';

/**
 * Finding 2541 (29b, fixed in 30a). The agent's own Node relabelled from role=a to role=b, refused alone: a
 * ClusterNetworkPolicy Accept of `nodes: role=b` on 20 ports overflows x/server's 14-entry map once the host is
 * selected. Before it, a Deny of `nodes: role=a` on port 80 moved to `role=b` (commits: selects nothing). Old input
 * (role=a, Deny role=a) and new input (role=b, Deny role=b) both deny x/server → host:80; the engine kept role=a and
 * allowed it. Now the local node is held with its labels unknown: an Accept's `nodes` peer never selects the host, a
 * Deny's always does (docs/attack-findings-30a.md).
 */
const HOST = '172.16.0.1';
const localNode = (rv: number, role: string): Obj => ({ apiVersion: 'v1', kind: 'Node', metadata: md('n1', rv, { labels: { role } }), status: { addresses: [{ type: 'InternalIP', address: HOST }] } });
const cnp = (name: string, rv: number, priority: number, action: string, role: string, ports?: readonly Obj[]): Obj => ({
  apiVersion: 'policy.networking.k8s.io/v1beta1',
  kind: 'ClusterNetworkPolicy',
  metadata: md(name, rv),
  spec: { tier: 'Admin', priority, subject: { namespaces: {} }, egress: [{ action, to: [{ nodes: { matchLabels: { role } } }], ...(ports ? { protocols: ports } : {}) }] },
});
const port80 = [{ tcp: { destinationPort: { number: 80 } } }];

function node() {
  const { feed, engine, mirror } = rollingMirrorAgent({ mapCapacity: 14 });
  const verdict = (ip: string, port = 80): string => {
    const hit = engine.lookup('x/server', engine.identityOfIp(parseIp(ip)), 'egress', 6, port);
    return hit === undefined || hit.entry.deny ? 'deny' : 'allow';
  };
  return { feed, verdict, mirror, engine };
}

/**
 * n1 (role=a) under a Deny of role=a on port 80 (x/server → host:80 denied); `policies` move it to role=b (committed:
 * host:80 allowed); n1's relabel to role=b refused alone; then an unrelated change.
 */
function relabelRefused(...policies: Obj[]) {
  const n = node();
  n.feed(line('ADDED', namespace), line('ADDED', localNode(20, 'a')), line('ADDED', server), line('ADDED', cnp('deny-nodes', 11, 5, 'Deny', 'a', port80)));
  expect(n.verdict(HOST)).toBe('deny');
  n.feed(...policies.map((p) => line(p.metadata !== undefined && (p.metadata as Obj).name === 'deny-nodes' ? 'MODIFIED' : 'ADDED', p)));
  expect(n.verdict(HOST)).toBe('allow');
  n.feed(line('MODIFIED', localNode(21, 'b')));
  expect(n.mirror.refusedObjects()).toEqual(['Node//n1']);
  n.feed(line('ADDED', other));
  return n;
}

describe('2541: a local Node relabel the engine refuses alone', () => {
  it('is held with its labels unknown: x/server → host:80 denied at the next change, both inputs denying it', () => {
    const n = relabelRefused(cnp('deny-nodes', 12, 5, 'Deny', 'b', port80), cnp('accept-nodes', 13, 10, 'Accept', 'b', protocols));
    expect(n.verdict(HOST)).toBe('deny');
    // The Accept never selects the held host: its ports fall to the default allow (no entry of its own), port 81 is allowed as under role=a.
    expect(n.verdict(HOST, 81)).toBe('allow');
    // Liveness: once the relabel fits (the Accept on two ports), the host's real labels apply.
    n.feed(line('MODIFIED', cnp('accept-nodes', 14, 10, 'Accept', 'b', protocols.slice(0, 2))));
    expect(n.mirror.refusedObjects()).toEqual([]);
    expect(n.verdict(HOST)).toBe('deny');
    expect(n.verdict(HOST, 70)).toBe('allow');
    n.feed(line('MODIFIED', cnp('deny-nodes', 15, 5, 'Deny', 'c', port80)));
    expect(n.verdict(HOST)).toBe('allow');
  });

  // 2730: the held form itself overflows when the Deny that selects the new labels is the large one (a Deny always
  // selects the held host): refused again, the node was left at its last labels. Now it is held on every port.
  it('2730: its held form refused too (a 20-port Deny of role=b): held on every port, x/server → host:80 denied', () => {
    const n = relabelRefused(cnp('deny-nodes', 12, 5, 'Deny', 'b', protocols));
    expect(n.verdict(HOST)).toBe('deny');
    // Every port of the host: the Deny rule's one all-port entry (stricter than both inputs on 443).
    expect(n.verdict(HOST, 443)).toBe('deny');
    // Liveness: the Deny back on port 80 alone, the relabel fits and role=b applies.
    n.feed(line('MODIFIED', cnp('deny-nodes', 13, 5, 'Deny', 'b', port80)));
    expect(n.mirror.refusedObjects()).toEqual([]);
    expect(n.verdict(HOST)).toBe('deny');
    expect(n.verdict(HOST, 443)).toBe('allow');
  });
});
