import { pino } from 'pino';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { Agent } from '../../src/agent/agent.js';
import { backendLookup } from '../../src/backend/lookup.js';
import { MemoryBackend } from '../../src/backend/memory.js';
import type { WatchItem } from '../../src/k8s/watch.js';
import { parseIp } from '../../src/model/cidr.js';
import { UNALLOCATED_POD_IDENTITY } from '../../src/model/identity.js';

/**
 * Finding 2352 (review 27w), fixed in 27q: a pod the engine refuses must not make its addresses read as world (or as
 * an older identity), and a local one must not go unenforced. Agent with `stack: 'dual'`, pods shop/web
 * (10.0.0.2, fd00::2) and shop/db (10.0.0.3, fd00::3), and an Admin Deny whose rule has the peers
 * `networks: [10.0.0.3/32]` and `pods: app=db`. The engine refuses db (a networks rule holding one address of a
 * dual-stack pod, src/engine/network-splits.ts `dualStackProblem`). network-policy-api apis/v1beta1
 * `ClusterNetworkPolicyEgressPeer`: the `pods` peer selects db whatever its address, so the policy denies web → db at
 * both addresses; before the policy (the old input) nothing denied it, but the old input had no db either, and the new
 * one denies it: no committed state may allow web → db at fd00::3. Before the fix db's addresses fell back to world
 * and web → db at fd00::3 was allowed. Now db is held fail-closed: its addresses are `UNALLOCATED_POD_IDENTITY`,
 * which every local map denies both ways, and a local db is an endpoint whose map denies both ways.
 */
const logger = pino({ level: 'silent' });
let rv = 1;
const meta = (name: string, extra: Record<string, unknown> = {}) => ({ name, resourceVersion: String(rv++), ...extra });
const pod = (name: string, app: string, ips: string[], node: string): WatchItem => ({
  type: 'ADDED',
  object: { apiVersion: 'v1', kind: 'Pod', metadata: meta(name, { namespace: 'shop', labels: { app } }), spec: { nodeName: node, containers: [] }, status: { phase: 'Running', podIP: ips[0], podIPs: ips.map((ip) => ({ ip })) } },
});
const denyDb: WatchItem = {
  type: 'ADDED',
  object: {
    apiVersion: 'policy.networking.k8s.io/v1beta1',
    kind: 'ClusterNetworkPolicy',
    metadata: meta('deny-db'),
    spec: { tier: 'Admin', priority: 5, subject: { namespaces: {} }, egress: [{ action: 'Deny', to: [{ networks: ['10.0.0.3/32'] }, { pods: { namespaceSelector: {}, podSelector: { matchLabels: { app: 'db' } } } }] }] },
  },
};
/** Every pod admits every peer on ingress and egress (a wildcard allow: what a fallback to world would meet). */
const allowAll: WatchItem = {
  type: 'ADDED',
  object: { apiVersion: 'cilium.io/v2', kind: 'CiliumClusterwideNetworkPolicy', metadata: meta('allow-all'), spec: { endpointSelector: {}, ingress: [{ fromEntities: ['all'] }], egress: [{ toEntities: ['all'] }] } },
};

function run(dbNode: string, extra: readonly WatchItem[] = []) {
  const backend = new MemoryBackend();
  const agent = new Agent({ node: 'n1', watch: [], backend, logger, registry: new Registry(), stack: 'dual' });
  const settle = (items: readonly WatchItem[]): void => {
    for (const item of items) agent.mirror.observe(item, 'test');
    agent.flush();
    for (let i = 0; i < 50 && !agent.mirror.idle; i++) agent.flush();
  };
  // The policy first, then the pod: the pod is the object the engine refuses.
  settle([{ type: 'ADDED', object: { apiVersion: 'v1', kind: 'Namespace', metadata: meta('shop') } }, pod('web', 'web', ['10.0.0.2', 'fd00::2'], 'n1'), denyDb, ...extra]);
  settle([pod('db', 'db', ['10.0.0.3', 'fd00::3'], dbNode)]);
  const decide = (endpoint: string, peer: string, dir: 'ingress' | 'egress'): 'allow' | 'deny' => {
    const hit = backendLookup(backend, endpoint, agent.engine.identityOfIp(parseIp(peer)), dir, 6, 80);
    return hit === undefined || hit.entry.deny ? 'deny' : 'allow';
  };
  return { agent, decide };
}

describe('2352: a pod the engine refuses is held fail-closed', () => {
  it('a remote dual-stack db: web → db is denied at both addresses, which read as the unallocated number', () => {
    const { agent, decide } = run('n2');
    expect(agent.summary.refusals).toBeGreaterThan(0);
    expect(decide('shop/web', '10.0.0.3', 'egress')).toBe('deny');
    expect(decide('shop/web', 'fd00::3', 'egress')).toBe('deny');
    expect(agent.engine.identityOfIp(parseIp('fd00::3'))).toBe(UNALLOCATED_POD_IDENTITY);
    expect(agent.engine.identityOfIp(parseIp('10.0.0.3'))).toBe(UNALLOCATED_POD_IDENTITY);
    // /healthz and distill_objects_refused name the pod held fail-closed (27z's report of what is not in force).
    expect(agent.mirror.refusedObjects()).toContain('Pod/shop/db');
    // web itself is read as written: web → an outside address is not denied by the Admin rule.
    expect(decide('shop/web', '192.0.2.9', 'egress')).toBe('allow');
  });
  it('under a wildcard allow, the unallocated number is still denied both ways', () => {
    const { decide } = run('n2', [allowAll]);
    expect(decide('shop/web', 'fd00::3', 'egress')).toBe('deny');
    expect(decide('shop/web', 'fd00::3', 'ingress')).toBe('deny');
    expect(decide('shop/web', '192.0.2.9', 'ingress')).toBe('allow');
  });
  it('a local db is an endpoint whose map denies both ways, even under a wildcard allow', () => {
    const { agent, decide } = run('n1', [allowAll]);
    expect(agent.engine.endpoints()).toContain('shop/db');
    for (const peer of ['10.0.0.2', 'fd00::2', '192.0.2.9']) {
      expect(decide('shop/db', peer, 'ingress')).toBe('deny');
      expect(decide('shop/db', peer, 'egress')).toBe('deny');
    }
    expect(decide('shop/web', 'fd00::3', 'egress')).toBe('deny');
    expect(decide('shop/web', '10.0.0.3', 'ingress')).toBe('deny');
  });
  it('once the policy is gone, db is read as written (its own identity, the wildcard allow admits it)', () => {
    const { agent, decide } = run('n2', [allowAll]);
    for (const item of [{ type: 'DELETED', object: { apiVersion: 'policy.networking.k8s.io/v1beta1', kind: 'ClusterNetworkPolicy', metadata: meta('deny-db'), spec: {} } } as WatchItem]) agent.mirror.observe(item, 'test');
    agent.flush();
    for (let i = 0; i < 50 && !agent.mirror.idle; i++) agent.flush();
    expect(agent.engine.identityOfIp(parseIp('fd00::3'))).not.toBe(UNALLOCATED_POD_IDENTITY);
    expect(agent.engine.identityOfIp(parseIp('fd00::3'))).toBe(agent.engine.identityOfPod('shop/db'));
    expect(decide('shop/web', 'fd00::3', 'egress')).toBe('allow');
    expect(agent.mirror.refusedObjects()).toEqual([]);
  });
});

/**
 * The same class through an update distill cannot read (src/k8s/held.ts `keptOnUnreadable`): the pod was dropped, its
 * address fell back to world, and a wildcard allow admitted web → db past the deny on app=db that the last readable
 * version met (and that Cilium, which reads the update, applies to the pod's labels). Now the pod is held fail-closed
 * at its last readable addresses until a readable version arrives.
 */
describe('27q: a pod update distill cannot read holds the pod fail-closed', () => {
  const denyToDb: WatchItem = {
    type: 'ADDED',
    object: { apiVersion: 'cilium.io/v2', kind: 'CiliumClusterwideNetworkPolicy', metadata: meta('deny-to-db'), spec: { endpointSelector: {}, egressDeny: [{ toEndpoints: [{ matchLabels: { app: 'db' } }] }] } },
  };
  const unreadable = (ips: string[]): WatchItem => {
    const item = pod('db', 'db', ['10.0.0.3'], 'n2') as { type: 'ADDED'; object: { status: Record<string, unknown> } };
    return { type: 'MODIFIED', object: { ...item.object, status: { phase: 'Running', podIP: ips[0], podIPs: ips.map((ip) => ({ ip })) } } } as WatchItem;
  };
  it('web → db stays denied (db at the unallocated number), and db is read again when readable', () => {
    const backend = new MemoryBackend();
    const agent = new Agent({ node: 'n1', watch: [], backend, logger, registry: new Registry() });
    const settle = (items: readonly WatchItem[]): void => {
      for (const item of items) agent.mirror.observe(item, 'test');
      agent.flush();
      for (let i = 0; i < 50 && !agent.mirror.idle; i++) agent.flush();
    };
    const decide = (peer: string): 'allow' | 'deny' => {
      const hit = backendLookup(backend, 'shop/web', agent.engine.identityOfIp(parseIp(peer)), 'egress', 6, 80);
      return hit === undefined || hit.entry.deny ? 'deny' : 'allow';
    };
    settle([{ type: 'ADDED', object: { apiVersion: 'v1', kind: 'Namespace', metadata: meta('shop') } }, pod('web', 'web', ['10.0.0.2'], 'n1'), pod('db', 'db', ['10.0.0.3'], 'n2'), allowAll, denyToDb]);
    expect(decide('10.0.0.3')).toBe('deny');
    // Two IPv4 addresses: no API server gives them, distill cannot read the update.
    settle([unreadable(['10.0.0.3', '10.0.0.4'])]);
    expect(agent.engine.identityOfIp(parseIp('10.0.0.3'))).toBe(UNALLOCATED_POD_IDENTITY);
    expect(decide('10.0.0.3')).toBe('deny');
    expect(decide('192.0.2.9')).toBe('allow');
    settle([pod('db', 'db', ['10.0.0.3'], 'n2')]);
    expect(agent.engine.identityOfIp(parseIp('10.0.0.3'))).toBe(agent.engine.identityOfPod('shop/db'));
    expect(decide('10.0.0.3')).toBe('deny');
  });
});
