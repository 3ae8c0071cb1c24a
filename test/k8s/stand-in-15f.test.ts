import { describe, expect, it } from 'vitest';
import { parseManifest } from '../../src/policy/manifest.js';
import { agentVerdicts } from './agent-verdicts.js';

/**
 * Field audit, attack findings 710 and 711 (docs/attack-findings-15f.md, docs/field-audit.md): a
 * manifest the cluster stores and enforces, which distill refused as invalid, was skipped by the
 * agent, so its subject lost the isolation and the denies the policy gives it (fail-open).
 */
type Obj = Record<string, unknown>;
const server = { matchLabels: { app: 'server' } };
const fromClient = { fromEndpoints: [{ matchLabels: { app: 'client' } }] };
const cnp = (spec: Obj): Obj => ({ apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name: 'p', namespace: 'x', resourceVersion: '10' }, spec });
const np = (spec: Obj): Obj => ({ apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { name: 'p', namespace: 'x', resourceVersion: '10' }, spec });
const client = { podSelector: { matchLabels: { app: 'client' } } };
const STAND_IN = ['policy enforced fail-closed: it uses what distill does not read'];

function run(policy: Obj): { warn: string[]; verdicts: Record<string, string> } {
  const { warn, verdict } = agentVerdicts(policy);
  const verdicts: Record<string, string> = {};
  for (const peer of ['client', 'other'] as const) for (const dir of ['ingress', 'egress'] as const) verdicts[`${dir} ${peer}`] = verdict(peer, dir);
  return { warn, verdicts };
}

describe('finding 711: a Cilium extended IP protocol (VRRP, IGMP, GRE, IPIP, IPv6, ESP, AH) in toPorts', () => {
  it('an allow rule on VRRP is dropped, the rest of the policy kept and its direction isolated (was: policy skipped, all allowed)', () => {
    const r = run(cnp({ endpointSelector: server, ingress: [fromClient, { fromEndpoints: [{}], toPorts: [{ ports: [{ port: '0', protocol: 'VRRP' }] }] }] }));
    expect(r.warn).toEqual(STAND_IN);
    expect(r.verdicts).toEqual({ 'ingress client': 'allow', 'ingress other': 'deny', 'egress client': 'allow', 'egress other': 'allow' });
  });
  it('a deny rule on IGMP (no port: the extended-protocols flag) denies every peer in its direction', () => {
    const r = run(cnp({ endpointSelector: server, egressDeny: [{ toEndpoints: [{}], toPorts: [{ ports: [{ protocol: 'IGMP' }] }] }] }));
    expect(r.warn).toEqual(STAND_IN);
    expect(r.verdicts).toEqual({ 'ingress client': 'allow', 'ingress other': 'allow', 'egress client': 'deny', 'egress other': 'deny' });
  });
  it('a lower-case or unknown protocol is still refused as invalid (the CRD enum is case-sensitive)', () => {
    expect(run(cnp({ endpointSelector: server, ingress: [{ ...fromClient, toPorts: [{ ports: [{ port: '0', protocol: 'vrrp' }] }] }] })).warn).toEqual(['object skipped: it cannot be read']);
  });
});

describe('finding 710: a NetworkPolicy with a field distill does not read (a newer Kubernetes API\'s)', () => {
  it('an ingress rule with an unknown field is dropped, the other rules kept, ingress isolated (was: policy skipped)', () => {
    const r = run(np({ podSelector: server, ingress: [{ from: [client] }, { from: [{ podSelector: {} }], futureRuleField: { x: 1 } }] }));
    expect(r.warn).toEqual(STAND_IN);
    expect(r.verdicts).toEqual({ 'ingress client': 'allow', 'ingress other': 'deny', 'egress client': 'allow', 'egress other': 'allow' });
  });
  it('egress rules all dropped, without policyTypes: egress stays isolated (the defaulting reads the rules as written)', () => {
    const r = run(np({ podSelector: server, egress: [{ to: [{ podSelector: {} }], futurePeerField: true }] }));
    expect(r.warn).toEqual(STAND_IN);
    expect(r.verdicts).toEqual({ 'ingress client': 'deny', 'ingress other': 'deny', 'egress client': 'deny', 'egress other': 'deny' });
  });
  it('an unknown field in a peer or a port drops that rule only', () => {
    const r = run(np({ podSelector: server, policyTypes: ['Ingress'], ingress: [{ from: [client] }, { from: [{ podSelector: {}, futurePeer: {} }] }, { ports: [{ port: 80, futurePort: 1 }] }] }));
    expect(r.warn).toEqual(STAND_IN);
    expect(r.verdicts).toEqual({ 'ingress client': 'allow', 'ingress other': 'deny', 'egress client': 'allow', 'egress other': 'allow' });
  });
  it('a spec field of a newer API: the rules are kept, the directions isolated', () => {
    const r = run(np({ podSelector: server, ingress: [{ from: [client] }], futureSpecField: 'x' }));
    expect(r.warn).toEqual(STAND_IN);
    expect(r.verdicts).toEqual({ 'ingress client': 'allow', 'ingress other': 'deny', 'egress client': 'allow', 'egress other': 'allow' });
  });
  it('an invalid NetworkPolicy (the API server refuses it) is still skipped', () => {
    const r = run(np({ podSelector: server, ingress: [{ from: [{ ipBlock: { cidr: '10.0.0.0/8' }, podSelector: {} }] }] }));
    expect(r.warn).toEqual(['object skipped: it cannot be read']);
  });
});

describe('finding 712: a ClusterNetworkPolicy with a spec field of a newer CRD', () => {
  const cnpol = (extra: Obj): Obj => ({
    apiVersion: 'policy.networking.k8s.io/v1alpha2',
    kind: 'ClusterNetworkPolicy',
    metadata: { name: 'future', resourceVersion: '10' },
    spec: {
      tier: 'Admin',
      priority: 5,
      subject: { pods: { podSelector: { matchLabels: { app: 'server' } } } },
      ingress: [{ name: 'in', action: 'Deny', from: [{ pods: { podSelector: { matchLabels: { app: 'client' } } } }] }],
      egress: [{ name: 'out', action: 'Accept', to: [{ pods: { podSelector: {} } }] }],
      ...extra,
    },
  });
  it('keeps its Deny rules, drops Accept and Pass (was: the whole policy skipped, the Deny lost)', () => {
    expect(run(cnpol({})).verdicts).toEqual({ 'ingress client': 'deny', 'ingress other': 'allow', 'egress client': 'allow', 'egress other': 'allow' });
    const r = run(cnpol({ futureSubjectFilter: { matchLabels: { x: 'y' } } }));
    expect(r.warn).toEqual(STAND_IN);
    expect(r.verdicts).toEqual({ 'ingress client': 'deny', 'ingress other': 'allow', 'egress client': 'allow', 'egress other': 'allow' });
  });
});

describe('finding 716: a listener Cilium refuses (on ingress, or beside L7 rules)', () => {
  const listener = { name: 'l', envoyConfig: { kind: 'CiliumEnvoyConfig', name: 'c' } };
  const withListener = (ingress: boolean, rules?: Obj): Obj => ({ apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name: 'p', namespace: 'x' }, spec: { endpointSelector: server, [ingress ? 'ingress' : 'egress']: [{ [ingress ? 'fromEntities' : 'toEntities']: ['all'], toPorts: [{ ports: [{ port: '80', protocol: 'TCP' }], listener, ...(rules ? { rules } : {}) }] }] } });
  it('is refused as Cilium refuses it (was: "not supported", a stand-in the cluster never enforces)', () => {
    expect(() => parseManifest(withListener(true), 't')).toThrow(/Listener is not allowed on ingress/);
    expect(() => parseManifest(withListener(false, { http: [{}] }), 't')).toThrow(/Listener is not allowed with L7 rules/);
    // `http: []` is no L7 rule (L7Rules.IsEmpty is Len() == 0): Cilium takes the listener (finding 1766).
    expect(() => parseManifest(withListener(false, { http: [] }), 't')).toThrow(/listener: is not supported by distill/);
    expect(() => parseManifest(withListener(false), 't')).toThrow(/is not supported by distill/);
  });
});

describe('finding 717: serverNames Cilium refuses (beside L7 rules without terminatingTLS, or an empty name)', () => {
  const withNames = (names: unknown[], extra: Obj = {}): Obj => ({ apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name: 'p', namespace: 'x' }, spec: { endpointSelector: server, egress: [{ toEntities: ['all'], toPorts: [{ ports: [{ port: '443', protocol: 'TCP' }], serverNames: names, ...extra }] }] } });
  it('is refused as Cilium refuses it, so the agent skips the policy as Cilium does (was: a stand-in the cluster never enforces)', () => {
    expect(() => parseManifest(withNames(['a.example'], { rules: { http: [{ method: 'GET' }] } }), 't')).toThrow(/ServerNames are not allowed with L7 rules without TLS termination/);
    expect(() => parseManifest(withNames(['a.example', '']), 't')).toThrow(/Empty server name is not allowed/);
    expect(run(withNames(['']) as Obj).warn).toEqual(['object skipped: it cannot be read']);
  });
  it('what Cilium accepts stays "not supported" (stand-in): names alone, names with L7 and terminatingTLS, an empty list beside L7', () => {
    expect(() => parseManifest(withNames(['a.example']), 't')).toThrow(/serverNames: is not supported by distill/);
    expect(() => parseManifest(withNames(['a.example'], { rules: { http: [{}] }, terminatingTLS: { secret: { name: 's' } } }), 't')).toThrow(/is not supported by distill/);
    expect(() => parseManifest(withNames([], { rules: { http: [{}] } }), 't')).toThrow(/serverNames: is not supported by distill/);
  });
});

describe('finding 713: a Cilium rule with no ingress, ingressDeny, egress or egressDeny', () => {
  // Cilium 1.19 Rule.Sanitize refuses it and CiliumNetworkPolicy.Parse refuses every spec with it:
  // read before, the other specs' allows were enforced though the cluster enforces none of them.
  const twoSpecs = (second: Obj): Obj => ({ apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name: 'p', namespace: 'x' }, specs: [{ endpointSelector: server, ingress: [{ fromEntities: ['all'] }] }, second] });
  it('is refused, empty lists included, and so is the whole policy', () => {
    for (const second of [{ endpointSelector: server }, { endpointSelector: server, ingress: [], egressDeny: [] }, { endpointSelector: server, enableDefaultDeny: { ingress: true } }]) {
      expect(() => parseManifest(twoSpecs(second), 't')).toThrow(/rule must have at least one of Ingress, IngressDeny, Egress, EgressDeny/);
    }
    expect(parseManifest(twoSpecs({ endpointSelector: server, egress: [{}] }), 't').rules).toHaveLength(2);
  });
  it('the agent skips it (Cilium does), and still gives a stand-in to a policy with rules', () => {
    expect(run(cnp({ endpointSelector: server, ingress: [] })).warn).toEqual(['object skipped: it cannot be read']);
    expect(run(cnp({ endpointSelector: server, ingress: [{ fromRequires: [{}] }] })).warn).toEqual(STAND_IN);
  });
});
