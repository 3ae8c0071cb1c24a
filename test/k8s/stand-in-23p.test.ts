import { describe, expect, it } from 'vitest';
import { agentVerdicts } from './agent-verdicts.js';

/**
 * Attack finding 1765 (docs/attack-findings-23p.md): what the agent enforces for a Cilium policy that
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
