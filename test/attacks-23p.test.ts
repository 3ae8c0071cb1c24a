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
