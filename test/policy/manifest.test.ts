import { describe, expect, it } from 'vitest';
import { formatLabelKey } from '../../src/model/labels.js';
import { parseManifest, parseManifestFile } from '../../src/policy/manifest.js';

import { cnp, errorOf, np } from './helpers.js';

describe('manifest errors name the file, document and field path', () => {
  it('port out of range', () => {
    const text = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: ok, namespace: x}
spec: {endpointSelector: {}, ingress: [{}]}
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: bad, namespace: x}
spec:
  endpointSelector: {}
  ingress:
    - toPorts:
        - ports: [{port: "80", endPort: 70000}]
`;
    expect(errorOf(() => parseManifestFile(text, 'policies.yaml')).message).toBe('policies.yaml#2 spec.ingress[0].toPorts[0].ports[0].endPort: 70000 is above 65535');
  });
  it('unknown fields and enum values are errors', () => {
    expect(errorOf(() => parseManifest(np({ podSelector: {}, ingres: [] }), 'f#1')).message).toMatch(/^f#1 spec\.ingres: unknown field/);
    expect(errorOf(() => parseManifest(np({ podSelector: {}, policyTypes: ['Inbound'] }), 'f#1')).message).toBe('f#1 spec.policyTypes[0]: "Inbound" is not one of: Ingress, Egress');
    expect(errorOf(() => parseManifest(cnp({ endpointSelector: {}, ingress: [{ fromEntities: ['everything'] }] }), 'f#1')).fieldPath).toBe('spec.ingress[0].fromEntities[0]');
    expect(errorOf(() => parseManifest(np({ podSelector: { matchExpressions: [{ key: 'a', operator: 'Like', values: ['b'] }] } }), 'f#1')).fieldPath).toBe('spec.podSelector.matchExpressions[0].operator');
    expect(errorOf(() => parseManifest({ ...np({}), kind: 'NetPol' }, 'f#1')).fieldPath).toBe('kind');
  });
  it('rejects invalid selectors, CIDRs and port combinations', () => {
    expect(errorOf(() => parseManifest(np({ podSelector: { matchExpressions: [{ key: 'a', operator: 'In' }] } }), 'f')).detail).toMatch(/non-empty/);
    expect(errorOf(() => parseManifest(np({ podSelector: {}, ingress: [{ from: [{ ipBlock: { cidr: '10.0.0.0/8', except: ['11.0.0.0/16'] } }] }] }), 'f')).fieldPath).toBe('spec.ingress[0].from[0].ipBlock.except[0]');
    expect(errorOf(() => parseManifest(np({ podSelector: {}, ingress: [{ ports: [{ port: 'http', endPort: 90 }] }] }), 'f')).fieldPath).toBe('spec.ingress[0].ports[0].endPort');
    expect(errorOf(() => parseManifest(np({ podSelector: {}, ingress: [{ ports: [{ port: 90, endPort: 80 }] }] }), 'f')).detail).toBe('80 is below port 90');
    expect(errorOf(() => parseManifest(cnp({ endpointSelector: {}, ingress: [{ toPorts: [{ ports: [{ port: '53', protocol: 'UDP' }], rules: { dns: [{ matchName: 'a.com' }] } }] }] }), 'f')).detail).toMatch(/not allowed on ingress/);
    expect(errorOf(() => parseManifest(cnp({ endpointSelector: {}, egress: [{ toPorts: [{ ports: [{ port: '80' }], rules: { http: [{}] } }] }] }), 'f')).detail).toMatch(/only apply to TCP/);
    expect(errorOf(() => parseManifest(cnp({ endpointSelector: {}, egress: [{ toFQDNs: [{ matchName: 'a.com' }] }] }), 'f', { fqdn: false })).detail).toMatch(/not read here/);
  });
  it('validates L7 rules, naming the field', () => {
    const l7 = (rule: Record<string, unknown>) => errorOf(() => parseManifest(cnp({ endpointSelector: {}, ingress: [{ toPorts: [rule] }] }), 'f'));
    const bad = l7({ ports: [{ port: '80', protocol: 'TCP' }], rules: { http: [{ path: '/a(' }] } });
    expect(bad.fieldPath).toBe('spec.ingress[0].toPorts[0].rules.http[0].path');
    expect(bad.detail).toMatch(/invalid RE2 regular expression/);
    // L7 rules without ports: accepted (Cilium accepts them for HTTP), and they allow nothing.
    expect(parseManifest(cnp({ endpointSelector: {}, ingress: [{ toPorts: [{ rules: { http: [{ method: 'GET' }] } }] }] }), 'f').rules[0]!.ports).toEqual([]);
    expect(errorOf(() => parseManifest(cnp({ endpointSelector: {}, egress: [{ toPorts: [{ rules: { dns: [{ matchPattern: '*' }] } }] }] }), 'f')).detail).toMatch(/port \(53\) must be specified/);
    expect(l7({ ports: [{ port: '9092', protocol: 'TCP' }], rules: { kafka: [{ apiKey: 'produce', role: 'produce' }] } }).detail).toMatch(/mutually exclusive/);
    expect(l7({ ports: [{ port: '9092', protocol: 'TCP' }], rules: { kafka: [{ apiKey: 'publish' }] } }).fieldPath).toBe('spec.ingress[0].toPorts[0].rules.kafka[0].apiKey');
    expect(l7({ ports: [{ port: '9092', protocol: 'TCP' }], rules: { kafka: [{ apiVersion: 'v2' }] } }).fieldPath).toBe('spec.ingress[0].toPorts[0].rules.kafka[0].apiVersion');
    expect(l7({ ports: [{ port: '80', protocol: 'TCP' }], rules: { http: [{}], kafka: [{}] } }).detail).toMatch(/multiple L7 protocol rule types/);
    // A range of any width takes L7 rules (cilium#36966: "L7 Rules now support port ranges, except for DNS rules").
    for (const [port, endPort] of [['80', 90], ['1', 65535]] as const) {
      expect(() => parseManifest(cnp({ endpointSelector: {}, ingress: [{ toPorts: [{ ports: [{ port, endPort, protocol: 'TCP' }], rules: { http: [{}] } }] }] }), 'f')).not.toThrow();
    }
  });
  it('reports YAML syntax errors with the document number', () => {
    expect(errorOf(() => parseManifestFile('apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: a}\nspec: {endpointSelector: {}}\n---\nb: [1, 2\n', 'm.yaml')).source).toBe('m.yaml#2');
  });
});

describe('translation follows Kubernetes and Cilium', () => {
  it('NetworkPolicy: subject and pod-only peers are scoped to the namespace', () => {
    const p = parseManifest(np({ podSelector: { matchLabels: { app: 'a' } }, ingress: [{ from: [{ podSelector: {} }] }] }), 'f');
    const rule = p.rules[0]!;
    expect(rule.subject.key).toBe('k8s:app=a && k8s:io.kubernetes.pod.namespace=x');
    expect(rule.peers[0]!.kind === 'selector' && rule.peers[0]!.selector.key).toBe('k8s:io.kubernetes.pod.namespace=x');
  });
  it('NetworkPolicy: policyTypes default to Ingress, plus Egress when egress rules exist', () => {
    expect(parseManifest(np({ podSelector: {} }), 'f').enforcements.map((e) => e.direction)).toEqual(['ingress']);
    expect(parseManifest(np({ podSelector: {}, egress: [{}] }), 'f').enforcements.map((e) => e.direction)).toEqual(['ingress', 'egress']);
    expect(parseManifest(np({ podSelector: {}, egress: [] }), 'f').enforcements.map((e) => e.direction)).toEqual(['ingress']);
    const egressOnly = parseManifest(np({ podSelector: {}, policyTypes: ['Egress'], ingress: [{}] }), 'f');
    expect(egressOnly.rules).toHaveLength(0);
  });
  it('NetworkPolicy: namespaceSelector keys become namespace-label keys; empty means every namespace', () => {
    const p = parseManifest(np({ podSelector: {}, ingress: [{ from: [{ namespaceSelector: { matchLabels: { team: 'a' } }, podSelector: { matchLabels: { app: 'b' } } }, { namespaceSelector: {} }] }] }), 'f');
    const keys = p.rules[0]!.peers.map((peer) => (peer.kind === 'selector' ? peer.selector.requirements.map((r) => formatLabelKey(r.key)) : []));
    expect(keys).toEqual([['k8s:app', 'k8s:io.cilium.k8s.namespace.labels.team', 'k8s:io.kubernetes.pod.namespace'], ['k8s:io.kubernetes.pod.namespace']]);
  });
  it('Cilium: peers are namespace-scoped unless they name a namespace or namespace labels; clusterwide peers need a namespace', () => {
    const p = parseManifest(cnp({ endpointSelector: {}, ingress: [{ fromEndpoints: [{}, { matchLabels: { 'k8s:io.kubernetes.pod.namespace': 'y' } }, { matchLabels: { 'io.cilium.k8s.namespace.labels.team': 'b' } }, { matchLabels: { 'reserved:host': '' } }] }] }), 'f');
    expect(p.rules[0]!.peers.map((x) => (x.kind === 'selector' ? x.selector.key : ''))).toEqual([
      'k8s:io.kubernetes.pod.namespace=x',
      'k8s:io.kubernetes.pod.namespace=y',
      'any:io.cilium.k8s.namespace.labels.team=b',
      'reserved:host=',
    ]);
    const c = parseManifest({ apiVersion: 'cilium.io/v2', kind: 'CiliumClusterwideNetworkPolicy', metadata: { name: 'c' }, spec: { endpointSelector: {}, ingress: [{ fromEndpoints: [{}] }] } }, 'f');
    expect(c.rules[0]!.subject.key).toBe('<all>');
    expect(c.rules[0]!.peers[0]!.kind === 'selector' && c.rules[0]!.peers[0]!.selector.key).toBe('k8s:io.kubernetes.pod.namespace');
  });
  it('Cilium: default deny per direction with rules, deny-only included; enableDefaultDeny overrides', () => {
    const dirs = (spec: Record<string, unknown>) => parseManifest(cnp(spec), 'f').enforcements.map((e) => e.direction);
    expect(dirs({ endpointSelector: {}, ingressDeny: [{ fromEntities: ['world'] }] })).toEqual(['ingress']);
    // An empty list is no section, and a rule with none is refused (Cilium 1.19 Rule.Sanitize, finding 713).
    expect(() => dirs({ endpointSelector: {}, ingress: [] })).toThrow(/rule must have at least one of Ingress/);
    expect(dirs({ endpointSelector: {}, ingress: [], egress: [{}] })).toEqual(['egress']);
    expect(dirs({ endpointSelector: {}, ingress: [{}], egress: [{}], enableDefaultDeny: { egress: false } })).toEqual(['ingress']);
    expect(parseManifest(cnp({ endpointSelector: {}, ingress: [{}] }), 'f').rules[0]!.peers).toEqual([]);
  });
  it('Cilium: specs holds several rules', () => {
    const p = parseManifest({ apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name: 'm', namespace: 'x' }, specs: [{ endpointSelector: {}, ingress: [{}] }, { endpointSelector: {}, egress: [{}] }] }, 'f');
    expect(p.rules.map((r) => r.origin.path)).toEqual(['specs[0].ingress[0]', 'specs[1].egress[0]']);
  });
});
