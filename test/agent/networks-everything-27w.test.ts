import { pino } from 'pino';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { Agent } from '../../src/agent/agent.js';
import { backendLookup } from '../../src/backend/lookup.js';
import { MemoryBackend } from '../../src/backend/memory.js';
import type { WatchItem } from '../../src/k8s/watch.js';
import { parseIp } from '../../src/model/cidr.js';

/**
 * Review 27w, finding 2351: with identities from outside, 2247's fix read every egress rule with a `networks` peer as
 * the fail-closed stand-in, and the engine (src/engine/validate.ts `splitProblem`) refused every such rule. A rule
 * whose networks hold both /0s matches every address alike: it is one identity-0 key and splits no pod identity
 * (src/engine/network-splits.ts `termsOf` leaves it out; src/engine/tiers.ts `ruleUnit`), so nothing stops its
 * encoding. As a stand-in an Admin Accept to everything matched nothing and a lower tier's deny dropped what Cilium
 * admits (network-policy-api apis/v1beta1 `ClusterNetworkPolicyEgressPeer.Networks`: "0.0.0.0/0 and ::/0 ... all
 * addresses"). Now such a rule is read and encoded as written: the Admin Accept of 443 admits web → 8.8.8.8:443 and
 * the Baseline Deny of everything still drops web → 8.8.8.8:80.
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
const EVERYTHING = [{ networks: ['0.0.0.0/0', '::/0'] }];
const items: WatchItem[] = [
  { type: 'LIST', itemKind: 'CiliumIdentity', apiVersion: 'cilium.io/v2', resourceVersion: '1', items: [{ apiVersion: 'cilium.io/v2', kind: 'CiliumIdentity', metadata: meta('300'), 'security-labels': labels }] },
  { type: 'ADDED', object: { apiVersion: 'v1', kind: 'Namespace', metadata: meta('shop') } },
  { type: 'ADDED', object: { apiVersion: 'v1', kind: 'Pod', metadata: meta('web', { namespace: 'shop', labels: { app: 'web' } }), spec: { nodeName: 'n1', containers: [] }, status: { phase: 'Running', podIP: '10.0.0.2' } } },
  {
    type: 'ADDED',
    object: { apiVersion: 'policy.networking.k8s.io/v1beta1', kind: 'ClusterNetworkPolicy', metadata: meta('https-out'), spec: { tier: 'Admin', priority: 5, subject: { namespaces: {} }, egress: [{ action: 'Accept', to: EVERYTHING, protocols: [{ tcp: { destinationPort: { number: 443 } } }] }] } },
  },
  {
    type: 'ADDED',
    object: { apiVersion: 'policy.networking.k8s.io/v1beta1', kind: 'ClusterNetworkPolicy', metadata: meta('closed'), spec: { tier: 'Baseline', priority: 5, subject: { namespaces: {} }, egress: [{ action: 'Deny', to: EVERYTHING }] } },
  },
];

function run(): { agent: Agent; to8888: (port: number) => 'allow' | 'deny' } {
  const backend = new MemoryBackend();
  const agent = new Agent({ node: 'n1', watch: [], backend, logger, registry: new Registry(), identities: 'external' });
  for (const item of items) agent.mirror.observe(item, 'test');
  agent.flush();
  for (let i = 0; i < 50 && !agent.mirror.idle; i++) agent.flush();
  const to8888 = (port: number): 'allow' | 'deny' => {
    const hit = backendLookup(backend, 'shop/web', agent.engine.identityOfIp(parseIp('8.8.8.8')), 'egress', 6, port);
    return hit === undefined || hit.entry.deny ? 'deny' : 'allow';
  };
  return { agent, to8888 };
}

describe('2351: networks of both /0s with identities from outside are read and encoded as written', () => {
  it('the engine takes both policies (no refusal)', () => {
    const { agent } = run();
    expect(agent.summary.refusals).toBe(0);
    expect(agent.engine.endpoints()).toEqual(['shop/web']);
  });
  it('the Admin Accept admits 443 to 8.8.8.8 (a stand-in matched nothing), the Baseline Deny drops 80', () => {
    const { to8888 } = run();
    expect(to8888(443)).toBe('allow');
    expect(to8888(80)).toBe('deny');
  });
});
