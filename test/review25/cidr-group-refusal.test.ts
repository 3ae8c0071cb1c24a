import { describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.js';
import { EngineEvent, MapCapacityError } from '../../src/engine/events.js';
import { endpointMaps } from '../../src/harness/cluster-sync.js';
import { parseCidr, parseIp } from '../../src/model/cidr.js';
import { cidrGroupNameKey } from '../../src/model/cidr-group.js';
import { parseManifest } from '../../src/policy/manifest.js';
import { poison } from '../engine/poison.js';

/*
 * review25 (b): a refused transaction holding CIDR group events (with pods and policies) must leave the
 * kernel view unchanged, and the next transaction must agree with a twin that never saw the refusal.
 */
const cnp = (name: string, spec: Record<string, unknown>): EngineEvent => ({
  type: 'upsertPolicy',
  policy: parseManifest({ apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name, namespace: 'x' }, spec }, `${name}.yaml`, { cidrGroups: true }),
});
const group = (name: string, cidrs: string[], labels: [string, string][] = []): EngineEvent => ({
  type: 'upsertCidrGroup',
  group: { name, labels: new Map([...labels, [cidrGroupNameKey(name), '']]), cidrs: cidrs.map(parseCidr) },
});
const pod = (name: string, ip: string): EngineEvent => ({ type: 'upsertPod', pod: { namespace: 'x', name, labels: { app: name }, ip: parseIp(ip), serviceAccount: 'default', ports: [] }, local: true });

function kernelState(e: Engine): unknown {
  return {
    maps: [...endpointMaps(e)].map(([ep, m]) => [ep, [...m].map(([k, r]) => [k, JSON.stringify(r.entry)]).sort()]).sort(),
    ipcache: [...e.ipcache()].map((x) => JSON.stringify(x)).sort(),
  };
}

describe('review25: a refused transaction with CIDR group events changes nothing', () => {
  const overflow = poison(6);
  const start: EngineEvent[] = [
    { type: 'upsertNamespace', name: 'x', labels: {} },
    pod('client', '10.244.0.5'),
    cnp('p', { endpointSelector: {}, egress: [{ toEntities: ['world'] }, { toCIDR: ['203.0.113.7/32'] }], egressDeny: [{ toCIDRSet: [{ cidrGroupRef: 'g1' }, { cidrGroupSelector: { matchLabels: { env: 'prod' } } }] }] }),
    group('g1', ['203.0.113.0/24', '2001:db8::/32']),
    group('g2', ['198.51.100.0/24'], [['env', 'dev']]),
  ];
  const cases: [string, EngineEvent[]][] = [
    ['a new group on an existing prefix', [group('g3', ['203.0.113.0/24'], [['env', 'prod']])]],
    ['a group deleted', [{ type: 'deleteCidrGroup', name: 'g1' }]],
    ['a group moved and relabelled', [group('g1', ['192.0.2.0/24']), group('g2', ['198.51.100.0/24', '203.0.113.0/25'], [['env', 'prod']])]],
    ['a group with a pod and a policy naming it', [pod('web', '10.244.0.6'), cnp('q', { endpointSelector: { matchLabels: { app: 'web' } }, egress: [{ toCIDRSet: [{ cidrGroupRef: 'g4', except: ['10.9.9.0/24'] }] }] }), group('g4', ['10.9.0.0/16', '203.0.113.7/32'])]],
    ['a group deleted and re-created in one transaction', [{ type: 'deleteCidrGroup', name: 'g1' }, group('g1', ['203.0.113.0/24'], [['env', 'prod']])]],
  ];
  for (const [name, events] of cases) {
    it(name, () => {
      const e = new Engine({ mapCapacity: 160 });
      const twin = new Engine({ mapCapacity: 160 });
      e.apply(start);
      twin.apply(start);
      const before = kernelState(e);
      expect(() => e.apply([...events, overflow])).toThrow(MapCapacityError);
      expect(kernelState(e)).toEqual(before);
      e.apply(events);
      twin.apply(events);
      expect(kernelState(e)).toEqual(kernelState(twin));
    });
  }
});
