import { describe, expect, it } from 'vitest';
import { parseIp } from '../../src/model/cidr.js';
import type { Pod } from '../../src/model/cluster.js';
import { Engine } from '../../src/engine/engine.js';
import type { EngineEvent } from '../../src/engine/events.js';
import { parseManifestFile } from '../../src/policy/manifest.js';

/*
 * Attack findings 2761/2870/3160: which plain allows widen a DNS redirect is a property of the port's
 * L4Filters across every peer (pkg/policy/l4.go: a named port's filter apart from the numbered one; a named
 * filter holding a DNS rule takes the port's proxy), so a rule for another peer can change a peer's row
 * without touching its map key.
 */
const client: Pod = { namespace: 'x', name: 'a', labels: { app: 'a' }, ip: parseIp('10.244.0.5'), serviceAccount: 'default', ports: [] };
const kubeDns: Pod = { namespace: 'kube-system', name: 'kube-dns', labels: { 'k8s-app': 'kube-dns' }, ip: parseIp('10.96.0.10'), serviceAccount: 'default', ports: [{ name: 'dns', port: 53, protocol: 'UDP' }] };
const alt: Pod = { namespace: 'kube-system', name: 'alt', labels: { 'k8s-app': 'alt' }, ip: parseIp('10.96.0.11'), serviceAccount: 'default', ports: [{ name: 'dns2', port: 53, protocol: 'UDP' }] };
const pods: EngineEvent[] = [client, kubeDns, alt].map((pod) => ({ type: 'upsertPod', pod, local: true }));
const TO_DNS = '{matchLabels: {k8s:io.kubernetes.pod.namespace: kube-system, k8s:k8s-app: kube-dns}}';

function cnp(name: string, egress: string): EngineEvent {
  const [p] = parseManifestFile(`apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: ${name}, namespace: x}\nspec:\n  endpointSelector: {matchLabels: {app: a}}\n  egress:\n${egress}\n`, 'test.yaml');
  return { type: 'upsertPolicy', policy: p! };
}
const namedDns = cnp('named-dns', `  - toEndpoints: [${TO_DNS}]\n    toPorts: [{ports: [{port: dns, protocol: UDP}], rules: {dns: [{matchName: good.example}]}}]`);
const numberedPlain = cnp('plain', `  - toEndpoints: [${TO_DNS}]\n    toPorts: [{ports: [{port: "53", protocol: UDP}]}]`);
const numberedDnsOtherPeer = cnp('world-dns', `  - toCIDR: [8.8.8.8/32]\n    toPorts: [{ports: [{port: "53", protocol: UDP}], rules: {dns: [{matchName: x.example}]}}]`);
const namedDnsOtherPeer = cnp('alt-dns', `  - toEndpoints: [{matchLabels: {k8s:io.kubernetes.pod.namespace: kube-system, k8s:k8s-app: alt}}]\n    toPorts: [{ports: [{port: dns2, protocol: UDP}], rules: {dns: [{matchName: x.example}]}}]`);

function verdict(e: Engine, name: string): boolean | undefined {
  const dns = e.identityOfPod('kube-system/kube-dns')!;
  const port = e.lookup('x/a', dns, 'egress', 17, 53)!.entry.proxyPort;
  return e.l7Verdict('x/a', port, dns, { dns: { name } }, 53)?.allowed;
}

/** The kube-dns rows of x/a's L7 table, as a fresh engine would have them after `events`. */
function kubeDnsRows(e: Engine): unknown[] {
  const dns = e.identityOfPod('kube-system/kube-dns');
  return e.l7Table('x/a').filter((r) => r.peer === dns).map((r) => [r.peer, r.policy]);
}

describe('DNS filters of a port (findings 2761, 2870)', () => {
  it('a numbered plain allow does not widen a DNS rule written on the port name', () => {
    const e = new Engine();
    e.apply([...pods, namedDns, numberedPlain]);
    expect([verdict(e, 'good.example'), verdict(e, 'other.example')]).toEqual([true, false]);
  });

  it('a DNS rule for another peer on a named filter redoes the rows of every peer, added and removed', () => {
    const e = new Engine();
    // The numbered filter holds 8.8.8.8's DNS rule, so kube-dns's plain numbered allow makes its row allow-all.
    e.apply([...pods, numberedDnsOtherPeer, numberedPlain]);
    const before = kubeDnsRows(e);
    expect(before).toHaveLength(1);
    e.apply([namedDnsOtherPeer]);
    const fresh = new Engine();
    fresh.apply([...pods, numberedDnsOtherPeer, numberedPlain, namedDnsOtherPeer]);
    // A named filter holding a DNS rule (alt's, on dns2 = 53) takes the port's proxy (finding 3160): kube-dns's
    // numbered allow is no longer in its rules, though nothing changed at kube-dns's map key.
    expect(kubeDnsRows(e)).toEqual(kubeDnsRows(fresh));
    expect(kubeDnsRows(e)).toEqual([]);
    e.apply([{ type: 'deletePolicy', ref: { kind: 'CiliumNetworkPolicy', namespace: 'x', name: 'alt-dns' } }]);
    expect(kubeDnsRows(e)).toEqual(before);
  });
});
