import { describe, expect, it } from 'vitest';
import { Engine } from '../src/engine/engine.js';
import type { EngineEvent } from '../src/engine/events.js';
import { parseIp } from '../src/model/cidr.js';
import { PROTOCOL_NUMBER } from '../src/model/ports.js';
import { parseManifest } from '../src/policy/manifest.js';

/*
 * Round 9d attacks (docs/attack-findings-9d.md): every feature at once, found by
 * test/engine/all-features.property.test.ts and pinned here shrunk.
 */

const setup: EngineEvent[] = [
  { type: 'upsertNamespace', name: 'n1', labels: {} },
  { type: 'upsertPod', pod: { namespace: 'n1', name: 'p0', labels: { app: 'web' }, ip: parseIp('10.244.1.2'), serviceAccount: 'default', ports: [] }, local: true },
  { type: 'upsertNode', name: 'n1', ips: [parseIp('192.168.1.7')], local: false, health: [parseIp('10.250.0.1')], ingress: [parseIp('10.250.0.9')] },
];

const denyNetworks = (networks: string[]): EngineEvent => ({
  type: 'upsertPolicy',
  policy: parseManifest(
    { apiVersion: 'policy.networking.k8s.io/v1alpha2', kind: 'ClusterNetworkPolicy', metadata: { name: 'deny-net' }, spec: { tier: 'Admin', priority: 1, subject: { namespaces: {} }, egress: [{ action: 'Deny', to: [{ networks }] }] } },
    'deny-net.yaml',
  ),
});

describe('160. a ClusterNetworkPolicy Deny of networks holding a node\'s health or Ingress address', () => {
  it('denies the health and Ingress endpoints as it denies the node (their identities do not follow addresses either)', () => {
    const e = new Engine();
    e.apply([...setup, denyNetworks(['0.0.0.0/0'])]);
    for (const ip of ['192.168.1.7', '10.250.0.1', '10.250.0.9', '8.8.8.8']) {
      const hit = e.lookup('n1/p0', e.identityOfIp(parseIp(ip)), 'egress', PROTOCOL_NUMBER.TCP, 80);
      expect([ip, hit?.entry.deny]).toEqual([ip, true]);
    }
  });
});
