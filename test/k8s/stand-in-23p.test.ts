import { describe, expect, it } from 'vitest';
import { agentVerdicts } from './agent-verdicts.js';

/**
 * Attack findings 1765, 1766 and 1767 (docs/attack-findings-23p.md): what the agent enforces for a Cilium policy that
 * Cilium 1.19 refuses whole (two peer kinds in one rule, one of them toGroups) or enforces (empty L7 lists).
 */
type Obj = Record<string, unknown>;
const cnp = (spec: Obj): Obj => ({ apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name: 'p', namespace: 'x', resourceVersion: '10' }, spec: { endpointSelector: { matchLabels: { app: 'server' } }, ...spec } });
const fromClient = { fromEndpoints: [{ matchLabels: { app: 'client' } }] };
const SKIPPED = ['object skipped: it cannot be read'];

describe('1765. a rule combining toEndpoints and toGroups', () => {
  it('skips the object as Cilium does (was: a stand-in keeping the ingress allow of client, and isolating both directions)', () => {
    const r = agentVerdicts(cnp({ ingress: [fromClient], egress: [{ toEndpoints: [{}], toGroups: [{ aws: { securityGroupsIds: ['sg-1'] } }] }] }));
    expect(r.warn).toEqual(SKIPPED);
    expect(r.verdict('other', 'ingress')).toBe('allow');
    expect(r.verdict('other', 'egress')).toBe('allow');
  });
});

describe('1766. empty L7 lists are no L7 rules', () => {
  it('with the L7 proxy disabled, rules: {http: []} is enforced as a plain allow (was: object skipped, subject open)', () => {
    const r = agentVerdicts(cnp({ ingress: [{ ...fromClient, toPorts: [{ ports: [{ port: '80', protocol: 'TCP' }], rules: { http: [] } }] }] }), [], { l7Proxy: false });
    expect(r.warn).toEqual([]);
    expect(r.verdict('client', 'ingress')).toBe('allow');
    expect(r.verdict('other', 'ingress')).toBe('deny');
  });
  it('serverNames beside http: [] gets the stand-in: the rule dropped, the direction isolated (was: object skipped)', () => {
    const r = agentVerdicts(cnp({ ingress: [fromClient], egress: [{ toEndpoints: [{}], toPorts: [{ ports: [{ port: '80', protocol: 'TCP' }], serverNames: ['a.example'], rules: { http: [] } }] }] }));
    expect(r.warn).toEqual(['policy enforced fail-closed: it uses what distill does not read']);
    expect(r.verdict('client', 'ingress')).toBe('allow');
    expect(r.verdict('other', 'ingress')).toBe('deny');
    expect(r.verdict('client', 'egress')).toBe('deny');
  });
});

describe('1767. an unread field beside an invalid one in the same rule', () => {
  it('skips the object as Cilium does (was: a stand-in keeping the allow of client, isolating other)', () => {
    const bad = { fromEndpoints: [{}], authentication: { mode: 'required' }, toPorts: [{ ports: [{ port: '53', protocol: 'UDP' }], rules: { http: [{}] } }] };
    const r = agentVerdicts(cnp({ ingress: [fromClient, bad] }));
    expect(r.warn).toEqual(SKIPPED);
    expect(r.verdict('other', 'ingress')).toBe('allow');
  });
});
