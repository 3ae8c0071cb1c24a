import { describe, expect, it } from 'vitest';
import { parseIp } from '../../src/model/cidr.js';
import type { Pod } from '../../src/model/cluster.js';
import { Engine } from '../../src/engine/engine.js';
import type { EngineEvent } from '../../src/engine/events.js';
import { meetDnsPolicies, type L7Policy } from '../../src/model/l7.js';
import { parseManifestFile } from '../../src/policy/manifest.js';
import { dnsVerdict, namedRows } from './dns-filter-probes.js';

/*
 * Attack finding 3160 (3001 = 2763): Cilium 1.19's DNS proxy holds the rules of ONE L4Filter of a port, the first with a
 * redirect that pkg/endpoint/bpf.go addNewRedirects meets walking L4PolicyMap.ForEach (named-port filters first, in Go
 * map order; then the numbered one). distill: one named filter holding a DNS rule takes the port; several: a query
 * passes only if each lets it through; none: the numbered filter.
 */
type Ports = Pod['ports'];
const pod = (ns: string, name: string, labels: Record<string, string>, ip: string, ports: Ports): EngineEvent => ({
  type: 'upsertPod',
  pod: { namespace: ns, name, labels, ip: parseIp(ip), serviceAccount: 'default', ports },
  local: true,
});
const udp53 = (...names: string[]): Ports => names.map((name) => ({ name, port: 53, protocol: 'UDP' as const }));
const client = pod('x', 'a', { app: 'a' }, '10.244.0.5', []);
const kubeDns = (ports: Ports = udp53('dns')): EngineEvent => pod('kube-system', 'kube-dns', { 'k8s-app': 'kube-dns' }, '10.96.0.10', ports);
const alt = (ports: Ports = [{ port: 53, protocol: 'UDP' }]): EngineEvent => pod('kube-system', 'alt', { 'k8s-app': 'alt' }, '10.96.0.11', ports);

const toKs = (app?: string): string => `[{matchLabels: {k8s:io.kubernetes.pod.namespace: kube-system${app ? `, k8s:k8s-app: ${app}` : ''}}}]`;
function cnp(name: string, rules: string[]): EngineEvent {
  const egress = rules.map((r) => `  - ${r}`).join('\n');
  const [p] = parseManifestFile(`apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: ${name}, namespace: x}\nspec:\n  endpointSelector: {matchLabels: {app: a}}\n  egress:\n${egress}\n`, 'test.yaml');
  return { type: 'upsertPolicy', policy: p! };
}
const del = (name: string): EngineEvent => ({ type: 'deletePolicy', ref: { kind: 'CiliumNetworkPolicy', namespace: 'x', name } });
const dns = (...names: string[]): string => `{dns: [${names.map((n) => `{matchName: ${n}}`).join(', ')}]}`;
const rule = (peer: string | undefined, port: string, names: string[]): string => `{toEndpoints: ${toKs(peer)}, toPorts: [{ports: [{port: "${port}", protocol: UDP}], rules: ${dns(...names)}}]}`;
/** The pending scenario of 31a: a DNS rule on the name dns to kube-dns, one on "53" to alt. */
const namedToKubeDns = cnp('named', [rule('kube-dns', 'dns', ['good.example'])]);
const numberedToAlt = cnp('numbered', [rule('alt', '53', ['good.example'])]);

const verdict = dnsVerdict;

const rows = (e: Engine): unknown[] => namedRows(e, ['alt', 'kube-dns']);

describe('3160. the DNS proxy of a port holds one filter\'s rules', () => {
  it('a named filter holding a DNS rule takes the port: the numbered rule to alt is not in the proxy\'s rules', () => {
    const e = new Engine();
    e.apply([client, kubeDns(), alt(), namedToKubeDns, numberedToAlt]);
    expect([verdict(e, 'kube-system/alt', 'good.example'), verdict(e, 'kube-system/kube-dns', 'good.example')]).toEqual([false, true]);
    // Without the named filter the numbered one judges again.
    e.apply([del('named')]);
    expect(verdict(e, 'kube-system/alt', 'good.example')).toBe(true);
  });

  it('two named filters on one port: only what both let through', () => {
    const e = new Engine();
    const both = cnp('both', [rule(undefined, 'dns', ['good.example', 'other.example']), rule(undefined, 'dns2', ['good.example', 'third.example'])]);
    e.apply([client, kubeDns(udp53('dns', 'dns2')), both]);
    const names = ['good.example', 'other.example', 'third.example'];
    expect(names.map((n) => verdict(e, 'kube-system/kube-dns', n))).toEqual([true, false, false]);
    expect(rows(e)).toEqual([['kube-dns', { allowAll: false, rules: { parser: 'dns', dns: [{ matchName: 'good.example' }] } }]]);
  });

  it('rows follow the port\'s filters as rules and named ports come and go, as a fresh engine\'s', () => {
    const e = new Engine();
    let state: EngineEvent[] = [client, kubeDns(), alt(), numberedToAlt];
    e.apply(state);
    const step = (events: EngineEvent[], altGood: boolean): void => {
      e.apply(events);
      state = [...state, ...events];
      const f = new Engine();
      f.apply(state);
      expect(rows(e)).toEqual(rows(f));
      expect(verdict(e, 'kube-system/alt', 'good.example')).toBe(altGood);
    };
    step([namedToKubeDns], false);
    // kube-dns's 53 loses its name: the named clause is nobody's filter, the numbered one judges again.
    step([kubeDns([{ port: 53, protocol: 'UDP' }])], true);
    step([kubeDns()], false);
    // alt's 53 takes the name dns2 and a plain dns2 allow of alt comes: in no filter holding a DNS rule, it widens nothing.
    step([alt(udp53('dns2')), cnp('plain', [`{toEndpoints: ${toKs('alt')}, toPorts: [{ports: [{port: dns2, protocol: UDP}]}]}`])], false);
    step([del('named')], true);
  });

  it('a DNS answer is learnt only if the port\'s proxy lets its query through, in the transaction that changes the rules too', () => {
    const fqdn = cnp('fqdn', ['{toFQDNs: [{matchPattern: "*"}], toPorts: [{ports: [{port: "443", protocol: TCP}]}]}']);
    const answer: EngineEvent = { type: 'dnsResponse', endpoint: 'x/a', name: 'good.example', ips: [parseIp('198.51.100.1')], ttl: 60, server: { ip: parseIp('10.96.0.11'), port: 53 } };
    const learnt = (setupEvents: EngineEvent[], batch: EngineEvent[]): boolean => {
      const e = new Engine({ dns: { minTtl: 0, maxIpsPerHostname: 1000 } });
      e.apply([client, kubeDns(), alt(), fqdn, ...setupEvents]);
      return e.apply(batch).ipcache.some((d) => d.op === 'upsert' && d.prefix === '198.51.100.1/32');
    };
    expect(learnt([numberedToAlt], [answer])).toBe(true);
    expect(learnt([numberedToAlt, namedToKubeDns], [answer])).toBe(false);
    // The map changes in the answer's transaction (the stage reads the raw contributions, not the settled rows).
    expect(learnt([numberedToAlt], [namedToKubeDns, answer])).toBe(false);
  });
});

describe('meetDnsPolicies: never wider than any of the policies', () => {
  const names = (...ns: string[]): L7Policy => ({ allowAll: false, rules: { parser: 'dns', dns: ns.map((n) => (n.includes('*') ? { matchPattern: n } : { matchName: n })) } });
  it('keeps names every policy allows and patterns every policy lists (or matches all with *)', () => {
    expect(meetDnsPolicies([{ allowAll: true }, { allowAll: true }])).toEqual({ allowAll: true });
    expect(meetDnsPolicies([{ allowAll: true }, names('a.example')])).toEqual(names('a.example'));
    expect(meetDnsPolicies([names('a.example', 'b.example'), names('*.example')])).toEqual(names('a.example', 'b.example'));
    expect(meetDnsPolicies([names('*.example', 'c.other'), names('*', 'x.example')])).toEqual(names('c.other', 'x.example', '*.example'));
    // Two patterns that overlap without one listing the other: dropped (narrower than the exact meet, `a.example`).
    expect(meetDnsPolicies([names('a.*'), names('*.example')])).toBeUndefined();
    expect(meetDnsPolicies([names('a.example'), names('b.example')])).toBeUndefined();
  });
});
