import { describe, expect, it } from 'vitest';
import { parseIp } from '../../src/model/cidr.js';
import type { Pod } from '../../src/model/cluster.js';
import { Engine } from '../../src/engine/engine.js';
import type { EngineEvent } from '../../src/engine/events.js';
import { policyRefKey, type RuleOrigin } from '../../src/model/rules.js';
import { parseManifest } from '../../src/policy/manifest.js';

// A policy update keeps every item of equal uid, the old object with it (policy-resolver.ts
// `replace`): what explain reports of a kept item must be the new policy's (attack finding 1620,
// docs/attack-findings-22e.md). Compared with a fresh engine given the final policy.

const NS: EngineEvent = { type: 'upsertNamespace', name: 'prod', labels: {} };
const pod = (name: string, ip: string, labels: Record<string, string>): EngineEvent => {
  const p: Pod = { namespace: 'prod', name, labels, ip: parseIp(ip), serviceAccount: 'default', ports: [] };
  return { type: 'upsertPod', pod: p, local: true };
};
const PODS = [NS, pod('web', '10.244.0.2', { app: 'web' }), pod('db', '10.244.0.3', { app: 'db' })];
const upsert = (manifest: Record<string, unknown>): EngineEvent => ({ type: 'upsertPolicy', policy: parseManifest(manifest, 'test.yaml') });
const shown = (o: RuleOrigin): string => `${policyRefKey(o.policy)} ${o.path}${o.tier ? ` rule ${o.tier.rule}` : ''}`;

/** What explain and trace print of an endpoint's rules: enforcements, rules, each key's contributors. */
function explained(e: Engine, ep: string): unknown {
  return {
    ingress: e.enforcedBy(ep, 'ingress').map(shown),
    egress: e.enforcedBy(ep, 'egress').map(shown),
    rules: e.policyOf(ep).map((r) => shown(r.origin)),
    contributors: [...e.mapState(ep).values()].flatMap((r) => e.contributors(ep, r.key).flatMap((c) => (c.origin ? [shown(c.origin)] : []))).sort(),
  };
}

function afterUpdate(first: EngineEvent, second: EngineEvent): { updated: Engine; fresh: Engine } {
  const updated = new Engine();
  updated.apply(PODS);
  updated.apply([first]);
  updated.apply([second]);
  const fresh = new Engine();
  fresh.apply([...PODS, second]);
  return { updated, fresh };
}

describe('1620. an update keeps items by uid: their origins are the new policy\'s', () => {
  it('an enforcement that moves to another spec of the policy names the spec it is in now', () => {
    const ccnp = (specs: unknown[]): EngineEvent => upsert({ apiVersion: 'cilium.io/v2', kind: 'CiliumClusterwideNetworkPolicy', metadata: { name: 'lock' }, specs });
    const denyDb = { endpointSelector: { matchLabels: { app: 'web' } }, egressDeny: [{ toEndpoints: [{ matchLabels: { app: 'db' } }] }] };
    const allowDb = { endpointSelector: { matchLabels: { app: 'web' } }, egress: [{ toEndpoints: [{ matchLabels: { app: 'db' } }] }] };
    // Both versions make prod/web's egress default-deny through one enforcement of the same
    // direction and subject: specs[1] before, specs[0] after (specs[1] no longer exists).
    const { updated, fresh } = afterUpdate(ccnp([{ endpointSelector: { matchLabels: { app: 'db' } }, ingressDeny: [{ fromEntities: ['world'] }] }, denyDb]), ccnp([allowDb]));
    expect(fresh.enforcedBy('prod/web', 'egress').map(shown)).toEqual(['CiliumClusterwideNetworkPolicy/lock specs[0]']);
    expect(explained(updated, 'prod/web')).toEqual(explained(fresh, 'prod/web'));
  });

  it('a ClusterNetworkPolicy rule renamed in place names its new name', () => {
    const cnp = (rule: string): EngineEvent =>
      upsert({
        apiVersion: 'policy.networking.k8s.io/v1alpha2',
        kind: 'ClusterNetworkPolicy',
        metadata: { name: 'guard' },
        spec: { tier: 'Admin', priority: 5, subject: { namespaces: {} }, ingress: [{ name: rule, action: 'Deny', from: [{ pods: { namespaceSelector: {}, podSelector: { matchLabels: { app: 'db' } } } }] }] },
      });
    const { updated, fresh } = afterUpdate(cnp('block-db'), cnp('no-db-clients'));
    expect(fresh.policyOf('prod/web').map((r) => shown(r.origin))).toEqual(['ClusterNetworkPolicy/guard spec.ingress[0] rule no-db-clients']);
    expect(explained(updated, 'prod/web')).toEqual(explained(fresh, 'prod/web'));
  });
});
