import { describe, expect, it } from 'vitest';
import { parseIp } from '../../src/model/cidr.js';
import type { Pod } from '../../src/model/cluster.js';
import { Engine } from '../../src/engine/engine.js';
import type { EngineEvent } from '../../src/engine/events.js';
import { parseManifestFile } from '../../src/policy/manifest.js';
import { dnsVerdict, namedRows } from './dns-filter-probes.js';

/*
 * Attack finding 2981: a named clause is its name's L4Filter only where the name is the key's port. Since 3381 (32d)
 * that is read node-wide, as Cilium 1.19 resolves a filter's name (pkg/endpoint/bpf.go Endpoint.proxyID →
 * namedPortMultiMap.GetNamedPort; the filter's selectors judge every peer they select). A rule's plain clauses on dns2
 * and dns3 make one contribution; at alt (53 named dns2) it stands for dns2/UDP and, while dns3 is 53/UDP node-wide,
 * for dns3/UDP, which holds z's DNS rule and takes the 53/UDP proxy: alt's queries pass its plain selector ("*").
 * Before 3381 the names were resolved at the peer (dns2/UDP only: alt refused, narrower than Cilium).
 */
type Ports = Pod['ports'];
const pod = (ns: string, name: string, labels: Record<string, string>, ip: string, ports: Ports): EngineEvent => ({
  type: 'upsertPod',
  pod: { namespace: ns, name, labels, ip: parseIp(ip), serviceAccount: 'default', ports },
  local: true,
});
const udp53 = (name: string): Ports => [{ name, port: 53, protocol: 'UDP' }];
const client = pod('x', 'a', { app: 'a' }, '10.244.0.5', []);
const z = (ports: Ports = udp53('dns3')): EngineEvent => pod('kube-system', 'z', { 'k8s-app': 'z' }, '10.96.0.12', ports);
const alt = (ports: Ports = udp53('dns2')): EngineEvent => pod('kube-system', 'alt', { 'k8s-app': 'alt' }, '10.96.0.11', ports);
const kubeDns = pod('kube-system', 'kube-dns', { 'k8s-app': 'kube-dns' }, '10.96.0.10', udp53('dns'));
/** Another pod giving dns3 another port: the name then resolves nowhere (Cilium's node-wide map is ambiguous). */
const w = pod('kube-system', 'w', { 'k8s-app': 'w' }, '10.96.0.13', [{ name: 'dns3', port: 54, protocol: 'UDP' }]);

const toKs = (app?: string): string => `[{matchLabels: {k8s:io.kubernetes.pod.namespace: kube-system${app ? `, k8s:k8s-app: ${app}` : ''}}}]`;
function cnp(name: string, rules: string[]): EngineEvent {
  const egress = rules.map((r) => `  - ${r}`).join('\n');
  const [p] = parseManifestFile(`apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: ${name}, namespace: x}\nspec:\n  endpointSelector: {matchLabels: {app: a}}\n  egress:\n${egress}\n`, 'test.yaml');
  return { type: 'upsertPolicy', policy: p! };
}
const dnsRule = '{dns: [{matchName: good.example}]}';
const plainDns2Dns3 = cnp('plain', [`{toEndpoints: ${toKs()}, toPorts: [{ports: [{port: dns2, protocol: UDP}, {port: dns3, protocol: UDP}]}]}`]);
const zDns3 = cnp('z-dns', [`{toEndpoints: ${toKs('z')}, toPorts: [{ports: [{port: dns3, protocol: UDP}], rules: ${dnsRule}}]}`]);
const altNumbered = cnp('alt-dns', [`{toEndpoints: ${toKs('alt')}, toPorts: [{ports: [{port: "53", protocol: UDP}], rules: ${dnsRule}}]}`]);
/** The second form: one toPorts entry naming dns and dns3 with one DNS rule, to kube-dns only; a plain dns3 allow to every kube-system pod. */
const twoNames = cnp('two-names', [
  `{toEndpoints: ${toKs('kube-dns')}, toPorts: [{ports: [{port: dns, protocol: UDP}, {port: dns3, protocol: UDP}], rules: ${dnsRule}}]}`,
  `{toEndpoints: ${toKs()}, toPorts: [{ports: [{port: dns3, protocol: UDP}]}]}`,
]);

const verdict = dnsVerdict;

const rows = (e: Engine): unknown[] => namedRows(e, ['z', 'alt', 'kube-dns', 'w']);

const freshRows = (events: EngineEvent[]): unknown[] => {
  const f = new Engine();
  f.apply(events);
  return rows(f);
};

describe('2981/3381. a named clause is its name\'s filter only where the name is the port, node-wide', () => {
  it('plain dns2+dns3 allow: dns3/UDP takes the 53/UDP proxy and its plain selector admits alt (53 = dns2) and z', () => {
    const e = new Engine();
    e.apply([client, z(), alt(), plainDns2Dns3, zDns3, altNumbered]);
    // dns3/UDP (z's DNS rule) takes the 53/UDP proxy (finding 3160); the plain rule's dns3 clause is in it, node-wide (3381).
    expect([verdict(e, 'kube-system/alt', 'good.example'), verdict(e, 'kube-system/alt', 'other.example'), verdict(e, 'kube-system/z', 'other.example')]).toEqual([true, true, true]);
  });

  it('one DNS rule on dns and dns3 counts dns3/UDP nowhere no pod has dns3', () => {
    const e = new Engine();
    e.apply([client, kubeDns, alt(udp53('dns3')), twoNames, altNumbered]);
    // dns/UDP (kube-dns's DNS rule) takes the 53/UDP proxy (finding 3160): alt's numbered DNS rule is not in its rules.
    expect([verdict(e, 'kube-system/alt', 'good.example'), verdict(e, 'kube-system/alt', 'other.example'), verdict(e, 'kube-system/kube-dns', 'other.example')]).toEqual([false, false, false]);
  });

  it('peers changing their named ports (own and cluster-wide) give a fresh engine\'s rows', () => {
    const policies = [plainDns2Dns3, zDns3, altNumbered];
    const e = new Engine();
    let state: EngineEvent[] = [client, z(), alt(), ...policies];
    e.apply(state);
    const step = (events: EngineEvent[], altOther: boolean): void => {
      e.apply(events);
      state = [...state, ...events];
      expect(rows(e)).toEqual(freshRows(state));
      expect(verdict(e, 'kube-system/alt', 'other.example')).toBe(altOther);
    };
    // alt's 53 becomes dns3: the plain clause reaches it by dns3, in the filter holding z's DNS rule.
    step([alt(udp53('dns3'))], true);
    // w gives dns3 another port: dns3 resolves nowhere, neither z's DNS rule nor alt's plain allow is anywhere.
    step([w], false);
    step([{ type: 'deletePod', namespace: 'kube-system', name: 'w' }], true);
    // alt's 53 is dns2 again: the plain clause's contribution there is in dns3/UDP still (dns3 = 53/UDP node-wide).
    step([alt()], true);
    // z loses dns3: no pod names dns3, no dns3/UDP filter has a port; the numbered filter holds the proxy.
    step([z([])], false);
    step([z()], true);
    step([{ type: 'deletePolicy', ref: { kind: 'CiliumNetworkPolicy', namespace: 'x', name: 'alt-dns' } }], true);
    step([altNumbered], true);
  });

  it('the two-name rule as pods come and go, and the names move', () => {
    const e = new Engine();
    let state: EngineEvent[] = [client, twoNames, altNumbered];
    e.apply(state);
    // alt's other.example: while only dns3 names 53/UDP node-wide, dns3/UDP (kube-dns's DNS rule, every kube-system
    // pod's plain one) holds the proxy and admits alt; while dns does too, dns/UDP may (Go map order), and its one
    // selector (kube-dns) refuses alt: the meet refuses (finding 3160).
    const steps: [EngineEvent[], boolean][] = [
      [[alt(udp53('dns3'))], true],
      [[kubeDns], false],
      [[alt()], false],
      [[alt(udp53('dns3'))], false],
      [[{ type: 'deletePod', namespace: 'kube-system', name: 'kube-dns' }], true],
      [[kubeDns], false],
    ];
    for (const [events, altOther] of steps) {
      e.apply(events);
      state = [...state, ...events];
      expect(rows(e)).toEqual(freshRows(state));
      expect(verdict(e, 'kube-system/alt', 'other.example')).toBe(altOther);
    }
  });
});
