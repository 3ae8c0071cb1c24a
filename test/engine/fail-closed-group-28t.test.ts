import { describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.js';
import { EngineError, MapCapacityError, type EngineEvent } from '../../src/engine/events.js';
import { parseIp } from '../../src/model/cidr.js';
import type { CidrGroup } from '../../src/model/cidr-group.js';
import { UNALLOCATED_POD_IDENTITY } from '../../src/model/identity.js';
import { parseCidrGroup } from '../../src/policy/cidr-group.js';
import { parseManifest } from '../../src/policy/manifest.js';

/*
 * Round 28t (finding 2431): a CiliumCIDRGroup the agent holds fail-closed (`CidrGroup.failClosed`: the engine refused
 * its change alone). Its prefixes, and every CIDR identity inside them, read UNALLOCATED_POD_IDENTITY in the ipcache,
 * which every local map denies both ways while something holds it (src/engine/engine.ts `syncUnallocatedDeny`); it
 * gives no labels. Read as written again, every address goes back to its CIDR identity.
 */
const group = (env: string, failClosed = false): CidrGroup => {
  const g = parseCidrGroup({ apiVersion: 'cilium.io/v2', kind: 'CiliumCIDRGroup', metadata: { name: 'g', labels: { env } }, spec: { externalCIDRs: ['198.51.100.0/24'] } }, 'g.yaml');
  return failClosed ? { ...g, failClosed: true } : g;
};
const policy = (name: string, spec: Record<string, unknown>) => parseManifest({ apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name, namespace: 'x' }, spec: { endpointSelector: {}, ...spec } }, 't.yaml', { cidrGroups: true });
const allowAll = policy('all', { ingress: [{ fromEntities: ['all'] }], egress: [{ toEntities: ['all'] }] });
const denyA = policy('deny-a', { ingressDeny: [{ fromCIDRSet: [{ cidrGroupSelector: { matchLabels: { env: 'a' } } }] }] });
const inner = policy('inner', { ingress: [{ fromCIDR: ['198.51.100.0/25'] }] });
const ports = Array.from({ length: 40 }, (_, i) => ({ port: String(70 + i), protocol: 'TCP' }));
const wide = policy('wide', { ingress: [{ fromCIDR: ['198.51.100.0/25'], toPorts: [{ ports }] }] });
const base: EngineEvent[] = [
  { type: 'upsertNamespace', name: 'x', labels: {} },
  { type: 'upsertPod', pod: { namespace: 'x', name: 'server', labels: { app: 'server' }, ip: parseIp('10.0.0.1'), serviceAccount: 'default', ports: [] }, local: true },
  { type: 'upsertPolicy', policy: allowAll },
  { type: 'upsertPolicy', policy: denyA },
  { type: 'upsertPolicy', policy: inner },
  { type: 'upsertCidrGroup', group: group('a') },
];
const verdict = (e: Engine, peer: string, dir: 'ingress' | 'egress'): string => {
  const hit = e.lookup('x/server', e.identityOfIp(parseIp(peer)), dir, 6, 80);
  return hit === undefined || hit.entry.deny ? 'deny' : 'allow';
};
const HELD = ['198.51.100.7', '198.51.100.200'];
const at = (e: Engine, prefix: string): number | undefined => e.ipcache().find((r) => r.prefix === prefix)?.identity;

describe('28t: a CIDR group held fail-closed', () => {
  it('reads the unallocated number at its prefix and the CIDR identities inside, denied both ways under a wildcard allow', () => {
    const e = new Engine();
    e.apply(base);
    const cidr24 = at(e, '198.51.100.0/24') as number;
    const cidr25 = at(e, '198.51.100.0/25') as number;
    expect(verdict(e, '198.51.100.7', 'ingress')).toBe('deny');
    expect(verdict(e, '198.51.100.200', 'ingress')).toBe('deny');
    const held = e.apply([{ type: 'upsertCidrGroup', group: group('b', true) }]);
    expect(held.ipcache).toEqual([
      { op: 'upsert', prefix: '198.51.100.0/24', identity: UNALLOCATED_POD_IDENTITY, previous: cidr24 },
      { op: 'upsert', prefix: '198.51.100.0/25', identity: UNALLOCATED_POD_IDENTITY, previous: cidr25 },
    ]);
    expect(at(e, '198.51.100.0/24')).toBe(UNALLOCATED_POD_IDENTITY);
    // Held, the group holds no CIDR identity for its prefix (finding 3273): its entry is the unallocated number alone.
    expect(e.identities()).not.toContain(cidr24);
    for (const ip of HELD) {
      expect(e.identityOfIp(parseIp(ip))).toBe(UNALLOCATED_POD_IDENTITY);
      for (const dir of ['ingress', 'egress'] as const) expect(verdict(e, ip, dir)).toBe('deny');
    }
    expect(verdict(e, '203.0.113.1', 'ingress')).toBe('allow');
    // Read as written (env=b, which deny-a does not select): back to the CIDR identities, the deny of 255 gone.
    const read = e.apply([{ type: 'upsertCidrGroup', group: group('b') }]);
    // The /24 is a CIDR identity again, a new one: held, the group held none for its prefix (finding 3273).
    expect(read.ipcache.map((d) => [d.prefix, d.identity])).toEqual([['198.51.100.0/24', expect.any(Number)], ['198.51.100.0/25', cidr25]]);
    expect(at(e, '198.51.100.0/24')).not.toBe(UNALLOCATED_POD_IDENTITY);
    expect(e.identityLabels(at(e, '198.51.100.0/24') as number)?.some((l) => l.key === '198.51.100.0/24')).toBe(true);
    for (const ip of HELD) expect(verdict(e, ip, 'ingress')).toBe('allow');
    expect(e.lookup('x/server', UNALLOCATED_POD_IDENTITY, 'egress', 6, 80)?.entry.deny).not.toBe(true);
  });

  it('a CIDR identity acquired inside it while held reads the unallocated number; a held group deleted frees it', () => {
    const e = new Engine();
    e.apply(base.filter((ev) => ev.type !== 'upsertPolicy' || ev.policy !== inner));
    e.apply([{ type: 'upsertCidrGroup', group: group('b', true) }]);
    const added = e.apply([{ type: 'upsertPolicy', policy: inner }]);
    expect(added.ipcache).toEqual([{ op: 'upsert', prefix: '198.51.100.0/25', identity: UNALLOCATED_POD_IDENTITY, previous: undefined }]);
    const gone = e.apply([{ type: 'deleteCidrGroup', name: 'g' }]);
    expect(gone.ipcache.map((d) => [d.op, d.prefix])).toEqual([['delete', '198.51.100.0/24'], ['upsert', '198.51.100.0/25']]);
    expect(e.identityOfIp(parseIp('198.51.100.7'))).not.toBe(UNALLOCATED_POD_IDENTITY);
    expect(e.lookup('x/server', UNALLOCATED_POD_IDENTITY, 'ingress', 6, 80)?.entry.deny).not.toBe(true);
  });

  it('a refused transaction holding it changes nothing; an unexpected failure rebuilds it held', () => {
    const e = new Engine({ mapCapacity: 30 });
    e.apply(base);
    const before = e.ipcache();
    expect(() => e.apply([{ type: 'upsertCidrGroup', group: group('b', true) }, { type: 'upsertPolicy', policy: wide }])).toThrow(MapCapacityError);
    expect(e.ipcache()).toEqual(before);
    expect(e.apply([{ type: 'upsertNamespace', name: 'y', labels: {} }]).ipcache).toEqual([]);
    e.apply([{ type: 'upsertCidrGroup', group: group('b', true) }]);
    const held = e.ipcache();
    let armed = true;
    const f = new Engine({ faultHook: (p) => { if (armed && p === 'attachUnit') throw new Error('boom'); } });
    armed = false;
    f.apply([...base, { type: 'upsertCidrGroup', group: group('b', true) }]);
    expect(f.ipcache()).toEqual(held);
    armed = true;
    expect(() => f.apply([{ type: 'upsertPolicy', policy: wide }])).toThrow();
    armed = false;
    expect(f.ipcache()).toEqual(held);
    for (const ip of HELD) expect(verdict(f, ip, 'ingress')).toBe('deny');
  });

  it('the API server\'s address outside the cluster inside it reads the unallocated number too (its CIDR identity would lose the labels)', () => {
    const e = new Engine();
    const denyB = policy('deny-a', { ingressDeny: [{ fromCIDRSet: [{ cidrGroupSelector: { matchLabels: { env: 'b' } } }] }] });
    e.apply([...base.filter((ev) => ev.type !== 'upsertCidrGroup'), { type: 'upsertPolicy', policy: denyB }, { type: 'setApiServer', addresses: [parseIp('198.51.100.9')] }, { type: 'upsertCidrGroup', group: group('b') }]);
    const apiServer = e.identityOfIp(parseIp('198.51.100.9'));
    expect(verdict(e, '198.51.100.9', 'ingress')).toBe('deny');
    const held = e.apply([{ type: 'upsertCidrGroup', group: group('b', true) }]);
    expect(held.ipcache).toContainEqual({ op: 'upsert', prefix: '198.51.100.9/32', identity: UNALLOCATED_POD_IDENTITY, previous: apiServer });
    expect(at(e, '198.51.100.9/32')).toBe(UNALLOCATED_POD_IDENTITY);
    for (const dir of ['ingress', 'egress'] as const) expect(verdict(e, '198.51.100.9', dir)).toBe('deny');
    e.apply([{ type: 'upsertCidrGroup', group: group('b') }]);
    expect(e.identityOfIp(parseIp('198.51.100.9'))).toBe(apiServer);
  });

  it('validation: failClosed true or absent', () => {
    const e = new Engine();
    const bad = { ...group('a'), failClosed: 'yes' } as unknown as CidrGroup;
    expect(() => e.apply([{ type: 'upsertCidrGroup', group: bad }])).toThrow(EngineError);
  });
});
