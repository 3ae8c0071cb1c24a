import { describe, expect, it } from 'vitest';
import { parseIp } from '../../src/model/cidr.js';
import type { Pod } from '../../src/model/cluster.js';
import { Engine } from '../../src/engine/engine.js';
import type { EngineEvent } from '../../src/engine/events.js';
import { parseManifestFile } from '../../src/policy/manifest.js';

/*
 * Attack finding 2980: the L4Filters a contribution stands for are those of its own clauses. A rule with a DNS rule on
 * port name `dns` and a plain allow on port name `dns2` makes two filters (pkg/policy/l4.go: one per port name and
 * protocol); only `dns/UDP` holds a DNS rule, so the plain `dns2` allow never widens a redirect of port 53.
 */
const pod = (ns: string, name: string, labels: Record<string, string>, ip: string, ports: Pod['ports']): Pod => ({ namespace: ns, name, labels, ip: parseIp(ip), serviceAccount: 'default', ports });
const client = pod('x', 'a', { app: 'a' }, '10.244.0.5', []);
const kubeDns = pod('kube-system', 'kube-dns', { 'k8s-app': 'kube-dns' }, '10.96.0.10', [{ name: 'dns', port: 53, protocol: 'UDP' }]);
const alt = pod('kube-system', 'alt', { 'k8s-app': 'alt' }, '10.96.0.11', [{ name: 'dns2', port: 53, protocol: 'UDP' }]);
const pods: EngineEvent[] = [client, kubeDns, alt].map((p) => ({ type: 'upsertPod', pod: p, local: true }));

function cnp(name: string, egress: string): EngineEvent {
  const [p] = parseManifestFile(`apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: ${name}, namespace: x}\nspec:\n  endpointSelector: {matchLabels: {app: a}}\n  egress:\n${egress}\n`, 'test.yaml');
  return { type: 'upsertPolicy', policy: p! };
}
const mixed = (name: string): EngineEvent =>
  cnp(
    name,
    `  - toEndpoints: [{matchLabels: {k8s:io.kubernetes.pod.namespace: kube-system}}]\n    toPorts:\n      - {ports: [{port: dns, protocol: UDP}], rules: {dns: [{matchName: good.example}]}}\n      - {ports: [{port: dns2, protocol: UDP}]}`,
  );
const altDns = cnp('alt-dns', `  - toEndpoints: [{matchLabels: {k8s:io.kubernetes.pod.namespace: kube-system, k8s:k8s-app: alt}}]\n    toPorts: [{ports: [{port: "53", protocol: UDP}], rules: {dns: [{matchName: good.example}]}}]`);
const del = (name: string): EngineEvent => ({ type: 'deletePolicy', ref: { kind: 'CiliumNetworkPolicy', namespace: 'x', name } });

function verdict(e: Engine, server: string, name: string): boolean | undefined {
  const id = e.identityOfPod(server)!;
  const port = e.lookup('x/a', id, 'egress', 17, 53)!.entry.proxyPort;
  return e.l7Verdict('x/a', port, id, { dns: { name } }, 53)?.allowed;
}

/** x/a's L7 rows by the server's name (identity numbers depend on the order pods came in). */
function rows(e: Engine): unknown[] {
  const names = new Map(['kube-system/kube-dns', 'kube-system/alt'].map((n) => [e.identityOfPod(n), n]));
  return e.l7Table('x/a').map((r) => [names.get(r.peer) ?? r.peer, r.policy]).sort((a, b) => String(a[0]).localeCompare(String(b[0])));
}

describe('2980. a plain named clause beside a DNS clause of its rule is its own L4Filter', () => {
  it('the plain dns2 allow does not widen the numbered DNS redirect of a pod whose 53 is dns2', () => {
    const e = new Engine();
    e.apply([...pods, mixed('a'), altDns]);
    // dns/UDP (named, holding a DNS rule) takes the 53/UDP proxy (finding 3160); its DNS clause is not alt's filter,
    // as dns is not alt's port name (finding 2981), so nothing is let through to alt, other.example least of all.
    expect([verdict(e, 'kube-system/alt', 'good.example'), verdict(e, 'kube-system/alt', 'other.example'), verdict(e, 'kube-system/kube-dns', 'other.example')]).toEqual([false, false, false]);
  });

  it('incrementally (the redirect added and removed, the rule\'s share changing leader) as a fresh engine', () => {
    const fresh = (events: EngineEvent[]): unknown[] => {
      const f = new Engine();
      f.apply([...pods, ...events]);
      return rows(f);
    };
    const e = new Engine();
    e.apply([...pods, mixed('a')]);
    e.apply([altDns]);
    expect(rows(e)).toEqual(fresh([mixed('a'), altDns]));
    e.apply([mixed('b')]);
    e.apply([del('a')]);
    expect(rows(e)).toEqual(fresh([mixed('b'), altDns]));
    expect(verdict(e, 'kube-system/alt', 'other.example')).toBe(false);
    e.apply([del('alt-dns')]);
    expect(rows(e)).toEqual(fresh([mixed('b')]));
    e.apply([altDns]);
    expect(rows(e)).toEqual(fresh([mixed('b'), altDns]));
  });

  it('pods (so identities) arriving after the policies and leaving give a fresh engine\'s rows', () => {
    const fresh = (events: EngineEvent[]): unknown[] => {
      const f = new Engine();
      f.apply(events);
      return rows(f);
    };
    const [a, dns, alt] = pods as [EngineEvent, EngineEvent, EngineEvent];
    const e = new Engine();
    e.apply([a, mixed('a'), altDns]);
    e.apply([alt]);
    expect(rows(e)).toEqual(fresh([a, mixed('a'), altDns, alt]));
    e.apply([dns]);
    expect(rows(e)).toEqual(fresh([a, mixed('a'), altDns, alt, dns]));
    expect(verdict(e, 'kube-system/alt', 'other.example')).toBe(false);
    e.apply([{ type: 'deletePod', namespace: 'kube-system', name: 'alt' }]);
    expect(rows(e)).toEqual(fresh([a, mixed('a'), altDns, dns]));
  });
});
