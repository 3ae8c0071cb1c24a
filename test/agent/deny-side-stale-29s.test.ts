import { describe, expect, it } from 'vitest';
import type { WatchItem } from '../../src/k8s/watch.js';
import { DEFAULT_MAP_CAPACITY } from '../../src/model/policy-map.js';
import { deleted, identity, meta, pod } from './crd-fixtures.js';
import { crdAgent, full } from './stale-agent.js';

/**
 * Finding 2670 (review 29s, docs/attack-findings-29s.md). CRD identities; 303 (db) turns unreadable and waits: filler's
 * map has no room for its deny. `out` isolates client's egress and lets it reach web; its update stops isolating
 * (`enableDefaultDeny.egress: false`) and denies web. Sent alone it is vetoed (client's egress would open to 303), sent
 * with 303 it is refused (filler), so it is held at its deny side (2521), which is vetoed for the same reason and so
 * kept the old denies (2523), but not the old isolation: vetoed and refused again, `out` waited at its old version,
 * whose allow of web the update and every later input deny, and a later commit left client → web allowed.
 */
const out = (spec: Record<string, unknown>): WatchItem => ({ type: 'ADDED', object: { apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: meta('out', { namespace: 'shop' }), spec: { endpointSelector: { matchLabels: { app: 'client' } }, ...spec } } });
const toWeb = [{ toEndpoints: [{ matchLabels: { app: 'web' } }] }];

describe('2670: a deny side that would drop the isolation of the version in force while an identity waits', () => {
  it('keeps that isolation: the policy is not left at its old version', () => {
    const { a, settle, egress } = crdAgent();
    const filler = full(DEFAULT_MAP_CAPACITY - 2);
    settle([out({ egress: toWeb }), filler]);
    expect(a.mirror.refusedObjects()).toEqual([]);
    expect(egress(300)).toBe('allow');
    settle([identity(303, null, 'MODIFIED')]);
    expect(a.mirror.refusedObjects()).toEqual(['CiliumIdentity//303']);
    settle([out({ enableDefaultDeny: { egress: false }, egressDeny: toWeb })]);
    settle([pod('web2', 'web', 'n2', '10.0.1.9')]);
    expect(a.engine.identityOfPod('shop/web2')).toBe(300);
    // The update denies web; client's egress stays isolated (the old version's) while 303 waits.
    expect(egress(300)).toBe('deny');
    expect(egress(303)).toBe('deny');
    expect(a.mirror.refusedObjects()).toEqual(['CiliumIdentity//303', 'CiliumNetworkPolicy/shop/out']);
    // Room for 303's deny: both commit, `out` is read as it is (egress no longer isolated, web denied).
    settle([deleted(filler)]);
    expect(a.mirror.refusedObjects()).toEqual([]);
    expect(egress(300)).toBe('deny');
    expect(egress(303)).toBe('deny');
    expect(egress(304)).toBe('allow');
  });
});

/**
 * Finding 2672 (review 29s). As 2670, but `out` redirects client's egress on port 80 to the HTTP proxy (GET only), and
 * `plain` allows port 80 to every peer; the update drops the redirect and denies web. Every deny side drops the
 * redirect, which unmasks `plain`'s allow on identity 0 under it: an upsert the veto refuses while 303 waits. So the
 * deny side with the old denies and isolation (2670) was vetoed and refused too, and `out` waited at its old version:
 * client → web on 80 still went to the proxy, which let GETs through. Now held at its deny-all side (both versions').
 */
describe('2672: a deny side that unmasks an allow under a redirect while an identity waits', () => {
  it('is held at its deny-all side, not at its old version', () => {
    const { a, settle, egress } = crdAgent();
    const filler = full(DEFAULT_MAP_CAPACITY - 2);
    const port80 = { ports: [{ port: '80', protocol: 'TCP' }] };
    const plain: WatchItem = { type: 'ADDED', object: { apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: meta('plain', { namespace: 'shop' }), spec: { endpointSelector: { matchLabels: { app: 'client' } }, egress: [{ toEntities: ['all'], toPorts: [port80] }] } } };
    settle([out({ egress: [{ toEntities: ['all'], toPorts: [{ ...port80, rules: { http: [{ method: 'GET' }] } }] }] }), plain, filler]);
    expect(egress(300)).toBe('redirect');
    settle([identity(303, null, 'MODIFIED')]);
    expect(a.mirror.refusedObjects()).toEqual(['CiliumIdentity//303']);
    settle([out({ egressDeny: toWeb })]);
    settle([pod('web2', 'web', 'n2', '10.0.1.9')]);
    expect(a.engine.identityOfPod('shop/web2')).toBe(300);
    expect(egress(300)).toBe('deny');
    expect(egress(304)).toBe('deny');
    expect(a.mirror.refusedObjects()).toEqual(['CiliumIdentity//303', 'CiliumNetworkPolicy/shop/out']);
    // Room for 303's deny: both commit, `out` is read as it is (web denied, `plain` allows the rest on 80).
    settle([deleted(filler)]);
    expect(a.mirror.refusedObjects()).toEqual([]);
    expect(egress(300)).toBe('deny');
    expect(egress(304)).toBe('allow');
  });
});
