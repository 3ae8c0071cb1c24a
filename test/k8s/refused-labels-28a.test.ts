import { describe, expect, it } from 'vitest';
import { parseIp } from '../../src/model/cidr.js';
import { UNALLOCATED_POD_IDENTITY } from '../../src/model/identity.js';
import { rollingMirrorAgent } from './mirror-agent.js';
import { cnp, denyEnv, group, line, md, namespace, nodeObj, other, protocols, server, type Obj } from './refused-objects.js';

/**
 * Findings 2431 and 2432 (found in 28a, fixed in 28t). A CiliumCIDRGroup or Node relabel the engine refuses alone (here
 * an endpoint map over its capacity once the new labels are selected by a deny on 20–40 ports) kept its last labels
 * while the policy change around it committed: the deny on the new labels missed the object, the wildcard allow
 * admitted it. Old input: labels a, deny on a; new input: labels b, deny on b (both deny port 80). Now the group or
 * remote node is held fail-closed (`CidrGroup.failClosed`, `upsertNode.failClosed`): its addresses read the unallocated
 * number every local map denies both ways, until a later change lets it be read (docs/attack-findings-28t.md).
 */

/** A mirror feeding an engine of small maps; `verdict` reads x/server's map for the peer at `ip`, port 80/TCP (no entry: dropped, `datapathLookup`). */
function node(mapCapacity: number) {
  const { feed, engine, mirror } = rollingMirrorAgent({ mapCapacity });
  const verdict = (ip: string, dir: 'ingress' | 'egress'): string => {
    const hit = engine.lookup('x/server', engine.identityOfIp(parseIp(ip)), dir, 6, 80);
    return hit === undefined || hit.entry.deny ? 'deny' : 'allow';
  };
  return { feed, verdict, mirror, engine };
}

describe('2431: a CiliumCIDRGroup relabel the engine refuses alone', () => {
  it('is held fail-closed: 198.51.100.7 → x/server denied at the next change, both inputs denying it', () => {
    const n = node(24);
    n.feed(line('ADDED', namespace), line('ADDED', server), line('ADDED', group(20, 'a')), line('ADDED', cnp('allow-world', 10, { ingress: [{ fromEntities: ['world'] }] })), line('ADDED', denyEnv(11, 'a', false)));
    expect(n.verdict('198.51.100.7', 'ingress')).toBe('deny');
    n.feed(line('MODIFIED', denyEnv(12, 'b', true)));
    n.feed(line('MODIFIED', group(21, 'b')));
    expect(n.mirror.refusedObjects()).toEqual(['CiliumCIDRGroup//g']);
    n.feed(line('ADDED', other));
    expect(n.verdict('198.51.100.7', 'ingress')).toBe('deny');
    // Held fail-closed: the unallocated number, denied both ways (egress is not enforced otherwise); world is not.
    expect(n.engine.identityOfIp(parseIp('198.51.100.7'))).toBe(UNALLOCATED_POD_IDENTITY);
    expect(n.verdict('198.51.100.7', 'egress')).toBe('deny');
    expect(n.verdict('203.0.113.1', 'ingress')).toBe('allow');
    // The conflict goes: the group is read again under env=b, which the deny (now on port 80) selects.
    n.feed(line('MODIFIED', denyEnv(13, 'b', false)));
    expect(n.mirror.refusedObjects()).toEqual([]);
    expect(n.engine.identityOfIp(parseIp('198.51.100.7'))).not.toBe(UNALLOCATED_POD_IDENTITY);
    expect(n.verdict('198.51.100.7', 'ingress')).toBe('deny');
    expect(n.verdict('198.51.100.7', 'egress')).toBe('allow');
  });
});

describe('2432: a Node relabel the engine refuses alone', () => {
  const denyNodes = (rv: number, role: string, many: boolean): Obj => ({
    apiVersion: 'policy.networking.k8s.io/v1beta1',
    kind: 'ClusterNetworkPolicy',
    metadata: md('deny-nodes', rv),
    spec: { tier: 'Admin', priority: 5, subject: { namespaces: {} }, egress: [{ action: 'Deny', to: [{ nodes: { matchLabels: { role } } }], ...(many ? { protocols } : {}) }] },
  });
  it('is held fail-closed: x/server → n2 denied at the next change, both inputs denying it', () => {
    const n = node(14);
    n.feed(line('ADDED', namespace), line('ADDED', server), line('ADDED', nodeObj(20, 'a')), line('ADDED', denyNodes(11, 'a', false)));
    expect(n.verdict('172.16.0.2', 'egress')).toBe('deny');
    n.feed(line('MODIFIED', denyNodes(12, 'b', true)));
    n.feed(line('MODIFIED', nodeObj(21, 'b')));
    expect(n.mirror.refusedObjects()).toEqual(['Node//n2']);
    n.feed(line('ADDED', other));
    expect(n.verdict('172.16.0.2', 'egress')).toBe('deny');
    expect(n.engine.identityOfIp(parseIp('172.16.0.2'))).toBe(UNALLOCATED_POD_IDENTITY);
    expect(n.verdict('172.16.0.2', 'ingress')).toBe('deny');
    expect(n.verdict('203.0.113.1', 'egress')).toBe('allow');
    // The conflict goes: n2 is read again under role=b, which the deny (now on every port) selects.
    n.feed(line('MODIFIED', denyNodes(13, 'b', false)));
    expect(n.mirror.refusedObjects()).toEqual([]);
    expect(n.engine.identityOfIp(parseIp('172.16.0.2'))).not.toBe(UNALLOCATED_POD_IDENTITY);
    expect(n.verdict('172.16.0.2', 'egress')).toBe('deny');
    expect(n.verdict('172.16.0.2', 'ingress')).toBe('allow');
  });
});
