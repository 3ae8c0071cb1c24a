import { describe, expect, it } from 'vitest';
import { agentVerdicts } from './agent-verdicts.js';

/**
 * Attack finding 1304 (docs/attack-findings-20p.md): a CiliumClusterwideNetworkPolicy whose `specs` hold an endpoint
 * spec and a host spec (`nodeSelector`). Cilium enforces both (pkg/k8s/apis/cilium.io/v2 CiliumNetworkPolicy.Parse reads
 * every spec; a nodeSelector spec applies to the host endpoint). distill models no host endpoint: the agent skipped the
 * whole object, so the endpoint spec's isolation and denies were lost (fail-open). Now the host spec alone is left out.
 */
type Obj = Record<string, unknown>;
const ccnp = (specs: Obj[]): Obj => ({ apiVersion: 'cilium.io/v2', kind: 'CiliumClusterwideNetworkPolicy', metadata: { name: 'p', resourceVersion: '10' }, specs });
const server = { matchLabels: { 'k8s:app': 'server' } };
const hostSpec = { nodeSelector: {}, ingress: [{ fromEntities: ['cluster'] }] };

describe('1304. the agent keeps the endpoint specs of a policy that also has a host spec', () => {
  it("an endpoint spec's isolation and allow are enforced beside a host spec (the object was skipped: all allowed)", () => {
    const r = agentVerdicts(ccnp([{ endpointSelector: server, ingress: [{ fromEndpoints: [{ matchLabels: { 'k8s:app': 'client' } }] }] }, hostSpec]));
    expect(r.verdict('client', 'ingress')).toBe('allow');
    expect(r.verdict('other', 'ingress')).toBe('deny');
    expect(r.verdict('other', 'egress')).toBe('allow');
    expect(r.warn).toEqual(['policy enforced fail-closed: it uses what distill does not read']);
  });

  it("an endpoint spec's deny is enforced beside a host spec", () => {
    const r = agentVerdicts(ccnp([hostSpec, { endpointSelector: server, egressDeny: [{ toEndpoints: [{ matchLabels: { 'k8s:app': 'client' } }] }] }]));
    expect(r.verdict('client', 'egress')).toBe('deny');
    // A deny rule also makes its direction default-deny (enableDefaultDeny absent = true); ingress stays open.
    expect(r.verdict('other', 'egress')).toBe('deny');
    expect(r.verdict('other', 'ingress')).toBe('allow');
  });

  it('a host-only policy is still skipped (no pod is its subject)', () => {
    const r = agentVerdicts(ccnp([hostSpec]));
    expect(r.warn).toEqual(['object skipped: it cannot be read']);
    expect(r.verdict('other', 'ingress')).toBe('allow');
  });
});

describe('1304. a namespaced policy with a host spec is refused whole, as Cilium refuses it', () => {
  // pkg/k8s/apis/cilium.io/v2/cnp_types.go CiliumNetworkPolicy.Parse: "Invalid CiliumNetworkPolicy spec: rule cannot have NodeSelector".
  it('the agent skips it (no stand-in keeps its endpoint spec)', () => {
    const cnp: Obj = { apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name: 'p', namespace: 'x', resourceVersion: '10' }, specs: [{ endpointSelector: server, ingress: [{}] }, hostSpec] };
    const r = agentVerdicts(cnp);
    expect(r.warn).toEqual(['object skipped: it cannot be read']);
    expect(r.verdict('other', 'ingress')).toBe('allow');
  });
});

describe('1304. a host spec Cilium refuses makes the whole object refused', () => {
  // pkg/policy/api/rule_validation.go Rule.Sanitize: "rule cannot have both EndpointSelector and NodeSelector", "rule must have
  // at least one of Ingress, IngressDeny, Egress, EgressDeny"; CiliumClusterwideNetworkPolicy.Parse returns the error for the object.
  it('both selectors, or no rules, in the host spec: skipped whole', () => {
    const endpointSpec = { endpointSelector: server, ingress: [{}] };
    for (const bad of [{ ...hostSpec, endpointSelector: server }, { nodeSelector: {}, ingress: [] }]) {
      const r = agentVerdicts(ccnp([endpointSpec, bad]));
      expect(r.warn).toEqual(['object skipped: it cannot be read']);
    }
  });
});
