import { describe, expect, it } from 'vitest';
import { agentVerdicts } from './k8s/agent-verdicts.js';

/*
 * Review 27v of att27policy (docs/attack-findings-27v.md). Finding 2326: 3082cb6d (finding 2231) copies a spec's
 * `enableDefaultDeny` into its stand-in as written. A flag distill cannot read itself (a field of a newer CRD in it:
 * pkg/policy/api/rule.go DefaultDenyConfig has ingress and egress only) made the stand-in spec fail to parse, so the
 * policy had no stand-in at all and the agent skipped it: its readable deny rules were dropped. On be70ef1 the
 * stand-in left the flag out (both directions with rules isolated) and kept the denies.
 */
type Obj = Record<string, unknown>;
const policy = (flag: Obj): Obj => ({
  apiVersion: 'cilium.io/v2',
  kind: 'CiliumNetworkPolicy',
  metadata: { name: 'p', namespace: 'x', resourceVersion: '10' },
  spec: {
    endpointSelector: { matchLabels: { app: 'server' } },
    enableDefaultDeny: flag,
    ingress: [{ fromEntities: ['all'] }],
    ingressDeny: [{ fromEndpoints: [{ matchLabels: { app: 'other' } }] }],
    egress: [{ toServices: [{ k8sService: { serviceName: 's', namespace: 'x' } }] }],
  },
});
const STAND_IN = ['policy enforced fail-closed: it uses what distill does not read'];

describe('2326. a stand-in keeps only an enableDefaultDeny it can read', () => {
  it('a field distill does not know in the flag: the stand-in still holds, its deny on x/other kept', () => {
    const { warn, verdict } = agentVerdicts(policy({ ingress: false, futureFlag: true }));
    expect(warn).toEqual(STAND_IN);
    expect([verdict('client', 'ingress'), verdict('other', 'ingress')]).toEqual(['allow', 'deny']);
  });
  it('control: a flag that reads is kept (2231): the deny kept, client allowed', () => {
    const { warn, verdict } = agentVerdicts(policy({ ingress: false }));
    expect(warn).toEqual(STAND_IN);
    expect([verdict('client', 'ingress'), verdict('other', 'ingress')]).toEqual(['allow', 'deny']);
  });
});
