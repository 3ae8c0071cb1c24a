import { describe, expect, it } from 'vitest';
import { Engine } from '../src/engine/engine.js';
import type { EngineEvent } from '../src/engine/events.js';
import { applyEventToCluster } from '../src/harness/cluster-sync.js';
import { parseIp } from '../src/model/cidr.js';
import { ClusterState, EMPTY_CLUSTER, Pod } from '../src/model/cluster.js';
import { DEFAULT_DNS_CACHE_OPTIONS, EMPTY_DNS_CACHE } from '../src/model/fqdn.js';
import { parseManifest } from '../src/policy/manifest.js';

/**
 * A pod that stops being local (moved to another node) has no endpoint on this node any more: its
 * DNS history goes with the endpoint (Cilium keeps it per endpoint, `ep.DNSHistory`, and its DNS GC
 * collects only this agent's endpoints: pkg/fqdn/namemanager/gc.go `doGC`). Engine (running and
 * restored) and oracle forget the answers learnt for its queries; a remote pod learns nothing.
 */
const pod = (name: string, ip: string): Pod => ({ namespace: 'apps', name, labels: { app: name }, ip: parseIp(ip), serviceAccount: 'default', ports: [] });
const CLIENT = pod('client', '10.244.0.10');
const OTHER = pod('other', '10.244.0.12');
const KUBE_DNS = pod('kube-dns', '10.244.0.53');
const spec = { endpointSelector: {}, egress: [{ toEndpoints: [{}], toPorts: [{ ports: [{ port: '53', protocol: 'UDP' }], rules: { dns: [{ matchPattern: '*' }] } }] }, { toFQDNs: [{ matchPattern: '*.example.com' }] }] };
const POLICY: EngineEvent = { type: 'upsertPolicy', policy: parseManifest({ apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name: 'dns', namespace: 'apps' }, spec }, 'dns.yaml', { fqdn: true }) };
const NS: EngineEvent = { type: 'upsertNamespace', name: 'apps', labels: {} };
const at = (p: Pod, local: boolean): EngineEvent => ({ type: 'upsertPod', pod: p, local });
const ans = (endpoint: string, ip: string, server?: string): EngineEvent => ({ type: 'dnsResponse', endpoint, name: 'a.example.com', ips: [parseIp(ip)], ttl: 300, ...(server ? { server: { ip: parseIp(server), port: 53 } } : {}) });
const SETUP: EngineEvent[] = [NS, at(CLIENT, true), at(OTHER, true), at(KUBE_DNS, true), POLICY];

const engineLearnt = (e: Engine): string[] => e.ipcache().map((x) => x.prefix).filter((p) => p.startsWith('203.0.113.')).sort();
const fileEndpoints = (e: Engine): string[] => [...e.dnsCacheFile().matchAll(/"endpoint":"([^"]+)"/g)].map((m) => m[1] as string).sort();
const oracleLearnt = (s: ClusterState): string[] => [...new Set((s.dns ?? EMPTY_DNS_CACHE).entries.map((d) => `${d.ip.text}/32`))].sort();

function run(batches: EngineEvent[][]): { engine: string[]; oracle: string[]; file: string[] } {
  const engine = new Engine({ dns: DEFAULT_DNS_CACHE_OPTIONS });
  let state: ClusterState = { ...EMPTY_CLUSTER, dns: { ...EMPTY_DNS_CACHE } };
  for (const b of batches) {
    engine.apply(b);
    for (const e of b) state = applyEventToCluster(state, e);
  }
  return { engine: engineLearnt(engine), oracle: oracleLearnt(state), file: fileEndpoints(engine) };
}

describe('a pod that turns remote takes its learnt answers with it', () => {
  const learntBoth = [SETUP, [ans('apps/client', '203.0.113.1'), ans('apps/other', '203.0.113.2', KUBE_DNS.ip.text)]];
  it('both local: both answers kept (engine and oracle)', () => {
    expect(run(learntBoth)).toEqual({ engine: ['203.0.113.1/32', '203.0.113.2/32'], oracle: ['203.0.113.1/32', '203.0.113.2/32'], file: ['apps/client', 'apps/other'] });
  });
  it('other moves to another node: its answer is forgotten in that transaction, engine and oracle', () => {
    expect(run([...learntBoth, [at(OTHER, false)]])).toEqual({ engine: ['203.0.113.1/32'], oracle: ['203.0.113.1/32'], file: ['apps/client'] });
  });
  it('answer and move in one batch: forgotten too; coming back does not bring it back', () => {
    expect(run([SETUP, [ans('apps/other', '203.0.113.2'), at(OTHER, false)], [at(OTHER, true)]])).toEqual({ engine: [], oracle: [], file: [] });
  });
  it('the oracle learns nothing for a remote pod, with or without a server (finding 161)', () => {
    expect(run([[...SETUP, at(OTHER, false)], [ans('apps/other', '203.0.113.2', KUBE_DNS.ip.text), ans('apps/other', '203.0.113.3')]])).toEqual({ engine: [], oracle: [], file: [] });
  });
  it('a restart: an endpoint now on another node loses its restored answers in the first transaction, as without a restart', () => {
    const before = new Engine({ dns: DEFAULT_DNS_CACHE_OPTIONS });
    for (const b of learntBoth) before.apply(b);
    const after = new Engine({ dns: DEFAULT_DNS_CACHE_OPTIONS });
    after.restoreDnsCache(before.dnsCacheFile(), 'dns.jsonl');
    after.apply([NS, at(CLIENT, true), at(OTHER, false), at(KUBE_DNS, true), POLICY]);
    expect({ engine: engineLearnt(after), file: fileEndpoints(after) }).toEqual({ engine: ['203.0.113.1/32'], file: ['apps/client'] });
    expect(engineLearnt(after)).toEqual(run([...learntBoth, [at(OTHER, false)]]).engine);
  });
});
