import { describe, expect, it } from 'vitest';
import { rollingMirrorAgent } from './mirror-agent.js';
import { acceptNetworks, cnp, egressVerdict, line, md, namespace, other, server, type Obj } from './refused-objects.js';

/**
 * Findings 3060 and 3061 (31r, a review of 2432 and 30s's 2900). A node change moves an address into an Admin Accept
 * of `networks` on 8 ports so that the Accept's CIDR holds a whole node role (tiers.ts `nodePeers`): the Accept
 * selects that role's identity and x/server's 14-entry map overflows. The held forms left the address in its role
 * and in the role's cover (3060: a health address kept `health`, in the local node's three forms and a remote
 * node's; 3061: a held remote node's own new address, at 255, still counted inside), so each overflowed as the
 * change did and the node waited at its old version. A later policy allowing the role's entity then opened the old
 * address, which both inputs read as world and x/server's egress (198.51.100.0/24) denies.
 */
const OLD_HEALTH = '172.16.1.1';
const NEW_HEALTH = '172.16.1.9';
const ciliumNodeAt = (name: string, rv: number, ip: string, health: string): Obj => ({
  apiVersion: 'cilium.io/v2',
  kind: 'CiliumNode',
  metadata: md(name, rv),
  spec: { addresses: [{ type: 'InternalIP', ip }], health: { ipv4: health } },
});
const nodeAt = (name: string, rv: number, ip: string): Obj => ({ apiVersion: 'v1', kind: 'Node', metadata: md(name, rv), status: { addresses: [{ type: 'InternalIP', address: ip }] } });
const onlyExternal = cnp('only-ext', 12, { egress: [{ toCIDR: ['198.51.100.0/24'] }] });

/** Setup, the refused change, the entity's allow; then the old address as both inputs read it, and liveness. */
function heldReaddress(opts: { cidr: string; nodes: Obj[]; change: Obj; entity: string; old: string; now: string; also?: string }): void {
  const { feed, engine, mirror } = rollingMirrorAgent({ mapCapacity: 14 });
  const verdict = egressVerdict(engine);
  feed(line('ADDED', namespace), ...opts.nodes.map((n) => line('ADDED', n)), line('ADDED', server), line('ADDED', acceptNetworks(11, opts.cidr, 8)), line('ADDED', onlyExternal));
  expect(mirror.refusedObjects()).toEqual([]);
  feed(line('MODIFIED', opts.change));
  feed(line('ADDED', cnp('to-entity', 13, { egress: [{ toEntities: [opts.entity] }] })));
  // Before (the change, no to-entity) and after (the change, to-entity): the old address is world, denied.
  expect(verdict(opts.old, 443)).toBe('deny');
  // The held node's new address is denied (stricter than both inputs while it lasts).
  expect(verdict(opts.now, 443)).toBe('deny');
  if (opts.also !== undefined) expect(verdict(opts.also, 443)).toBe('allow');
  // Liveness: the Accept on 2 ports, the change fits.
  feed(line('MODIFIED', acceptNetworks(14, opts.cidr, 2)), line('ADDED', other));
  expect(mirror.refusedObjects()).toEqual([]);
  expect(verdict(opts.now, 443)).toBe('allow');
  expect(verdict(opts.old, 443)).toBe('deny');
}

// The agent's own node without a health address: the remote one's is the health role's only address.
const localNode = nodeAt('n1', 18, '172.16.0.1');

describe('3060: a health readdress the engine refuses in every held form', () => {
  it('local CiliumNode: held at its addresses, its health address too', () => {
    const local = (rv: number, health: string): Obj => ciliumNodeAt('n1', rv, '172.16.0.1', health);
    heldReaddress({ cidr: '172.16.1.8/29', nodes: [local(20, OLD_HEALTH)], change: local(21, NEW_HEALTH), entity: 'health', old: OLD_HEALTH, now: NEW_HEALTH });
  });

  it('remote CiliumNode: held at the unallocated number, its health address too', () => {
    const remote = (rv: number, health: string): Obj => ciliumNodeAt('n2', rv, '172.16.0.2', health);
    heldReaddress({ cidr: '172.16.1.8/29', nodes: [localNode, remote(20, OLD_HEALTH)], change: remote(21, NEW_HEALTH), entity: 'health', old: OLD_HEALTH, now: NEW_HEALTH });
  });

  it('remote, beside another node whose health address the Accept holds: the held one never makes the role whole', () => {
    const remote = (rv: number, health: string): Obj => ciliumNodeAt('n2', rv, '172.16.0.2', health);
    const n3 = ciliumNodeAt('n3', 19, '172.16.0.3', '172.16.1.10');
    heldReaddress({ cidr: '172.16.1.8/29', nodes: [localNode, n3, remote(20, OLD_HEALTH)], change: remote(21, NEW_HEALTH), entity: 'health', old: OLD_HEALTH, now: NEW_HEALTH, also: '172.16.1.10' });
  });
});

describe('3061: a remote Node readdress that makes a networks rule hold the whole remote-node role', () => {
  it('is held without its new address inside the cover: the old address is never opened by a later policy', () => {
    const n3 = nodeAt('n3', 19, '172.16.0.10');
    heldReaddress({ cidr: '172.16.0.8/29', nodes: [localNode, n3, nodeAt('n2', 20, '172.16.0.2')], change: nodeAt('n2', 21, '172.16.0.9'), entity: 'remote-node', old: '172.16.0.2', now: '172.16.0.9', also: '172.16.0.10' });
  });
});
