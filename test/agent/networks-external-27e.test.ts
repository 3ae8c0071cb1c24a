import { pino } from 'pino';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { Agent } from '../../src/agent/agent.js';
import { backendLookup } from '../../src/backend/lookup.js';
import { MemoryBackend } from '../../src/backend/memory.js';
import type { WatchItem } from '../../src/k8s/watch.js';
import { parseIp } from '../../src/model/cidr.js';

/**
 * Finding 2247 (docs/attack-findings-27e.md): with identities from outside (`--identities external`, or etcd) the
 * engine refuses a ClusterNetworkPolicy whose egress has a `networks` peer or a `destinationNamedPort`
 * (src/engine/validate.ts `splitProblem`: pod identities cannot be split), and the agent, which stood in only for
 * what the parser calls "not supported", counted the refusal and enforced nothing of the object. Cilium enforces it
 * (network-policy-api apis/v1beta1 `ClusterNetworkPolicyEgressPeer.Networks`), so an Admin Deny of 8.8.8.0/24 was
 * not in the maps: web reached 8.8.8.8, which Cilium drops. Now such a rule is "not supported" when identities come
 * from outside (ParseOptions.identitySplits) and the agent enforces the fail-closed stand-in: the rule's peers
 * become one unknown peer (a Deny denies every egress peer of its subjects, an Accept matches nothing).
 */
const logger = pino({ level: 'silent' });
let rv = 1;
const meta = (name: string, extra: Record<string, unknown> = {}) => ({ name, resourceVersion: String(rv++), ...extra });
const labels = {
  'k8s:app': 'web',
  'k8s:io.kubernetes.pod.namespace': 'shop',
  'k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name': 'shop',
  'k8s:io.cilium.k8s.policy.cluster': 'default',
  'k8s:io.cilium.k8s.policy.serviceaccount': 'default',
};
const items: WatchItem[] = [
  { type: 'LIST', itemKind: 'CiliumIdentity', apiVersion: 'cilium.io/v2', resourceVersion: '1', items: [{ apiVersion: 'cilium.io/v2', kind: 'CiliumIdentity', metadata: meta('300'), 'security-labels': labels }] },
  { type: 'ADDED', object: { apiVersion: 'v1', kind: 'Namespace', metadata: meta('shop') } },
  { type: 'ADDED', object: { apiVersion: 'v1', kind: 'Pod', metadata: meta('web', { namespace: 'shop', labels: { app: 'web' } }), spec: { nodeName: 'n1', containers: [] }, status: { phase: 'Running', podIP: '10.0.0.2' } } },
  {
    type: 'ADDED',
    object: { apiVersion: 'policy.networking.k8s.io/v1beta1', kind: 'ClusterNetworkPolicy', metadata: meta('no-dns-8'), spec: { tier: 'Admin', priority: 5, subject: { namespaces: {} }, egress: [{ action: 'Deny', to: [{ networks: ['8.8.8.0/24'] }] }] } },
  },
];

function run(): { agent: Agent; egressTo8888: 'allow' | 'deny' } {
  const backend = new MemoryBackend();
  const agent = new Agent({ node: 'n1', watch: [], backend, logger, registry: new Registry(), identities: 'external' });
  for (const item of items) agent.mirror.observe(item, 'test');
  agent.flush();
  for (let i = 0; i < 50 && !agent.mirror.idle; i++) agent.flush();
  const hit = backendLookup(backend, 'shop/web', agent.engine.identityOfIp(parseIp('8.8.8.8')), 'egress', 6, 443);
  return { agent, egressTo8888: hit === undefined || hit.entry.deny ? 'deny' : 'allow' };
}

describe('2247: a networks Deny with identities from outside', () => {
  it('is read as the stand-in, which the engine takes', () => {
    const { agent } = run();
    expect(agent.summary.refusals).toBe(0);
    expect(agent.engine.endpoints()).toEqual(['shop/web']);
  });
  it('web may not reach 8.8.8.8 (Cilium drops it)', () => {
    expect(run().egressTo8888).toBe('deny');
  });
});
