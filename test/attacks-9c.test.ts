import { describe, expect, it } from 'vitest';
import { agentVerdicts } from './k8s/agent-verdicts.js';
import { parseManifest } from '../src/policy/manifest.js';

/*
 * Round 9c attacks (docs/attack-findings-9c.md): ClusterNetworkPolicy manifests the CRD accepts
 * but distill refused, which the agent then skipped whole (every Deny rule of the policy lost),
 * and one the CRD refuses that distill enforced. Judged through the agent's mirror and the engine.
 */
type Obj = Record<string, unknown>;
const web = [{ name: 'c', ports: [{ name: 'http', containerPort: 80, protocol: 'TCP' }] }];
const cnp = (egress: Obj[]): Obj => ({
  apiVersion: 'policy.networking.k8s.io/v1alpha2',
  kind: 'ClusterNetworkPolicy',
  metadata: { name: 'p', resourceVersion: '10' },
  spec: { tier: 'Admin', priority: 5, subject: { pods: { podSelector: { matchLabels: { app: 'server' } } } }, egress },
});
const toPod = (app: string): Obj => ({ pods: { podSelector: { matchLabels: { app } } } });

/** The agent's verdicts of x/server (local) with x/client and x/other on TCP/80 in `direction`, after one policy. */
function run(policy: Obj, direction: 'ingress' | 'egress' = 'egress'): { warn: string[]; verdicts: Record<string, string> } {
  const { warn, verdict } = agentVerdicts(policy, web);
  return { warn, verdicts: { client: verdict('client', direction), other: verdict('other', direction) } };
}

describe('140. a destinationNamedPort that is no container port name (the CRD has no pattern for it)', () => {
  it('is read as a port no pod has: the policy is enforced, its other Deny rule denies', () => {
    for (const name of ['HTTP', 'http_alt', 'a-very-long-port-name']) {
      const r = run(cnp([{ action: 'Deny', to: [toPod('client')], protocols: [{ destinationNamedPort: name }] }, { action: 'Deny', to: [toPod('other')] }]));
      expect(r.warn, name).toEqual([]);
      expect(r.verdicts, name).toEqual({ client: 'allow', other: 'deny' });
    }
  });
});

describe('141. a rule name of at most 100 characters that is longer in UTF-16 units', () => {
  it('is accepted (the CRD counts characters): the Deny applies', () => {
    const name = '\u{1F600}'.repeat(51);
    expect(name.length).toBe(102);
    expect(run(cnp([{ name, action: 'Deny', to: [toPod('other')] }])).verdicts).toEqual({ client: 'allow', other: 'deny' });
  });
  it('101 characters are still refused', () => {
    expect(() => parseManifest(cnp([{ name: 'é'.repeat(101), action: 'Deny', to: [toPod('other')] }]), 't')).toThrow(/101 characters; at most 100/);
  });
});

describe('142. networks with a destinationNamedPort (accepted by the standard CRD, which lacks the experimental XValidation)', () => {
  const rule = (action: string): Obj => ({ action, to: [{ networks: ['10.0.0.0/8'] }], protocols: [{ destinationNamedPort: 'http' }] });
  it('a Deny rule fails closed to "Deny all" in the agent (the policy is not skipped)', () => {
    const r = run(cnp([rule('Deny')]));
    expect(r.warn).toEqual(['policy enforced fail-closed: it uses what distill does not read']);
    expect(r.verdicts).toEqual({ client: 'deny', other: 'deny' });
  });
  it('an Accept rule matches nothing; the next rule still denies', () => {
    expect(run(cnp([rule('Accept'), { action: 'Deny', to: [toPod('other')] }])).verdicts).toEqual({ client: 'allow', other: 'deny' });
  });
  it('a protocols entry of a newer CRD (here `icmp`) makes its rule fail closed too, not the policy skipped', () => {
    const newer = (action: string): Obj => ({ action, to: [toPod('client')], protocols: [{ icmp: { type: 8 } }] });
    expect(run(cnp([newer('Deny')])).verdicts).toEqual({ client: 'deny', other: 'deny' });
    expect(run(cnp([newer('Accept'), { action: 'Deny', to: [toPod('other')] }])).verdicts).toEqual({ client: 'allow', other: 'deny' });
  });
  it('reach still refuses it, naming the rule', () => {
    expect(() => parseManifest(cnp([rule('Deny')]), 't')).toThrow(/spec.egress\[0\].protocols: destinationNamedPort with a networks peer is not supported by distill/);
  });
});

describe('143. a networks CIDR longer than the CRD maxLength 43', () => {
  it('is refused (netip takes the long form, the API server does not)', () => {
    const long = '0000:0000:0000:0000:0000:0000:255.255.255.255/128';
    expect(long.length).toBe(49);
    expect(() => parseManifest(cnp([{ action: 'Accept', to: [{ networks: [long] }] }]), 't')).toThrow(/49 characters; the API allows at most 43/);
    expect(() => parseManifest(cnp([{ action: 'Accept', to: [{ networks: ['0000:0000:0000:0000:0000:0000:0000:0001/128'] }] }]), 't')).not.toThrow();
  });
});

describe('144. destinationNamedPort "" (one property for the CRD; an entry with no field set for Go)', () => {
  it('a Deny rule fails closed to "Deny all"; an Accept rule matches nothing', () => {
    const rule = (action: string): Obj => ({ action, to: [toPod('client')], protocols: [{ destinationNamedPort: '' }] });
    expect(run(cnp([rule('Deny')])).verdicts).toEqual({ client: 'deny', other: 'deny' });
    expect(run(cnp([rule('Accept'), { action: 'Deny', to: [toPod('client')] }, { action: 'Deny', to: [toPod('other')] }])).verdicts).toEqual({ client: 'deny', other: 'deny' });
  });
});

describe('145. a peer LabelSelector the CRD takes (its schema checks the shape only) but LabelSelectorAsSelector refuses', () => {
  const bad: Obj[] = [
    { namespaces: { matchExpressions: [{ key: 'team', operator: 'in', values: ['a'] }] } },
    { namespaces: { matchExpressions: [{ key: 'team', operator: 'In', values: [] }] } },
    { pods: { podSelector: { matchLabels: { 'bad key': 'a' } } } },
    { pods: { namespaceSelector: { matchExpressions: [{ key: 'team', operator: 'Exists', values: ['a'] }] }, podSelector: {} } },
  ];
  it('a Deny rule with it fails closed to "Deny all" in the agent (the policy is not skipped)', () => {
    for (const peer of bad) {
      const r = run(cnp([{ action: 'Deny', to: [peer] }]));
      expect(r.warn, JSON.stringify(peer)).toEqual(['policy enforced fail-closed: it uses what distill does not read']);
      expect(r.verdicts, JSON.stringify(peer)).toEqual({ client: 'deny', other: 'deny' });
    }
  });
  it('an Accept rule with it matches nothing; the policy\'s next Deny applies', () => {
    for (const peer of bad) expect(run(cnp([{ action: 'Accept', to: [peer] }, { action: 'Deny', to: [toPod('other')] }])).verdicts, JSON.stringify(peer)).toEqual({ client: 'allow', other: 'deny' });
  });
  it('a selector the CRD refuses (operator missing) is still refused, and skipped by the agent', () => {
    const p = cnp([{ action: 'Deny', to: [{ namespaces: { matchExpressions: [{ key: 'team' }] } }] }]);
    expect(() => parseManifest(p, 't')).toThrow(/operator/);
    expect(run(p).warn).toEqual(['object skipped: it cannot be read']);
  });
});

describe('147. an ingress peer with a field only egress peers have today (a newer CRD may add it to ingress)', () => {
  const ingress = (action: string, peer: Obj): Obj => ({ ...cnp([]), spec: { ...(cnp([]).spec as Obj), egress: undefined, ingress: [{ action, from: [peer] }, { action: 'Deny', from: [toPod('other')] }] } });
  it('fails its rule closed in the agent, as a peer with no known field (the policy is not skipped)', () => {
    for (const peer of [{ networks: ['10.0.0.0/8'] }, { nodes: {} }, { domainNames: ['example.com'] }]) {
      const deny = run(ingress('Deny', peer), 'ingress');
      expect(deny.warn, JSON.stringify(peer)).toEqual(['policy enforced fail-closed: it uses what distill does not read']);
      expect(deny.verdicts, JSON.stringify(peer)).toEqual({ client: 'deny', other: 'deny' });
      expect(run(ingress('Accept', peer), 'ingress').verdicts, JSON.stringify(peer)).toEqual({ client: 'allow', other: 'deny' });
    }
  });
  it('reach still refuses it, naming the field', () => {
    expect(() => parseManifest(ingress('Deny', { networks: ['10.0.0.0/8'] }), 't')).toThrow(/spec.ingress\[0\].from\[0\].networks: "networks" is an egress peer/);
  });
});
