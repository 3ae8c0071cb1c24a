import { describe, expect, it } from 'vitest';
import { parseIp } from '../../src/model/cidr.js';
import type { Pod } from '../../src/model/cluster.js';
import { Engine } from '../../src/engine/engine.js';
import type { EngineEvent } from '../../src/engine/events.js';
import { L7ParserConflictError } from '../../src/engine/rule-units.js';
import { parseManifestFile } from '../../src/policy/manifest.js';

let ip = 2;
function pod(name: string, labels: Record<string, string>): Pod {
  ip++;
  return { namespace: 'prod', name, labels, ip: parseIp(`10.244.0.${ip}`), serviceAccount: 'default', ports: [] };
}
const local = (p: Pod): EngineEvent => ({ type: 'upsertPod', pod: p, local: true });
function cnp(name: string, app: string, toPorts: string, key = 'app'): EngineEvent {
  const [p] = parseManifestFile(
    `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: ${name}, namespace: prod}
spec:
  endpointSelector: {matchLabels: {${key}: ${app}}}
  ingress:
  - toPorts: ${toPorts}
`,
    `${name}.yaml`,
  );
  return { type: 'upsertPolicy', policy: p! };
}

describe('protocol ANY in the map (issue 12 item 1)', () => {
  it('ANY with port 0 gives the TCP, UDP and SCTP wildcard keys, never the all-protocol key', () => {
    const e = new Engine();
    e.apply([local(pod('web', { app: 'web' })), cnp('any', 'web', '[{ports: [{port: "0", protocol: ANY}]}]')]);
    const ingress = [...e.mapState('prod/web').keys()].filter((k) => k.includes('/ingress/') && !k.startsWith('1/')).sort();
    expect(ingress).toEqual(['0/ingress/132/0/0', '0/ingress/17/0/0', '0/ingress/6/0/0']);
    // The only all-protocol key is the local host's (allow-localhost), for identity 1.
    expect([...e.mapState('prod/web').keys()].filter((k) => k.startsWith('1/'))).toEqual(['1/ingress/0/0/0']);
  });
});

describe('conflicting L7 parsers on one port (issue 21 item 1)', () => {
  const http = cnp('http', 'web', '[{ports: [{port: "80", protocol: TCP}], rules: {http: [{method: GET}]}}]');
  const kafka = cnp('kafka', 'web', '[{ports: [{port: "80", protocol: TCP}], rules: {kafka: [{topic: orders}]}}]');

  it('a policy that would put Kafka next to HTTP on 80/TCP of one endpoint is refused, naming both rules', () => {
    const e = new Engine();
    e.apply([local(pod('web', { app: 'web' })), http]);
    const before = JSON.stringify([...e.mapState('prod/web')]);
    let err: unknown;
    try {
      e.apply([kafka]);
    } catch (x) {
      err = x;
    }
    expect(err).toBeInstanceOf(L7ParserConflictError);
    const c = err as L7ParserConflictError;
    expect([c.endpoint, c.direction, c.port]).toEqual(['prod/web', 'ingress', '80/TCP']);
    expect(c.rules.map((r) => `${r.origin.policy.name} ${r.origin.path} ${r.parser}`)).toEqual(['http spec.ingress[0] http', 'kafka spec.ingress[0] kafka']);
    expect(c.message).toContain('CiliumNetworkPolicy/prod/http spec.ingress[0] (http) and CiliumNetworkPolicy/prod/kafka spec.ingress[0] (kafka)');
    // Nothing changed: the engine keeps its previous policy, and takes later transactions.
    expect(JSON.stringify([...e.mapState('prod/web')])).toBe(before);
    expect(e.redirects('prod/web').map((r) => r.parser)).toEqual(['http']);
    expect(() => e.apply([local(pod('web-2', { app: 'web' }))])).not.toThrow();
  });

  it('a pod relabelled into both rules is refused too; rules on different endpoints or filters are not', () => {
    const e = new Engine();
    const q = pod('q', { app: 'queue' });
    e.apply([local(pod('web', { app: 'web' })), local(q), http, cnp('kafka', 'front', '[{ports: [{port: "80", protocol: TCP}], rules: {kafka: [{topic: orders}]}}]', 'tier')]);
    expect(() => e.apply([local({ ...q, labels: { app: 'web', tier: 'front' } })])).toThrow(L7ParserConflictError);
    expect(() => e.apply([local({ ...q, labels: { app: 'queue', tier: 'front' } })])).not.toThrow();
    // A range is another L4 filter: Cilium merges it, listener priority decides per port.
    expect(() => e.apply([cnp('kafka-range', 'web', '[{ports: [{port: "80", endPort: 81, protocol: TCP}], rules: {kafka: [{topic: orders}]}}]')])).not.toThrow();
    // ANY is TCP, UDP and SCTP: DNS on ANY 80 names 80/TCP too.
    const dns = parseManifestFile(
      'apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: dns, namespace: prod}\nspec:\n  endpointSelector: {matchLabels: {app: web}}\n  egress:\n  - toPorts: [{ports: [{port: "80", protocol: ANY}], rules: {dns: [{matchPattern: "*"}]}}]\n  - toPorts: [{ports: [{port: "80", protocol: TCP}], rules: {http: [{}]}}]\n',
      'dns.yaml',
    )[0]!;
    expect(() => e.apply([{ type: 'upsertPolicy', policy: dns }])).toThrow(/egress 80\/TCP/);
  });
});
