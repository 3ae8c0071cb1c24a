import { describe, expect, it } from 'vitest';
import { Engine } from '../src/engine/engine.js';
import type { EngineEvent } from '../src/engine/events.js';
import { applyEventToCluster } from '../src/harness/cluster-sync.js';
import { parseIp } from '../src/model/cidr.js';
import { ClusterState, EMPTY_CLUSTER, Pod } from '../src/model/cluster.js';
import { DEFAULT_DNS_CACHE_OPTIONS, EMPTY_DNS_CACHE } from '../src/model/fqdn.js';
import type { Policy } from '../src/model/rules.js';
import { parseManifest } from '../src/policy/manifest.js';

/**
 * Attack round 9b (docs/attack-findings-9b.md): toFQDNs, DNS answers and learnt IPs. Each test
 * feeds the engine and the oracle the same events and checks what the node learns.
 */
const LEARNT = '203.0.113.1';
const pod = (name: string, ip: string, labels: Record<string, string> = { app: name }): Pod => ({ namespace: 'apps', name, labels, ip: parseIp(ip), serviceAccount: 'default', ports: [] });
const CLIENT = pod('client', '10.244.0.10');

function cnp(name: string, spec: object): Policy {
  return parseManifest({ apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name, namespace: 'apps' }, spec }, `${name}.yaml`, { fqdn: true });
}

const FQDN_ALL = cnp('fqdn', { endpointSelector: { matchLabels: { app: 'client' } }, egress: [{ toFQDNs: [{ matchPattern: '*.example.com' }] }] });
/** The client's answer for a.example.com holding LEARNT, from `server` (none: a server not named). */
const answer = (server: string | null, port = 53, endpoint = 'apps/client'): EngineEvent => ({
  type: 'dnsResponse',
  endpoint,
  name: 'a.example.com',
  ips: [parseIp(LEARNT)],
  ttl: 300,
  ...(server === null ? {} : { server: { ip: parseIp(server), port } }),
});

/** Whether engine and oracle learnt LEARNT after `setupEvents` then `batch`. */
function learnt(setupEvents: EngineEvent[], batch: EngineEvent[]): { engine: boolean; oracle: boolean } {
  const engine = new Engine({ dns: DEFAULT_DNS_CACHE_OPTIONS });
  let state: ClusterState = { ...EMPTY_CLUSTER, dns: { ...EMPTY_DNS_CACHE } };
  const all: EngineEvent[] = [{ type: 'upsertNamespace', name: 'apps', labels: {} }, { type: 'upsertPod', pod: CLIENT, local: true }, ...setupEvents];
  engine.apply(all);
  for (const e of all) state = applyEventToCluster(state, e);
  engine.apply(batch);
  for (const e of batch) state = applyEventToCluster(state, e);
  return { engine: engine.ipcache().some((e) => e.prefix === `${LEARNT}/32`), oracle: (state.dns?.entries ?? []).some((e) => e.ip.text === LEARNT) };
}

const policies = (...ps: Policy[]): EngineEvent[] => [FQDN_ALL, ...ps].map((policy) => ({ type: 'upsertPolicy' as const, policy }));
const NODES: EngineEvent[] = [
  { type: 'upsertNode', name: 'n1', ips: [parseIp('192.168.1.1')], local: true, health: [parseIp('10.244.0.200')], ingress: [parseIp('10.244.0.201')] },
  { type: 'upsertNode', name: 'n2', ips: [parseIp('192.168.1.2')] },
];

describe('120: a DNS query to a node address is judged with the node identity, not world', () => {
  const worldDns = cnp('world-dns', { endpointSelector: { matchLabels: { app: 'client' } }, egress: [{ toEntities: ['world'], toPorts: [{ ports: [{ port: '53', protocol: 'UDP' }], rules: { dns: [{ matchPattern: '*' }] } }] }] });
  const hostDns = cnp('host-dns', { endpointSelector: { matchLabels: { app: 'client' } }, egress: [{ toEntities: ['host', 'remote-node', 'health', 'ingress'], toPorts: [{ ports: [{ port: '53', protocol: 'UDP' }], rules: { dns: [{ matchPattern: '*' }] } }] }] });
  for (const server of ['192.168.1.1', '192.168.1.2', '10.244.0.200', '10.244.0.201']) {
    it(`a server at ${server}: a DNS redirect for world does not see the query`, () => {
      expect(learnt([...NODES, ...policies(worldDns)], [answer(server)])).toEqual({ engine: false, oracle: false });
    });
    it(`a server at ${server}: a DNS redirect for the node's entity does`, () => {
      expect(learnt([...NODES, ...policies(hostDns)], [answer(server)])).toEqual({ engine: true, oracle: true });
    });
  }
});

describe("121: an answer to another node's pod teaches this node nothing, with or without its server", () => {
  const dnsAll = cnp('dns', { endpointSelector: {}, egress: [{ toEndpoints: [{}], toPorts: [{ ports: [{ port: '53', protocol: 'UDP' }], rules: { dns: [{ matchPattern: '*' }] } }] }] });
  const remote = pod('remote', '10.244.1.10', { app: 'client' });
  const KUBE_DNS = pod('kube-dns', '10.244.0.53');
  const setupEvents: EngineEvent[] = [...policies(dnsAll), { type: 'upsertPod', pod: remote, local: false }, { type: 'upsertPod', pod: KUBE_DNS, local: true }];
  it('with its server', () => {
    expect(learnt(setupEvents, [answer(KUBE_DNS.ip.text, 53, 'apps/remote')]).engine).toBe(false);
  });
  it('without a server', () => {
    expect(learnt(setupEvents, [answer(null, 53, 'apps/remote')]).engine).toBe(false);
  });
  it('a local pod still learns without a server', () => {
    expect(learnt(setupEvents, [answer(null)])).toEqual({ engine: true, oracle: true });
  });
});

describe('122: a restored DNS cache keeps at most maxIpsPerHostname IPs per endpoint and name (the engine\'s limit, not the old run\'s)', () => {
  const dnsAll = cnp('dns', { endpointSelector: {}, egress: [{ toEndpoints: [{}], toPorts: [{ ports: [{ port: '53', protocol: 'UDP' }], rules: { dns: [{ matchPattern: '*' }] } }] }] });
  const base: EngineEvent[] = [{ type: 'upsertNamespace', name: 'apps', labels: {} }, { type: 'upsertPod', pod: CLIENT, local: true }, ...policies(dnsAll)];
  const ans = (ip: string, ttl: number): EngineEvent => ({ type: 'dnsResponse', endpoint: 'apps/client', name: 'a.example.com', ips: [parseIp(ip)], ttl });
  const learntIps = (e: Engine): string[] => e.ipcache().map((x) => x.prefix).filter((p) => p.startsWith('203.0.113.')).sort();
  it('the entries that expire first go, as a new answer would evict them', () => {
    const before = new Engine({ dns: { minTtl: 0, maxIpsPerHostname: 1000 } });
    before.apply(base);
    before.apply([ans('203.0.113.1', 300), ans('203.0.113.2', 100), ans('203.0.113.3', 200)]);
    expect(learntIps(before)).toEqual(['203.0.113.1/32', '203.0.113.2/32', '203.0.113.3/32']);
    const after = new Engine({ dns: { minTtl: 0, maxIpsPerHostname: 2 } });
    after.restoreDnsCache(before.dnsCacheFile(), 'dns.jsonl');
    after.apply(base);
    expect(learntIps(after)).toEqual(['203.0.113.1/32', '203.0.113.3/32']);
    // The same as the old engine gets once a new answer for the name arrives under the new limit.
    const fresh = new Engine({ dns: { minTtl: 0, maxIpsPerHostname: 2 } });
    fresh.apply(base);
    fresh.apply([ans('203.0.113.1', 300), ans('203.0.113.2', 100), ans('203.0.113.3', 200)]);
    expect(learntIps(fresh)).toEqual(learntIps(after));
  });
});

describe("123: the proxy forwards the query with the pod's identity: a server whose ingress drops it gives no answer to learn", () => {
  const KUBE_DNS = pod('kube-dns', '10.244.0.53');
  const dnsAll = cnp('dns', { endpointSelector: { matchLabels: { app: 'client' } }, egress: [{ toEndpoints: [{ matchLabels: { app: 'kube-dns' } }], toPorts: [{ ports: [{ port: '53', protocol: 'UDP' }], rules: { dns: [{ matchPattern: '*' }] } }] }] });
  const ingressOnly = (app: string): Policy => cnp('dns-ingress', { endpointSelector: { matchLabels: { app: 'kube-dns' } }, ingress: [{ fromEndpoints: [{ matchLabels: { app } }], toPorts: [{ ports: [{ port: '53', protocol: 'UDP' }] }] }] });
  const denyClient = cnp('dns-deny', { endpointSelector: { matchLabels: { app: 'kube-dns' } }, ingressDeny: [{ fromEndpoints: [{ matchLabels: { app: 'client' } }] }] });
  const base: EngineEvent[] = [{ type: 'upsertPod', pod: KUBE_DNS, local: true }, ...policies(dnsAll)];
  const upsert = (policy: Policy): EngineEvent => ({ type: 'upsertPolicy', policy });
  it('kube-dns admits only other clients: nothing learnt (its map untouched, or changed in the same transaction)', () => {
    expect(learnt([...base, upsert(ingressOnly('trusted'))], [answer(KUBE_DNS.ip.text)])).toEqual({ engine: false, oracle: false });
    expect(learnt(base, [upsert(ingressOnly('trusted')), answer(KUBE_DNS.ip.text)])).toEqual({ engine: false, oracle: false });
  });
  it('an ingress deny of the client: nothing learnt', () => {
    expect(learnt([...base, upsert(denyClient)], [answer(KUBE_DNS.ip.text)])).toEqual({ engine: false, oracle: false });
  });
  it('kube-dns admits the client, or has no ingress policy: learnt', () => {
    expect(learnt([...base, upsert(ingressOnly('client'))], [answer(KUBE_DNS.ip.text)])).toEqual({ engine: true, oracle: true });
    expect(learnt(base, [answer(KUBE_DNS.ip.text)])).toEqual({ engine: true, oracle: true });
  });
});

describe('restored answers of an endpoint that is gone after the restart are forgotten in the first transaction (round 9b, left open)', () => {
  const dnsAll = cnp('dns', { endpointSelector: {}, egress: [{ toEndpoints: [{}], toPorts: [{ ports: [{ port: '53', protocol: 'UDP' }], rules: { dns: [{ matchPattern: '*' }] } }] }] });
  const OTHER = pod('other', '10.244.0.12', { app: 'client' });
  const ns: EngineEvent = { type: 'upsertNamespace', name: 'apps', labels: {} };
  const ans = (endpoint: string, ip: string): EngineEvent => ({ type: 'dnsResponse', endpoint, name: 'a.example.com', ips: [parseIp(ip)], ttl: 300 });
  const learntIps = (e: Engine): string[] => e.ipcache().map((x) => x.prefix).filter((p) => p.startsWith('203.0.113.')).sort();
  const restarted = (initial: EngineEvent[]): Engine => {
    const before = new Engine();
    before.apply([ns, { type: 'upsertPod', pod: CLIENT, local: true }, { type: 'upsertPod', pod: OTHER, local: true }, ...policies(dnsAll)]);
    before.apply([ans('apps/client', '203.0.113.1'), ans('apps/other', '203.0.113.2')]);
    const after = new Engine();
    after.restoreDnsCache(before.dnsCacheFile(), 'dns.jsonl');
    after.apply(initial);
    return after;
  };
  it('a pod deleted while the agent was down', () => {
    expect(learntIps(restarted([ns, { type: 'upsertPod', pod: CLIENT, local: true }, ...policies(dnsAll)]))).toEqual(['203.0.113.1/32']);
  });
  it('a pod now on another node loses them, as a pod that turns remote without a restart does (left-10)', () => {
    expect(learntIps(restarted([ns, { type: 'upsertPod', pod: CLIENT, local: true }, { type: 'upsertPod', pod: OTHER, local: false }, ...policies(dnsAll)]))).toEqual(['203.0.113.1/32']);
  });
  it('both pods back: both kept, and the file written next holds both', () => {
    const e = restarted([ns, { type: 'upsertPod', pod: CLIENT, local: true }, { type: 'upsertPod', pod: OTHER, local: true }, ...policies(dnsAll)]);
    expect(learntIps(e)).toEqual(['203.0.113.1/32', '203.0.113.2/32']);
    expect(e.dnsCacheFile()).toContain('apps/other');
  });
  it('the committed cache forgets them too: the next file has no gone endpoint', () => {
    const e = restarted([ns, { type: 'upsertPod', pod: CLIENT, local: true }, ...policies(dnsAll)]);
    expect(e.dnsCacheFile()).not.toContain('apps/other');
  });
});
