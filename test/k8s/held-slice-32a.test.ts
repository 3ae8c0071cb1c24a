import { describe, expect, it } from 'vitest';
import type { EngineEvent } from '../../src/engine/events.js';
import { parseIp } from '../../src/model/cidr.js';
import { UNALLOCATED_POD_IDENTITY } from '../../src/model/identity.js';
import { rollingMirrorAgent } from './mirror-agent.js';
import { cnp, line, md, namespace, server, type Obj } from './refused-objects.js';

/*
 * 32a: an API server EndpointSlice refused alone is held fail-closed (finding 3265); a CIDR group's fail-closed form
 * holds no CIDR identity for its prefixes, so it fits a map its own form overflows (finding 3273).
 */
const inY = (name: string, ip: string): Obj => ({ apiVersion: 'v1', kind: 'Pod', metadata: md(name, 3, { namespace: 'y', labels: { role: name } }), spec: { nodeName: 'n2', containers: [] }, status: { phase: 'Running', podIP: ip } });
const slice = (rv: number, addresses: string[]): Obj => ({ apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', addressType: 'IPv4', metadata: md('kubernetes', rv, { namespace: 'default', labels: { 'kubernetes.io/service-name': 'kubernetes' } }), endpoints: addresses.map((a) => ({ addresses: [a] })), ports: [{ name: 'https', port: 6443, protocol: 'TCP' }] });
const nsY = line('ADDED', { apiVersion: 'v1', kind: 'Namespace', metadata: md('y', 2, { labels: { team: 'a' } }) });
const toWorld = line('ADDED', cnp('to-world', 6, { egress: [{ toEntities: ['world'] }], ingress: [{ fromEntities: ['world'] }] }));

describe('32a: held forms that fit', () => {
  it('3273: a CIDR group added and refused alone is held without CIDR identities, within a map its own form overflows', () => {
    // 11 of 12 entries. g's own form adds an identity (10.0.1.0/30, env=a) denied both ways by deny-g: 13. Its
    // fail-closed form held a CIDR identity of no labels, which to-world allows both ways: 13 too, so g waited at its
    // old version (none): 10.0.1.3 world, allowed, though the input after denies it.
    const A = '10.0.1.3';
    const { feed, engine, mirror } = rollingMirrorAgent({ mapCapacity: 12 }, { cidrGroups: true });
    const verdict = (ip: string, dir: 'ingress' | 'egress'): string => {
      const hit = engine.lookup('x/server', engine.identityOfIp(parseIp(ip)), dir, 6, 80);
      return hit === undefined || hit.entry.deny ? 'deny' : 'allow';
    };
    const g = { apiVersion: 'cilium.io/v2', kind: 'CiliumCIDRGroup', metadata: md('g', 20, { labels: { env: 'a' } }), spec: { externalCIDRs: ['10.0.1.0/30'] } };
    feed(line('ADDED', namespace), line('ADDED', server), nsY, line('ADDED', inY('a', '10.0.1.1')), line('ADDED', inY('b', '10.0.1.2')), line('ADDED', cnp('only-ext', 3, { egress: [{ toCIDR: ['198.51.100.0/24'] }] })), line('ADDED', slice(5, ['192.0.2.1'])));
    feed(toWorld, line('ADDED', cnp('deny-g', 7, { egressDeny: [{ toCIDRSet: [{ cidrGroupRef: 'g' }] }], ingressDeny: [{ fromCIDRSet: [{ cidrGroupRef: 'g' }] }] })));
    expect(engine.mapPressure()[0]?.entries).toBe(11);
    expect(verdict(A, 'egress')).toBe('allow');
    feed(line('ADDED', g));
    expect(mirror.refusedObjects()).toEqual(['CiliumCIDRGroup//g']);
    expect(engine.ipcache().find((e) => e.prefix === '10.0.1.0/30')?.identity).toBe(UNALLOCATED_POD_IDENTITY);
    for (const dir of ['ingress', 'egress'] as const) expect(verdict(A, dir)).toBe('deny');
    // The pods inside keep their identities (a pod's address wins over the prefix).
    expect(engine.identityOfIp(parseIp('10.0.1.1'))).not.toBe(UNALLOCATED_POD_IDENTITY);
  });

  it('3265: a slice refused alone holds the addresses its change adds and drops, until it is read again', () => {
    // The engine refuses the slice's own forms (a setApiServer without `held`) while `refusing`. Old: .1; new: .2.
    let refusing = false;
    const refuse = (events: readonly EngineEvent[]): boolean => refusing && events.some((e) => e.type === 'setApiServer' && e.held === undefined);
    const { feed, engine, mirror } = rollingMirrorAgent({}, {}, () => {}, refuse);
    const verdict = (ip: string): string => {
      const hit = engine.lookup('x/server', engine.identityOfIp(parseIp(ip)), 'egress', 6, 80);
      return hit === undefined || hit.entry.deny ? 'deny' : 'allow';
    };
    feed(line('ADDED', namespace), line('ADDED', server), line('ADDED', slice(5, ['192.0.2.1', '203.0.113.9'])), toWorld, line('ADDED', cnp('allow-api', 7, { egress: [{ toEntities: ['kube-apiserver'] }] })));
    feed(line('ADDED', cnp('deny-api', 8, { egressDeny: [{ toEntities: ['kube-apiserver'], toPorts: [{ ports: [{ port: '80', protocol: 'TCP' }] }] }] })));
    expect(['192.0.2.1', '192.0.2.2', '203.0.113.9'].map(verdict)).toEqual(['deny', 'allow', 'deny']);
    refusing = true;
    // .1 leaves (world after: allowed), .2 joins (denied after): both held; .9 stays the API server's.
    feed(line('MODIFIED', slice(9, ['192.0.2.2', '203.0.113.9'])));
    expect(mirror.refusedObjects()).toEqual(['EndpointSlice/default/kubernetes']);
    expect(['192.0.2.1', '192.0.2.2'].map((ip) => engine.identityOfIp(parseIp(ip)))).toEqual([UNALLOCATED_POD_IDENTITY, UNALLOCATED_POD_IDENTITY]);
    expect(['192.0.2.1', '192.0.2.2', '203.0.113.9'].map(verdict)).toEqual(['deny', 'deny', 'deny']);
    // Deleted while refused: held at the addresses the engine holds.
    feed(line('DELETED', slice(10, ['192.0.2.2', '203.0.113.9'])));
    expect(['192.0.2.1', '192.0.2.2', '203.0.113.9'].map((ip) => engine.identityOfIp(parseIp(ip)))).toEqual([UNALLOCATED_POD_IDENTITY, UNALLOCATED_POD_IDENTITY, UNALLOCATED_POD_IDENTITY]);
    // Another object commits: the slice is read again, its delete now taken.
    refusing = false;
    feed(line('ADDED', cnp('other', 11, { egress: [{ toCIDR: ['198.51.100.0/24'] }] })));
    expect(mirror.refusedObjects()).toEqual([]);
    expect(['192.0.2.1', '192.0.2.2', '203.0.113.9'].map(verdict)).toEqual(['allow', 'allow', 'allow']);
    expect(engine.lookup('x/server', UNALLOCATED_POD_IDENTITY, 'egress', 6, 80)?.entry.deny).not.toBe(true);
  });
});
