import { describe, expect, it } from 'vitest';
import { parseManifest } from '../src/policy/manifest.js';
import { failClosedStandIn } from '../src/policy/stand-in.js';

/*
 * Round 24p (docs/attack-findings-24p.md): what still stopped the manifest readers at once ("unknown field", a label
 * key collision, an extended IP protocol) and so hid an invalid field after it. Sources: Cilium's v1.19 branch point
 * (devodev/cilium 2ba24a2a): pkg/policy/api/rule_validation.go (PortRule.sanitize, PortProtocol.sanitize), the CNP CRD
 * pkg/k8s/apis/cilium.io/client/crds/v2/ciliumnetworkpolicies.yaml (structural, no x-kubernetes-preserve-unknown-fields).
 */

type Obj = Record<string, unknown>;
const server = { matchLabels: { app: 'server' } };
const cnp = (spec: Obj): Obj => ({ apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name: 'p', namespace: 'x' }, spec: { endpointSelector: server, ...spec } });
const udpHttp = { toPorts: [{ ports: [{ port: '53', protocol: 'UDP' }], rules: { http: [{}] } }] };
const L7_ON_UDP = /L7 rules can only apply to TCP \(not UDP\)/;

describe('1830. an unknown field hid an invalid field after it: the agent enforced a stand-in for an object Cilium refuses', () => {
  // The CRD is structural without x-kubernetes-preserve-unknown-fields, so the API server prunes an unknown field (and
  // a newer CRD's field is skipped by the 1.19 agent's decoder); either way PortRule.sanitize still refuses the
  // object for HTTP rules on UDP. On 0574de5 Reader.object threw "unknown field" first.
  it('refuses an unknown rule field beside HTTP rules on UDP as invalid, in either field order', () => {
    expect(() => parseManifest(cnp({ ingress: [{ fromEndpoints: [{}], newField: {}, ...udpHttp }] }), 'f')).toThrow(L7_ON_UDP);
    expect(() => parseManifest(cnp({ ingress: [{ ...udpHttp, fromEndpoints: [{}], newField: {} }] }), 'f')).toThrow(L7_ON_UDP);
  });
  it('refuses an unknown field in a port rule, a port and a selector beside the same', () => {
    const port = { ports: [{ port: '53', protocol: 'UDP' }], rules: { http: [{}] } };
    expect(() => parseManifest(cnp({ ingress: [{ toPorts: [{ newField: 1, ...port }] }] }), 'f')).toThrow(L7_ON_UDP);
    expect(() => parseManifest(cnp({ ingress: [{ toPorts: [{ ...port, ports: [{ port: '53', protocol: 'UDP', newField: 1 }] }] }] }), 'f')).toThrow(L7_ON_UDP);
    expect(() => parseManifest(cnp({ ingress: [{ fromEndpoints: [{ matchLabels: { app: 'a' }, newField: 1 }], ...udpHttp }] }), 'f')).toThrow(L7_ON_UDP);
  });
  it('refuses a NetworkPolicy with an unknown field beside an invalid port as invalid', () => {
    const np = { apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { name: 'p', namespace: 'x' }, spec: { podSelector: {}, ingress: [{ newField: 1, ports: [{ port: 0 }] }] } };
    expect(() => parseManifest(np, 'f')).toThrow(/ports\[0\]\.port/);
  });
  it('an unknown field alone is still refused as "unknown field", also on a second read (the selector cache keeps no parse that deferred an error) (control)', () => {
    expect(() => parseManifest(cnp({ ingress: [{ fromEndpoints: [{}], newField: {} }] }), 'f')).toThrow(/newField: unknown field/);
    const sel = { matchLabels: { app: 'same' } };
    parseManifest(cnp({ ingress: [{ fromEndpoints: [sel] }] }), 'f');
    for (let i = 0; i < 2; i++) expect(() => parseManifest(cnp({ ingress: [{ fromEndpoints: [{ ...sel, newField: 'x' }] }] }), 'f')).toThrow(/newField: unknown field/);
  });
});

describe('1831. two matchLabels keys Cilium reads as one (`app`, `:app`) hid an invalid field after them', () => {
  // Cilium takes such a selector (one value wins in Go's map order) and refuses the object for HTTP rules on UDP.
  const twin = { matchLabels: { app: 'a', ':app': 'b' } };
  it('refuses them beside HTTP rules on UDP as invalid', () => {
    expect(() => parseManifest(cnp({ ingress: [{ fromEndpoints: [twin], ...udpHttp }] }), 'f')).toThrow(L7_ON_UDP);
  });
  it('alone they stay "not supported", also on a second read (the selector cache keeps no parse that deferred an error) (control)', () => {
    for (let i = 0; i < 2; i++) expect(() => parseManifest(cnp({ ingress: [{ fromEndpoints: [twin] }] }), 'f')).toThrow(/Go's map order, which is not supported by distill/);
  });
});

describe('1832. an extended IP protocol (VRRP, IGMP) hid an invalid field after it', () => {
  // rule_validation.go PortRule.sanitize: "L7 rules can only apply to TCP (not VRRP)"; PortProtocol.sanitize: "port must
  // be empty or 0" for VRRP/IGMP with a numeric port. On 0574de5 the protocol was "not supported" at once.
  const vrrp = (port: string, extra: Obj = {}): Obj => cnp({ ingress: [{ fromEndpoints: [{}], toPorts: [{ ports: [{ port, protocol: 'VRRP' }], ...extra }] }] });
  it('refuses VRRP beside HTTP rules and a numbered IGMP port', () => {
    expect(() => parseManifest(vrrp('http', { rules: { http: [{}] } }), 'f')).toThrow(/L7 rules can only apply to TCP \(not VRRP\)/);
    expect(() => parseManifest(vrrp('0', { rules: { http: [{}] } }), 'f')).toThrow(/L7 rules can not be used when a port is 0/);
    const igmp = cnp({ egress: [{ toEntities: ['world'], toPorts: [{ ports: [{ port: '112', protocol: 'IGMP' }] }] }] });
    expect(() => parseManifest(igmp, 'f')).toThrow(/port must be empty or 0/);
  });
  it('VRRP on port 0 or a named port is still "not supported" (control)', () => {
    expect(() => parseManifest(vrrp('0'), 'f')).toThrow(/"VRRP" \(an IP protocol without ports, Cilium 1.18\+\) is not supported by distill/);
    expect(() => parseManifest(vrrp('vrrp'), 'f')).toThrow(/is not supported by distill/);
  });
});

describe('1833. a ClusterNetworkPolicy rule with networks and nodes peers and a named port: read by the order of its peers', () => {
  // network-policy-api 0eec1b0: only the experimental CRD has `nodes` and `domainNames` peers, and its XValidation
  // "networks/nodes/domainNames peer cannot be set with namedPorts" refuses the object; the standard CRD (no such rule)
  // has networks only. On 0574de5 [networks, nodes] was "not supported" (networks first): the agent's stand-in kept the
  // object's other Accept rules, which the cluster never stores; [nodes, networks] was invalid.
  const cnp = (to: Obj[]): Obj => ({
    apiVersion: 'policy.networking.k8s.io/v1alpha2',
    kind: 'ClusterNetworkPolicy',
    metadata: { name: 'p' },
    spec: { tier: 'Admin', priority: 5, subject: { namespaces: {} }, egress: [{ action: 'Accept', to: [{ pods: { namespaceSelector: {}, podSelector: {} } }] }, { action: 'Accept', to, protocols: [{ destinationNamedPort: 'http' }] }] },
  });
  const networks = { networks: ['10.0.0.0/8'] };
  for (const other of [{ nodes: {} }, { domainNames: ['a.example.com'] }]) {
    it(`refuses ${Object.keys(other)[0]} with networks in either order, and the agent has no stand-in for it`, () => {
      for (const to of [[networks, other], [other, networks]]) {
        expect(() => parseManifest(cnp(to), 'f')).toThrow(/cannot be used with a (nodes|domainNames) peer/);
        let error: unknown;
        try {
          parseManifest(cnp(to), 'f');
        } catch (e) {
          error = e;
        }
        expect(failClosedStandIn(cnp(to), 'f', error)).toBeUndefined();
      }
    });
  }
  it('networks alone with a named port stays "not supported" (the standard CRD takes it) (control)', () => {
    expect(() => parseManifest(cnp([networks]), 'f')).toThrow(/with a networks peer is not supported by distill/);
  });
});

describe('1834. a host spec (nodeSelector) was "not supported" before its rules were read: the agent kept the other specs of an object Cilium refuses', () => {
  // rule_validation.go Rule.Sanitize sanitizes a host rule's NodeSelector and rules as any other (IngressRule.sanitize
  // with hostPolicy: "L7 policy is not supported on host ingress yet"; EgressRule.sanitize: "L7 protocol HTTP is not
  // supported on host egress yet"), and cnp_types.go Parse refuses the whole object for one failing spec.
  const ccnp = (host: Obj): Obj => ({ apiVersion: 'cilium.io/v2', kind: 'CiliumClusterwideNetworkPolicy', metadata: { name: 'p' }, specs: [{ endpointSelector: server, ingress: [{ fromEndpoints: [{}] }] }, { nodeSelector: {}, ...host }] });
  const http80 = { toPorts: [{ ports: [{ port: '80', protocol: 'TCP' }], rules: { http: [{}] } }] };
  it('refuses HTTP rules on host ingress and egress, DNS rules on host ingress, and an invalid rule or selector of a host spec', () => {
    expect(() => parseManifest(ccnp({ ingress: [{ fromEntities: ['world'], ...http80 }] }), 'f')).toThrow(/L7 policy is not supported on host ingress yet/);
    expect(() => parseManifest(ccnp({ egress: [{ toEntities: ['world'], ...http80 }] }), 'f')).toThrow(/not supported on host egress yet/);
    expect(() => parseManifest(ccnp({ ingress: [{ fromEntities: ['world'], ...udpHttp }] }), 'f')).toThrow(/L7 policy is not supported on host ingress yet/);
    expect(() => parseManifest(ccnp({ ingress: [{ fromEntities: ['planet'] }] }), 'f')).toThrow(/"planet" is not one of/);
    expect(() => parseManifest(ccnp({ nodeSelector: { matchLabels: { 'bad key': 'x' } }, ingress: [{}] }), 'f')).toThrow(/invalid label key/);
  });
  it('a valid host spec is still "not supported" (control), and DNS rules on host egress are valid', () => {
    expect(() => parseManifest(ccnp({ ingress: [{ fromEntities: ['world'] }] }), 'f')).toThrow(/nodeSelector: is not supported by distill/);
    const dns = { toPorts: [{ ports: [{ port: '53', protocol: 'UDP' }], rules: { dns: [{ matchPattern: '*' }] } }] };
    expect(() => parseManifest(ccnp({ egress: [{ toEntities: ['world'], ...dns }] }), 'f')).toThrow(/nodeSelector: is not supported by distill/);
  });
});

describe('1835. a ClusterNetworkPolicy part distill does not read ("not supported") hid an invalid field after it in the same rule', () => {
  // network-policy-api 0eec1b0 CRDs: the schema checks a LabelSelector's shape only (an `In` without values passes;
  // metav1.LabelSelectorAsSelector refuses it later), a destinationNamedPort "" passes, but `number: 0` fails
  // `minimum: 1`: the API server refuses the whole object. On 0574de5 the selector or the empty name was thrown first,
  // and the agent's stand-in replaced the rule by one with an unknown peer, dropping the invalid port with it.
  const cnp = (rule: Obj): Obj => ({
    apiVersion: 'policy.networking.k8s.io/v1alpha2',
    kind: 'ClusterNetworkPolicy',
    metadata: { name: 'p' },
    spec: { tier: 'Admin', priority: 5, subject: { namespaces: {} }, egress: [{ action: 'Accept', to: [{ namespaces: {} }] }, { action: 'Accept', ...rule }] },
  });
  const badSelector = { to: [{ pods: { namespaceSelector: {}, podSelector: { matchExpressions: [{ key: 'app', operator: 'In' }] } } }] };
  const port0 = { tcp: { destinationPort: { number: 0 } } };
  const refused = (rule: Obj): void => {
    let error: unknown;
    try {
      parseManifest(cnp(rule), 'f');
    } catch (e) {
      error = e;
    }
    expect(String(error)).toMatch(/0 is below 1/);
    expect(failClosedStandIn(cnp(rule), 'f', error)).toBeUndefined();
  };
  it('refuses a selector LabelSelectorAsSelector refuses beside a port 0, with no stand-in', () => refused({ ...badSelector, protocols: [port0] }));
  it('refuses an empty destinationNamedPort before a port 0, with no stand-in', () => refused({ to: [{ namespaces: {} }], protocols: [{ destinationNamedPort: '' }, port0] }));
  it('each alone is still "not supported" and gets the stand-in (control)', () => {
    expect(() => parseManifest(cnp(badSelector), 'f')).toThrow(/LabelSelectorAsSelector refuses it; it is not supported by distill/);
    expect(() => parseManifest(cnp({ to: [{ namespaces: {} }], protocols: [{ destinationNamedPort: '' }] }), 'f')).toThrow(/a protocols entry with no port is not supported by distill/);
  });
});

describe('1836. toNodes/fromNodes without the agent\'s node-selector flag hid an invalid field after it', () => {
  // rule_validation.go IngressCommonRule.sanitize keeps ErrFromToNodesRequiresNodeSelectorOption as retErr and goes on;
  // with the flag on, PortRule.sanitize refuses HTTP rules on UDP. Either way Cilium refuses the object; the agent's
  // stand-in takes the flag error (the cluster may run with the flag), so on 0574de5 it enforced the rest.
  it('refuses fromNodes beside HTTP rules on UDP as invalid without the flag', () => {
    expect(() => parseManifest(cnp({ ingress: [{ fromNodes: [{}], ...udpHttp }] }), 'f')).toThrow(L7_ON_UDP);
  });
  it('fromNodes alone without the flag still gives the flag error (control)', () => {
    expect(() => parseManifest(cnp({ ingress: [{ fromNodes: [{}] }] }), 'f')).toThrow(/"enable-node-selector-labels" flag is set/);
  });
});

describe('1837. a toCIDRSet item with cidrGroupRef and an except that is no CIDR was "not supported"; the API server refuses it', () => {
  // CRD ciliumnetworkpolicies.yaml: `except` items carry `format: cidr`, checked whatever the item's other fields;
  // rule_validation.go CIDRRule.sanitize returns before the exceptions of a group. On 0574de5 `except` was not read.
  const set = (except: unknown[]): Obj => cnp({ egress: [{ toCIDRSet: [{ cidrGroupRef: 'g', except }] }] });
  it('refuses an except item that is no CIDR beside cidrGroupRef', () => {
    expect(() => parseManifest(set(['not-a-cidr']), 'f')).toThrow(/except\[0\]: "not-a-cidr" is not a CIDR/);
  });
  it('a CIDR except beside cidrGroupRef stays "not supported" (control)', () => {
    expect(() => parseManifest(set(['10.0.0.0/8']), 'f')).toThrow(/cidrGroupRef: is not supported by distill/);
  });
});
