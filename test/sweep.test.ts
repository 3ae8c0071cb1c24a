import { describe, expect, it } from 'vitest';
import { cli, expectCleanOutcome, tmpDir, tmpFile } from './cli-helpers.js';

/**
 * Every prototype property name, through every name-keyed input field: the CLI must run (verify:
 * engine and oracle agree) or refuse the input naming the file, never crash or disagree.
 */
const NAMES = [...new Set([...Object.getOwnPropertyNames(Object.prototype), '__proto__', 'prototype', 'constructor'])];

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
/** An object with one own key (a computed key: `__proto__` stays an own property). */
const own = (k: string, v: Json): { [k: string]: Json } => ({ [k]: v });

const cnp = (spec: Json, meta: Json = { name: 'p', namespace: 'x' }): Json => ({ apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: meta, spec });
const np = (spec: Json, meta: Json = { name: 'p', namespace: 'x' }): Json => ({ apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: meta, spec });
const l7 = (rules: Json): Json => cnp({ endpointSelector: {}, ingress: [{ toPorts: [{ ports: [{ port: '80', protocol: 'TCP' }], rules }] }] });

function scenario(o: { policies?: Json[]; pods?: Json[]; namespaces?: Json[]; probes?: Json[]; changes?: Json[]; expect?: Json[]; top?: { [k: string]: Json } }): Json {
  return {
    ...(o.namespaces ? { namespaces: o.namespaces } : {}),
    pods: o.pods ?? [{ name: 'x/a', labels: { app: 'a' }, ports: [{ name: 'http', port: 80 }] }, { name: 'x/b', labels: { app: 'b' }, ports: [{ name: 'http', port: 80 }] }],
    externals: [{ name: 'world', ip: '20.1.1.1' }],
    policies: o.policies ?? [],
    steps: [{ changes: o.changes ?? [], probes: o.probes ?? [{ port: 80 }, { port: 8, protocol: 'ICMP' }, { from: 'world', to: 'x/b', port: 80 }], expect: o.expect ?? [] }],
    ...(o.top ?? {}),
  };
}

/** Scenario fields keyed or valued by a user-given name. */
const SCENARIO_FIELDS: Record<string, (n: string) => Json> = {
  'pod label key': (n) => scenario({ pods: [{ name: 'x/a', labels: own(n, 'v') }, { name: 'x/b', labels: {} }], policies: [np({ podSelector: { matchLabels: own(n, 'v') }, ingress: [{}] })] }),
  'pod label value': (n) => scenario({ pods: [{ name: 'x/a', labels: { app: n } }, { name: 'x/b', labels: {} }], policies: [np({ podSelector: { matchLabels: { app: n } } })] }),
  'pod name': (n) => scenario({ pods: [{ name: `x/${n}`, labels: {} }, { name: 'x/b', labels: {} }] }),
  'pod namespace': (n) => scenario({ pods: [{ name: `${n}/a`, labels: {} }, { name: 'x/b', labels: {} }] }),
  'pod serviceAccount': (n) => scenario({ pods: [{ name: 'x/a', labels: {}, serviceAccount: n }, { name: 'x/b', labels: {} }] }),
  'pod port name': (n) => scenario({ pods: [{ name: 'x/a', labels: {}, ports: [{ name: n, port: 80 }] }, { name: 'x/b', labels: {} }], policies: [np({ podSelector: {}, ingress: [{ ports: [{ port: n }] }] })] }),
  'pod port protocol': (n) => scenario({ pods: [{ name: 'x/a', labels: {}, ports: [{ port: 80, protocol: n }] }, { name: 'x/b', labels: {} }] }),
  'namespace name': (n) => scenario({ namespaces: [{ name: n, labels: {} }] }),
  'namespace label key': (n) => scenario({ namespaces: [{ name: 'x', labels: own(n, 'v') }], policies: [np({ podSelector: {}, ingress: [{ from: [{ namespaceSelector: { matchLabels: own(n, 'v') } }] }] })] }),
  'namespace label value': (n) => scenario({ namespaces: [{ name: 'x', labels: { team: n } }], policies: [np({ podSelector: {}, ingress: [{ from: [{ namespaceSelector: { matchLabels: { team: n } } }] }] })] }),
  'matchLabels key': (n) => scenario({ policies: [np({ podSelector: { matchLabels: own(n, 'a') }, ingress: [{ from: [{ podSelector: { matchLabels: own(n, 'b') } }] }] })] }),
  'matchExpressions key': (n) => scenario({ policies: [np({ podSelector: { matchExpressions: [{ key: n, operator: 'In', values: ['a'] }] } })] }),
  'matchExpressions operator': (n) => scenario({ policies: [np({ podSelector: { matchExpressions: [{ key: 'app', operator: n, values: ['a'] }] } })] }),
  'matchExpressions value': (n) => scenario({ policies: [np({ podSelector: { matchExpressions: [{ key: 'app', operator: 'NotIn', values: [n] }] } })] }),
  'endpointSelector key': (n) => scenario({ policies: [cnp({ endpointSelector: { matchLabels: own(n, 'a') }, ingress: [{ fromEndpoints: [{ matchLabels: own(`k8s:${n}`, 'b') }] }] })] }),
  fromEntities: (n) => scenario({ policies: [cnp({ endpointSelector: {}, ingress: [{ fromEntities: [n] }] })] }),
  toEntities: (n) => scenario({ policies: [cnp({ endpointSelector: {}, egress: [{ toEntities: [n] }] })] }),
  fromRequires: (n) => scenario({ policies: [cnp({ endpointSelector: {}, ingress: [{ fromRequires: [{ matchLabels: own(n, 'v') }] }] })] }),
  'icmp type': (n) => scenario({ policies: [cnp({ endpointSelector: {}, ingress: [{ icmps: [{ fields: [{ type: n, family: 'IPv4' }] }] }] })] }),
  'icmp family': (n) => scenario({ policies: [cnp({ endpointSelector: {}, ingress: [{ icmps: [{ fields: [{ type: 8, family: n }] }] }] })] }),
  'kafka rule apiKey': (n) => scenario({ policies: [l7({ kafka: [{ apiKey: n }] })], probes: [{ port: 80, kafka: { apiKey: 'produce' } }] }),
  'kafka rule role': (n) => scenario({ policies: [l7({ kafka: [{ role: n }] })], probes: [{ port: 80, kafka: { role: 'produce' } }] }),
  'kafka rule topic': (n) => scenario({ policies: [l7({ kafka: [{ topic: n }] })], probes: [{ port: 80, kafka: { apiKey: 'produce', topic: n } }] }),
  'kafka probe apiKey': (n) => scenario({ policies: [l7({ kafka: [{ role: 'produce' }] })], probes: [{ port: 80, kafka: { apiKey: n } }] }),
  'kafka probe role': (n) => scenario({ policies: [l7({ kafka: [{ role: 'produce' }] })], probes: [{ port: 80, kafka: { role: n } }] }),
  'http rule method': (n) => scenario({ policies: [l7({ http: [{ method: n }] })], probes: [{ port: 80, http: { method: n } }] }),
  'http rule header': (n) => scenario({ policies: [l7({ http: [{ headers: [`${n}: v`] }] })], probes: [{ port: 80, http: { headers: own(n, 'v') } }] }),
  'http rule headerMatches': (n) => scenario({ policies: [l7({ http: [{ headerMatches: [{ name: n, value: 'v' }] }] })], probes: [{ port: 80, http: { headers: own(n, 'v') } }] }),
  'http probe method': (n) => scenario({ policies: [l7({ http: [{ method: 'GET' }] })], probes: [{ port: 80, http: { method: n } }] }),
  'http probe header (map)': (n) => scenario({ policies: [l7({ http: [{ headers: ['X-A: v'] }] })], probes: [{ port: 80, http: { headers: own(n, 'v') } }] }),
  'http probe header (list)': (n) => scenario({ policies: [l7({ http: [{ headers: ['X-A: v'] }] })], probes: [{ port: 80, http: { headers: [`${n}: v`] } }] }),
  'dns rule matchName': (n) => scenario({ policies: [cnp({ endpointSelector: {}, egress: [{ toPorts: [{ ports: [{ port: '53', protocol: 'UDP' }], rules: { dns: [{ matchName: n }] } }] }] })], probes: [{ port: 53, protocol: 'UDP', dns: { name: n } }] }),
  'dns rule matchPattern': (n) => scenario({ policies: [cnp({ endpointSelector: {}, egress: [{ toPorts: [{ ports: [{ port: '53', protocol: 'UDP' }], rules: { dns: [{ matchPattern: n }] } }] }] })] }),
  'l7 rules key': (n) => scenario({ policies: [l7(own(n, []))] }),
  'l7 proto': (n) => scenario({ policies: [l7({ l7proto: n, l7: [{ a: 'b' }] })] }),
  kind: (n) => scenario({ policies: [{ apiVersion: 'cilium.io/v2', kind: n, metadata: { name: 'p', namespace: 'x' }, spec: { endpointSelector: {}, ingress: [{}] } }] }),
  apiVersion: (n) => scenario({ policies: [{ apiVersion: n, kind: 'NetworkPolicy', metadata: { name: 'p', namespace: 'x' }, spec: { podSelector: {} } }] }),
  'metadata name': (n) => scenario({ policies: [np({ podSelector: {} }, { name: n, namespace: 'x' })] }),
  'metadata namespace': (n) => scenario({ policies: [np({ podSelector: {} }, { name: 'p', namespace: n })] }),
  policyTypes: (n) => scenario({ policies: [np({ podSelector: {}, policyTypes: [n] })] }),
  'policy port protocol': (n) => scenario({ policies: [np({ podSelector: {}, ingress: [{ ports: [{ port: 80, protocol: n }] }] })] }),
  'cilium port protocol': (n) => scenario({ policies: [cnp({ endpointSelector: {}, ingress: [{ toPorts: [{ ports: [{ port: '80', protocol: n }] }] }] })] }),
  'cilium named port': (n) => scenario({ policies: [cnp({ endpointSelector: {}, ingress: [{ toPorts: [{ ports: [{ port: n }] }] }] })] }),
  'spec field': (n) => scenario({ policies: [np({ podSelector: {}, ...own(n, []) })] }),
  'rule field': (n) => scenario({ policies: [cnp({ endpointSelector: {}, ingress: [own(n, [])] })] }),
  'change op': (n) => scenario({ changes: [own(n, { name: 'x' })] }),
  'delete kind': (n) => scenario({ policies: [np({ podSelector: {} })], changes: [{ delete: { kind: n, name: 'p', namespace: 'x' } }] }),
  'delete name': (n) => scenario({ policies: [np({ podSelector: {} }, { name: n, namespace: 'x' })], changes: [{ delete: { kind: 'NetworkPolicy', name: n, namespace: 'x' } }] }),
  'deletePod key': (n) => scenario({ changes: [{ deletePod: `x/${n}` }] }),
  'setPodLabels key': (n) => scenario({ changes: [{ setPodLabels: { pod: 'x/a', labels: own(n, 'v') } }] }),
  'deleteNamespace name': (n) => scenario({ changes: [{ deleteNamespace: n }], probes: [{ port: 80 }] }),
  'setNamespaceLabels name': (n) => scenario({ changes: [{ setNamespaceLabels: { namespace: n, labels: {} } }] }),
  'addExternal name': (n) => scenario({ changes: [{ addExternal: { name: n, ip: '20.2.2.2' } }] }),
  'probe field': (n) => scenario({ probes: [{ port: 80, ...own(n, 1) }] }),
  'probe from': (n) => scenario({ probes: [{ from: n, port: 80 }] }),
  'probe to': (n) => scenario({ probes: [{ to: n, port: 80 }] }),
  'probe protocol': (n) => scenario({ probes: [{ port: 80, protocol: n }] }),
  'expect pair': (n) => scenario({ expect: [{ probe: 0, deny: [`${n}->x/b`] }] }),
  'expect field': (n) => scenario({ expect: [own(n, 0)] }),
  'scenario field': (n) => scenario({ top: own(n, []) }),
  'step field': (n) => ({ pods: [{ name: 'x/a' }], steps: [own(n, [])] }),
};

const header = JSON.stringify({ distillTrace: 1, profile: 'sweep' });
const pod = (name: string, labels: Json = {}): Json => ({ type: 'upsertPod', pod: { namespace: 'x', name, labels, ip: '10.0.0.1' }, local: true });
/** Trace fields keyed or valued by a user-given name (lines after the header). */
const TRACE_FIELDS: Record<string, (n: string) => Json[]> = {
  type: (n) => [{ type: n, name: 'x' }],
  tag: (n) => [pod('a'), { type: 'phase', name: 'churn' }, { ...(pod('b') as object), tag: n }],
  'event field': (n) => [{ type: 'upsertNamespace', name: 'x', labels: {}, ...own(n, 1) }],
  'header field': () => [],
  'namespace label key': (n) => [{ type: 'upsertNamespace', name: 'x', labels: own(n, 'v') }],
  'pod label key': (n) => [pod('a', own(n, 'v'))],
  'pod label value': (n) => [pod('a', { app: n })],
  'pod name': (n) => [pod(n)],
  'pod port name': (n) => [{ type: 'upsertPod', pod: { namespace: 'x', name: 'a', labels: {}, ip: '10.0.0.1', ports: [{ name: n, port: 80 }] } }],
  'deletePod name': (n) => [pod('a'), { type: 'deletePod', namespace: 'x', name: n }],
  'deleteNamespace name': (n) => [{ type: 'deleteNamespace', name: n }],
  'phase name': (n) => [{ type: 'phase', name: n }, pod('a')],
  'deletePolicy kind': (n) => [{ type: 'deletePolicy', ref: { kind: n, namespace: 'x', name: 'p' } }],
  'deletePolicy name': (n): Json[] => [{ type: 'upsertPolicy', manifest: np({ podSelector: {} }) }, { type: 'deletePolicy', ref: { kind: 'NetworkPolicy', namespace: 'x', name: n } }],
  'manifest label key': (n) => [pod('a'), { type: 'upsertPolicy', manifest: np({ podSelector: { matchLabels: own(n, 'v') } }) }],
  'manifest kind': (n) => [{ type: 'upsertPolicy', manifest: { apiVersion: 'cilium.io/v2', kind: n, metadata: { name: 'p', namespace: 'x' }, spec: {} } }],
};

/** An ordinary value per field (its template must then run with exit 0); the rest name fields. */
const ORDINARY: Record<string, string> = {
  kind: 'CiliumNetworkPolicy', apiVersion: 'networking.k8s.io/v1', 'icmp type': 'EchoRequest', 'icmp family': 'IPv6',
  'kafka rule apiKey': 'produce', 'kafka rule role': 'produce', 'kafka probe apiKey': 'produce', 'kafka probe role': 'consume',
  'matchExpressions operator': 'In', fromEntities: 'world', toEntities: 'cluster', policyTypes: 'Egress',
  'pod port protocol': 'UDP', 'policy port protocol': 'SCTP', 'cilium port protocol': 'ANY', 'probe protocol': 'udp',
  'http rule method': 'POST', 'http probe method': 'PUT', 'l7 proto': 'x', 'delete kind': 'NetworkPolicy', 'namespace name': 'x',
  'deleteNamespace name': 'x', 'setNamespaceLabels name': 'x', 'probe from': 'x/a', 'probe to': 'x/b', 'expect pair': 'x/a', 'pod namespace': 'y',
  'deletePod key': 'a', 'metadata namespace': 'x',
};
/** Fields named by the field itself, or not supported by distill: no ordinary value runs. */
const NAME_FIELDS = new Set(['fromRequires', 'l7 proto', 'spec field', 'rule field', 'change op', 'probe field', 'expect field', 'scenario field', 'step field', 'l7 rules key']);

describe('prototype property names in every name-keyed field', () => {
  const dir = tmpDir();
  it('each scenario template runs (exit 0) with an ordinary value, so the sweep reaches the field', () => {
    const failed: string[] = [];
    for (const [field, make] of Object.entries(SCENARIO_FIELDS)) {
      if (NAME_FIELDS.has(field)) continue;
      const file = tmpFile('ok.yaml', JSON.stringify(make(ORDINARY[field] ?? 'ok')), dir);
      const r = cli('verify', '--scenario', file);
      if (r.code !== 0) failed.push(`${field}: ${r.err}`);
    }
    expect(failed).toEqual([]);
  });
  for (const [field, make] of Object.entries(SCENARIO_FIELDS)) {
    it(`scenario: ${field}`, () => {
      for (const n of NAMES) {
        const file = tmpFile('s.yaml', JSON.stringify(make(n)), dir);
        const r = cli('verify', '--scenario', file);
        expect(r.code === 0 || r.code === 2, `${field} = ${n}: exit ${r.code}\n${r.err}`).toBe(true);
        expectCleanOutcome(r, file);
      }
    });
  }
  it('manifests (validate): every policy-shaped field above', () => {
    let checked = 0;
    for (const make of Object.values(SCENARIO_FIELDS)) {
      for (const n of NAMES) {
        const policies = (make(n) as { policies?: Json[] }).policies ?? [];
        if (policies.length === 0) continue;
        const file = tmpFile('m.yaml', policies.map((p) => JSON.stringify(p)).join('\n---\n'), dir);
        expectCleanOutcome(cli('validate', file), file);
        checked++;
      }
    }
    expect(checked).toBeGreaterThan(30 * NAMES.length);
  });
  for (const [field, make] of Object.entries(TRACE_FIELDS)) {
    it(`trace: ${field}`, () => {
      for (const n of NAMES) {
        const head = field === 'header field' ? JSON.stringify({ distillTrace: 1, ...own(n, 1) }) : header;
        const file = tmpFile('t.jsonl', [head, ...make(n).map((l) => JSON.stringify(l))].join('\n') + '\n', dir);
        const r = cli('replay', file, '--verify-every', '1');
        expectCleanOutcome(r, file);
      }
    });
  }
});
