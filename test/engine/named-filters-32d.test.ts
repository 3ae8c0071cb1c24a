import { describe, expect, it } from 'vitest';
import type { Pod } from '../../src/model/cluster.js';
import { Engine } from '../../src/engine/engine.js';
import type { EngineEvent } from '../../src/engine/events.js';
import { parseManifestFile } from '../../src/policy/manifest.js';
import { dnsVerdict, localPod, namedRows } from './dns-filter-probes.js';

/*
 * Attack finding 3381 (3281/3161): Cilium 1.19's redirect filters are the endpoint's own (pkg/policy/resolve.go
 * forEachRedirectFilter: every L4Filter with a redirecting per-selector policy, whoever its selectors select), a named
 * one's port resolved node-wide (pkg/endpoint/bpf.go Endpoint.proxyID → namedPortMultiMap.GetNamedPort: the one port
 * the cluster's pods give the name, none when none or two), named filters first (pkg/policy/l4.go L4PolicyMap.ForEach)
 * and later filters of the proxy ID skipped (addNewRedirects). So a named L7 filter selecting nobody takes the port.
 */
type Ports = Pod['ports'];
const pod = localPod;
const client = pod('x/a', { app: 'a' }, '10.244.0.5', []);
const udp = (port: number, name?: string): Ports => [{ ...(name ? { name } : {}), port, protocol: 'UDP' as const }];
const kubeDns = (ports: Ports = udp(53, 'dns')): EngineEvent => pod('kube-system/kube-dns', { 'k8s-app': 'kube-dns' }, '10.96.0.10', ports);
const alt = pod('kube-system/alt', { 'k8s-app': 'alt' }, '10.96.0.11', udp(53));
/** A pod giving dns another port: Cilium's node-wide map then has two ports for it (ErrDuplicateNamedPorts). */
const other = pod('kube-system/other', { 'k8s-app': 'other' }, '10.96.0.12', udp(5353, 'dns'));

function cnp(name: string, peer: string, port: string, rules: string, protocol = 'UDP'): EngineEvent {
  const to = `[{matchLabels: {k8s:io.kubernetes.pod.namespace: kube-system, k8s:k8s-app: ${peer}}}]`;
  const spec = `endpointSelector: {matchLabels: {app: a}}\n  egress:\n  - {toEndpoints: ${to}, toPorts: [{ports: [{port: "${port}", protocol: ${protocol}}], rules: ${rules}}]}`;
  const [p] = parseManifestFile(`apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: ${name}, namespace: x}\nspec:\n  ${spec}\n`, 'test.yaml');
  return { type: 'upsertPolicy', policy: p! };
}
const del = (name: string): EngineEvent => ({ type: 'deletePolicy', ref: { kind: 'CiliumNetworkPolicy', namespace: 'x', name } });
const GOOD = '{dns: [{matchName: good.example}]}';
const nobodyDns = cnp('nobody', 'nobody', 'dns', GOOD);
const altNumbered = cnp('alt-dns', 'alt', '53', GOOD);

const rows = (e: Engine): unknown[] => namedRows(e, ['alt', 'kube-dns', 'other']);
function fresh(events: EngineEvent[]): Engine {
  const f = new Engine();
  f.apply(events);
  return f;
}

describe('3381. a named L7 filter selecting nobody takes its port', () => {
  it('a named DNS rule to nobody closes alt\'s numbered DNS redirect', () => {
    const e = fresh([client, kubeDns(), alt, nobodyDns, altNumbered]);
    expect(dnsVerdict(e, 'kube-system/alt', 'good.example')).toBe(false);
  });

  it('stepwise: the rule, the name and an ambiguous name come and go as a fresh engine has them', () => {
    const e = new Engine();
    let state: EngineEvent[] = [client, kubeDns(), alt, altNumbered];
    e.apply(state);
    expect(dnsVerdict(e, 'kube-system/alt', 'good.example')).toBe(true);
    // [events, alt's good.example]: the rule (no contribution anywhere: only the endpoint's filters change), the name
    // leaving kube-dns (no port: no proxy ID), back, another port for it (ambiguous: none), that pod gone, the rule gone.
    const steps: [EngineEvent[], boolean][] = [
      [[nobodyDns], false],
      [[kubeDns(udp(53))], true],
      [[kubeDns()], false],
      [[other], true],
      [[{ type: 'deletePod', namespace: 'kube-system', name: 'other' }], false],
      [[del('nobody')], true],
      [[nobodyDns], false],
    ];
    for (const [events, allowed] of steps) {
      e.apply(events);
      state = [...state, ...events];
      expect(rows(e)).toEqual(rows(fresh(state)));
      expect(dnsVerdict(e, 'kube-system/alt', 'good.example')).toBe(allowed);
    }
  });

  it('a named HTTP rule to nobody takes a numbered DNS filter\'s port (another parser: finding 3280)', () => {
    const tcp = (name?: string): Ports => [{ ...(name ? { name } : {}), port: 53, protocol: 'TCP' as const }];
    const web = pod('kube-system/web', { 'k8s-app': 'web' }, '10.96.0.13', tcp('web'));
    const altTcp = pod('kube-system/alt', { 'k8s-app': 'alt' }, '10.96.0.11', tcp());
    const e = fresh([client, web, altTcp, cnp('http', 'nobody', 'web', '{http: [{method: GET}]}', 'TCP'), cnp('alt-dns', 'alt', '53', GOOD, 'TCP')]);
    const id = e.identityOfPod('kube-system/alt')!;
    const port = e.lookup('x/a', id, 'egress', 6, 53)!.entry.proxyPort;
    expect(e.l7Verdict('x/a', port, id, { dns: { name: 'good.example' } }, 53)?.allowed ?? false).toBe(false);
  });
});
