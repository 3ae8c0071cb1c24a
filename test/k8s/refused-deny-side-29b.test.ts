import { describe, expect, it } from 'vitest';
import type { EngineEvent } from '../../src/engine/events.js';
import { applyEventToCluster } from '../../src/harness/cluster-sync.js';
import { parseIp } from '../../src/model/cidr.js';
import { EMPTY_CLUSTER, upsertExternal, type ClusterState } from '../../src/model/cluster.js';
import { decideFlow } from '../../src/naive/evaluator.js';
import { rollingMirrorAgent } from './mirror-agent.js';
import { cnp, denyEnv, group, line, md, namespace, nodeObj, other, protocols, server, type Obj } from './refused-objects.js';

/**
 * Finding 2542 (found in 28t, fixed in 29b). A policy the engine refuses alone whose deny side (finding 2433) the engine
 * refuses too waited at its last version (here: absent), so its new denies were missing while both later inputs deny.
 * Now it is held at its deny-all side: its subjects isolated, every peer denied where it denies, none of its allows.
 */
const allowAll = cnp('allow-all', 10, { ingress: [{ fromEntities: ['all'] }], egress: [{ toEntities: ['all'] }] });

const PEERS = [
  { name: 'in-group', ip: '198.51.100.7' },
  { name: 'node-n2', ip: '172.16.0.2' },
  { name: 'outside', ip: '203.0.113.1' },
] as const;

/** A mirror feeding an engine of small maps; the events the engine committed are kept for the oracle (`agrees`). */
function node(mapCapacity: number, cidrGroups = false) {
  const committed: EngineEvent[] = [];
  let pending: readonly EngineEvent[] = [];
  const { feed, engine, mirror } = rollingMirrorAgent({ mapCapacity }, { cidrGroups }, () => committed.push(...pending));
  const flush = mirror.flush.bind(mirror);
  mirror.flush = (...args: Parameters<typeof mirror.flush>) => {
    const b = flush(...args);
    pending = b.events as EngineEvent[];
    return b;
  };
  const verdict = (ip: string, dir: 'ingress' | 'egress', port = 80): string => {
    const hit = engine.lookup('x/server', engine.identityOfIp(parseIp(ip)), dir, 6, port);
    return hit === undefined || hit.entry.deny ? 'deny' : 'allow';
  };
  /** The engine's maps decide every peer both ways as the reference evaluator reads the events it committed. */
  const agrees = (): void => {
    const state = committed.reduce(applyEventToCluster, PEERS.reduce((st: ClusterState, p) => upsertExternal(st, { name: p.name, ip: parseIp(p.ip) }), EMPTY_CLUSTER));
    for (const p of PEERS) {
      for (const dir of ['ingress', 'egress'] as const) {
        const flow = dir === 'ingress' ? { from: p.name, to: 'x/server' } : { from: 'x/server', to: p.name };
        const oracle = (decideFlow(state, { ...flow, port: 80, protocol: 'TCP' })[dir]?.allowed ?? true) ? 'allow' : 'deny';
        expect(`${p.name} ${dir} ${verdict(p.ip, dir)}`).toBe(`${p.name} ${dir} ${oracle}`);
      }
    }
  };
  return { feed, verdict, mirror, engine, agrees };
}

describe('2542: a policy whose deny side the engine refuses too', () => {
  it('a CiliumNetworkPolicy is held at its deny-all side: its subjects denied every peer where it denies', () => {
    const n = node(24, true);
    n.feed(line('ADDED', namespace), line('ADDED', server), line('ADDED', group(20, 'a')), line('ADDED', allowAll));
    expect(n.verdict('198.51.100.7', 'ingress')).toBe('allow');
    // The group first, then the policy alone (in one step, refused together, the policy now commits and the group is
    // held instead: finding 2916, 31b).
    n.feed(line('MODIFIED', group(21, 'b')));
    n.feed(line('ADDED', denyEnv(11, 'b', true)));
    expect(n.mirror.refusedObjects()).toEqual(['CiliumNetworkPolicy/x/deny-env']);
    n.feed(line('ADDED', other));
    // Both inputs deny 198.51.100.7 → server:80; the deny-all side denies every peer on ingress, egress stays open.
    expect(n.verdict('198.51.100.7', 'ingress')).toBe('deny');
    expect(n.verdict('203.0.113.1', 'ingress')).toBe('deny');
    expect(n.verdict('203.0.113.1', 'egress')).toBe('allow');
    expect(n.engine.mapState('x/server').size).toBeLessThanOrEqual(2);
    n.agrees();
    // The conflict goes (the deny on one port): the policy is read again.
    n.feed(line('MODIFIED', denyEnv(12, 'b', false)));
    expect(n.mirror.refusedObjects()).toEqual([]);
    expect(n.verdict('198.51.100.7', 'ingress')).toBe('deny');
    expect(n.verdict('203.0.113.1', 'ingress')).toBe('allow');
  });

  const denyNodes = (rv: number, role: string, many: boolean): Obj => ({
    apiVersion: 'policy.networking.k8s.io/v1beta1',
    kind: 'ClusterNetworkPolicy',
    metadata: md('deny-nodes', rv),
    spec: { tier: 'Admin', priority: 5, subject: { namespaces: {} }, egress: [{ action: 'Accept', to: [{ networks: ['203.0.113.0/24'] }] }, { action: 'Deny', to: [{ nodes: { matchLabels: { role } } }], ...(many ? { protocols } : {}) }] },
  });
  it('a ClusterNetworkPolicy is held at its deny-all side: a Deny of every peer where it has Deny or Pass rules', () => {
    const n = node(14);
    n.feed(line('ADDED', namespace), line('ADDED', server), line('ADDED', nodeObj(20, 'a')), line('ADDED', allowAll));
    expect(n.verdict('172.16.0.2', 'egress')).toBe('allow');
    // The node first, then the policy alone (as above).
    n.feed(line('MODIFIED', nodeObj(21, 'b')));
    n.feed(line('ADDED', denyNodes(11, 'b', true)));
    expect(n.mirror.refusedObjects()).toEqual(['ClusterNetworkPolicy//deny-nodes']);
    n.feed(line('ADDED', other));
    expect(n.verdict('172.16.0.2', 'egress')).toBe('deny');
    // Its Accept is dropped too (never wider), its ingress has no rule: untouched.
    expect(n.verdict('203.0.113.1', 'egress')).toBe('deny');
    expect(n.verdict('203.0.113.1', 'ingress')).toBe('allow');
    n.agrees();
    n.feed(line('MODIFIED', denyNodes(12, 'b', false)));
    expect(n.mirror.refusedObjects()).toEqual([]);
    expect(n.verdict('172.16.0.2', 'egress')).toBe('deny');
    expect(n.verdict('203.0.113.1', 'egress')).toBe('allow');
  });
});
