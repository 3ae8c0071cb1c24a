import { describe, expect, it } from 'vitest';
import { parseIp } from '../../src/model/cidr.js';
import type { Pod } from '../../src/model/cluster.js';
import { LISTENER_PRIORITY } from '../../src/model/l7.js';
import { precedence } from '../../src/model/policy-map.js';
import { Engine } from '../../src/engine/engine.js';
import type { EngineEvent, L7Delta, L7TableRow } from '../../src/engine/events.js';
import { ProxyPortAllocator, ProxyPortsExhaustedError } from '../../src/engine/proxy-ports.js';
import { parseManifestFile } from '../../src/policy/manifest.js';
import { applyChangeSet } from '../../src/backend/backend.js';
import { MemoryBackend } from '../../src/backend/memory.js';
import { proxyPortsFromMaps, reconcile } from '../../src/node/restart.js';

let ipCounter = 2;
function pod(name: string, labels: Record<string, string>): Pod {
  ipCounter++;
  return { namespace: 'prod', name, labels, ip: parseIp(`10.244.7.${ipCounter}`), serviceAccount: 'default', ports: [{ name: 'web', port: 80, protocol: 'TCP' }] };
}
const local = (p: Pod): EngineEvent => ({ type: 'upsertPod', pod: p, local: true });
const remote = (p: Pod): EngineEvent => ({ type: 'upsertPod', pod: p, local: false });
function cnp(name: string, ingress: string): EngineEvent {
  const [p] = parseManifestFile(
    `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: ${name}, namespace: prod}
spec:
  endpointSelector: {matchLabels: {app: web}}
  ingress:
${ingress}
`,
    'test.yaml',
  );
  return { type: 'upsertPolicy', policy: p! };
}
const deletePolicy = (name: string): EngineEvent => ({ type: 'deletePolicy', ref: { kind: 'CiliumNetworkPolicy', namespace: 'prod', name } });

const httpGetPublic = cnp(
  'get-public',
  `  - fromEndpoints: [{matchLabels: {app: client}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}], rules: {http: [{method: GET, path: /public}]}}]`,
);

describe('L7 redirects and tables', () => {
  it('gives each endpoint its own proxy port per redirect, lowest free first, and releases it with the redirect', () => {
    const e = new Engine();
    e.apply([local(pod('web-1', { app: 'web' })), local(pod('web-2', { app: 'web' })), remote(pod('client', { app: 'client' })), httpGetPublic]);
    const ports = ['prod/web-1', 'prod/web-2'].map((ep) => e.redirects(ep));
    expect(ports).toEqual([
      [{ direction: 'ingress', protocol: 6, port: 80, parser: 'http', proxyPort: 10000 }],
      [{ direction: 'ingress', protocol: 6, port: 80, parser: 'http', proxyPort: 10001 }],
    ]);
    // Both endpoints share one map state, yet each kernel map carries its own proxy port.
    expect(e.sizes().mapStates).toBe(1);
    const client = e.identityOfPod('prod/client')!;
    expect(e.lookup('prod/web-2', client, 'ingress', 6, 80)?.entry).toEqual({ deny: false, proxyPort: 10001, precedence: precedence('redirect', LISTENER_PRIORITY.http) });

    const gone = e.apply([deletePolicy('get-public')]);
    expect(e.redirects('prod/web-1')).toEqual([]);
    // Per endpoint: the client's row and the local host's allow-all row (its allow-localhost entry covers the port).
    expect(gone.l7Deltas.map((d) => [d.endpoint, d.op, d.redirect.proxyPort, d.peer])).toEqual([
      ['prod/web-1', 'delete', 10000, client],
      ['prod/web-1', 'delete', 10000, 1],
      ['prod/web-2', 'delete', 10001, client],
      ['prod/web-2', 'delete', 10001, 1],
    ]);
    // Released ports are handed out again, lowest first.
    e.apply([httpGetPublic]);
    expect(e.redirects('prod/web-1')[0]?.proxyPort).toBe(10000);
    expect(e.redirects('prod/web-2')[0]?.proxyPort).toBe(10001);
  });

  it('refuses a transaction when the proxy port range runs out, and changes nothing', () => {
    const e = new Engine({ proxyPortRange: { min: 15000, max: 15000 } });
    e.apply([local(pod('web-1', { app: 'web' })), remote(pod('client', { app: 'client' })), httpGetPublic]);
    expect(e.redirects('prod/web-1')[0]?.proxyPort).toBe(15000);
    const before = JSON.stringify([e.mapState('prod/web-1').size, e.redirects('prod/web-1'), e.l7Table('prod/web-1'), e.endpoints()]);
    expect(() => e.apply([local(pod('web-2', { app: 'web' }))])).toThrow(ProxyPortsExhaustedError);
    expect(JSON.stringify([e.mapState('prod/web-1').size, e.redirects('prod/web-1'), e.l7Table('prod/web-1'), e.endpoints()])).toBe(before);
    expect(() => new ProxyPortAllocator({ min: 20, max: 10 })).toThrow(RangeError);
  });

  it('a peer allowed on the port by a rule without L7 rules gets every request; others get the L7 rules', () => {
    const e = new Engine();
    e.apply([
      local(pod('web', { app: 'web' })),
      remote(pod('client', { app: 'client' })),
      remote(pod('admin', { app: 'admin' })),
      httpGetPublic,
      cnp('admin', `  - fromEndpoints: [{matchLabels: {app: admin}}]\n    toPorts: [{ports: [{port: "80", protocol: TCP}]}]`),
      cnp('any-get', `  - toPorts: [{ports: [{port: "80", protocol: TCP}], rules: {http: [{method: GET, path: /health}]}}]`),
    ]);
    const [client, admin] = ['prod/client', 'prod/admin'].map((p) => e.identityOfPod(p)!);
    const port = e.lookup('prod/web', admin!, 'ingress', 6, 80)!.entry.proxyPort;
    expect(port).toBe(10000); // the any-peer redirect outranks the admin's plain allow
    const verdict = (peer: number, method: string, path: string) => e.l7Verdict('prod/web', port, peer, { http: { method, path } }, 80)?.allowed;
    expect(verdict(admin!, 'DELETE', '/x')).toBe(true);
    expect(verdict(client!, 'GET', '/public')).toBe(true);
    expect(verdict(client!, 'GET', '/health')).toBe(true); // the any-peer row applies too
    expect(verdict(client!, 'DELETE', '/x')).toBe(false);
    expect(e.l7Verdict('prod/web', port, client!, { dns: { name: 'x.io' } }, 80)?.allowed).toBe(false);
    expect(e.l7Verdict('prod/web', 4242, client!, { http: { method: 'GET', path: '/' } }, 80)).toBeUndefined();
    const rows = e.l7Table('prod/web').map((r) => [r.peer, r.policy.allowAll]);
    expect(rows).toEqual(expect.arrayContaining([[admin, true], [client, false], [0, false]]));
    // The proxy's view groups peers by policy: identity sets per distinct L7 policy.
    e.apply([remote(pod('admin-2', { app: 'admin', shard: '2' }))]);
    const [proxy] = e.l7Policies('prod/web');
    const allowAllPeers = proxy!.policies.find((p) => p.policy.allowAll)!.peers;
    // The local host too: allow-localhost gives it every request on a redirect that covers it (Cilium's TestAllowingLocalhostShadowsL7).
    expect(allowAllPeers).toEqual([1, admin, e.identityOfPod('prod/admin-2')].sort((a, b) => a! - b!));
    expect(proxy!.policies.map((p) => p.peers.length).reduce((a, b) => a + b)).toBe(e.l7Table('prod/web').length);
  });

  it('between listeners on one port the lower listener priority (HTTP 101 over Kafka 106) takes the key; a range from that port shares its proxy ID', () => {
    const e = new Engine();
    e.apply([
      local(pod('web', { app: 'web' })),
      remote(pod('client', { app: 'client' })),
      // A range: not the L4 filter (80/TCP) the HTTP rule names, so Cilium merges them.
      cnp('kafka', `  - fromEndpoints: [{matchLabels: {app: client}}]\n    toPorts: [{ports: [{port: "80", endPort: 81, protocol: TCP}], rules: {kafka: [{topic: orders}]}}]`),
    ]);
    const client = e.identityOfPod('prod/client')!;
    // One redirect for the range's prefix 80/15, as Cilium keeps one redirect per L4Filter.
    expect(e.redirects('prod/web').map((r) => [r.parser, r.port, r.portPrefixLen, r.proxyPort])).toEqual([['kafka', 80, 15, 10000]]);
    const cs = e.apply([httpGetPublic]);
    // Port 80 gets its own HTTP entry and redirect; the Kafka range's redirect keeps serving 81.
    expect(e.redirects('prod/web').map((r) => [r.parser, r.port, r.portPrefixLen, r.proxyPort])).toEqual([['kafka', 80, 15, 10000], ['http', 80, undefined, 10001]]);
    expect(cs.deltas.map((d) => [d.op, d.key.port, d.key.portPrefixLen, d.entry.proxyPort, d.previous?.proxyPort])).toEqual([['upsert', 80, 16, 10001, undefined]]);
    // But "80" and 80-81 share the proxy ID (ingress, TCP, 80): a range's is its first port (pkg/endpoint/bpf.go
    // Endpoint.proxyID), Go map order gives it one parser, the other's requests reach a proxy that cannot read them;
    // distill's meet of both orders closes both redirects (attack finding 3760).
    expect(new Set(cs.l7Deltas.map((d) => `${d.op} ${d.redirect.parser}`))).toEqual(new Set(['delete kafka']));
    expect(e.l7Verdict('prod/web', 10000, client, { kafka: { apiKey: 'produce', topic: 'orders' } }, 81)?.allowed ?? false).toBe(false);
    expect(e.l7Verdict('prod/web', 10001, client, { http: { method: 'GET', path: '/public' } }, 80)?.allowed ?? false).toBe(false);
  });

  it('a range of another listener from a port of its own: the lower listener priority wins the shared key', () => {
    const e = new Engine();
    const kafka = cnp('kafka', `  - fromEndpoints: [{matchLabels: {app: client}}]\n    toPorts: [{ports: [{port: "79", endPort: 80, protocol: TCP}], rules: {kafka: [{topic: orders}]}}]`);
    e.apply([local(pod('web', { app: 'web' })), remote(pod('client', { app: 'client' })), kafka, httpGetPublic]);
    const client = e.identityOfPod('prod/client')!;
    const at = (port: number): number => e.lookup('prod/web', client, 'ingress', 6, port)!.entry.proxyPort;
    expect(e.redirects('prod/web').map((r) => [r.parser, r.port, r.portPrefixLen])).toEqual([['kafka', 79, undefined], ['http', 80, undefined]]);
    expect(e.l7Verdict('prod/web', at(79), client, { kafka: { apiKey: 'produce', topic: 'orders' } }, 79)?.allowed).toBe(true);
    expect(e.l7Verdict('prod/web', at(80), client, { kafka: { apiKey: 'produce', topic: 'orders' } }, 80)?.allowed).toBe(false);
    expect(e.l7Verdict('prod/web', at(80), client, { http: { method: 'GET', path: '/public' } }, 80)?.allowed).toBe(true);
  });

  it('a port range with L7 rules is one redirect per LPM prefix, and each request is judged by every range covering its port', () => {
    const e = new Engine();
    const wide = cnp('wide', `  - fromEndpoints: [{matchLabels: {app: client}}]\n    toPorts: [{ports: [{port: "4096", endPort: 8191, protocol: TCP}], rules: {http: [{method: POST, path: /public}]}}]`);
    e.apply([local(pod('web', { app: 'web' })), remote(pod('client', { app: 'client' })), wide]);
    const client = e.identityOfPod('prod/client')!;
    // cilium-cli's client-egress-l7-method-port-range: 4096 ports, one prefix, one proxy listener (not 4096).
    expect(e.redirects('prod/web').map((r) => [r.port, r.portPrefixLen, r.parser])).toEqual([[4096, 4, 'http']]);
    expect([...e.mapState('prod/web').values()].filter((r) => r.entry.proxyPort !== 0).map((r) => [r.key.port, r.key.portPrefixLen])).toEqual([[4096, 4]]);
    const judge = (port: number, method: string, path: string): boolean | 'no proxy' | undefined => {
      const hit = e.lookup('prod/web', client, 'ingress', 6, port);
      if (!hit || hit.entry.deny) return undefined;
      if (hit.entry.proxyPort === 0) return 'no proxy';
      return e.l7Verdict('prod/web', hit.entry.proxyPort, client, { http: { method, path } }, port)?.allowed;
    };
    expect([judge(4096, 'POST', '/public'), judge(8191, 'POST', '/public'), judge(6000, 'GET', '/public'), judge(8192, 'POST', '/public')]).toEqual([true, true, false, undefined]);
    // An overlapping range with other rules, and a plain allow on 5000 the datapath hides behind the wider redirect.
    const overlap = cnp('overlap', `  - fromEndpoints: [{matchLabels: {app: client}}]\n    toPorts: [{ports: [{port: "8000", endPort: 9000, protocol: TCP}], rules: {http: [{method: GET, path: /health}]}}]`);
    const plain = cnp('plain', `  - fromEndpoints: [{matchLabels: {app: client}}]\n    toPorts: [{ports: [{port: "5000", protocol: TCP}]}]`);
    e.apply([overlap, plain]);
    expect(e.lookup('prod/web', client, 'ingress', 6, 5000)!.key.portPrefixLen).toBe(4); // hidden: the redirect has precedence
    expect(judge(5000, 'DELETE', '/x')).toBe(true); // the plain allow on 5000 lets every request through the proxy
    expect(judge(5001, 'DELETE', '/x')).toBe(false);
    expect([judge(8100, 'GET', '/health'), judge(8100, 'POST', '/public'), judge(4100, 'GET', '/health')]).toEqual([true, true, false]);
    expect([judge(9000, 'GET', '/health'), judge(9000, 'POST', '/public')]).toEqual([true, false]);
    expect(e.l7AllowedBy('prod/web', e.lookup('prod/web', client, 'ingress', 6, 5000)!.entry.proxyPort, client, { http: { method: 'DELETE', path: '/x' } }, 5000).map((o) => o.policy.name)).toEqual(['plain']);
    e.apply([deletePolicy('wide')]);
    expect([judge(5000, 'DELETE', '/x'), judge(6000, 'POST', '/public'), judge(8100, 'POST', '/public'), judge(8100, 'GET', '/health')]).toEqual(['no proxy', undefined, false, true]);
    expect(e.redirects('prod/web').every((r) => r.port >= 8000 && r.port <= 9000)).toBe(true);
  });

  it("a plain allow inside a redirected range reaches the proxy as a row with the range it applies to, added and removed by L7 deltas", () => {
    const e = new Engine();
    const wide = cnp('wide', `  - fromEndpoints: [{matchLabels: {app: client}}]\n    toPorts: [{ports: [{port: "4096", endPort: 8191, protocol: TCP}], rules: {http: [{method: POST, path: /public}]}}]`);
    e.apply([local(pod('web', { app: 'web' })), remote(pod('client', { app: 'client' })), wide]);
    const client = e.identityOfPod('prod/client')!;
    const plain = cnp('plain', `  - fromEndpoints: [{matchLabels: {app: client}}]\n    toPorts: [{ports: [{port: "5000", protocol: TCP}]}]`);
    const added = e.apply([plain]);
    expect(added.deltas).toEqual([]); // hidden behind the redirect in the datapath: only the proxy learns of it
    const row = (d: L7Delta): unknown[] => [d.op, d.redirect.port, d.redirect.portPrefixLen, d.peer, d.portRange, d.policy.allowAll];
    expect(added.l7Deltas.map(row)).toEqual([['upsert', 4096, 4, client, { port: 5000, endPort: 5000 }, true]]);
    const rows = (): L7TableRow[] => e.l7Table('prod/web').filter((r) => r.peer === client); // the host's allow-localhost row aside
    expect(rows().map((r) => [r.portRange, r.policy.allowAll])).toEqual([[undefined, false], [{ port: 5000, endPort: 5000 }, true]]);
    // The whole redirect's row keeps the JSON it had; the narrower one names its ports.
    expect(rows().map((r) => Object.keys(r))).toEqual([['redirect', 'peer', 'policy'], ['redirect', 'peer', 'policy', 'portRange']]);
    expect(e.apply([deletePolicy('plain')]).l7Deltas.map(row)).toEqual([['delete', 4096, 4, client, { port: 5000, endPort: 5000 }, true]]);
    expect(rows()).toHaveLength(1);
  });

  it('a prefix redirect\'s proxy judges no port outside its prefix (finding 360)', () => {
    const e = new Engine();
    const wide = cnp('wide', `  - fromEndpoints: [{matchLabels: {app: client}}]\n    toPorts: [{ports: [{port: "4096", endPort: 8191, protocol: TCP}], rules: {http: [{method: POST, path: /public}]}}]`);
    const plain = cnp('plain', `  - fromEndpoints: [{matchLabels: {app: client}}]\n    toPorts: [{ports: [{port: "80", protocol: TCP}]}]`);
    e.apply([local(pod('web', { app: 'web' })), remote(pod('client', { app: 'client' })), wide, plain]);
    const client = e.identityOfPod('prod/client')!;
    const proxyPort = e.lookup('prod/web', client, 'ingress', 6, 5000)!.entry.proxyPort;
    const req = { http: { method: 'DELETE', path: '/x' } };
    expect(e.l7Verdict('prod/web', proxyPort, client, req, 5000)?.allowed).toBe(false);
    // Port 80's plain allow is no rule of this proxy: no request to 80 reaches it.
    expect(e.l7Verdict('prod/web', proxyPort, client, req, 80)).toBeUndefined();
    expect(e.l7AllowedBy('prod/web', proxyPort, client, req, 80)).toEqual([]);
  });

  it('a rule change that only changes L7 rules gives L7 deltas and no map deltas', () => {
    const e = new Engine();
    e.apply([local(pod('web', { app: 'web' })), remote(pod('client', { app: 'client' })), httpGetPublic]);
    const cs = e.apply([cnp('more', `  - fromEndpoints: [{matchLabels: {app: client}}]\n    toPorts: [{ports: [{port: "80", protocol: TCP}], rules: {http: [{method: POST, path: /orders}]}}]`)]);
    expect(cs.deltas).toEqual([]);
    expect(cs.l7Deltas).toHaveLength(1);
    const d = cs.l7Deltas[0]!;
    expect(d.op).toBe('upsert');
    expect(d.previous).toEqual({ allowAll: false, rules: { parser: 'http', http: [{ method: 'GET', path: '/public' }] } });
    expect(d.policy).toEqual({ allowAll: false, rules: { parser: 'http', http: [{ method: 'GET', path: '/public' }, { method: 'POST', path: '/orders' }] } });
    // Re-applying the same policy is a no-op, also for the L7 tables.
    const again = e.apply([httpGetPublic]);
    expect([again.deltas.length, again.l7Deltas.length]).toEqual([0, 0]);
  });

  it('a restart on pinned maps keeps the proxy ports of a port range\'s prefix redirects', () => {
    // 4000-8191: prefixes 4000/11 .. 4096/4, each a redirect with its own proxy port.
    const range = cnp('range', `  - fromEndpoints: [{matchLabels: {app: client}}]\n    toPorts: [{ports: [{port: "4000", endPort: 8191, protocol: TCP}], rules: {http: [{method: GET}]}}]`);
    const events: EngineEvent[] = [local(pod('web-1', { app: 'web' })), remote(pod('client', { app: 'client' })), range];
    const backend = new MemoryBackend();
    const first = new Engine();
    applyChangeSet(backend, first.apply(events));
    const ports = (e: Engine) => e.redirects('prod/web-1').map((r) => `${r.port}/${r.portPrefixLen ?? 16}:${r.proxyPort}`);
    expect(ports(first).length).toBeGreaterThan(1);
    expect(ports(first)).toContain('4096/4:' + String(first.redirects('prod/web-1').find((r) => r.port === 4096)!.proxyPort));
    // Restarted with another redirect learnt first: it must not take a port the pinned range entries hold.
    const restarted = new Engine({ proxyPortAllocator: proxyPortsFromMaps(backend) });
    restarted.apply([events[0]!, events[1]!, httpGetPublic, range]);
    expect(ports(restarted).filter((p) => !p.startsWith('80/'))).toEqual(ports(first));
    expect(reconcile(restarted, backend)).toMatchObject({ deletes: 0, created: 0, removed: 0 }); // only port 80's new entries are written
  });

  it('a restart on pinned maps keeps every proxy port still in use, so reconcile writes nothing for them', () => {
    const kafka = cnp('kafka', `  - fromEndpoints: [{matchLabels: {app: client}}]\n    toPorts: [{ports: [{port: "9092", protocol: TCP}], rules: {kafka: [{topic: orders}]}}]`);
    const events: EngineEvent[] = [local(pod('web-1', { app: 'web' })), local(pod('web-2', { app: 'web' })), remote(pod('client', { app: 'client' })), httpGetPublic, kafka];
    const backend = new MemoryBackend();
    const first = new Engine();
    applyChangeSet(backend, first.apply(events));
    const ports = (e: Engine) => ['prod/web-1', 'prod/web-2'].map((ep) => e.redirects(ep).map((r) => `${r.parser}:${r.proxyPort}`).join(','));
    expect(ports(first)).toEqual(['http:10000,kafka:10001', 'http:10002,kafka:10003']);

    // The same cluster learnt in another history (web-2 first, web-1 in a later transaction) gives other ports, and
    // reconcile rewrites them. One transaction's new ports go by endpoint id whatever the events' order (finding 2151).
    const reordered = (e: Engine): void => {
      e.apply([events[1]!, events[2]!, kafka, httpGetPublic]);
      e.apply([events[0]!]);
    };
    const naive = new Engine();
    reordered(naive);
    expect(ports(naive)).not.toEqual(ports(first));
    const copy = new MemoryBackend();
    for (const ep of backend.endpoints()) {
      copy.create(ep);
      copy.apply(ep, backend.dump(ep).map((r) => ({ endpoint: ep, op: 'upsert' as const, key: r.key, entry: r.entry })));
    }
    expect(reconcile(naive, copy).upserts).toBeGreaterThan(0);

    // Seeded from the pinned maps, the restarted engine keeps every port: nothing to write.
    const restarted = new Engine({ proxyPortAllocator: proxyPortsFromMaps(backend) });
    reordered(restarted);
    expect(ports(restarted)).toEqual(ports(first));
    expect(reconcile(restarted, backend)).toMatchObject({ upserts: 0, deletes: 0, created: 0, removed: 0 });

    // A redirect gone during the downtime releases its port; an endpoint gone releases all of its.
    const later = new Engine({ proxyPortAllocator: proxyPortsFromMaps(backend) });
    later.apply([events[0]!, events[2]!, httpGetPublic]);
    const portsOf = (e: Engine, ep: string) => e.redirects(ep).map((r) => `${r.parser}:${r.proxyPort}`);
    expect(portsOf(later, 'prod/web-1')).toEqual(['http:10000']);
    // web-1's Kafka redirect goes: written as a deny first, deleted last (fail-closed order).
    expect(reconcile(later, backend)).toMatchObject({ removed: 1, upserts: 1, deletes: 1 });
    later.apply([local(pod('web-3', { app: 'web' })), kafka]);
    // Freed ports (10001 from web-1's Kafka redirect, 10002-10003 from web-2) are handed out again, lowest first, to
    // the transaction's new redirects by endpoint id (finding 2151): web-1's Kafka redirect, then web-3's two.
    expect(portsOf(later, 'prod/web-1')).toEqual(['http:10000', 'kafka:10001']);
    expect(portsOf(later, 'prod/web-3')).toEqual(['http:10002', 'kafka:10003']);
  });
});
