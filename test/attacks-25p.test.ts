import { describe, expect, it } from 'vitest';
import { agentVerdicts } from './k8s/agent-verdicts.js';
import { parseManifest } from '../src/policy/manifest.js';

/*
 * Round 25p (docs/attack-findings-25p.md): presence checks a newer ClusterNetworkPolicy CRD's field satisfies, and the
 * toServices / CIDR-group fields distill does not read but the CRD or Cilium's sanitizer checks. Sources:
 * network-policy-api 0eec1b0 apis/v1alpha2/clusternetworkpolicy_types.go (MinProperties/MaxProperties, the peers'
 * "If an implementation sees no fields are set ... it should fail closed") and its CRDs; Cilium's v1.19 branch point
 * (devodev/cilium 2ba24a2a): pkg/policy/api/rule_validation.go `CIDRRule.sanitize`, pkg/policy/api/selector.go
 * `SanitizeWithKeyExtender`, pkg/policy/api/service.go, the CNP CRD (ciliumnetworkpolicies.yaml: toServices items,
 * the toCIDRSet items' oneOf and `cidrGroupRef` pattern).
 */

type Obj = Record<string, unknown>;
const web = [{ name: 'c', ports: [{ name: 'http', containerPort: 80, protocol: 'TCP' }] }];
const toPod = (app: string): Obj => ({ pods: { podSelector: { matchLabels: { app } } } });
const clusterPolicy = (egress: Obj[], subject: Obj = toPod('server')): Obj => ({
  apiVersion: 'policy.networking.k8s.io/v1alpha2',
  kind: 'ClusterNetworkPolicy',
  metadata: { name: 'p', resourceVersion: '10' },
  spec: { tier: 'Admin', priority: 5, subject, egress },
});
const STAND_IN = ['policy enforced fail-closed: it uses what distill does not read'];
const SKIPPED = ['object skipped: it cannot be read'];

function run(policy: Obj): { warn: string[]; verdicts: Record<string, string> } {
  const { warn, verdict } = agentVerdicts(policy, web);
  return { warn, verdicts: { client: verdict('client', 'egress'), other: verdict('other', 'egress') } };
}

describe('1910. a protocol or port of a newer ClusterNetworkPolicy CRD (only fields distill does not know) skipped the policy', () => {
  // The CRD's ClusterNetworkPolicyProtocolTCP and Port have MinProperties=1: the installed CRD prunes an unknown field and
  // refuses the empty object, so only a newer CRD stores such an entry. On a7460f3 the presence checks ("destinationPort:
  // is required", "exactly one of number, range") refused it: the agent skipped the policy and lost its other Deny rule.
  const entries: Obj[] = [{ tcp: { sourcePort: { number: 5 } } }, { udp: { destinationPort: { list: [80] } } }];
  it('fails its rule closed ("Deny all" for a Deny rule), the policy is not skipped', () => {
    for (const entry of entries) {
      const r = run(clusterPolicy([{ action: 'Deny', to: [toPod('client')], protocols: [entry] }, { action: 'Deny', to: [toPod('other')] }]));
      expect(r.warn, JSON.stringify(entry)).toEqual(STAND_IN);
      expect(r.verdicts, JSON.stringify(entry)).toEqual({ client: 'deny', other: 'deny' });
    }
  });
  it('an Accept rule with one matches nothing; the next rule still denies', () => {
    const r = run(clusterPolicy([{ action: 'Accept', to: [toPod('other')], protocols: [entries[0] as Obj] }, { action: 'Deny', to: [toPod('other')] }]));
    expect(r.verdicts).toEqual({ client: 'allow', other: 'deny' });
  });
  it('an empty tcp or destinationPort (which every CRD refuses) is still invalid (control)', () => {
    expect(() => parseManifest(clusterPolicy([{ action: 'Deny', to: [toPod('client')], protocols: [{ tcp: {} }] }]), 't')).toThrow(/tcp.destinationPort: is required/);
    expect(() => parseManifest(clusterPolicy([{ action: 'Deny', to: [toPod('client')], protocols: [{ tcp: { destinationPort: {} } }] }]), 't')).toThrow(/exactly one of number, range/);
  });
});

describe('1911. a newer CRD\'s protocol beside a nodes or domainNames peer was read as a named port', () => {
  // The experimental CRD's XValidation tests `has(destinationNamedPort)`; an `icmp` entry is no named port. On a7460f3
  // 1896's placeholder was a named port: "destinationNamedPort cannot be used with a nodes peer", the policy skipped.
  it('fails its rule closed; the policy is not skipped', () => {
    const r = run(clusterPolicy([{ action: 'Deny', to: [{ nodes: { matchLabels: { a: 'b' } } }], protocols: [{ icmp: { type: 8 } }] }, { action: 'Deny', to: [toPod('other')] }]));
    expect(r.warn).toEqual(STAND_IN);
    expect(r.verdicts).toEqual({ client: 'deny', other: 'deny' });
  });
  it('a real named port beside a nodes peer is still refused (control)', () => {
    expect(() => parseManifest(clusterPolicy([{ action: 'Deny', to: [{ nodes: {} }], protocols: [{ destinationNamedPort: 'http' }] }]), 't')).toThrow(/cannot be used with a nodes peer/);
  });
});

describe('1915. a subject field distill does not know skipped the ClusterNetworkPolicy', () => {
  // The installed CRD prunes it (structural, no x-kubernetes-preserve-unknown-fields) and the policy is enforced; a
  // newer field may narrow the subject, so the stand-in keeps the Deny rules only (as finding 712 does for spec fields).
  // On a7460f3 the stand-in re-read the same subject, failed, and the agent skipped the policy.
  const server = { matchLabels: { app: 'server' } };
  const subjects: Obj[] = [{ pods: { podSelector: server }, newField: 1 }, { pods: { podSelector: server, newField: 1 } }, { pods: { podSelector: { ...server, newField: 1 } } }, { namespaces: { matchExpressions: [{ key: 'kubernetes.io/metadata.name', operator: 'In', values: ['x'], newField: 1 }] } }];
  it('keeps its Deny rules, drops its Accept rules', () => {
    for (const subject of subjects) {
      const r = run(clusterPolicy([{ action: 'Accept', to: [toPod('client')] }, { action: 'Deny', to: [toPod('other')] }], subject));
      expect(r.warn, JSON.stringify(subject)).toEqual(STAND_IN);
      expect(r.verdicts, JSON.stringify(subject)).toEqual({ client: 'allow', other: 'deny' });
    }
  });
  it('a subject with no known field is still skipped (control: no subject to stand in for)', () => {
    expect(run(clusterPolicy([{ action: 'Deny', to: [toPod('other')] }], { nodes: {} })).warn).toEqual(SKIPPED);
  });
});

const cnp = (egress: Obj): Obj => ({
  apiVersion: 'cilium.io/v2',
  kind: 'CiliumNetworkPolicy',
  metadata: { name: 'p', namespace: 'x', resourceVersion: '10' },
  spec: { endpointSelector: { matchLabels: { app: 'server' } }, ingress: [{ fromEndpoints: [{ matchLabels: { app: 'client' } }] }], egress: [egress] },
});

describe('1912. a toServices item the CNP CRD refuses was "not supported" (a stand-in of an object the API server never stores)', () => {
  // ciliumnetworkpolicies.yaml toServices.items: k8sServiceSelector `required: [selector]`; the selector's operator enum,
  // matchLabels values pattern/maxLength 63; string fields. Cilium has no sanitize for services (pkg/policy/api/service.go).
  const bad: [Obj, RegExp][] = [
    [{ k8sServiceSelector: { selector: { matchExpressions: [{ key: 'a', operator: 'in', values: ['x'] }] } } }, /operator: "in" is not one of/],
    [{ k8sServiceSelector: { selector: { matchLabels: { a: 'bad value' } } } }, /invalid label value "bad value"/],
    [{ k8sServiceSelector: { namespace: 'x' } }, /selector: is required/],
    [{ k8sService: { serviceName: 5 } }, /serviceName: expected a string/],
  ];
  it('is refused as invalid; the agent skips the object', () => {
    for (const [item, msg] of bad) {
      expect(() => parseManifest(cnp({ toServices: [item] }), 't')).toThrow(msg);
      expect(run(cnp({ toServices: [item] })).warn, JSON.stringify(item)).toEqual(SKIPPED);
    }
  });
  it('a selector the CRD takes (Cilium matches it against Service labels later) stays "not supported" (control)', () => {
    const ok = { k8sServiceSelector: { selector: { matchExpressions: [{ key: 'Bad Key', operator: 'Exists', values: ['x'] }] } } };
    expect(() => parseManifest(cnp({ toServices: [ok] }), 't')).toThrow(/toServices: is not supported by distill/);
    expect(run(cnp({ toServices: [ok] })).warn).toEqual(STAND_IN);
  });
});

describe('1913. a cidrGroupSelector that CIDRRule.sanitize refuses was "not supported"', () => {
  // CIDRRule.sanitize: SanitizeWithKeyExtender(GetSourcePrefixKeyExtender("cidrgroup.")), then ValidateLabelSelector;
  // Rule.Sanitize fails and cnp_types.go Parse drops the object.
  const bad: [Obj, RegExp][] = [
    [{ matchExpressions: [{ key: 'a', operator: 'Exists', values: ['x'] }] }, /must be empty when operator is Exists/],
    [{ matchLabels: { 'k8s:a': 'b' } }, /Cilium validates it as "cidrgroup.k8s:a"/],
    [{ matchLabels: { ['a'.repeat(60)]: 'b' } }, /name part must be at most 63 characters/],
  ];
  it('is refused as invalid; the agent skips the object', () => {
    for (const [sel, msg] of bad) {
      expect(() => parseManifest(cnp({ toCIDRSet: [{ cidrGroupSelector: sel }] }), 't')).toThrow(msg);
      expect(run(cnp({ toCIDRSet: [{ cidrGroupSelector: sel }] })).warn, JSON.stringify(sel)).toEqual(SKIPPED);
    }
  });
  it('a valid one stays "not supported" (control)', () => {
    expect(run(cnp({ toCIDRSet: [{ cidrGroupSelector: { matchLabels: { ['a'.repeat(53)]: 'b' } } }] })).warn).toEqual(STAND_IN);
  });
});

describe('1914. a cidrGroupRef the CRD refuses was "not supported", and `cidr` beside `cidrGroupRef: ""` was enforced', () => {
  // The CRD: cidrGroupRef `pattern` (a DNS subdomain, so not "") and maxLength 253; the item's oneOf `required` counts a
  // present field, "" too. CIDRRule.sanitize counts non-empty fields only, which distill followed.
  it('is refused as invalid', () => {
    expect(() => parseManifest(cnp({ toCIDRSet: [{ cidrGroupRef: 'Bad_Name' }] }), 't')).toThrow(/is not a CiliumCIDRGroup name/);
    expect(() => parseManifest(cnp({ toCIDRSet: [{ cidrGroupRef: `${'a'.repeat(251)}.bc` }] }), 't')).toThrow(/is not a CiliumCIDRGroup name/);
    expect(() => parseManifest(cnp({ toCIDRSet: [{ cidr: '10.0.0.0/8', cidrGroupRef: '' }] }), 't')).toThrow(/more than one of cidr, cidrGroupRef/);
    expect(() => parseManifest(cnp({ toCIDRSet: [{ cidr: '', cidrGroupRef: 'grp' }] }), 't')).toThrow(/more than one of cidr, cidrGroupRef/);
  });
  it('a valid name stays "not supported" (control)', () => {
    expect(() => parseManifest(cnp({ toCIDRSet: [{ cidrGroupRef: 'grp.example-1' }] }), 't')).toThrow(/cidrGroupRef: is not supported by distill/);
  });
});
