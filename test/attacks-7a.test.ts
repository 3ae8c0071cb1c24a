import { describe, expect, it } from 'vitest';
import { agentVerdicts } from './k8s/agent-verdicts.js';

/** Attack round 7a (docs/attack-findings-7a.md): manifests Cilium 1.19 accepts, read by the agent. */
type Obj = Record<string, unknown>;
const cnp = (spec: Obj): Obj => ({ apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name: 'p', namespace: 'x', resourceVersion: '10' }, spec });
const server = { matchLabels: { app: 'server' } };
const fromClient = { fromEndpoints: [{ matchLabels: { app: 'client' } }] };
const fromOther = { fromEndpoints: [{ matchLabels: { app: 'other' } }] };

/** Ingress verdicts into x/server (local on n1) on TCP/80 from x/client and x/other, after one policy. */
function run(policy: Obj): { warn: string[]; verdicts: Record<string, string> } {
  const { warn, verdict } = agentVerdicts(policy);
  return { warn, verdicts: { client: verdict('client', 'ingress'), other: verdict('other', 'ingress') } };
}

const http = (rule: Obj): Obj => ({ ...fromOther, toPorts: [{ ports: [{ port: '80', protocol: 'TCP' }], rules: { http: [rule] } }] });

describe('finding 60: HTTP fields Cilium does not sanitize', () => {
  it('a host that is no RE2 regex (`*.example.com`): the policy is enforced fail-closed (was: skipped, all allowed)', () => {
    const r = run(cnp({ endpointSelector: server, ingress: [fromClient, http({ host: '*.example.com' })] }));
    expect(r.warn).toEqual(['policy enforced fail-closed: it uses what distill does not read']);
    expect(r.verdicts).toEqual({ client: 'allow', other: 'deny' });
  });
  it('an empty `headers` entry: the policy is enforced fail-closed (was: skipped)', () => {
    const r = run(cnp({ endpointSelector: server, ingress: [fromClient, http({ headers: [''] })] }));
    expect(r.warn).toEqual(['policy enforced fail-closed: it uses what distill does not read']);
    expect(r.verdicts).toEqual({ client: 'allow', other: 'deny' });
  });
  it('a path that is no regex is refused by Cilium (PortRuleHTTP.Sanitize): still skipped', () => {
    const r = run(cnp({ endpointSelector: server, ingress: [fromClient, http({ path: '/a(' })] }));
    expect(r.warn).toEqual(['object skipped: it cannot be read']);
  });
});

describe('finding 61: Kafka rule fields read as Cilium sanitizes them', () => {
  const kafka = (rule: Obj): Obj => ({ ...fromClient, toPorts: [{ ports: [{ port: '80', protocol: 'TCP' }], rules: { kafka: [rule] } }] });
  it('apiVersion "+5" / "-0", a topic with a backslash, a role with an empty apiKey are accepted (was: refused, the policy skipped)', () => {
    for (const rule of [{ apiKey: 'produce', apiVersion: '+5' }, { apiVersion: '-0' }, { topic: 'a\\b' }, { role: 'produce', apiKey: '' }]) {
      const r = run(cnp({ endpointSelector: server, ingress: [kafka(rule)] }));
      expect(r.warn, JSON.stringify(rule)).toEqual([]);
      expect(r.verdicts, JSON.stringify(rule)).toEqual({ client: 'allow', other: 'deny' });
    }
  });
  it('apiVersion "40000" is refused as Cilium refuses it (was: accepted, its allows enforced)', () => {
    const r = run(cnp({ endpointSelector: server, ingress: [kafka({ apiVersion: '40000' })] }));
    expect(r.warn).toEqual(['object skipped: it cannot be read']);
  });
});

describe('finding 62: more than 40 ports or ICMP types in one rule (Cilium refuses the policy)', () => {
  const ports = (n: number): Obj[] => Array.from({ length: n }, (_, i) => ({ port: String(1000 + i), protocol: 'TCP' }));
  it('41 ports in an allow rule: skipped as Cilium skips it (was: enforced, its allows open)', () => {
    const r = run(cnp({ endpointSelector: server, ingress: [{ ...fromClient, toPorts: [{ ports: [{ port: '80', protocol: 'TCP' }, ...ports(40)] }] }] }));
    expect(r.warn).toEqual(['object skipped: it cannot be read']);
  });
  it('41 ICMP types in a deny rule are refused; 40 ports and 40 types are read', () => {
    const icmps = [{ fields: Array.from({ length: 41 }, (_, i) => ({ type: i })) }];
    expect(run(cnp({ endpointSelector: server, ingressDeny: [{ ...fromOther, icmps }] })).warn).toEqual(['object skipped: it cannot be read']);
    const forty = run(cnp({ endpointSelector: server, ingress: [{ ...fromClient, toPorts: [{ ports: [{ port: '80', protocol: 'TCP' }, ...ports(39)] }] }, { ...fromOther, icmps: [{ fields: icmps[0]!.fields.slice(1) }] }] }));
    expect(forty.warn).toEqual([]);
    expect(forty.verdicts).toEqual({ client: 'allow', other: 'deny' });
  });
});

describe('finding 63: ICMP types the CRD does not bound', () => {
  it('an integer type above 255 (the CRD pattern bounds strings only): enforced fail-closed (was: policy skipped)', () => {
    const r = run(cnp({ endpointSelector: server, ingress: [{ ...fromClient, toPorts: [{ ports: [{ port: '80', protocol: 'TCP' }] }] }, { ...fromOther, icmps: [{ fields: [{ type: 256 }] }] }] }));
    expect(r.warn).toEqual(['policy enforced fail-closed: it uses what distill does not read']);
    expect(r.verdicts).toEqual({ client: 'allow', other: 'deny' });
  });
  it('a deny of type -1: every peer denied in that direction (was: skipped, nothing denied)', () => {
    const r = run(cnp({ endpointSelector: server, ingress: [{ fromEntities: ['all'] }], ingressDeny: [{ ...fromOther, icmps: [{ fields: [{ type: -1 }] }] }] }));
    expect(r.verdicts).toEqual({ client: 'deny', other: 'deny' });
  });
  it('a string type with a leading zero is refused as the API server refuses it (was: read as 8)', () => {
    const r = run(cnp({ endpointSelector: server, ingress: [{ ...fromOther, icmps: [{ fields: [{ type: '08' }] }] }] }));
    expect(r.warn).toEqual(['object skipped: it cannot be read']);
  });
});

describe('finding 64: `cidr:` label keys in endpoint selectors', () => {
  it('a deny whose selector names reserved:world and a cidr: label is enforced fail-closed (was: matched no CIDR identity)', () => {
    const deny = { fromEndpoints: [{ matchLabels: { 'reserved:world': '', 'cidr:10.0.0.0/8': '' } }] };
    const r = run(cnp({ endpointSelector: server, ingress: [{ fromEntities: ['all'] }], ingressDeny: [deny] }));
    expect(r.warn).toEqual(['policy enforced fail-closed: it uses what distill does not read']);
    expect(r.verdicts).toEqual({ client: 'deny', other: 'deny' });
  });
  it('an allow with DoesNotExist on a cidr: key is dropped, the subject stays isolated', () => {
    const allow = { fromEndpoints: [{ matchLabels: { 'reserved:world': '' }, matchExpressions: [{ key: 'cidr:10.0.0.0/8', operator: 'DoesNotExist' }] }] };
    const r = run(cnp({ endpointSelector: server, ingress: [fromClient, allow] }));
    expect(r.warn).toEqual(['policy enforced fail-closed: it uses what distill does not read']);
    expect(r.verdicts).toEqual({ client: 'allow', other: 'deny' });
  });
});
