import { describe, expect, it } from 'vitest';
import { Engine } from '../src/engine/engine.js';
import type { EngineEvent } from '../src/engine/events.js';
import { parseIp } from '../src/model/cidr.js';
import type { Pod } from '../src/model/cluster.js';
import type { Policy } from '../src/model/rules.js';
import { parseManifest } from '../src/policy/manifest.js';

/** Attack round 11c: a restart after a long downtime with a persisted DNS cache (docs/attack-findings-11c.md, 342). */
const client: Pod = { namespace: 'apps', name: 'client', labels: { app: 'client' }, ip: parseIp('10.0.0.1'), serviceAccount: 'default', ports: [] };
const cnp = (name: string, spec: object): Policy => parseManifest({ apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name, namespace: 'apps' }, spec }, `${name}.yaml`, { fqdn: true });
const initial: EngineEvent[] = [
  { type: 'upsertNamespace', name: 'apps', labels: {} },
  { type: 'upsertPod', pod: client, local: true },
  { type: 'upsertPolicy', policy: cnp('dns', { endpointSelector: {}, egress: [{ toEndpoints: [{}], toPorts: [{ ports: [{ port: '53', protocol: 'ANY' }], rules: { dns: [{ matchPattern: '*' }] } }] }] }) },
  { type: 'upsertPolicy', policy: cnp('fqdn', { endpointSelector: {}, egress: [{ toFQDNs: [{ matchPattern: '*.example.com' }] }] }) },
];
const learnt = (e: Engine): string[] => e.ipcache().filter((x) => x.prefix.startsWith('198.51.100.')).map((x) => x.prefix);

function savedAfterAnswer(): string {
  const a = new Engine();
  a.apply(initial);
  a.apply([{ type: 'advanceTime', seconds: 100 }, { type: 'dnsResponse', endpoint: 'apps/client', name: 'a.example.com', ips: [parseIp('198.51.100.1')], ttl: 60 }]);
  return a.dnsCacheFile();
}

describe('342: a restore after a downtime longer than the TTL', () => {
  it('the downtime applied as advanceTime in the first transaction: the expired IP never reaches the first change set', () => {
    const b = new Engine();
    b.restoreDnsCache(savedAfterAnswer(), 'dns.jsonl');
    const first = b.apply([{ type: 'advanceTime', seconds: 3600 }, ...initial]);
    expect(first.ipcache.filter((d) => d.prefix.startsWith('198.51.100.'))).toEqual([]);
    expect(learnt(b)).toEqual([]);
  });
  it('without it the engine cannot know the downtime: the name stays allowed for the rest of its TTL (the embedder must advance)', () => {
    const b = new Engine();
    b.restoreDnsCache(savedAfterAnswer(), 'dns.jsonl');
    b.apply(initial);
    expect(learnt(b)).toEqual(['198.51.100.1/32']);
    b.apply([{ type: 'advanceTime', seconds: 60 }]);
    expect(learnt(b)).toEqual(['198.51.100.1/32']);
    b.apply([{ type: 'advanceTime', seconds: 1 }]);
    expect(learnt(b)).toEqual([]);
  });
});
