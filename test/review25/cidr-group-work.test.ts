import { afterEach, describe, expect, it, vi } from 'vitest';
import { Engine } from '../../src/engine/engine.js';
import type { EngineEvent } from '../../src/engine/events.js';
import { parseCidr, parseIp, PrefixSet } from '../../src/model/cidr.js';
import { cidrGroupNameKey } from '../../src/model/cidr-group.js';
import { parseManifest } from '../../src/policy/manifest.js';

/*
 * review25 (c): a CIDR group change should cost O(the group's prefixes and the identities inside them)
 * (attack-findings-25g "Huge groups": "one pass over the CIDR identities inside its old and new prefixes
 * per group selector"). SelectorCache.refreshGroupSelectors instead reads every CIDR identity of the node
 * (the whole CIDR bucket) and tests each against the changed prefixes.
 */
const cnp = (name: string, spec: Record<string, unknown>): EngineEvent => ({
  type: 'upsertPolicy',
  policy: parseManifest({ apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name, namespace: 'x' }, spec }, `${name}.yaml`, { cidrGroups: true }),
});

function setup(unrelated: number): Engine {
  const e = new Engine();
  const toCIDR = Array.from({ length: unrelated }, (_, i) => `100.${64 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}/32`);
  e.apply([
    { type: 'upsertNamespace', name: 'x', labels: {} },
    { type: 'upsertPod', pod: { namespace: 'x', name: 'client', labels: { app: 'client' }, ip: parseIp('10.244.0.5'), serviceAccount: 'default', ports: [] }, local: true },
    cnp('wide', { endpointSelector: {}, egress: [{ toCIDR }] }),
    cnp('deny', { endpointSelector: {}, egressDeny: [{ toCIDRSet: [{ cidrGroupRef: 'g' }] }] }),
  ]);
  return e;
}

const group = (env: string): EngineEvent => ({ type: 'upsertCidrGroup', group: { name: 'g', labels: new Map([['env', env], [cidrGroupNameKey('g'), '']]), cidrs: [parseCidr('203.0.113.0/24')] } });

/**
 * PrefixSet.containsCidr calls made by a label-only change of a group of one /24 far from every other
 * prefix (no identity created or freed: only the group selectors' re-evaluation runs).
 */
function containsCalls(e: Engine): number {
  e.apply([group('dev')]);
  const spy = vi.spyOn(PrefixSet.prototype, 'containsCidr');
  e.apply([group('prod')]);
  const n = spy.mock.calls.length;
  spy.mockRestore();
  return n;
}

afterEach(() => vi.restoreAllMocks());

describe('review25: a CIDR group change is proportional to the group, not to the node\'s CIDR identities', () => {
  it('a label-only change of a one-prefix group tests at most a few prefixes whatever the number of unrelated toCIDR prefixes', () => {
    const small = containsCalls(setup(10));
    const large = containsCalls(setup(5000));
    // Same group, same policies selecting it: the 4,990 extra /32s lie outside the group's prefix.
    expect({ small, large }).toEqual({ small, large: small });
  });
});
