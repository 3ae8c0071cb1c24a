import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseManifest, parseManifestFile } from '../../src/policy/manifest.js';

import { cnp, errorOf, np } from './helpers.js';
const ingressPorts = (ports: unknown[]) => cnp({ endpointSelector: {}, ingress: [{ toPorts: [{ ports }] }] });

describe('CNP port entries (issue 12 item 3)', () => {
  it('a port entry needs port; "0" means every port', () => {
    const e = errorOf(() => parseManifest(ingressPorts([{ protocol: 'TCP' }]), 'f'));
    expect([e.fieldPath, e.detail]).toEqual(['spec.ingress[0].toPorts[0].ports[0].port', expect.stringMatching(/is required/)]);
    expect(errorOf(() => parseManifest(ingressPorts([{ port: '', protocol: 'TCP' }]), 'f')).fieldPath).toBe('spec.ingress[0].toPorts[0].ports[0].port');
    expect(parseManifest(ingressPorts([{ port: '0', protocol: 'UDP' }]), 'f').rules[0]!.ports[0]!.l4).toEqual({ kind: 'range', protocol: 'UDP', from: 0, to: 0 });
  });
  it('protocols are the CRD enum, case-sensitive, without ICMP', () => {
    for (const bad of ['tcp', 'Udp', 'ICMP', 'ICMPv6', 'any', '']) {
      const e = errorOf(() => parseManifest(ingressPorts([{ port: '80', protocol: bad }]), 'f'));
      expect([e.fieldPath, e.detail]).toEqual(['spec.ingress[0].toPorts[0].ports[0].protocol', expect.stringMatching(/is not one of: TCP, UDP, SCTP, ANY/)]);
    }
    expect(parseManifest(ingressPorts([{ port: '80' }]), 'f').rules[0]!.ports[0]!.l4).toMatchObject({ protocol: 'ANY' });
  });
  it('NetworkPolicy protocols are case-sensitive too', () => {
    const e = errorOf(() => parseManifest(np({ podSelector: {}, ingress: [{ ports: [{ port: 80, protocol: 'tcp' }] }] }), 'f'));
    expect(e.fieldPath).toBe('spec.ingress[0].ports[0].protocol');
  });
  it('endPort below port is the single port (PortRangeToMaskedPorts); endPort on a named port stays refused', () => {
    expect(parseManifest(ingressPorts([{ port: '90', endPort: 80, protocol: 'TCP' }]), 'f').rules[0]!.ports[0]!.l4).toEqual({ kind: 'range', protocol: 'TCP', from: 90, to: 90 });
    expect(errorOf(() => parseManifest(ingressPorts([{ port: 'http', endPort: 90, protocol: 'TCP' }]), 'f')).detail).toMatch(/named port/);
  });
});

describe('empty toPorts and empty L7 lists (items 2 and 7)', () => {
  it('ports: [] or toPorts: [{}] give no port clause and no wildcard peer, but still isolate', () => {
    const a = parseManifest(cnp({ endpointSelector: {}, ingress: [{ fromEndpoints: [{}], toPorts: [{ ports: [] }] }] }), 'f');
    expect(a.rules[0]!.ports).toEqual([]);
    expect(a.enforcements.map((e) => e.direction)).toEqual(['ingress']);
    const b = parseManifest(cnp({ endpointSelector: {}, egress: [{ toPorts: [{}] }] }), 'f');
    expect(b.rules[0]!.ports).toEqual([]);
    expect(b.rules[0]!.peers).toEqual([]);
  });
  it('rules: {http: []} and rules: {kafka: []} carry no L7; http: [{}] does; rules: {} is refused (the CRD oneOf, finding 1660)', () => {
    const l7 = (rules: unknown) => parseManifest(cnp({ endpointSelector: {}, ingress: [{ toPorts: [{ ports: [{ port: '80', protocol: 'TCP' }], rules }] }] }), 'f').rules[0]!.ports[0]!.l7;
    expect(l7({ http: [] })).toBeUndefined();
    expect(l7({ kafka: [] })).toBeUndefined();
    expect(() => l7({})).toThrow(/sets none of http, kafka, dns, l7proto.*not supported by distill/);
    expect(() => l7({ http: [], kafka: [] })).toThrow(/multiple L7 protocol rule types in one rule \(http, kafka\)/);
    expect(l7({ http: [{}] })).toEqual({ parser: 'http', http: [{}] });
  });
});

describe('peers (items 4 and 8, issue 21 item 2)', () => {
  it('several peer kinds in one rule are refused, naming the rule and both fields', () => {
    const e = errorOf(() => parseManifest(cnp({ endpointSelector: {}, egress: [{ toEndpoints: [{}], toCIDR: ['10.0.0.0/8'] }] }), 'f'));
    expect([e.fieldPath, e.detail]).toEqual(['spec.egress[0]', expect.stringMatching(/combining toEndpoints and toCIDR is not supported/)]);
    const d = errorOf(() => parseManifest(cnp({ endpointSelector: {}, ingressDeny: [{ fromEntities: ['world'], fromCIDRSet: [{ cidr: '10.0.0.0/8' }] }] }), 'f'));
    expect([d.fieldPath, d.detail]).toEqual(['spec.ingressDeny[0]', expect.stringMatching(/combining fromCIDRSet and fromEntities/)]);
    // An empty list does not count, as in Cilium (len > 0).
    expect(() => parseManifest(cnp({ endpointSelector: {}, ingress: [{ fromEndpoints: [], fromCIDR: ['10.0.0.0/8'] }] }), 'f')).not.toThrow();
  });
  it('fromEntities: [none] is accepted and selects nothing', () => {
    const p = parseManifest(cnp({ endpointSelector: {}, ingress: [{ fromEntities: ['none'] }] }), 'f');
    expect(p.rules[0]!.peers).toEqual([]);
    expect(p.enforcements).toHaveLength(1);
  });
  it('a namespace selector with only negative terms gets a pod-only requirement', () => {
    const peerKey = (m: Record<string, unknown>) => {
      const peer = parseManifest(m, 'f').rules[0]!.peers[0]!;
      return peer.kind === 'selector' ? peer.selector.key : '';
    };
    expect(peerKey(np({ podSelector: {}, ingress: [{ from: [{ namespaceSelector: { matchExpressions: [{ key: 'team', operator: 'NotIn', values: ['a'] }] } }] }] }))).toBe(
      'k8s:io.cilium.k8s.namespace.labels.team notin (a) && k8s:io.kubernetes.pod.namespace',
    );
    expect(peerKey(cnp({ endpointSelector: {}, ingress: [{ fromEndpoints: [{ matchExpressions: [{ key: 'io.kubernetes.pod.namespace', operator: 'NotIn', values: ['y'] }] }] }] }))).toBe(
      'any:io.kubernetes.pod.namespace notin (y) && k8s:io.kubernetes.pod.namespace',
    );
    // A positive namespace term already selects pods only.
    expect(peerKey(cnp({ endpointSelector: {}, ingress: [{ fromEndpoints: [{ matchLabels: { 'io.kubernetes.pod.namespace': 'y' } }] }] }))).toBe('any:io.kubernetes.pod.namespace=y');
  });
});

describe('CNP endpointSelector naming another namespace (item 5)', () => {
  it('the k8s: namespace match is replaced by the policy namespace, with a warning', () => {
    const p = parseManifest(cnp({ endpointSelector: { matchLabels: { app: 'b', 'k8s:io.kubernetes.pod.namespace': 'y' } }, ingress: [{}] }), 'f#1');
    expect(p.rules[0]!.subject.key).toBe('any:app=b && k8s:io.kubernetes.pod.namespace=x');
    expect(p.warnings).toEqual([{ source: 'f#1', path: 'spec.endpointSelector.matchLabels["k8s:io.kubernetes.pod.namespace"]', detail: expect.stringMatching(/names namespace "y"; Cilium replaces it/) }]);
  });
  it('its own namespace gives no warning; other namespace requirements are kept and warned about', () => {
    expect(parseManifest(cnp({ endpointSelector: { matchLabels: { 'k8s:io.kubernetes.pod.namespace': 'x' } }, ingress: [{}] }), 'f').warnings).toEqual([]);
    const p = parseManifest(cnp({ endpointSelector: { matchLabels: { 'io.kubernetes.pod.namespace': 'y' } }, ingress: [{}] }), 'f');
    expect(p.rules[0]!.subject.key).toBe('any:io.kubernetes.pod.namespace=y && k8s:io.kubernetes.pod.namespace=x');
    expect(p.warnings?.map((w) => w.detail)).toEqual([expect.stringMatching(/selects no endpoint/)]);
  });
});

describe('enableDefaultDeny (item 6)', () => {
  it('isolates only directions the rule has rules for', () => {
    const dirs = (spec: Record<string, unknown>) => parseManifest(cnp(spec), 'f').enforcements.map((e) => e.direction);
    expect(dirs({ endpointSelector: {}, enableDefaultDeny: { ingress: true }, egress: [{ toEntities: ['world'] }] })).toEqual(['egress']);
    // enableDefaultDeny is no rule section: Cilium 1.19 Rule.Sanitize refuses a rule with none (finding 713).
    expect(() => dirs({ endpointSelector: {}, enableDefaultDeny: { ingress: true, egress: true } })).toThrow(/rule must have at least one of Ingress/);
    expect(dirs({ endpointSelector: {}, enableDefaultDeny: { ingress: true, egress: true }, egressDeny: [{ toEntities: ['world'] }] })).toEqual(['egress']);
    expect(dirs({ endpointSelector: {}, enableDefaultDeny: { ingress: false }, ingress: [{}] })).toEqual([]);
  });
});

describe('kind: List (item 8)', () => {
  const list = `apiVersion: v1
kind: List
items:
- apiVersion: networking.k8s.io/v1
  kind: NetworkPolicy
  metadata: {name: a, namespace: x}
  spec: {podSelector: {}}
- apiVersion: cilium.io/v2
  kind: CiliumNetworkPolicy
  metadata: {name: b, namespace: x}
  spec: {endpointSelector: {}, ingress: [{}]}
`;
  it('reads every item of a List, and of a typed list', () => {
    expect(parseManifestFile(list, 'l.yaml').map((p) => p.ref.name)).toEqual(['a', 'b']);
    const typed = 'apiVersion: networking.k8s.io/v1\nkind: NetworkPolicyList\nitems:\n- {apiVersion: networking.k8s.io/v1, kind: NetworkPolicy, metadata: {name: c, namespace: x}, spec: {podSelector: {}}}\n';
    expect(parseManifestFile(typed, 'l.yaml').map((p) => p.ref.name)).toEqual(['c']);
  });
  it('names an item in errors', () => {
    const e = errorOf(() => parseManifestFile(list.replace('ingress: [{}]', 'ingress: [{bogus: 1}]'), 'l.yaml'));
    expect([e.source, e.fieldPath]).toEqual(['l.yaml#1.items[1]', 'spec.ingress[0].bogus']);
    expect(errorOf(() => parseManifestFile(list.replace('apiVersion: v1', 'apiVersion: v2'), 'l.yaml')).fieldPath).toBe('apiVersion');
    expect(errorOf(() => parseManifest({ apiVersion: 'v1', kind: 'List', items: [] }, 'f')).detail).toMatch(/a List is read only from a manifest file/);
  });
});

describe('distill validate prints warnings', () => {
  it('on stderr as "warning: <source> <path>: <detail>", exit 0', () => {
    const dir = mkdtempSync(join(tmpdir(), 'distill-'));
    const f = join(dir, 'w.yaml');
    writeFileSync(f, 'apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: w, namespace: x}\nspec:\n  endpointSelector: {matchLabels: {"k8s:io.kubernetes.pod.namespace": "y"}}\n  ingress: [{}]\n');
    const r = spawnSync(process.execPath, [join(process.cwd(), 'dist/cli/main.js'), 'validate', f], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    expect(r.stderr).toContain(`warning: ${f}#1 spec.endpointSelector.matchLabels["k8s:io.kubernetes.pod.namespace"]: names namespace "y"`);
  });
});
