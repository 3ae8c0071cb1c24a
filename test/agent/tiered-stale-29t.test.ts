import { describe, expect, it } from 'vitest';
import type { WatchItem } from '../../src/k8s/watch.js';
import { DEFAULT_MAP_CAPACITY } from '../../src/model/policy-map.js';
import { deleted, identity, meta, pod } from './crd-fixtures.js';
import { crdAgent, full } from './stale-agent.js';

/**
 * Finding 2671 (review 29s, built in 29t: docs/attack-findings-29t.md). CRD identities; 303 (db) turns unreadable and
 * waits: filler's map has no room for its deny. The ClusterNetworkPolicy `cnp` (Admin) accepts client's egress to web
 * and denies the rest; its update only denies web. Sent alone it is vetoed (client's egress would open to 303), sent
 * with 303 it is refused (filler), so it is held at its deny side, which is vetoed for the same reason and refused with
 * 303 again: `cnp` waited at its old version, whose Accept of web the update and every later input deny.
 */
const pods = (app: string): Record<string, unknown> => ({ pods: { namespaceSelector: {}, podSelector: { matchLabels: { app } } } });
const cnp = (egress: unknown[], priority = 10, subject = 'client'): WatchItem => ({
  type: 'ADDED',
  object: { apiVersion: 'policy.networking.k8s.io/v1beta1', kind: 'ClusterNetworkPolicy', metadata: meta('cnp'), spec: { tier: 'Admin', priority, subject: pods(subject), egress } },
});
const acceptWeb = { name: 'web', action: 'Accept', to: [pods('web')] };
const denyWeb = { name: 'no-web', action: 'Deny', to: [pods('web')] };
const denyRest = { name: 'rest', action: 'Deny', to: [{ namespaces: {} }] };

describe('2671: a ClusterNetworkPolicy whose deny side is vetoed while an identity waits', () => {
  it('is not left at its old version, Accepts included', () => {
    const { a, settle, egress } = crdAgent();
    const filler = full(DEFAULT_MAP_CAPACITY - 2);
    settle([cnp([acceptWeb, denyRest]), filler]);
    expect(a.mirror.refusedObjects()).toEqual([]);
    expect(egress(300)).toBe('allow');
    expect(egress(303)).toBe('deny');
    settle([identity(303, null, 'MODIFIED')]);
    expect(a.mirror.refusedObjects()).toEqual(['CiliumIdentity//303']);
    settle([cnp([denyWeb])]);
    settle([pod('web2', 'web', 'n2', '10.0.1.9')]);
    expect(a.engine.identityOfPod('shop/web2')).toBe(300);
    // The update denies web; the old version's Deny of the rest holds while 303 waits.
    expect(egress(300)).toBe('deny');
    expect(egress(303)).toBe('deny');
    expect(egress(304)).toBe('deny');
    expect(a.mirror.refusedObjects()).toEqual(['CiliumIdentity//303', 'ClusterNetworkPolicy//cnp']);
    // Room for 303's deny: both commit, `cnp` is read as it is (web denied, the rest open).
    settle([deleted(filler)]);
    expect(a.mirror.refusedObjects()).toEqual([]);
    expect(egress(300)).toBe('deny');
    expect(egress(303)).toBe('deny');
    expect(egress(304)).toBe('allow');
  });
});

/**
 * 2671 with a changed subject: the update selects web (remote) instead of client. One tiered spec holds one subject, so the
 * deny side beside the version in force holds a subject covering both (2800) with both versions' Deny (and Pass) rules,
 * no Accept: never wider than either version, so the veto has nothing to refuse, and client's old Accept of web is gone.
 */
describe('2671: the same with a changed subject', () => {
  it('is held for the old subject at the old Denies, no Accept', () => {
    const { a, settle, egress } = crdAgent();
    const filler = full(DEFAULT_MAP_CAPACITY - 2);
    settle([cnp([acceptWeb, denyRest]), filler]);
    settle([identity(303, null, 'MODIFIED')]);
    settle([cnp([denyWeb], 10, 'web')]);
    settle([pod('web2', 'web', 'n2', '10.0.1.9')]);
    expect(a.engine.identityOfPod('shop/web2')).toBe(300);
    expect(egress(300)).toBe('deny');
    expect(egress(303)).toBe('deny');
    expect(a.mirror.refusedObjects()).toEqual(['CiliumIdentity//303', 'ClusterNetworkPolicy//cnp']);
    // Room for 303's deny: both commit; the new version leaves client alone (303 stays unreadable).
    settle([deleted(filler)]);
    expect(a.mirror.refusedObjects()).toEqual([]);
    expect(egress(300)).toBe('allow');
    expect(egress(303)).toBe('deny');
    expect(egress(304)).toBe('allow');
  });
});
