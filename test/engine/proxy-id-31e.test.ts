import { describe, expect, it } from 'vitest';
import type { Pod } from '../../src/model/cluster.js';
import { Engine } from '../../src/engine/engine.js';
import type { EngineEvent } from '../../src/engine/events.js';
import type { L7Request } from '../../src/model/l7.js';
import { parseManifestFile } from '../../src/policy/manifest.js';
import { localPod } from './dns-filter-probes.js';

/*
 * Attack finding 3280 (3162 of 31d): Cilium 1.19's proxy ID (endpoint, direction, protocol, port, listener) has no
 * parser; pkg/endpoint/bpf.go addNewRedirects gives it the first filter met (named-port filters first, pkg/policy/l4.go
 * L4PolicyMap.ForEach) and every filter's key takes that redirect's port (l4.go makeMapStateEntry, LookupRedirectPort).
 * A named filter of another parser on the port therefore takes it: the other parser's requests cannot be read.
 */
type Ports = Pod['ports'];
const pod = localPod;
const client = pod('x/a', { app: 'a' }, '10.244.0.5', []);
const tcp53 = (name?: string): Ports => [{ ...(name ? { name } : {}), port: 53, protocol: 'TCP' as const }];
const kubeDns = (name?: string): EngineEvent => pod('kube-system/kube-dns', { 'k8s-app': 'kube-dns' }, '10.96.0.10', tcp53(name));
const alt = (name?: string): EngineEvent => pod('kube-system/alt', { 'k8s-app': 'alt' }, '10.96.0.11', tcp53(name));

function cnp(name: string, peer: string, port: string, rules: string): EngineEvent {
  const to = `[{matchLabels: {k8s:io.kubernetes.pod.namespace: kube-system, k8s:k8s-app: ${peer}}}]`;
  const spec = `endpointSelector: {matchLabels: {app: a}}\n  egress:\n  - {toEndpoints: ${to}, toPorts: [{ports: [{port: "${port}", protocol: TCP}], rules: ${rules}}]}`;
  const [p] = parseManifestFile(`apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: ${name}, namespace: x}\nspec:\n  ${spec}\n`, 'test.yaml');
  return { type: 'upsertPolicy', policy: p! };
}
const del = (name: string): EngineEvent => ({ type: 'deletePolicy', ref: { kind: 'CiliumNetworkPolicy', namespace: 'x', name } });
const GET: L7Request = { http: { method: 'GET', path: '/' } };
const QUERY: L7Request = { dns: { name: 'good.example' } };

/** x/a's verdict on `request` to `server` on 53/TCP: undefined when no entry admits it, true for a plain allow, else the proxy's. */
function verdict(e: Engine, server: string, request: L7Request): boolean | undefined {
  const id = e.identityOfPod(server)!;
  const port = e.lookup('x/a', id, 'egress', 6, 53)?.entry.proxyPort;
  if (port === undefined) return undefined;
  return port === 0 || (e.l7Verdict('x/a', port, id, request, 53)?.allowed ?? false);
}

describe('3280. filters sharing a proxy ID with different parsers', () => {
  it('a named DNS filter takes the port of a numbered HTTP filter: the GET is denied, and allowed again without it', () => {
    const e = new Engine();
    e.apply([client, kubeDns('dns-tcp'), alt(), cnp('dns', 'kube-dns', 'dns-tcp', '{dns: [{matchName: good.example}]}'), cnp('http', 'alt', '53', '{http: [{method: GET}]}')]);
    expect([verdict(e, 'kube-system/alt', GET), verdict(e, 'kube-system/kube-dns', QUERY)]).toEqual([false, true]);
    // No rule is named as letting the GET through (explain, the harness's allowedBy).
    const id = e.identityOfPod('kube-system/alt')!;
    expect(e.l7AllowedBy('x/a', e.lookup('x/a', id, 'egress', 6, 53)!.entry.proxyPort, id, GET, 53)).toEqual([]);
    e.apply([del('dns')]);
    expect(verdict(e, 'kube-system/alt', GET)).toBe(true);
    e.apply([cnp('dns', 'kube-dns', 'dns-tcp', '{dns: [{matchName: good.example}]}')]);
    expect(verdict(e, 'kube-system/alt', GET)).toBe(false);
  });

  it('a named HTTP filter takes the port of a numbered DNS filter: the query is denied, the GET passes', () => {
    const e = new Engine();
    e.apply([client, kubeDns(), alt('web'), cnp('http', 'alt', 'web', '{http: [{method: GET}]}'), cnp('dns', 'kube-dns', '53', '{dns: [{matchName: good.example}]}')]);
    expect([verdict(e, 'kube-system/kube-dns', QUERY), verdict(e, 'kube-system/alt', GET)]).toEqual([false, true]);
    // The name leaving alt's pod (the pod updated without it): the numbered DNS filter has the port again.
    e.apply([alt()]);
    expect(verdict(e, 'kube-system/kube-dns', QUERY)).toBe(true);
  });

  it('a named filter of the same parser does not close the port (the DNS proxy holds its rules, finding 3160)', () => {
    const e = new Engine();
    e.apply([client, kubeDns('dns-tcp'), alt(), cnp('dns', 'kube-dns', 'dns-tcp', '{dns: [{matchName: good.example}]}'), cnp('http', 'alt', '80', '{http: [{method: GET}]}')]);
    expect(verdict(e, 'kube-system/kube-dns', QUERY)).toBe(true);
  });
});
