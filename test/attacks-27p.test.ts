import { describe, expect, it } from 'vitest';
import { agentVerdicts } from './k8s/agent-verdicts.js';
import { parseManifest } from '../src/policy/manifest.js';
import { mirrorVerdicts } from './k8s/agent-verdicts.js';

/*
 * Round 27p (docs/attack-findings-27p.md). Sources: network-policy-api apis/v1beta1/clusternetworkpolicy_types.go
 * (30ea168: the subject is `*metav1.LabelSelector` / NamespacedPod, and the CRD's LabelSelector schema checks shape
 * only), Kubernetes staging/src/k8s.io/apimachinery/pkg/apis/meta/v1/helpers.go `LabelSelectorAsSelector` (refuses an
 * operator outside In/NotIn/Exists/DoesNotExist, In/NotIn without values, invalid keys and values: labels.NewRequirement).
 */

type Obj = Record<string, unknown>;
const toPod = (app: string): Obj => ({ pods: { podSelector: { matchLabels: { app } } } });
const clusterPolicy = (egress: Obj[], subject: Obj, version = 'v1beta1'): Obj => ({
  apiVersion: `policy.networking.k8s.io/${version}`,
  kind: 'ClusterNetworkPolicy',
  metadata: { name: 'p', resourceVersion: '10' },
  spec: { tier: 'Admin', priority: 5, subject, egress },
});
const STAND_IN = ['policy enforced fail-closed: it uses what distill does not read'];
const SKIPPED = ['object skipped: it cannot be read'];

function run(policy: Obj): { warn: string[]; verdicts: Record<string, string> } {
  const { warn, verdict } = agentVerdicts(policy);
  return { warn, verdicts: { client: verdict('client', 'egress'), other: verdict('other', 'egress') } };
}

describe('2230. a ClusterNetworkPolicy subject selector that LabelSelectorAsSelector refuses skipped the policy with its Deny rules', () => {
  // The CRD takes these (shape only); distill reads them as "not supported". On be70ef1 the stand-in re-read the same
  // subject, failed, and the agent skipped the object: x/server -> x/other was allowed, though every reading of the
  // subject that selects x/server denies it. Now the refused entries are left out (the rest of an ANDed selector
  // selects every pod the subject could) and the Deny rules are kept, the Accept rules dropped.
  const server = { app: 'server' };
  const subjects: Obj[] = [
    { pods: { podSelector: { matchLabels: server, matchExpressions: [{ key: 'tier', operator: 'in', values: ['a'] }] } } },
    { pods: { podSelector: { matchLabels: server, matchExpressions: [{ key: 'tier', operator: 'In' }] } } },
    { pods: { podSelector: { matchLabels: { ...server, tier: 'not a value' } } } },
    { pods: { podSelector: { matchLabels: server }, namespaceSelector: { matchExpressions: [{ key: 'team', operator: 'Exists', values: ['a'] }] } } },
    { namespaces: { matchExpressions: [{ key: 'kubernetes.io/metadata.name', operator: 'NotIn', values: [] }] } },
  ];
  it('is "not supported" in the CLI (control: the reading of a manifest is unchanged)', () => {
    for (const subject of subjects) expect(() => parseManifest(clusterPolicy([{ action: 'Deny', to: [toPod('other')] }], subject), 't'), JSON.stringify(subject)).toThrow(/not supported by distill/);
  });
  for (const version of ['v1beta1', 'v1alpha2']) {
    it(`keeps its Deny rules (a Pass as a Deny), drops its Accept rules (${version})`, () => {
      for (const subject of subjects) {
        const r = run(clusterPolicy([{ action: 'Accept', to: [toPod('client')] }, { action: 'Deny', to: [toPod('other')] }], subject, version));
        expect(r.warn, JSON.stringify(subject)).toEqual(STAND_IN);
        expect(r.verdicts, JSON.stringify(subject)).toEqual({ client: 'allow', other: 'deny' });
        const pass = run(clusterPolicy([{ action: 'Pass', to: [toPod('client')] }], subject, version));
        expect(pass.verdicts, JSON.stringify(subject)).toEqual({ client: 'deny', other: 'allow' });
      }
    });
  }
  it('the readable entries still narrow the subject: a pod they exclude is not denied', () => {
    const r = run(clusterPolicy([{ action: 'Deny', to: [toPod('other')] }], { pods: { podSelector: { matchLabels: { app: 'client' }, matchExpressions: [{ key: 'tier', operator: 'in', values: ['a'] }] } } }));
    expect(r.warn).toEqual(STAND_IN);
    expect(r.verdicts).toEqual({ client: 'allow', other: 'allow' });
  });
  it('composes with an unreadable rule: its Deny fails closed as "Deny all" under the stand-in subject', () => {
    const badPeer = { pods: { podSelector: { matchExpressions: [{ key: 'app', operator: 'in', values: ['client'] }] } } };
    const r = run(clusterPolicy([{ action: 'Deny', to: [badPeer] }], subjects[0] as Obj));
    expect(r.warn).toEqual(STAND_IN);
    expect(r.verdicts).toEqual({ client: 'deny', other: 'deny' });
  });
  it('an invalid subject is still skipped as invalid (control: exactly one field, which the CRD checks)', () => {
    expect(run(clusterPolicy([{ action: 'Deny', to: [toPod('other')] }], { namespaces: {}, pods: { podSelector: {} } })).warn).toEqual(SKIPPED);
  });
});

describe('2231. the Cilium stand-in dropped the spec\'s enableDefaultDeny and isolated a direction Cilium leaves open', () => {
  // pkg/policy/api/rule.go EnableDefaultDeny ("if false, the rules only add allows and denies"); rule_validation.go
  // Rule.Sanitize fills an absent flag only. On be70ef1 the stand-in spec kept the subject and the lists, not the flag:
  // a policy with `enableDefaultDeny: {ingress: false}` and an unread egress toServices had its ingress isolated, so
  // x/other -> x/server (which Cilium allows: no policy isolates x/server's ingress) was denied.
  const policy = (flag: Obj | undefined): Obj => ({
    apiVersion: 'cilium.io/v2',
    kind: 'CiliumNetworkPolicy',
    metadata: { name: 'p', namespace: 'x', resourceVersion: '10' },
    spec: {
      endpointSelector: { matchLabels: { app: 'server' } },
      ...(flag !== undefined ? { enableDefaultDeny: flag } : {}),
      ingress: [{ fromEndpoints: [{ matchLabels: { app: 'client' } }] }],
      egress: [{ toServices: [{ k8sService: { serviceName: 's', namespace: 'x' } }] }],
    },
  });
  it('keeps the flag: ingress not isolated, egress isolated with the unread allow dropped', () => {
    const { warn, verdict } = agentVerdicts(policy({ ingress: false }));
    expect(warn).toEqual(STAND_IN);
    expect([verdict('client', 'ingress'), verdict('other', 'ingress'), verdict('client', 'egress')]).toEqual(['allow', 'allow', 'deny']);
  });
  it('an egress flag false leaves egress open too (the dropped allow only added allows)', () => {
    const { verdict } = agentVerdicts(policy({ ingress: false, egress: false }));
    expect([verdict('other', 'ingress'), verdict('other', 'egress')]).toEqual(['allow', 'allow']);
  });
  it('without the flag both directions stay isolated (control)', () => {
    const { warn, verdict } = agentVerdicts(policy(undefined));
    expect(warn).toEqual(STAND_IN);
    expect([verdict('client', 'ingress'), verdict('other', 'ingress'), verdict('client', 'egress')]).toEqual(['allow', 'deny', 'deny']);
  });
  it('an unread deny rule still denies every peer with the flag false (control: the flag does not weaken denies)', () => {
    const p = policy({ ingress: false });
    const spec = p.spec as Obj;
    const { verdict } = agentVerdicts({ ...p, spec: { ...spec, ingressDeny: [{ fromEndpoints: [{ matchLabels: { app: 'other' } }], fromRequires: ['x'] }] } });
    expect([verdict('client', 'ingress'), verdict('other', 'ingress')]).toEqual(['deny', 'deny']);
  });
});

describe('2232. a CiliumNetworkPolicy with `specs: []` was refused; modified to it, the agent kept the old rules', () => {
  // pkg/k8s/apis/cilium.io/v2/cnp_types.go: the CRD's XValidation `has(self.spec) || has(self.specs)` stores it, and
  // Validate refuses only `r.Spec == nil && r.Specs == nil` (ErrEmptyCNP): an empty, non-nil `specs` is a policy of
  // no rules, and the watcher's update replaces the old rules with none. On be70ef1 distill refused it ("must have spec
  // or specs"), so the mirror kept the last readable version: x/other -> x/server stayed allowed by the old rule while
  // another policy isolates x/server's ingress, which Cilium denies once the rules are gone.
  const cnp = (name: string, rv: number, body: Obj): Obj => ({ apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name, namespace: 'x', resourceVersion: String(rv) }, ...body });
  const server = { matchLabels: { app: 'server' } };
  const from = (app: string): Obj => ({ endpointSelector: server, ingress: [{ fromEndpoints: [{ matchLabels: { app } }] }] });
  it('reads as a policy of no rules', () => {
    const p = parseManifest(cnp('b', 1, { specs: [] }), 't');
    expect([p.rules.length, p.enforcements.length]).toEqual([0, 0]);
  });
  it('the agent drops the old rules when the object is modified to it', () => {
    const r = mirrorVerdicts([cnp('a', 10, { spec: from('client') }), cnp('b', 11, { spec: from('other') })], [cnp('b', 12, { specs: [] })]);
    expect(r.before).toEqual({ client: 'allow', other: 'allow' });
    expect(r.after).toEqual({ client: 'allow', other: 'deny' });
    expect(r.warn).toEqual([]);
  });
  it('no spec and no specs (or null) is still refused (control: ErrEmptyCNP, the CRD\'s has())', () => {
    expect(() => parseManifest(cnp('b', 1, {}), 't')).toThrow(/must have spec or specs/);
    expect(() => parseManifest(cnp('b', 1, { specs: null }), 't')).toThrow(/must have spec or specs/);
  });
});
