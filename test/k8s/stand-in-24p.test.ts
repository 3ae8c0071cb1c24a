import { describe, expect, it } from 'vitest';
import { agentVerdicts } from './agent-verdicts.js';

/**
 * Attack findings 1830-1832 (docs/attack-findings-24p.md): an object Cilium 1.19 refuses whole (HTTP rules on a UDP
 * port, PortRule.sanitize) is skipped by the agent whatever else its rule holds that distill does not read.
 */
type Obj = Record<string, unknown>;
const cnp = (spec: Obj): Obj => ({ apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name: 'p', namespace: 'x', resourceVersion: '10' }, spec: { endpointSelector: { matchLabels: { app: 'server' } }, ...spec } });
const fromClient = { fromEndpoints: [{ matchLabels: { app: 'client' } }] };
const udpHttp = { toPorts: [{ ports: [{ port: '53', protocol: 'UDP' }], rules: { http: [{}] } }] };
const SKIPPED = ['object skipped: it cannot be read'];

describe('an unread part beside HTTP rules on UDP in the same rule: the object is skipped as Cilium refuses it (on 0574de5: a stand-in keeping the allow of client)', () => {
  const cases: [string, Obj][] = [
    ['1830. an unknown field', { fromEndpoints: [{}], newField: {}, ...udpHttp }],
    ['1831. matchLabels keys app and :app', { fromEndpoints: [{ matchLabels: { app: 'a', ':app': 'b' } }], ...udpHttp }],
    ['1832. a VRRP port', { fromEndpoints: [{}], toPorts: [{ ports: [{ port: '53', protocol: 'UDP' }, { port: '0', protocol: 'VRRP' }], rules: { http: [{}] } }] }],
  ];
  for (const [name, bad] of cases) {
    it(name, () => {
      const r = agentVerdicts(cnp({ ingress: [fromClient, bad] }));
      expect(r.warn).toEqual(SKIPPED);
      expect(r.verdict('other', 'ingress')).toBe('allow');
    });
  }
  it('each unread part alone still gets the stand-in (control)', () => {
    const r = agentVerdicts(cnp({ ingress: [fromClient, { fromEndpoints: [{}], newField: {} }] }));
    expect(r.warn).toEqual(['policy enforced fail-closed: it uses what distill does not read']);
    expect(r.verdict('client', 'ingress')).toBe('allow');
    expect(r.verdict('other', 'ingress')).toBe('deny');
  });
});

describe('1834. a clusterwide policy whose host spec holds HTTP rules on host ingress', () => {
  it('is skipped as Cilium refuses it (on 0574de5: its endpoint spec enforced, isolating the server)', () => {
    const host = { nodeSelector: {}, ingress: [{ fromEntities: ['world'], toPorts: [{ ports: [{ port: '80', protocol: 'TCP' }], rules: { http: [{}] } }] }] };
    const ccnp = { apiVersion: 'cilium.io/v2', kind: 'CiliumClusterwideNetworkPolicy', metadata: { name: 'p', resourceVersion: '10' }, specs: [{ endpointSelector: { matchLabels: { app: 'server' } }, ingress: [fromClient] }, host] };
    const r = agentVerdicts(ccnp);
    expect(r.warn).toEqual(SKIPPED);
    expect(r.verdict('other', 'ingress')).toBe('allow');
  });
});
