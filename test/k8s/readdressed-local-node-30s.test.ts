import { describe, expect, it } from 'vitest';
import { rollingMirrorAgent } from './mirror-agent.js';
import { acceptNetworks, cnp, egressVerdict, line, md, namespace, other, server, type Obj } from './refused-objects.js';

/**
 * Finding 2900 (30s). The agent's own Node readdressed from 172.16.0.1 to 172.16.0.9, into an Admin Accept of
 * `networks: 172.16.0.8/29` on 8 ports: the host role becomes covered (tiers.ts `nodePeers`), 8 more entries overflow
 * x/server's 14-entry map. 30a's held forms (labels unknown, then every port) keep the new address at `host`, so
 * they overflow too and the node waited at its old address. A later CiliumNetworkPolicy allowing the host entity then
 * opened x/server → 172.16.0.1:443, which both inputs read as world and deny (x/server's egress: 198.51.100.0/24 and
 * the host). Now the local node's third held form reads its own addresses as the unallocated number (denied by every
 * local map, as a held remote node's), and the host role's cover leaves them out.
 */
const OLD = '172.16.0.1';
const NEW = '172.16.0.9';
const nodeAt = (rv: number, ip: string): Obj => ({ apiVersion: 'v1', kind: 'Node', metadata: md('n1', rv, { labels: { role: 'a' } }), status: { addresses: [{ type: 'InternalIP', address: ip }] } });
const acceptNet = (rv: number, ports: number): Obj => acceptNetworks(rv, '172.16.0.8/29', ports);
const ciliumNp = cnp;

describe('2900: a local Node readdress the engine refuses in every labels form', () => {
  it('is held at the unallocated number: the old address is world, the new one denied, both inputs agreeing', () => {
    const { feed, engine, mirror } = rollingMirrorAgent({ mapCapacity: 14 });
    const verdict = egressVerdict(engine);
    feed(line('ADDED', namespace), line('ADDED', nodeAt(20, OLD)), line('ADDED', server), line('ADDED', acceptNet(11, 8)), line('ADDED', ciliumNp('only-ext', 12, { egress: [{ toCIDR: ['198.51.100.0/24'] }] })));
    expect(mirror.refusedObjects()).toEqual([]);
    feed(line('MODIFIED', nodeAt(21, NEW)));
    expect(mirror.refusedObjects()).toEqual(['Node//n1']);
    feed(line('ADDED', ciliumNp('to-host', 13, { egress: [{ toEntities: ['host'] }] })));
    // Before (node at NEW, no to-host) and after (node at NEW, to-host): 172.16.0.1 is world, denied.
    expect(verdict(OLD, 443)).toBe('deny');
    // The new address is held: denied (both inputs allow it to the host on 443 from now on: stricter while it lasts).
    expect(verdict(NEW, 443)).toBe('deny');
    // Liveness: the Accept on 4 ports, the readdress fits and the host is at NEW.
    feed(line('MODIFIED', acceptNet(14, 4)), line('ADDED', other));
    expect(mirror.refusedObjects()).toEqual([]);
    expect(verdict(NEW, 443)).toBe('allow');
    expect(verdict(OLD, 443)).toBe('deny');
  });
});
