import { describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.js';
import type { EngineEvent } from '../../src/engine/events.js';
import { endpointMaps } from '../../src/harness/cluster-sync.js';
import { parseIp } from '../../src/model/cidr.js';
import type { CidrGroup } from '../../src/model/cidr-group.js';
import { parseCidrGroup } from '../../src/policy/cidr-group.js';
import { parseManifest } from '../../src/policy/manifest.js';

/*
 * review25: the boundary copy (src/engine/boundary-copy.ts, findings 300/302/304: "a caller changing its
 * object afterwards would change the engine's state with no event") passes `upsertCidrGroup` through
 * uncopied (its `default:` case), and parseCidrGroup returns a mutable Map and array. The engine's CIDR
 * group table and committed model keep the caller's object: changing its labels after apply changes
 * what the next, unrelated transaction computes.
 */
const cnp = (name: string, spec: Record<string, unknown>): EngineEvent => ({
  type: 'upsertPolicy',
  policy: parseManifest({ apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name, namespace: 'x' }, spec }, `${name}.yaml`, { cidrGroups: true }),
});
const readGroup = (): CidrGroup => parseCidrGroup({ apiVersion: 'cilium.io/v2', kind: 'CiliumCIDRGroup', metadata: { name: 'g', labels: { env: 'dev' } }, spec: { externalCIDRs: ['203.0.113.0/24'] } }, 'g.yaml');

function state(e: Engine): unknown {
  return [...endpointMaps(e)].map(([ep, m]) => [ep, [...m].map(([k, r]) => [k, JSON.stringify(r.entry)]).sort()]);
}

describe('review25: a CiliumCIDRGroup given to apply is the engine\'s own copy', () => {
  it('changing the group object after apply changes nothing the engine computes next', () => {
    const start = (g: CidrGroup): EngineEvent[] => [
      { type: 'upsertNamespace', name: 'x', labels: {} },
      { type: 'upsertPod', pod: { namespace: 'x', name: 'client', labels: { app: 'client' }, ip: parseIp('10.244.0.5'), serviceAccount: 'default', ports: [] }, local: true },
      cnp('allow-prod', { endpointSelector: {}, egress: [{ toCIDRSet: [{ cidrGroupSelector: { matchLabels: { env: 'prod' } } }] }] }),
      { type: 'upsertCidrGroup', group: g },
    ];
    const mine = readGroup();
    const e = new Engine();
    const twin = new Engine();
    e.apply(start(mine));
    twin.apply(start(readGroup()));
    // The caller reuses its object (an informer's cache, a reader's memo) and changes it: no event.
    (mine.labels as Map<string, string>).set('env', 'prod');
    // An unrelated transaction: a toCIDR prefix inside the group gets a CIDR identity.
    const next = [cnp('other', { endpointSelector: {}, egress: [{ toCIDR: ['203.0.113.7/32'], toPorts: [{ ports: [{ port: '53', protocol: 'UDP' }] }] }] })];
    e.apply(next);
    twin.apply(next);
    expect(state(e)).toEqual(state(twin));
  });
});
