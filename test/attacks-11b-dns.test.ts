import { describe, expect, it } from 'vitest';
import { Engine } from '../src/engine/engine.js';
import type { EngineEvent } from '../src/engine/events.js';
import { parseIp } from '../src/model/cidr.js';
import type { Pod } from '../src/model/cluster.js';
import type { Policy } from '../src/model/rules.js';
import { parseManifest } from '../src/policy/manifest.js';

/** Attack round 11b: DNS time as hostile input (docs/attack-findings-11b.md). */
const client: Pod = { namespace: 'apps', name: 'client', labels: { app: 'client' }, ip: parseIp('10.0.0.1'), serviceAccount: 'default', ports: [] };
const cnp = (name: string, spec: object): Policy => parseManifest({ apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name, namespace: 'apps' }, spec }, `${name}.yaml`, { fqdn: true });
const setupEvents: EngineEvent[] = [
  { type: 'upsertNamespace', name: 'apps', labels: {} },
  { type: 'upsertPod', pod: client, local: true },
  { type: 'upsertPolicy', policy: cnp('dns', { endpointSelector: {}, egress: [{ toEndpoints: [{}], toPorts: [{ ports: [{ port: '53', protocol: 'ANY' }], rules: { dns: [{ matchPattern: '*' }] } }] }] }) },
  { type: 'upsertPolicy', policy: cnp('fqdn', { endpointSelector: {}, egress: [{ toFQDNs: [{ matchPattern: '*.example.com' }] }] }) },
];
const answer = (ttl: number, ip = '198.51.100.1'): EngineEvent => ({ type: 'dnsResponse', endpoint: 'apps/client', name: 'a.example.com', ips: [parseIp(ip)], ttl });
const learnt = (e: Engine): string[] => e.ipcache().filter((x) => x.prefix.startsWith('198.51.100.')).map((x) => x.prefix);

describe('11b-2: a TTL no DNS answer can carry (over 2^32 - 1 s, the RR header is a uint32) is refused, naming the field', () => {
  it('2^32 - 1 is kept that long; 2^32 and more are refused', () => {
    const e = new Engine();
    e.apply(setupEvents);
    e.apply([answer(2 ** 32 - 1)]);
    expect(learnt(e)).toEqual(['198.51.100.1/32']);
    expect(() => e.apply([answer(2 ** 32, '198.51.100.2')])).toThrow('ttl must be at most 4294967295 seconds');
    expect(() => e.apply([answer(2 ** 40, '198.51.100.2')])).toThrow('ttl must be at most 4294967295 seconds');
    expect(learnt(e)).toEqual(['198.51.100.1/32']);
  });
  it('NaN, Infinity, negative and fractional TTLs and steps are refused', () => {
    const e = new Engine();
    e.apply(setupEvents);
    for (const bad of [Number.NaN, Infinity, -1, 1.5]) {
      expect(() => e.apply([answer(bad)])).toThrow('ttl must be a non-negative integer');
      expect(() => e.apply([{ type: 'advanceTime', seconds: bad }])).toThrow('seconds must be a non-negative integer');
    }
    expect(learnt(e)).toEqual([]);
  });
});

describe('11b-3: a persisted DNS cache entry living longer than any answer could is refused, naming the line', () => {
  const file = (learntAt: number, expiresAt: number): string =>
    `{"distillDnsCache":1,"now":100,"options":{"minTtl":0,"maxIpsPerHostname":1000}}\n{"endpoint":"apps/client","name":"a.example.com","ip":"198.51.100.1","learntAt":${learntAt},"expiresAt":${expiresAt}}\n`;
  it('expiresAt - learntAt up to 2^32 - 1 is restored; beyond it the file is refused', () => {
    const ok = new Engine();
    ok.restoreDnsCache(file(50, 50 + 2 ** 32 - 1), 'dns.jsonl');
    ok.apply(setupEvents);
    expect(learnt(ok)).toEqual(['198.51.100.1/32']);
    expect(() => new Engine().restoreDnsCache(file(50, 50 + 2 ** 32), 'dns.jsonl')).toThrow('dns.jsonl:2 expiresAt');
    expect(() => new Engine().restoreDnsCache(file(0, 2 ** 51), 'dns.jsonl')).toThrow('dns.jsonl:2 expiresAt');
  });
  it('an entry at exactly the file\'s now is restored live, one a second older is not', () => {
    const e = new Engine();
    e.restoreDnsCache(file(90, 100), 'dns.jsonl');
    e.apply(setupEvents);
    expect(learnt(e)).toEqual(['198.51.100.1/32']);
    e.apply([{ type: 'advanceTime', seconds: 1 }]);
    expect(learnt(e)).toEqual([]);
    const old = new Engine();
    old.restoreDnsCache(file(90, 99), 'dns.jsonl');
    old.apply(setupEvents);
    expect(learnt(old)).toEqual([]);
  });
});

describe('11b: expiry and answers in one transaction; a refused transaction moves no clock (held, no finding)', () => {
  it('an answer expired inside its own batch is gone; a TTL-0 answer after the step is live at that instant only', () => {
    const e = new Engine();
    e.apply(setupEvents);
    e.apply([answer(5), { type: 'advanceTime', seconds: 6 }]);
    expect(learnt(e)).toEqual([]);
    e.apply([answer(5), { type: 'advanceTime', seconds: 6 }, answer(0)]);
    expect(learnt(e)).toEqual(['198.51.100.1/32']);
    e.apply([{ type: 'advanceTime', seconds: 1 }]);
    expect(learnt(e)).toEqual([]);
  });
  it('a batch refused after its step leaves the clock and the answers as committed', () => {
    const e = new Engine();
    e.apply(setupEvents);
    e.apply([answer(10)]);
    expect(() => e.apply([{ type: 'advanceTime', seconds: 100 }, answer(Number.NaN)])).toThrow('ttl must be a non-negative integer');
    expect(learnt(e)).toEqual(['198.51.100.1/32']);
    e.apply([{ type: 'advanceTime', seconds: 10 }]);
    expect(learnt(e)).toEqual(['198.51.100.1/32']);
    e.apply([{ type: 'advanceTime', seconds: 1 }]);
    expect(learnt(e)).toEqual([]);
  });
});
