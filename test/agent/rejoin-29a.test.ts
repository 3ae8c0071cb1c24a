import { describe, expect, it } from 'vitest';
import { parseIp } from '../../src/model/cidr.js';
import { UNALLOCATED_POD_IDENTITY } from '../../src/model/identity.js';
import { fill, meta, pod } from './crd-fixtures.js';
import { waitingDb } from './crd-loop.js';

/**
 * Finding 2524's retry (docs/attack-findings-29a.md): a pod vetoed alone while 303 waits, refused with 303 joined, is
 * held fail-closed, and its own version is retried with 303 joined (`rejoins`) until the pod changes or commits, or
 * something other than a pod commits. lonely0 is a local pod no policy selects (its default allow opens 303).
 */
const CAP = 24;

describe('29a: a pod refused with the identity it was joined to', () => {
  it('is held fail-closed where that fits, and commits with the identity once the identity fits', () => {
    // ghost has no CiliumIdentity: at 255 from the start, so 255's deny is in web's map before it is full.
    const { mirror, engine, settle } = waitingDb(CAP, [pod('ghost', 'ghost', 'n2', '10.0.1.66')], CAP - 4);
    settle([pod('lonely0', 'lonely', 'n1', '10.0.0.10')]);
    expect(engine.identityOfIp(parseIp('10.0.0.10'))).toBe(UNALLOCATED_POD_IDENTITY);
    expect(mirror.refusedObjects()).toEqual(['CiliumIdentity//303', 'Pod/shop/lonely0']);
    settle([fill('fill-web', 'web', 1000, 0)]);
    expect(mirror.refusedObjects()).toEqual([]);
    expect(engine.identityOfPod('shop/lonely0')).toBe(310);
    expect(engine.unreadableIdentities()).toEqual([303]);
  });

  it('is retried alone again once a policy committed (it may no longer open the waiting number)', () => {
    const { mirror, engine, settle } = waitingDb(CAP);
    settle([pod('lonely0', 'lonely', 'n1', '10.0.0.10')]);
    expect(mirror.refusedObjects()).toEqual(['CiliumIdentity//303', 'Pod/shop/lonely0']);
    expect(engine.endpoints()).not.toContain('shop/lonely0');
    // A policy selecting lonely0 (to and from web only): its map no longer admits 303, so it commits without 303.
    const web = [{ matchLabels: { app: 'web' } }];
    settle([{ type: 'ADDED', object: { apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: meta('lonely-web', { namespace: 'shop' }), spec: { endpointSelector: { matchLabels: { app: 'lonely' } }, egress: [{ toEndpoints: web }], ingress: [{ fromEndpoints: web }] } } }]);
    expect(engine.identityOfPod('shop/lonely0')).toBe(310);
    expect(mirror.refusedObjects()).toEqual(['CiliumIdentity//303']);
  });
});
