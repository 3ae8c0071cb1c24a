import { describe, expect, it } from 'vitest';
import { agentVerdicts } from './agent-verdicts.js';

/**
 * A CiliumNetworkPolicy using a field Cilium enforces but distill does not read (fromRequires,
 * toServices, cidrGroupRef, a field of a newer CRD) used to be skipped by the agent: its subject
 * lost the isolation and the denies the policy gives it (fail-open). The agent now enforces a
 * fail-closed stand-in (src/policy/stand-in.ts): unreadable allow rules dropped (the direction
 * stays isolated), unreadable deny rules deny every peer.
 */
type Obj = Record<string, unknown>;
const cnp = (spec: Obj, kind = 'CiliumNetworkPolicy'): Obj => ({ apiVersion: 'cilium.io/v2', kind, metadata: { name: 'p', ...(kind === 'CiliumNetworkPolicy' ? { namespace: 'x' } : {}), resourceVersion: '10' }, spec });
const server = { matchLabels: { app: 'server' } };
const fromClient = { fromEndpoints: [{ matchLabels: { app: 'client' } }] };

/** Verdicts into and out of x/server (local on n1) from x/client and x/other (n2), after one policy. */
function run(policy: Obj, nodeSelectorLabels = false): { warn: string[]; verdicts: Record<string, string> } {
  const { warn, verdict } = agentVerdicts(policy, [], nodeSelectorLabels ? { nodeSelectorLabels } : {});
  const verdicts: Record<string, string> = {};
  for (const peer of ['client', 'other'] as const) for (const dir of ['ingress', 'egress'] as const) verdicts[`${dir} ${peer}`] = verdict(peer, dir);
  return { warn, verdicts };
}

describe('agent: a Cilium policy with a field distill does not read', () => {
  it('an unreadable allow rule is dropped, the direction stays isolated (was: policy skipped, all allowed)', () => {
    const r = run(cnp({ endpointSelector: server, ingress: [fromClient, { fromRequires: [{ matchLabels: { env: 'prod' } }] }] }));
    expect(r.verdicts).toEqual({ 'ingress client': 'allow', 'ingress other': 'deny', 'egress client': 'allow', 'egress other': 'allow' });
    expect(r.warn).toEqual(['policy enforced fail-closed: it uses what distill does not read']);
  });
  it('an unreadable deny rule denies every peer in its direction', () => {
    const r = run(cnp({ endpointSelector: server, egressDeny: [{ toServices: [{ k8sService: { serviceName: 'db', namespace: 'x' } }] }] }));
    expect(r.verdicts).toEqual({ 'ingress client': 'allow', 'ingress other': 'allow', 'egress client': 'deny', 'egress other': 'deny' });
  });
  it('a deny with a cidrGroupRef, in a clusterwide policy, denies every peer in its direction', () => {
    const r = run(cnp({ endpointSelector: server, ingressDeny: [{ fromCIDRSet: [{ cidrGroupRef: 'bad-ips' }] }] }, 'CiliumClusterwideNetworkPolicy'));
    expect(r.verdicts['ingress client']).toBe('deny');
    expect(r.verdicts['ingress other']).toBe('deny');
  });
  it('a spec field of a newer CRD: the rules of the spec are kept, its directions isolated', () => {
    const r = run(cnp({ endpointSelector: server, ingress: [fromClient], futureField: { x: 1 } }));
    expect(r.verdicts).toEqual({ 'ingress client': 'allow', 'ingress other': 'deny', 'egress client': 'allow', 'egress other': 'allow' });
  });
  it('toNodes without --enable-node-selector-labels: enforced fail-closed (the cluster\'s Cilium may run with the flag); with it: read, no stand-in', () => {
    const policy = cnp({ endpointSelector: server, egress: [{ toEndpoints: [{ matchLabels: { app: 'client' } }] }, { toNodes: [{ matchLabels: { pool: 'gpu' } }] }], egressDeny: [{ toNodes: [{}], toPorts: [{ ports: [{ port: '22', protocol: 'TCP' }] }] }] });
    const off = run(policy);
    expect(off.warn).toEqual(['policy enforced fail-closed: it uses what distill does not read']);
    // The egressDeny toNodes stands in as "deny every peer" on egress.
    expect(off.verdicts).toEqual({ 'ingress client': 'allow', 'ingress other': 'allow', 'egress client': 'deny', 'egress other': 'deny' });
    const on = run(policy, true);
    expect(on.warn).toEqual([]);
    expect(on.verdicts).toEqual({ 'ingress client': 'allow', 'ingress other': 'allow', 'egress client': 'allow', 'egress other': 'deny' });
  });
  it('an invalid policy (Cilium refuses it too) and a host policy are still skipped', () => {
    const invalid = run(cnp({ endpointSelector: server, ingress: [{ ...fromClient, fromEntities: ['world'] }] }));
    expect(invalid.warn).toEqual(['object skipped: it cannot be read']);
    expect(invalid.verdicts['ingress other']).toBe('allow');
    const host = run(cnp({ nodeSelector: {}, ingress: [fromClient] }, 'CiliumClusterwideNetworkPolicy'));
    expect(host.warn).toEqual(['object skipped: it cannot be read']);
  });
  it('a ClusterNetworkPolicy Deny rule with an experimental peer denies all its traffic (the API: unknown peers fail closed)', () => {
    const cnpol = (action: string): Obj => ({
      apiVersion: 'policy.networking.k8s.io/v1alpha2',
      kind: 'ClusterNetworkPolicy',
      metadata: { name: 'no-nodes', resourceVersion: '10' },
      spec: { tier: 'Admin', priority: 5, subject: { pods: { podSelector: { matchLabels: { app: 'server' } } } }, egress: [{ name: 'names', action, to: [{ domainNames: ['api.example.com'] }] }] },
    });
    const deny = run(cnpol('Deny'));
    expect(deny.warn).toEqual(['policy enforced fail-closed: it uses what distill does not read']);
    expect(deny.verdicts).toEqual({ 'ingress client': 'allow', 'ingress other': 'allow', 'egress client': 'deny', 'egress other': 'deny' });
    // An Accept rule with domainNames is read as it is (it matches learnt answers only, none here): nothing changes.
    expect(run(cnpol('Accept')).verdicts).toEqual({ 'ingress client': 'allow', 'ingress other': 'allow', 'egress client': 'allow', 'egress other': 'allow' });
  });
});
