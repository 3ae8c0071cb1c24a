import { describe, expect, it } from 'vitest';
import { agentVerdicts } from './agent-verdicts.js';

/**
 * Attack finding 1660 (docs/attack-findings-22p.md): `toPorts[].rules: {}`. The CRD's oneOf on L7Rules (Cilium 1.16+,
 * cilium 17882e96) makes the API server refuse it, but a policy stored before then is still served, and the 1.19 agent
 * reads it as a port without L7 rules (`L7Rules.IsEmpty`; rule_validation.go `L7Rules.sanitize` counts no type). distill
 * cannot know which: the agent's stand-in drops that allow rule and keeps the direction isolated, closed either way.
 */
type Obj = Record<string, unknown>;
const cnp = (spec: Obj): Obj => ({ apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name: 'p', namespace: 'x', resourceVersion: '10' }, spec });
const server = { matchLabels: { app: 'server' } };
const from = (app: string, extra: Obj = {}): Obj => ({ fromEndpoints: [{ matchLabels: { app } }], ...extra });

describe('1660. the agent enforces a fail-closed stand-in for rules: {}', () => {
  it('the allow with rules: {} is dropped, the subject stays isolated, the other rules are kept', () => {
    const r = agentVerdicts(cnp({ endpointSelector: server, ingress: [from('client', { toPorts: [{ ports: [{ port: '0', protocol: 'ANY' }], rules: {} }] }), from('other')] }));
    expect(r.warn).toEqual(['policy enforced fail-closed: it uses what distill does not read']);
    expect(r.verdict('client', 'ingress')).toBe('deny');
    expect(r.verdict('other', 'ingress')).toBe('allow');
  });

  it('several L7 types (refused by the agent too) still skip the object, as Cilium does', () => {
    const r = agentVerdicts(cnp({ endpointSelector: server, ingress: [from('client', { toPorts: [{ ports: [{ port: '80', protocol: 'TCP' }], rules: { http: [], kafka: [] } }] })] }));
    expect(r.warn).toEqual(['object skipped: it cannot be read']);
  });
});
