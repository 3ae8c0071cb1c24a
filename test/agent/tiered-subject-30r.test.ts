import { describe, expect, it } from 'vitest';
import type { WatchItem } from '../../src/k8s/watch.js';
import { DEFAULT_MAP_CAPACITY } from '../../src/model/policy-map.js';
import { deleted, identity, meta, pod } from './crd-fixtures.js';
import { crdAgent, full } from './stale-agent.js';

/**
 * Finding 2800 (review 30r of 2671, docs/attack-findings-30r.md). As 2671 (test/agent/tiered-stale-29t.test.ts): 303
 * (db) waits, `cnp` (Admin) accepts client's egress to web and denies the rest; its update moves the subject to client2
 * (local) and denies web. Vetoed (client's egress would open to 303) and refused with 303, twice, it was held at 2671's
 * form: the old subject only, so client2 saw none of the update's Denies, and after the next commit client2 → web (300)
 * was allowed, which the update and every later input deny.
 */
const pods = (app: string): Record<string, unknown> => ({ pods: { namespaceSelector: {}, podSelector: { matchLabels: { app } } } });
const cnp = (egress: unknown[], subject: Record<string, unknown>, tier = 'Admin', priority = 10): WatchItem => ({
  type: 'ADDED',
  object: { apiVersion: 'policy.networking.k8s.io/v1beta1', kind: 'ClusterNetworkPolicy', metadata: meta('cnp'), spec: { tier, priority, subject, egress } },
});
const acceptWeb = { name: 'web', action: 'Accept', to: [pods('web')] };
const denyWeb = { name: 'no-web', action: 'Deny', to: [pods('web')] };
const denyRest = { name: 'rest', action: 'Deny', to: [{ namespaces: {} }] };

function setup() {
  const t = crdAgent();
  t.settle([pod('client2', 'client2', 'n1', '10.0.0.6')]);
  t.settle([identity(305, 'client2', 'ADDED')]);
  const filler = full(DEFAULT_MAP_CAPACITY - 2);
  t.settle([cnp([acceptWeb, denyRest], pods('client')), filler]);
  expect(t.a.mirror.refusedObjects()).toEqual([]);
  t.settle([identity(303, null, 'MODIFIED')]);
  expect(t.a.mirror.refusedObjects()).toEqual(['CiliumIdentity//303']);
  /** client2's egress verdict for `peer` on 80/TCP. */
  const egress2 = (peer: number): 'allow' | 'deny' => {
    const hit = t.a.engine.lookup('shop/client2', peer, 'egress', 6, 80);
    return hit === undefined || hit.entry.deny ? 'deny' : 'allow';
  };
  return { ...t, filler, egress2 };
}

describe('2800: a ClusterNetworkPolicy update that moves its subject while an identity waits', () => {
  for (const [name, tier, priority] of [['same tier', 'Admin', 10], ['Admin to Baseline', 'Baseline', 3]] as const) {
    it(`keeps the update's Denies for the pods only the new subject selects (${name})`, () => {
      const { a, settle, egress, egress2, filler } = setup();
      expect(egress2(300)).toBe('allow');
      settle([cnp([denyWeb], pods('client2'), tier, priority)]);
      settle([pod('web2', 'web', 'n2', '10.0.1.9')]);
      expect(a.engine.identityOfPod('shop/web2')).toBe(300);
      expect(a.mirror.refusedObjects()).toEqual(['CiliumIdentity//303', 'ClusterNetworkPolicy//cnp']);
      // The update denies client2 → web; the old version's Deny of the rest holds for client while 303 waits.
      expect(egress2(300)).toBe('deny');
      expect(egress(303)).toBe('deny');
      expect(egress(300)).toBe('deny');
      // Room for 303's deny: both commit, `cnp` is read as it is (client2 → web denied, client alone).
      settle([deleted(filler)]);
      expect(a.mirror.refusedObjects()).toEqual([]);
      expect(egress2(300)).toBe('deny');
      expect(egress(300)).toBe('allow');
    });
  }
});
