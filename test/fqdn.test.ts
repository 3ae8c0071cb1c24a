import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { applyChangeSet } from '../src/backend/backend.js';
import { BpfBackend, bpfUnavailableReason } from '../src/backend/bpf.js';
import { KernelIpcache } from '../src/backend/ipcache.js';
import { backendLookup } from '../src/backend/lookup.js';
import { RESERVED_IDENTITIES } from '../src/model/identity.js';
import { reconcile } from '../src/node/restart.js';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { generateTrace } from '../src/churn/profiles.js';
import { parseTrace } from '../src/churn/trace.js';
import { Engine } from '../src/engine/engine.js';
import { EngineDecider } from '../src/harness/engine-decider.js';
import { parseIp } from '../src/model/cidr.js';
import {
  advanceDnsClock,
  DnsCacheState,
  EMPTY_DNS_CACHE,
  FqdnSelector,
  fqdnSelectorMatches,
  fqdnSyntaxError,
  liveMatches,
  makeFqdnSelector,
  recordDnsAnswer,
} from '../src/model/fqdn.js';
import { dnsRuleMatches } from '../src/model/l7.js';
import { decideFlow } from '../src/naive/evaluator.js';
import { parseManifest } from '../src/policy/manifest.js';
import { parseScenario } from '../src/scenario/format.js';
import { runScenario, scenarioEngineOptions } from '../src/scenario/run.js';
import { scenarioEngine } from '../src/scenario/engine.js';

const pattern = (p: string): FqdnSelector => makeFqdnSelector('matchPattern', p);
const ip = parseIp;

describe('FQDN selectors (Cilium matchpattern)', () => {
  it('matches names and patterns as Cilium does', () => {
    const cases: [FqdnSelector, string, boolean][] = [
      [makeFqdnSelector('matchName', 'API.GitHub.com.'), 'api.github.com', true],
      [makeFqdnSelector('matchName', 'api.github.com'), 'API.GITHUB.COM.', true],
      [makeFqdnSelector('matchName', 'api.github.com'), 'github.com', false],
      [pattern('*'), 'a.b.c', true],
      [pattern('*.cilium.io'), 'docs.cilium.io', true],
      [pattern('*.cilium.io'), 'cilium.io', false],
      [pattern('*.cilium.io'), 'a.b.cilium.io', false],
      [pattern('*cilium.io'), 'cilium.io', true],
      [pattern('*cilium.io'), 'xcilium.io', true],
      [pattern('sub*x.example.com'), 'subx.example.com', true],
      [pattern('sub*x.example.com'), 'sub-abc-x.example.com', true],
      [pattern('sub*x.example.com'), 'sub.x.example.com', false],
      [pattern('a*b*c.io'), 'abbc.io', true],
      [pattern('a*b*c.io'), 'acb.io', false],
      [pattern('**.cilium.io'), 'a.cilium.io', true],
      [pattern('**.cilium.io'), 'c.b.a.cilium.io', true],
      [pattern('**.cilium.io'), 'cilium.io', false],
      [pattern('a.**.io'), 'a.b.io', true],
      [pattern('a.**.io'), 'a.b.c.io', false],
      [pattern('*.*'), 'a.b', true],
    ];
    for (const [sel, name, want] of cases) expect([sel, name, fqdnSelectorMatches(sel, name)]).toEqual([sel, name, want]);
  });

  it('agrees with the RE2 matcher the DNS proxy rules use, on random patterns and names', () => {
    const label = fc.stringMatching(/^[a-c*]{1,4}$/);
    const nameLabel = fc.stringMatching(/^[a-c]{1,4}$/);
    fc.assert(
      fc.property(fc.boolean(), fc.array(label, { minLength: 1, maxLength: 3 }), fc.array(nameLabel, { minLength: 1, maxLength: 5 }), (multi, labels, name) => {
        const p = `${multi ? '**.' : ''}${labels.join('.')}`;
        const n = name.join('.');
        expect(fqdnSelectorMatches(pattern(p), n)).toBe(dnsRuleMatches({ matchPattern: p }, { name: n }));
      }),
      { numRuns: 2000 },
    );
  });

  it('is linear on patterns that make a backtracking matcher explode', () => {
    const hostile = pattern(`${'*a'.repeat(30)}*b.io`);
    // A count of work, not a timer: the matcher scans each piece once.
    expect(fqdnSelectorMatches(hostile, `${'a'.repeat(63)}.io`)).toBe(false);
  });

  it('validates as the CRD does', () => {
    expect(fqdnSyntaxError('matchName', 'cilium.io.')).toBeUndefined();
    expect(fqdnSyntaxError('matchName', '_http._tcp.cilium.io')).toBeUndefined();
    expect(fqdnSyntaxError('matchPattern', '*.cilium.io.*')).toBeUndefined();
    expect(fqdnSyntaxError('matchName', '*.cilium.io')).toMatch(/not a valid DNS name/);
    expect(fqdnSyntaxError('matchName', 'a..b')).toMatch(/not a valid/);
    expect(fqdnSyntaxError('matchPattern', '%$*.*')).toMatch(/not a valid DNS pattern/);
    expect(fqdnSyntaxError('matchName', `${'a'.repeat(256)}`)).toMatch(/longer than 255/);
  });
});

describe('DNS cache', () => {
  const sel = [pattern('*.example.com')];
  const live = (c: DnsCacheState, a: string): number => liveMatches(c, sel, ip(a)).length;

  it('keeps an answer max(TTL, minTTL) seconds and refreshes to the later expiry', () => {
    let c = recordDnsAnswer(EMPTY_DNS_CACHE, 'x/a', 'a.example.com', [ip('192.0.2.1')], 10);
    c = advanceDnsClock(c, 9);
    expect(live(c, '192.0.2.1')).toBe(1);
    c = recordDnsAnswer(c, 'x/a', 'a.example.com', [ip('192.0.2.1')], 0);
    c = advanceDnsClock(c, 1);
    // Live at exactly learnt + TTL (Cilium cache.go isExpiredBy, TestTTLInsertWithZeroValue), gone a second later.
    expect(live(c, '192.0.2.1')).toBe(1);
    c = advanceDnsClock(c, 1);
    expect(live(c, '192.0.2.1')).toBe(0);
    let m: DnsCacheState = { ...EMPTY_DNS_CACHE, options: { minTtl: 100, maxIpsPerHostname: 1000 } };
    m = advanceDnsClock(recordDnsAnswer(m, 'x/a', 'a.example.com', [ip('192.0.2.1')], 1), 99);
    expect(live(m, '192.0.2.1')).toBe(1);
    expect(() => advanceDnsClock(m, -1)).toThrow(RangeError);
  });

  it('evicts per endpoint and name beyond maxIpsPerHostname, earliest expiry first', () => {
    let c: DnsCacheState = { ...EMPTY_DNS_CACHE, options: { minTtl: 0, maxIpsPerHostname: 2 } };
    c = recordDnsAnswer(c, 'x/a', 'a.example.com', [ip('192.0.2.1'), ip('192.0.2.2')], 60);
    c = recordDnsAnswer(c, 'x/b', 'a.example.com', [ip('192.0.2.1')], 60);
    c = advanceDnsClock(c, 1);
    c = recordDnsAnswer(c, 'x/a', 'a.example.com', [ip('192.0.2.3')], 60);
    expect(c.entries.filter((e) => e.endpoint === 'x/a').map((e) => e.ip.text).sort()).toEqual(['192.0.2.2', '192.0.2.3']);
    // x/b still holds .1, and selection is node-wide.
    expect(live(c, '192.0.2.1')).toBe(1);
  });
});

describe('toFQDNs in Cilium manifests', () => {
  const manifest = (egress: string, deny = ''): unknown => ({
    apiVersion: 'cilium.io/v2',
    kind: 'CiliumNetworkPolicy',
    metadata: { name: 'p', namespace: 'default' },
    spec: { endpointSelector: {}, egress: [JSON.parse(egress) as unknown], ...(deny ? { egressDeny: [JSON.parse(deny) as unknown] } : {}) },
  });
  const fqdn = { fqdn: true } as const;

  it('is read by default (engine and oracle), refused only with fqdn: false', () => {
    const m = manifest('{"toFQDNs": [{"matchName": "A.io."}], "toPorts": [{"ports": [{"port": "443"}]}]}');
    expect(() => parseManifest(m, 'f.yaml#0', { fqdn: false })).toThrow('f.yaml#0 spec.egress[0].toFQDNs: is not read here');
    expect(parseManifest(m, 'f.yaml#0').rules[0]?.toFQDNs).toEqual([{ matchName: 'a.io' }]);
    const rule = parseManifest(m, 'f.yaml#0', fqdn).rules[0];
    expect(rule?.toFQDNs).toEqual([{ matchName: 'a.io' }]);
    expect(rule?.peers).toEqual([]);
  });

  it('refuses what Cilium refuses, naming the field', () => {
    expect(() => parseManifest(manifest('{"toFQDNs": [{"matchName": "a.io"}], "toCIDR": ["1.2.3.4/32"]}'), 'f', fqdn)).toThrow('combining toCIDR and toFQDNs is not supported');
    expect(() => parseManifest(manifest('{"toFQDNs": [{"matchName": "a.io"}], "toEndpoints": [{}]}'), 'f', fqdn)).toThrow('combining toEndpoints and toFQDNs');
    expect(() => parseManifest(manifest('{"toFQDNs": [{"matchName": "a.io", "matchPattern": "*"}]}'), 'f', fqdn)).toThrow('spec.egress[0].toFQDNs[0]: exactly one of matchName or matchPattern');
    expect(() => parseManifest(manifest('{"toFQDNs": [{}]}'), 'f', fqdn)).toThrow('exactly one of');
    expect(() => parseManifest(manifest('{"toFQDNs": [{"matchName": "a b"}]}'), 'f', fqdn)).toThrow('spec.egress[0].toFQDNs[0].matchName');
    expect(() => parseManifest(manifest('{"toFQDNs": [{"matchPattern": "a/b"}]}'), 'f', fqdn)).toThrow('spec.egress[0].toFQDNs[0].matchPattern');
    expect(() => parseManifest(manifest('{}', '{"toFQDNs": [{"matchName": "a.io"}]}'), 'f', fqdn)).toThrow('spec.egressDeny[0]');
  });
});

// fqdn-conformance: scenarios derived by hand from Cilium's sources (each cites its file and function).
const CORPORA = ['fixtures/scenarios/fqdn', 'fixtures/scenarios/fqdn-conformance'];
const unavailable = bpfUnavailableReason();
if (unavailable && process.env.DISTILL_REQUIRE_BPF === '1') throw new Error(`DISTILL_REQUIRE_BPF=1 but ${unavailable}`);
const PIN_DIR = `/sys/fs/bpf/distill-test-fqdn-${process.pid}`;
afterAll(() => {
  if (!unavailable) rmSync(PIN_DIR, { recursive: true, force: true });
});
const corpus = CORPORA.flatMap((dir) => readdirSync(dir).filter((f) => f.endsWith('.yaml')).sort().map((f) => join(dir, f)));

describe('fqdn scenario corpus', () => {
  it('covers the Cilium example and the corners', () => {
    expect(corpus.length).toBeGreaterThanOrEqual(20);
  });
  for (const file of corpus) {
    it(`${file}: the oracle and the engine meet every expectation, flow by flow alike`, () => {
      const scenario = parseScenario(readFileSync(file, 'utf8'), file);
      expect(scenario.steps.reduce((n, s) => n + s.expect.length, 0)).toBeGreaterThan(0);
      const naive = runScenario(scenario, decideFlow);
      expect(naive.steps.flatMap((s) => s.mismatches)).toEqual([]);
      const engine = runScenario(scenario, new EngineDecider(new Engine(scenario.dnsProxy ? { dns: scenario.dnsProxy } : {})).decide);
      expect(engine.steps.flatMap((s) => s.mismatches)).toEqual([]);
      const verdicts = (r: typeof naive): string[] => r.steps.flatMap((s) => s.results.map((x) => `${x.from}->${x.to}:${x.port} ${x.allowed} ${x.proxied}`));
      expect(verdicts(engine)).toEqual(verdicts(naive));
      if (unavailable) return;
      // Through real kernel maps: the peer's identity from the kernel ipcache, then the policy map.
      const backend = new BpfBackend({ pinDir: PIN_DIR });
      const ipcache = new KernelIpcache(PIN_DIR);
      try {
        const e = new Engine({ mapCapacity: backend.capacity, ...(scenario.dnsProxy ? { dns: scenario.dnsProxy } : {}) });
        reconcile(e, backend);
        const world = (f: string): number => RESERVED_IDENTITIES[f === 'ipv4' ? 'world-ipv4' : 'world-ipv6'];
        const d = new EngineDecider(
          e,
          undefined,
          (cs) => {
            applyChangeSet(backend, cs);
            ipcache.apply(cs.ipcache);
          },
          (ep, peer, dir, proto, port) => backendLookup(backend, ep, peer, dir, proto, port)?.entry,
          (a) => ipcache.lookup(a) ?? world(a.family),
        );
        const kernel = runScenario(scenario, d.decide);
        expect(kernel.steps.flatMap((s) => s.mismatches), 'kernel maps').toEqual([]);
        expect(verdicts(kernel)).toEqual(verdicts(naive));
      } finally {
        ipcache.close();
        backend.close();
        rmSync(PIN_DIR, { recursive: true, force: true });
      }
    });
  }
});

describe('scenario and trace formats', () => {
  it('refuses bad DNS steps naming the field', () => {
    const bad = (change: string): (() => unknown) => () => parseScenario(`pods: [{name: a/b}]\nsteps: [{changes: [${change}]}]\n`, 's.yaml');
    expect(bad('{dnsResponse: {pod: a/b, name: "x y", ips: [], ttl: 1}}')).toThrow('s.yaml steps[0].changes[0].dnsResponse.name');
    expect(bad('{dnsResponse: {pod: a/b, name: a.io, ips: [nope], ttl: 1}}')).toThrow('steps[0].changes[0].dnsResponse.ips[0]');
    expect(bad('{dnsResponse: {pod: a/b, name: a.io, ips: [], ttl: -1}}')).toThrow('steps[0].changes[0].dnsResponse.ttl');
    expect(bad('{dnsResponse: {pod: a/b, name: a.io, ips: [], ttl: 1, port: 53}}')).toThrow('dnsResponse.port: needs a server');
    // 850: the query's transport, UDP (default) or TCP, needs a server.
    expect(bad('{dnsResponse: {pod: a/b, name: a.io, ips: [], ttl: 1, protocol: TCP}}')).toThrow('dnsResponse.protocol: needs a server');
    expect(bad('{dnsResponse: {pod: a/b, name: a.io, ips: [], ttl: 1, server: a/b, protocol: SCTP}}')).toThrow('dnsResponse.protocol');
    expect(bad('{advanceTime: -5}')).toThrow('steps[0].changes[0].advanceTime');
    // 916: a DNS TTL is 32 bits unsigned; above that is refused.
    expect(bad('{dnsResponse: {pod: a/b, name: a.io, ips: [], ttl: 4294967296}}')).toThrow('steps[0].changes[0].dnsResponse.ttl');
  });

  it('916. reads a DNS TTL up to 2^32 - 1 seconds in scenarios and traces, as the engine and Cilium take it', () => {
    const s = parseScenario('pods: [{name: a/b}]\nsteps: [{changes: [{dnsResponse: {pod: a/b, name: a.io, ips: [192.0.2.1], ttl: 4294967295}}]}]\n', 's.yaml');
    const change = s.steps[0]?.changes[0];
    expect(change?.op === 'dnsResponse' ? change.answer.ttl : undefined).toBe(4294967295);
    const text = ['{"distillTrace":1}', '{"type":"dnsResponse","endpoint":"x/a","name":"a.io","ips":["192.0.2.1"],"ttl":4294967295}'].join('\n');
    const item = parseTrace(text, 't.jsonl').items[0];
    expect(item?.kind === 'event' && item.event.type === 'dnsResponse' ? item.event.ttl : undefined).toBe(4294967295);
    expect(() => parseTrace(text.replace('4294967295', '4294967296'), 't.jsonl')).toThrow('t.jsonl:2 ttl');
  });

  it('1460. maxIpsPerHostname 0 is no limit, as Cilium reads --tofqdns-endpoint-max-ip-per-hostname=0', () => {
    // pkg/fqdn/cache.go: updateWithEntry marks a name over the limit only `if c.perHostLimit > 0`.
    const many = Array.from({ length: 1500 }, (_, i) => ip(`198.51.${100 + Math.floor(i / 250)}.${i % 250}`));
    const cache = recordDnsAnswer({ ...EMPTY_DNS_CACHE, options: { minTtl: 0, maxIpsPerHostname: 0 } }, 'x/a', 'cdn.example.com', many, 60);
    expect(cache.entries).toHaveLength(1500);
    const text = `
namespaces: [{name: x}, {name: kube-system}]
pods:
  - {name: x/a, labels: {app: a}}
  - {name: kube-system/kube-dns, labels: {k8s-app: kube-dns}, ip: 10.96.0.10, ports: [{port: 53, protocol: UDP}]}
dnsProxy: {maxIpsPerHostname: 0}
policies:
  - {apiVersion: cilium.io/v2, kind: CiliumNetworkPolicy, metadata: {name: a, namespace: x}, spec: {endpointSelector: {matchLabels: {app: a}}, egress: [{toEndpoints: [{matchLabels: {k8s:io.kubernetes.pod.namespace: kube-system, k8s:k8s-app: kube-dns}}], toPorts: [{ports: [{port: "53", protocol: UDP}], rules: {dns: [{matchPattern: "*"}]}}]}, {toFQDNs: [{matchName: cdn.example.com}]}]}}
steps:
  - changes:
      - {dnsResponse: {pod: x/a, name: cdn.example.com, ips: [${many.slice(0, 1200).map((a) => a.text).join(', ')}], ttl: 600, server: kube-system/kube-dns}}
      - {dnsResponse: {pod: x/a, name: cdn.example.com, ips: [192.0.2.9], ttl: 10, server: kube-system/kube-dns}}
      - {advanceTime: 5}
    probes: [{from: x/a, to: {ip: 198.51.100.0}, port: 443}, {from: x/a, to: {ip: 198.51.104.199}, port: 443}, {from: x/a, to: {ip: 192.0.2.9}, port: 443}]
`;
    const scenario = parseScenario(text, 'no-limit.yaml');
    expect(scenario.dnsProxy?.maxIpsPerHostname).toBe(0);
    const allowed = (r: ReturnType<typeof runScenario>): boolean[] => r.steps.flatMap((s) => s.results.map((x) => x.allowed));
    expect(allowed(runScenario(scenario, decideFlow))).toEqual([true, true, true]);
    expect(allowed(runScenario(scenario, new EngineDecider(new Engine(scenarioEngineOptions(scenario))).decide))).toEqual([true, true, true]);
    expect(() => parseScenario(text.replace('maxIpsPerHostname: 0', 'maxIpsPerHostname: -1'), 'neg.yaml')).toThrow('dnsProxy.maxIpsPerHostname');
  });

  it('1875. a DNS answer is judged where it stands among its step\'s changes, by the oracle and the engine alike', () => {
    // pkg/fqdn/dnsproxy/proxy.go ServeDNS judges each query when it arrives; what the proxy learnt stays in the
    // endpoint's DNSHistory when the DNS policy goes (messagehandler UpdateOnDNSMsg). The engine used to be given the
    // step's end state only, so it judged the answer after the deletion below and did not learn it.
    const text = `
namespaces: [{name: x}, {name: kube-system}]
pods:
  - {name: x/a, labels: {app: a}}
  - {name: kube-system/kube-dns, labels: {k8s-app: kube-dns}, ip: 10.96.0.10, ports: [{port: 53, protocol: UDP}]}
externals: [{name: a, ip: 192.0.2.81}, {name: b, ip: 192.0.2.82}, {name: c, ip: 192.0.2.83}]
policies:
  - {apiVersion: cilium.io/v2, kind: CiliumNetworkPolicy, metadata: {name: dns, namespace: x}, spec: {endpointSelector: {matchLabels: {app: a}}, egress: [{toEndpoints: [{matchLabels: {k8s:io.kubernetes.pod.namespace: kube-system, k8s:k8s-app: kube-dns}}], toPorts: [{ports: [{port: "53", protocol: UDP}], rules: {dns: [{matchPattern: "*"}]}}]}]}}
  - {apiVersion: cilium.io/v2, kind: CiliumNetworkPolicy, metadata: {name: fqdn, namespace: x}, spec: {endpointSelector: {matchLabels: {app: a}}, egress: [{toFQDNs: [{matchPattern: "*.example.com"}]}]}}
steps:
  - changes:
      - {dnsResponse: {pod: x/a, name: a.example.com, ips: [192.0.2.81], ttl: 100, server: kube-system/kube-dns}}
      - {delete: {kind: CiliumNetworkPolicy, namespace: x, name: dns}}
      - {dnsResponse: {pod: x/a, name: c.example.com, ips: [192.0.2.83], ttl: 100, server: kube-system/kube-dns}}
    probes: [{from: x/a, to: a, port: 443}, {from: x/a, to: c, port: 443}]
  - changes:
      - {apply: {apiVersion: cilium.io/v2, kind: CiliumNetworkPolicy, metadata: {name: dns, namespace: x}, spec: {endpointSelector: {matchLabels: {app: a}}, egress: [{toEndpoints: [{matchLabels: {k8s:io.kubernetes.pod.namespace: kube-system, k8s:k8s-app: kube-dns}}], toPorts: [{ports: [{port: "53", protocol: UDP}], rules: {dns: [{matchPattern: "*"}]}}]}]}}}
      - {dnsResponse: {pod: x/a, name: b.example.com, ips: [192.0.2.82], ttl: 100, server: kube-system/kube-dns}}
  - changes:
      - {delete: {kind: CiliumNetworkPolicy, namespace: x, name: dns}}
    probes: [{from: x/a, to: b, port: 443}]
`;
    const scenario = parseScenario(text, 'in-order.yaml');
    const allowed = (r: ReturnType<typeof runScenario>): boolean[] => r.steps.flatMap((s) => s.results.map((x) => x.allowed));
    // a learnt before the deletion, c answered after it (not redirected); b learnt in a step without probes.
    const want = [true, false, true];
    expect(allowed(runScenario(scenario, decideFlow))).toEqual(want);
    expect(allowed(runScenario(scenario, new EngineDecider(new Engine(scenarioEngineOptions(scenario))).decide))).toEqual(want);
    const { state, decider } = scenarioEngine(scenario, 0);
    expect(decider.decide(state, { from: 'x/a', to: 'a', port: 443, protocol: 'TCP' }).allowed).toBe(true);
  });

  it('reads DNS events in traces as engine events (refused only with fqdn: false)', () => {
    const text = ['{"distillTrace":1}', '{"type":"dnsResponse","endpoint":"x/a","name":"a.io","ips":["192.0.2.1"],"ttl":30}', '{"type":"advanceTime","seconds":5}'].join('\n');
    expect(() => parseTrace(text, 't.jsonl', { fqdn: false })).toThrow('t.jsonl:2 type: dnsResponse events are not read here');
    const items = parseTrace(text, 't.jsonl').items;
    expect(items.map((i) => (i.kind === 'event' ? i.event.type : i.kind))).toEqual(['dnsResponse', 'advanceTime']);
    expect(() => parseTrace(text.replace('"ttl":30', '"ttl":-1'), 't.jsonl', { fqdn: true })).toThrow('t.jsonl:2 ttl');
  });

  it('reads the optional server of a trace answer ({ip, port}), naming a bad field', () => {
    const line = (server: string): string => ['{"distillTrace":1}', `{"type":"dnsResponse","endpoint":"x/a","name":"a.io","ips":["192.0.2.1"],"ttl":30,"server":${server}}`].join('\n');
    const item = parseTrace(line('{"ip":"10.96.0.10","port":53}'), 't.jsonl').items[0];
    expect(item?.kind === 'event' && item.event.type === 'dnsResponse' ? item.event.server : undefined).toEqual({ ip: parseIp('10.96.0.10'), port: 53 });
    expect(() => parseTrace(line('"10.96.0.10"'), 't.jsonl')).toThrow('t.jsonl:2 server');
    expect(() => parseTrace(line('{"ip":"10.96.0.300","port":53}'), 't.jsonl')).toThrow('t.jsonl:2 server.ip');
    expect(() => parseTrace(line('{"ip":"10.96.0.10","port":0}'), 't.jsonl')).toThrow('t.jsonl:2 server.port');
    expect(() => parseTrace(line('{"ip":"10.96.0.10","port":53,"tcp":true}'), 't.jsonl')).toThrow('t.jsonl:2 server');
    // 850: the query's transport (absent: UDP).
    const tcp = parseTrace(line('{"ip":"10.96.0.10","port":53,"protocol":"TCP"}'), 't.jsonl').items[0];
    expect(tcp?.kind === 'event' && tcp.event.type === 'dnsResponse' ? tcp.event.server : undefined).toEqual({ ip: parseIp('10.96.0.10'), port: 53, protocol: 'TCP' });
    expect(() => parseTrace(line('{"ip":"10.96.0.10","port":53,"protocol":"tcp"}'), 't.jsonl')).toThrow('t.jsonl:2 server.protocol');
  });
});

describe('the scenario harness feeds the engine what the oracle saw', () => {
  it('917. a pod deleted and re-created (or its namespace) within one step is another endpoint: its answers are gone for the engine too', () => {
    const text = `
namespaces: [{name: x}, {name: kube-system}]
pods:
  - {name: x/a, labels: {app: a}, ip: 10.244.0.5}
  - {name: x/b, labels: {app: b}}
  - {name: kube-system/kube-dns, labels: {k8s-app: kube-dns}, ip: 10.96.0.10, ports: [{port: 53, protocol: UDP}]}
externals: [{name: api, ip: 192.0.2.71}, {name: web, ip: 192.0.2.72}]
policies:
  - {apiVersion: cilium.io/v2, kind: CiliumNetworkPolicy, metadata: {name: dns, namespace: x}, spec: {endpointSelector: {matchLabels: {app: a}}, egress: [{toEndpoints: [{matchLabels: {k8s:io.kubernetes.pod.namespace: kube-system, k8s:k8s-app: kube-dns}}], toPorts: [{ports: [{port: "53", protocol: UDP}], rules: {dns: [{matchPattern: "*"}]}}]}]}}
  - {apiVersion: cilium.io/v2, kind: CiliumNetworkPolicy, metadata: {name: b, namespace: x}, spec: {endpointSelector: {matchLabels: {app: b}}, egress: [{toFQDNs: [{matchPattern: "*.example.com"}]}]}}
steps:
  - changes: [{dnsResponse: {pod: x/a, name: api.example.com, ips: [192.0.2.71, 192.0.2.72], ttl: 600, server: kube-system/kube-dns}}]
    probes: [{from: x/b, to: api, port: 443}, {from: x/b, to: web, port: 443}]
  - changes:
      - {deletePod: x/a}
      - {addPod: {name: x/a, labels: {app: a}, ip: 10.244.0.5}}
      - {dnsResponse: {pod: x/a, name: api.example.com, ips: [192.0.2.71], ttl: 600, server: kube-system/kube-dns}}
    probes: [{from: x/b, to: api, port: 443}, {from: x/b, to: web, port: 443}]
  - changes:
      - {deletePod: x/a}
      - {addPod: {name: x/a, labels: {app: a}, ip: 10.244.0.5}}
    probes: [{from: x/b, to: api, port: 443}]
  - changes: [{dnsResponse: {pod: x/a, name: api.example.com, ips: [192.0.2.72], ttl: 600, server: kube-system/kube-dns}}]
    probes: [{from: x/b, to: web, port: 443}]
  - changes:
      - {deleteNamespace: x}
      - {addNamespace: {name: x}}
      - {addPod: {name: x/a, labels: {app: a}, ip: 10.244.0.5}}
      - {addPod: {name: x/b, labels: {app: b}}}
      - {apply: {apiVersion: cilium.io/v2, kind: CiliumNetworkPolicy, metadata: {name: b, namespace: x}, spec: {endpointSelector: {matchLabels: {app: b}}, egress: [{toFQDNs: [{matchPattern: "*.example.com"}]}]}}}
    probes: [{from: x/b, to: web, port: 443}]
`;
    const scenario = parseScenario(text, 'recreated.yaml');
    const verdicts = (r: ReturnType<typeof runScenario>): string[] => r.steps.flatMap((s) => s.results.map((x) => `${x.step}:${x.to} ${x.allowed}`));
    const naive = verdicts(runScenario(scenario, decideFlow));
    expect(naive).toEqual(['0:api true', '0:web true', '1:api true', '1:web false', '2:api false', '3:web true', '4:web false']);
    expect(verdicts(runScenario(scenario, new EngineDecider(new Engine()).decide))).toEqual(naive);
  });
});

describe('distill gen --profile fqdn', () => {
  it('writes S3-like answers, clock steps and policy churn, seeded, that replay reads', () => {
    const opts = { profile: 'fqdn', scale: 0.02, churnEvents: 400 };
    const text = generateTrace({ ...opts, seed: 5 });
    expect(generateTrace({ ...opts, seed: 5 })).toBe(text);
    expect(generateTrace({ ...opts, seed: 6 })).not.toBe(text);
    const items = parseTrace(text, 'fqdn.jsonl').items;
    const tags = new Map<string, number>();
    for (const i of items) if (i.kind !== 'phase') tags.set(i.tag, (tags.get(i.tag) ?? 0) + 1);
    for (const t of ['dns-new-name', 'dns-new-ip', 'dns-refresh', 'advance-time']) expect(tags.get(t) ?? 0).toBeGreaterThan(0);
    expect((tags.get('policy-add') ?? 0) + (tags.get('policy-remove') ?? 0)).toBeGreaterThan(1);
    const pods = new Set(items.flatMap((i) => (i.kind === 'event' && i.event.type === 'upsertPod' ? [`${i.event.pod.namespace}/${i.event.pod.name}`] : [])));
    const answers = items.flatMap((i) => (i.kind === 'event' && i.event.type === 'dnsResponse' ? [i.event] : []));
    expect(answers.every((a) => pods.has(a.endpoint) && a.ips.length === 8 && /^bucket-\d+\.s3\./.test(a.name))).toBe(true);
    // Every answer comes from kube-dns, and the engine, judging each query as a flow to it, learns them.
    const coredns = items.find((i) => i.kind === 'event' && i.event.type === 'upsertPod' && i.event.pod.name === 'coredns-0');
    const dnsIp = coredns?.kind === 'event' && coredns.event.type === 'upsertPod' ? coredns.event.pod.ip : undefined;
    expect(answers.every((a) => a.server?.ip.text === dnsIp?.text && a.server?.port === 53)).toBe(true);
    const engine = new Engine();
    for (const i of items) if (i.kind === 'event') engine.apply([i.event]);
    expect(engine.ipcache().filter((e) => e.prefix.startsWith('52.')).length).toBeGreaterThan(0);
  });
});

describe('DNS cache against the log of answers (property)', () => {
  type Step = { kind: 'answer'; endpoint: number; name: number; ip: number; ttl: number } | { kind: 'advance'; seconds: number };
  const NAMES = ['a.s3.example', 'b.s3.example', 'x.b.s3.example', 'other.example'];
  const SELECTORS: FqdnSelector[][] = [[pattern('*.s3.example')], [pattern('**.s3.example')], [makeFqdnSelector('matchName', 'other.example'), pattern('a.*.example')], [pattern('*')]];
  const step: fc.Arbitrary<Step> = fc.oneof(
    fc.record({ kind: fc.constant('answer' as const), endpoint: fc.nat(2), name: fc.nat(NAMES.length - 1), ip: fc.nat(5), ttl: fc.nat(20) }),
    fc.record({ kind: fc.constant('advance' as const), seconds: fc.nat(15) }),
  );

  it('an IP is selected iff some answer for a matching name is still within max(TTL, minTTL), and no (endpoint, name) holds more than the limit', () => {
    fc.assert(
      fc.property(fc.array(step, { maxLength: 40 }), fc.nat(10), fc.integer({ min: 1, max: 3 }), fc.nat(SELECTORS.length - 1), (steps, minTtl, limit, si) => {
        const sels = SELECTORS[si] as FqdnSelector[];
        let unlimited: DnsCacheState = { ...EMPTY_DNS_CACHE, options: { minTtl, maxIpsPerHostname: 1000 } };
        let limited: DnsCacheState = { ...EMPTY_DNS_CACHE, options: { minTtl, maxIpsPerHostname: limit } };
        const log: { until: number; name: string; ip: string }[] = [];
        let now = 0;
        for (const s of steps) {
          if (s.kind === 'advance') {
            now += s.seconds;
            unlimited = advanceDnsClock(unlimited, s.seconds);
            limited = advanceDnsClock(limited, s.seconds);
            continue;
          }
          const name = NAMES[s.name] as string;
          const addr = `192.0.2.${s.ip}`;
          log.push({ until: now + Math.max(s.ttl, minTtl), name, ip: addr });
          unlimited = recordDnsAnswer(unlimited, `x/p${s.endpoint}`, name, [ip(addr)], s.ttl);
          limited = recordDnsAnswer(limited, `x/p${s.endpoint}`, name, [ip(addr)], s.ttl);
        }
        for (let i = 0; i <= 5; i++) {
          const addr = `192.0.2.${i}`;
          const want = log.some((l) => l.ip === addr && l.until >= now && sels.some((sel) => fqdnSelectorMatches(sel, l.name)));
          expect(liveMatches(unlimited, sels, ip(addr)).length > 0).toBe(want);
          // Eviction only ever takes away.
          if (!want) expect(liveMatches(limited, sels, ip(addr))).toEqual([]);
        }
        const perKey = new Map<string, number>();
        for (const e of limited.entries) perKey.set(`${e.endpoint} ${e.name}`, (perKey.get(`${e.endpoint} ${e.name}`) ?? 0) + 1);
        expect(Math.max(0, ...perKey.values())).toBeLessThanOrEqual(limit);
      }),
      { numRuns: 500 },
    );
  });
});
