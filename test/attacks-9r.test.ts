import { describe, expect, it } from 'vitest';
import { Engine } from '../src/engine/engine.js';
import type { EngineEvent } from '../src/engine/events.js';
import { parseIp } from '../src/model/cidr.js';
import { DEFAULT_DNS_CACHE_OPTIONS } from '../src/model/fqdn.js';
import type { Policy } from '../src/model/rules.js';
import { parseManifest } from '../src/policy/manifest.js';

/** Review round 9r (docs/attack-findings-9r.md): findings in the ninth session's merged change. */
const CLIENT = { namespace: 'apps', name: 'client', labels: { app: 'client' }, ip: parseIp('10.244.0.10'), serviceAccount: 'default', ports: [] };
const cnp = (name: string, egress: object[]): Policy =>
  parseManifest({ apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name, namespace: 'apps' }, spec: { endpointSelector: { matchLabels: { app: 'client' } }, egress } }, `${name}.yaml`, { fqdn: true });
const FQDN = cnp('fqdn', [{ toFQDNs: [{ matchPattern: '*.example.com' }] }]);
const DNS = cnp('dns', [{ toEndpoints: [{}], toPorts: [{ ports: [{ port: '53', protocol: 'UDP' }], rules: { dns: [{ matchPattern: '*' }] } }] }]);
const BASE: EngineEvent[] = [{ type: 'upsertNamespace', name: 'apps', labels: {} }, { type: 'upsertPod', pod: CLIENT, local: true }, ...[FQDN, DNS].map((policy): EngineEvent => ({ type: 'upsertPolicy', policy }))];

/** A cache file whose clock stands at `now`, with one answer learnt then for `ttl` seconds. */
function cacheFile(now: number, ttl: number): string {
  const e = new Engine({ dns: DEFAULT_DNS_CACHE_OPTIONS });
  e.apply(BASE);
  e.apply([{ type: 'dnsResponse', endpoint: 'apps/client', name: 'a.example.com', ips: [parseIp('203.0.113.1')], ttl }]);
  const [head, ...rest] = e.dnsCacheFile().split('\n');
  const shift = (o: Record<string, unknown>): Record<string, unknown> =>
    typeof o.learntAt === 'number' && typeof o.expiresAt === 'number' ? { ...o, learntAt: o.learntAt + now, expiresAt: o.expiresAt + now } : o;
  return [JSON.stringify({ ...(JSON.parse(head as string) as object), now }), ...rest.map((l) => (l.trim() === '' ? l : JSON.stringify(shift(JSON.parse(l) as Record<string, unknown>))))].join('\n');
}

describe('222: a restored DNS cache keeps the DNS clock below 2^52 seconds, as batches must (validate.ts checkClock)', () => {
  it('a file whose now or expiry passes 2^52 is refused: its answers could never expire, as no step is accepted after it', () => {
    expect(() => new Engine({ dns: DEFAULT_DNS_CACHE_OPTIONS }).restoreDnsCache(cacheFile(2 ** 52 + 1, 300), 'dns.jsonl')).toThrow(/2\^52/);
    expect(() => new Engine({ dns: DEFAULT_DNS_CACHE_OPTIONS }).restoreDnsCache(cacheFile(2 ** 52 - 10, 300), 'dns.jsonl')).toThrow(/2\^52/);
  });

  it('a file within the bound restores, and its answer expires as the clock advances', () => {
    const e = new Engine({ dns: DEFAULT_DNS_CACHE_OPTIONS });
    e.restoreDnsCache(cacheFile(2 ** 52 - 1000, 300), 'dns.jsonl');
    e.apply(BASE);
    const learnt = (): boolean => e.ipcache().some((x) => x.prefix === '203.0.113.1/32');
    expect(learnt()).toBe(true);
    e.apply([{ type: 'advanceTime', seconds: 301 }]);
    expect(learnt()).toBe(false);
  });
});
