import { describe, expect, it } from 'vitest';
import { parseManifest } from '../src/policy/manifest.js';

/*
 * Round 23p (docs/attack-findings-23p.md): the Cilium manifest reader against Cilium 1.19's sanitizers
 * (devodev/cilium 2ba24a2a, the v1.19 branch point: pkg/policy/api/rule_validation.go, l4.go).
 */

type Obj = Record<string, unknown>;
const server = { matchLabels: { app: 'server' } };
const cnp = (spec: Obj): Obj => ({ apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name: 'p', namespace: 'x' }, spec: { endpointSelector: server, ...spec } });
const group = { aws: { securityGroupsIds: ['sg-1'] } };
const service = { k8sService: { serviceName: 'db', namespace: 'x' } };

describe('1765. two peer kinds in one rule, one of them toGroups/fromGroups/toServices, were "not supported"; Cilium refuses the object', () => {
  // rule_validation.go IngressCommonRule.sanitize / EgressCommonRule.sanitize: l3Members counts FromGroups, ToGroups and
  // ToServices with the other peer kinds, two non-empty ones fail Rule.Sanitize and cnp_types.go Parse drops the object.
  // On 94c6f52 the unread field failed first ("not supported by distill"), so the agent enforced a stand-in keeping the
  // object's other allow rules, which Cilium never enforces.
  it('refuses toEndpoints with toGroups, and with toServices', () => {
    expect(() => parseManifest(cnp({ egress: [{ toEndpoints: [{}], toGroups: [group] }] }), 'f')).toThrow(/combining toEndpoints and toGroups is not supported \(Cilium refuses it/);
    expect(() => parseManifest(cnp({ egress: [{ toEndpoints: [{}], toServices: [service] }] }), 'f')).toThrow(/combining toEndpoints and toServices is not supported \(Cilium refuses it/);
  });
  it('refuses toFQDNs with toServices, and a deny rule combining fromEntities and fromGroups', () => {
    expect(() => parseManifest(cnp({ egress: [{ toFQDNs: [{ matchName: 'a.example' }], toServices: [service] }] }), 'f')).toThrow(/combining toFQDNs and toServices/);
    expect(() => parseManifest(cnp({ ingressDeny: [{ fromEntities: ['world'], fromGroups: [group] }] }), 'f')).toThrow(/combining fromEntities and fromGroups/);
  });
  it('keeps one unread peer kind alone, or beside an empty list, "not supported" (control)', () => {
    expect(() => parseManifest(cnp({ egress: [{ toGroups: [group] }] }), 'f')).toThrow(/toGroups: is not supported by distill/);
    expect(() => parseManifest(cnp({ egress: [{ toEndpoints: [], toServices: [service] }] }), 'f')).toThrow(/toServices: is not supported by distill/);
  });
});

describe('1766. a port rule whose L7 lists are all empty counted as L7 rules in the listener, serverNames and L7-proxy checks', () => {
  // pkg/policy/api/l4.go: `L7Rules.IsEmpty` is `Len() == 0`, the lengths of HTTP, Kafka, DNS and L7 (cilium ca801ee2,
  // 1.12); rule_validation.go guards each check with `!pr.Rules.IsEmpty()`, and countL7Rules skips empty rules. On
  // 94c6f52 distill refused these policies as invalid, so the agent skipped objects Cilium enforces.
  const port443 = (extra: Obj): Obj => cnp({ egress: [{ toEntities: ['world'], toPorts: [{ ports: [{ port: '443', protocol: 'TCP' }], ...extra }] }] });
  it('reads http: [] as a plain allow when the L7 proxy is disabled', () => {
    const p = parseManifest(port443({ rules: { http: [] } }), 'f', { l7Proxy: false });
    expect(p.rules[0]!.ports).toEqual([{ l4: { kind: 'range', protocol: 'TCP', from: 443, to: 443 } }]);
  });
  it('a lone l7proto with the L7 proxy disabled is "not supported" (Len does not count it), not invalid', () => {
    expect(() => parseManifest(port443({ rules: { l7proto: 'r2d2' } }), 'f', { l7Proxy: false })).toThrow(/l7proto: is not supported by distill/);
  });
  it('serverNames beside http: [] without terminatingTLS, and a listener beside kafka: [], are "not supported", not invalid', () => {
    expect(() => parseManifest(port443({ serverNames: ['a.example'], rules: { http: [] } }), 'f')).toThrow(/serverNames: is not supported by distill/);
    expect(() => parseManifest(port443({ listener: { name: 'l', envoyConfig: { kind: 'CiliumEnvoyConfig', name: 'c' } }, rules: { kafka: [] } }), 'f')).toThrow(/listener: is not supported by distill/);
  });
  it('still refuses them beside a non-empty L7 list (control)', () => {
    expect(() => parseManifest(port443({ rules: { http: [{}] } }), 'f', { l7Proxy: false })).toThrow(/L7 proxy is not enabled/);
    expect(() => parseManifest(port443({ serverNames: ['a.example'], rules: { http: [{}] } }), 'f')).toThrow(/ServerNames are not allowed with L7 rules/);
  });
});

describe('1767. a field distill does not read hid an invalid field after it in the same rule', () => {
  // The reader threw at the first unread field ("not supported by distill"), so the agent enforced a stand-in for
  // an object Cilium 1.19 refuses whole (rule_validation.go: IngressRule.sanitize, PortRule.sanitize), keeping its
  // other allow rules. Now such a field is recorded (Reader.unsupported) and thrown only when the rest reads.
  const udp53Http = { toPorts: [{ ports: [{ port: '53', protocol: 'UDP' }], rules: { http: [{}] } }] };
  it('refuses authentication beside HTTP rules on UDP as invalid (PortRule.sanitize: "L7 rules can only apply to TCP")', () => {
    expect(() => parseManifest(cnp({ ingress: [{ fromEndpoints: [{}], authentication: { mode: 'required' }, ...udp53Http }] }), 'f')).toThrow(/L7 rules can only apply to TCP \(not UDP\)/);
  });
  it('refuses terminatingTLS beside HTTP rules on UDP, and toGroups beside icmps and toPorts, as invalid', () => {
    const tls = { toPorts: [{ ...udp53Http.toPorts[0], terminatingTLS: { secret: { name: 's' } } }] };
    expect(() => parseManifest(cnp({ egress: [{ toEntities: ['world'], ...tls }] }), 'f')).toThrow(/L7 rules can only apply to TCP \(not UDP\)/);
    const groups = { toGroups: [group], toPorts: [{ ports: [{ port: '80', protocol: 'TCP' }] }], icmps: [{ fields: [{ type: 8 }] }] };
    expect(() => parseManifest(cnp({ egress: [groups] }), 'f')).toThrow(/icmps: may only be present without toPorts/);
  });
  it('refuses a cidrGroupRef rule, and a named port with endPort, beside HTTP rules on UDP as invalid', () => {
    expect(() => parseManifest(cnp({ egress: [{ toCIDRSet: [{ cidrGroupRef: 'g' }], ...udp53Http }] }), 'f')).toThrow(/L7 rules can only apply to TCP \(not UDP\)/);
    const named = { toPorts: [{ ports: [{ port: 'dns', endPort: 90, protocol: 'UDP' }], rules: { http: [{}] } }] };
    expect(() => parseManifest(cnp({ ingress: [{ fromEndpoints: [{}], ...named }] }), 'f')).toThrow(/L7 rules can only apply to TCP \(not UDP\)/);
  });
  it('refuses a generic l7 list on a UDP port as invalid; on TCP it stays "not supported"', () => {
    const l7 = (protocol: string): Obj => cnp({ ingress: [{ fromEndpoints: [{}], toPorts: [{ ports: [{ port: '80', protocol }], rules: { l7proto: 'r2d2', l7: [{ cmd: 'READ' }] } }] }] });
    expect(() => parseManifest(l7('UDP'), 'f')).toThrow(/L7 rules can only apply to TCP \(not UDP\)/);
    expect(() => parseManifest(l7('TCP'), 'f')).toThrow(/l7proto: is not supported by distill/);
  });
  it('refuses cidr beside cidrGroupRef as invalid (CIDRRule.sanitize: "more than one of cidr, cidrGroupRef, or cidrGroupSelector")', () => {
    expect(() => parseManifest(cnp({ egress: [{ toCIDRSet: [{ cidr: '10.0.0.0/8', cidrGroupRef: 'g' }] }] }), 'f')).toThrow(/more than one of cidr, cidrGroupRef, or cidrGroupSelector may not be set/);
  });
  it('still reports the first unread field when the rest reads (control)', () => {
    const both = { fromEndpoints: [{}], authentication: { mode: 'required' }, toPorts: [{ ports: [{ port: '80', protocol: 'TCP' }], rules: { l7proto: 'r2d2' } }] };
    expect(() => parseManifest(cnp({ ingress: [both] }), 'f')).toThrow(/spec\.ingress\[0\]\.authentication: is not supported by distill/);
    expect(() => parseManifest(cnp({ egress: [{ toCIDRSet: [{ cidrGroupRef: 'g' }] }] }), 'f')).toThrow(/cidrGroupRef: is not supported by distill/);
  });
});

describe('1768. "not supported" selector keys still hid an invalid field after them (the lead\'s review of 1767)', () => {
  // Same class as 1767: a `cidr:`/`cidrgroup:` key in an endpoint selector, a node selector's cluster, reserved or non-node key
  // were thrown at once as "not supported by distill", so a later field Cilium refuses
  // (L7 on UDP, two peer kinds in one rule) was never read and the agent enforced a stand-in keeping the object's
  // other allow rules. Cilium refuses the object whole (rule_validation.go IngressRule.sanitize, PortRule.sanitize).
  const udpHttp = { toPorts: [{ ports: [{ port: '53', protocol: 'UDP' }], rules: { http: [{}] } }] };
  it('a cidr: key in fromEndpoints beside HTTP rules on UDP is refused as invalid', () => {
    expect(() => parseManifest(cnp({ ingress: [{ fromEndpoints: [{ matchLabels: { 'cidr:10.0.0.0/8': '' } }], ...udpHttp }] }), 'f')).toThrow(/L7 rules can only apply to TCP/);
  });
  it('a cidrgroup: key in fromEndpoints beside fromCIDR is refused as two peer kinds', () => {
    expect(() => parseManifest(cnp({ ingress: [{ fromEndpoints: [{ matchLabels: { 'cidrgroup:g': '' } }], fromCIDR: ['10.0.0.0/8'] }] }), 'f')).toThrow(/combining fromEndpoints and fromCIDR/);
  });
  it('a node selector\'s k8s: key beside HTTP rules on UDP is refused as invalid', () => {
    const spec = { ingress: [{ fromNodes: [{ matchLabels: { 'k8s:pool': 'a' } }], ...udpHttp }] };
    expect(() => parseManifest(cnp(spec), 'f', { nodeSelectorLabels: true })).toThrow(/L7 rules can only apply to TCP/);
  });
  it('each alone is still "not supported" (control)', () => {
    expect(() => parseManifest(cnp({ ingress: [{ fromEndpoints: [{ matchLabels: { 'cidr:10.0.0.0/8': '' } }] }] }), 'f')).toThrow(/`cidr:` label key in an endpoint selector is not supported by distill/);
    expect(() => parseManifest(cnp({ ingress: [{ fromNodes: [{ matchLabels: { 'k8s:pool': 'a' } }] }] }), 'f', { nodeSelectorLabels: true })).toThrow(/key in a node selector is not supported by distill/);
  });
  it('a selector parsed (and cached) once is checked again: the same manifest read twice is refused twice', () => {
    // parseLabelSelector caches successful parses by their text; a deferred error must never ride on a cached one.
    for (const labels of [{ 'cidr:10.0.0.0/8': '' }, { 'cidrgroup:g': '' }]) {
      const m = cnp({ ingress: [{ fromEndpoints: [{ matchLabels: labels }] }] });
      for (let i = 0; i < 2; i++) expect(() => parseManifest(m, 'f')).toThrow(/is not supported by distill/);
    }
    const n = cnp({ ingress: [{ fromNodes: [{ matchLabels: { 'k8s:pool': 'a' } }] }] });
    for (let i = 0; i < 2; i++) expect(() => parseManifest(n, 'f', { nodeSelectorLabels: true })).toThrow(/is not supported by distill/);
  });
});
