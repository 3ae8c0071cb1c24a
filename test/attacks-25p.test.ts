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
