import { describe, expect, it } from 'vitest';
import { parseIp } from '../../src/model/cidr.js';
import { rollingMirrorAgent } from './mirror-agent.js';
import { cnp, line, md, namespace, other, protocols, server, type Obj } from './refused-objects.js';

/**
 * Finding 2916 (30s), fixed in 31b (3020). x/server's egress: 198.51.100.0/24, and the host (`to-host`); an Admin
 * Accept of `nodes: role=b` on 20 ports; no Node n1 yet. One step adds n1 (role=b, 172.16.0.1) and deletes `to-host`:
 * the batch overflows x/server's 14-entry map (the Accept selects the host) and is retried in parts. Committed at its
 * held form before the delete, the node made 172.16.0.1 the host, which `to-host` still allowed: x/server →
 * 172.16.0.1:80 was allowed between the parts, though before the step 172.16.0.1 is world and after it no rule allows
 * the host. Now every object of the split batch commits at its narrowing form before any commits at its own.
 */
const HOST = '172.16.0.1';
const node = (rv: number): Obj => ({ apiVersion: 'v1', kind: 'Node', metadata: md('n1', rv, { labels: { role: 'b' } }), status: { addresses: [{ type: 'InternalIP', address: HOST }] } });
const acceptNodes = (rv: number, ports: number): Obj => ({ apiVersion: 'policy.networking.k8s.io/v1beta1', kind: 'ClusterNetworkPolicy', metadata: md('accept-nodes', rv), spec: { tier: 'Admin', priority: 10, subject: { namespaces: {} }, egress: [{ action: 'Accept', to: [{ nodes: { matchLabels: { role: 'b' } } }], protocols: protocols.slice(0, ports) }] } });
const toHost = cnp('to-host', 13, { egress: [{ toEntities: ['host'] }] });

describe('2916: a refused step retried in parts', () => {
  it('never commits a part allowing what the inputs before and after the step deny', () => {
    const verdicts: string[] = [];
    const verdict = (port: number): string => {
      const hit = engine.lookup('x/server', engine.identityOfIp(parseIp(HOST)), 'egress', 6, port);
      return hit === undefined || hit.entry.deny ? 'deny' : 'allow';
    };
    const { feed, engine, mirror } = rollingMirrorAgent({ mapCapacity: 14 }, {}, () => verdicts.push(`${verdict(80)} ${verdict(443)}`));
    feed(line('ADDED', namespace), line('ADDED', server), line('ADDED', cnp('only-ext', 12, { egress: [{ toCIDR: ['198.51.100.0/24'] }] })), line('ADDED', toHost), line('ADDED', acceptNodes(11, 20)));
    expect(mirror.refusedObjects()).toEqual([]);
    expect(verdict(80)).toBe('deny');
    verdicts.length = 0;
    feed(line('ADDED', node(20)), line('DELETED', toHost));
    // Parts committed: none allowed the host address (world before, a host no rule allows after).
    expect(verdicts.length).toBeGreaterThan(1);
    expect(verdicts.filter((v) => v !== 'deny deny')).toEqual([]);
    // The node alone still overflows: held (its address denied), the delete of to-host in force.
    expect(mirror.refusedObjects()).toEqual(['Node//n1']);
    // Liveness: the Accept on 2 ports, the node is read as written, the host allowed on those ports only.
    feed(line('MODIFIED', acceptNodes(14, 2)), line('ADDED', other));
    expect(mirror.refusedObjects()).toEqual([]);
    expect([verdict(70), verdict(80)]).toEqual(['allow', 'deny']);
  });

  it('3021: a local node readdressed in a split step is held at its old and new addresses', () => {
    // x/server allows the host; n1 at 172.16.0.1, role=a. One step: n1 to 172.16.0.9 and role=b, a Deny of role=b on 20
    // ports, to-host deleted. Held with its labels unknown (2541), n1 made .9 the host, which to-host still allowed,
    // though before the step .9 is world and after it no rule allows the host on 80 or 443.
    const NEW = '172.16.0.9';
    const at = (rv: number, ip: string, role: string): Obj => ({ apiVersion: 'v1', kind: 'Node', metadata: md('n1', rv, { labels: { role } }), status: { addresses: [{ type: 'InternalIP', address: ip }] } });
    const denyB = { apiVersion: 'policy.networking.k8s.io/v1beta1', kind: 'ClusterNetworkPolicy', metadata: md('deny-nodes', 15), spec: { tier: 'Admin', priority: 5, subject: { namespaces: {} }, egress: [{ action: 'Deny', to: [{ nodes: { matchLabels: { role: 'b' } } }], protocols }] } };
    const verdicts: string[] = [];
    const verdict = (ip: string, port: number): string => {
      const hit = engine.lookup('x/server', engine.identityOfIp(parseIp(ip)), 'egress', 6, port);
      return hit === undefined || hit.entry.deny ? 'deny' : 'allow';
    };
    const { feed, engine, mirror } = rollingMirrorAgent({ mapCapacity: 14 }, {}, () => verdicts.push(`${verdict(NEW, 80)} ${verdict(NEW, 443)} ${verdict(HOST, 80)}`));
    feed(line('ADDED', namespace), line('ADDED', server), line('ADDED', at(20, HOST, 'a')), line('ADDED', cnp('only-ext', 12, { egress: [{ toCIDR: ['198.51.100.0/24'] }] })), line('ADDED', toHost));
    expect([verdict(HOST, 80), verdict(NEW, 80)]).toEqual(['allow', 'deny']);
    verdicts.length = 0;
    feed(line('MODIFIED', at(21, NEW, 'b')), line('ADDED', denyB), line('DELETED', toHost));
    expect(verdicts.length).toBeGreaterThan(1);
    expect(verdicts.filter((v) => v !== 'deny deny deny' && v !== 'deny deny allow')).toEqual([]);
    // The Deny's 20 entries on the host overflow: n1 stays held (30s's forms), the Deny and the delete in force.
    expect(mirror.refusedObjects()).toEqual(['Node//n1']);
    expect([verdict(NEW, 80), verdict(HOST, 80)]).toEqual(['deny', 'deny']);
  });

  it('3022: the old address of a node readdressed in a split step is held too, not read as world', () => {
    // x/server may reach 172.16.0.0/24 by CIDR, which never selects the host (n1 at .1). One step: n1 to .9 (into the
    // 8-port Accept of 172.16.0.8/29: refused, 2900), the CIDR allow deleted, and an egress deny on 20 ports (refused
    // alone, also at its deny side). Held at .9 only, .1 read as world in a part where the CIDR allow was still in.
    const NEW = '172.16.0.9';
    const at = (rv: number, ip: string): Obj => ({ apiVersion: 'v1', kind: 'Node', metadata: md('n1', rv), status: { addresses: [{ type: 'InternalIP', address: ip }] } });
    const acceptNet = { apiVersion: 'policy.networking.k8s.io/v1beta1', kind: 'ClusterNetworkPolicy', metadata: md('accept-net', 16), spec: { tier: 'Admin', priority: 10, subject: { namespaces: {} }, egress: [{ action: 'Accept', to: [{ networks: ['172.16.0.8/29'] }], protocols: protocols.slice(0, 8) }] } };
    const toNet = cnp('to-net', 17, { egress: [{ toCIDR: ['172.16.0.0/24'] }] });
    const bigDeny = cnp('big-deny', 18, { egressDeny: [{ toCIDR: ['192.0.2.0/24'], toPorts: [{ ports: protocols.map((p) => ({ port: String(p.tcp.destinationPort.number), protocol: 'TCP' })) }] }] });
    const verdicts: string[] = [];
    const verdict = (ip: string, port: number): string => {
      const hit = engine.lookup('x/server', engine.identityOfIp(parseIp(ip)), 'egress', 6, port);
      return hit === undefined || hit.entry.deny ? 'deny' : 'allow';
    };
    const { feed, engine, mirror } = rollingMirrorAgent({ mapCapacity: 14 }, {}, () => verdicts.push(verdict(HOST, 80)));
    feed(line('ADDED', namespace), line('ADDED', server), line('ADDED', at(20, HOST)), line('ADDED', cnp('only-ext', 12, { egress: [{ toCIDR: ['198.51.100.0/24'] }] })), line('ADDED', toNet), line('ADDED', acceptNet));
    expect(mirror.refusedObjects()).toEqual([]);
    expect([verdict(HOST, 80), verdict('172.16.0.5', 80)]).toEqual(['deny', 'allow']);
    verdicts.length = 0;
    feed(line('MODIFIED', at(21, NEW)), line('DELETED', toNet), line('ADDED', bigDeny));
    expect(verdicts.length).toBeGreaterThan(1);
    expect(verdicts.filter((v) => v !== 'deny')).toEqual([]);
    expect(verdict(HOST, 80)).toBe('deny');
  });
});
