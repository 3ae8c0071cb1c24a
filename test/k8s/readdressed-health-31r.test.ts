import { describe, expect, it } from 'vitest';
import { parseIp } from '../../src/model/cidr.js';
import { rollingMirrorAgent } from './mirror-agent.js';
import { line, md, namespace, other, protocols, server, type Obj } from './refused-objects.js';

/**
 * Finding 3060 (31r, a review of 30s's 2900). The agent's own CiliumNode moves its health endpoint address from
 * 172.16.1.1 to 172.16.1.9, into an Admin Accept of `networks: 172.16.1.8/29` on 8 ports: the health role becomes
 * covered (tiers.ts `nodePeers`), 8 more entries overflow x/server's 14-entry map. The local node's three held forms
 * (labels unknown, every port, its own addresses at the unallocated number) all keep the new health address as
 * `health`, so each overflows the same way, and the node waited at its old version: 172.16.1.1 still `health`. A
 * later CiliumNetworkPolicy allowing the health entity then opened x/server → 172.16.1.1, which both inputs read as
 * world and deny (x/server's egress: 198.51.100.0/24, and the health entity, whose address is 172.16.1.9).
 */
const OLD = '172.16.1.1';
const NEW = '172.16.1.9';
const ciliumNodeAt = (rv: number, health: string, name = 'n1', ip = '172.16.0.1'): Obj => ({
  apiVersion: 'cilium.io/v2',
  kind: 'CiliumNode',
  metadata: md(name, rv),
  spec: { addresses: [{ type: 'InternalIP', ip }], health: { ipv4: health } },
});
const acceptNet = (rv: number, ports: number): Obj => ({ apiVersion: 'policy.networking.k8s.io/v1beta1', kind: 'ClusterNetworkPolicy', metadata: md('accept-net', rv), spec: { tier: 'Admin', priority: 10, subject: { namespaces: {} }, egress: [{ action: 'Accept', to: [{ networks: ['172.16.1.8/29'] }], protocols: protocols.slice(0, ports) }] } });
const ciliumNp = (name: string, rv: number, spec: Obj): Obj => ({ apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: md(name, rv, { namespace: 'x' }), spec: { endpointSelector: { matchLabels: { app: 'server' } }, ...spec } });

describe('3060: a CiliumNode health readdress the engine refuses in every held form', () => {
  it('local: never leaves the old health address allowed by a later policy both inputs read as world', () => {
    const { feed, engine, mirror } = rollingMirrorAgent({ mapCapacity: 14 });
    const verdict = (ip: string, port: number): string => {
      const hit = engine.lookup('x/server', engine.identityOfIp(parseIp(ip)), 'egress', 6, port);
      return hit === undefined || hit.entry.deny ? 'deny' : 'allow';
    };
    feed(line('ADDED', namespace), line('ADDED', ciliumNodeAt(20, OLD)), line('ADDED', server), line('ADDED', acceptNet(11, 8)), line('ADDED', ciliumNp('only-ext', 12, { egress: [{ toCIDR: ['198.51.100.0/24'] }] })));
    expect(mirror.refusedObjects()).toEqual([]);
    feed(line('MODIFIED', ciliumNodeAt(21, NEW)));
    feed(line('ADDED', ciliumNp('to-health', 13, { egress: [{ toEntities: ['health'] }] })));
    // Before (health at NEW, no to-health) and after (health at NEW, to-health): 172.16.1.1 is world, denied.
    expect(verdict(OLD, 443)).toBe('deny');
    // Liveness: the Accept on 4 ports, the readdress fits and the health endpoint is at NEW.
    feed(line('MODIFIED', acceptNet(14, 4)), line('ADDED', other));
    expect(mirror.refusedObjects()).toEqual([]);
    expect(verdict(NEW, 443)).toBe('allow');
    expect(verdict(OLD, 443)).toBe('deny');
  });

  it('remote: held at the unallocated number, its health address too; never the old one allowed by a later policy', () => {
    const { feed, engine, mirror } = rollingMirrorAgent({ mapCapacity: 14 });
    const verdict = (ip: string, port: number): string => {
      const hit = engine.lookup('x/server', engine.identityOfIp(parseIp(ip)), 'egress', 6, port);
      return hit === undefined || hit.entry.deny ? 'deny' : 'allow';
    };
    const remote = (rv: number, health: string): Obj => ciliumNodeAt(rv, health, 'n2', '172.16.0.2');
    feed(line('ADDED', namespace), line('ADDED', ciliumNodeAt(19, '172.16.2.1')), line('ADDED', remote(20, OLD)), line('ADDED', server), line('ADDED', acceptNet(11, 8)), line('ADDED', ciliumNp('only-ext', 12, { egress: [{ toCIDR: ['198.51.100.0/24'] }] })));
    expect(mirror.refusedObjects()).toEqual([]);
    feed(line('MODIFIED', remote(21, NEW)));
    feed(line('ADDED', ciliumNp('to-health', 13, { egress: [{ toEntities: ['health'] }] })));
    expect(verdict(OLD, 443)).toBe('deny');
    // The held node's new health address is denied (stricter than both inputs while it lasts).
    expect(verdict(NEW, 443)).toBe('deny');
    feed(line('MODIFIED', acceptNet(14, 4)), line('ADDED', other));
    expect(mirror.refusedObjects()).toEqual([]);
    expect(verdict(NEW, 443)).toBe('allow');
    expect(verdict(OLD, 443)).toBe('deny');
  });
});
