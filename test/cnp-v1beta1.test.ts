import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { objectKind } from '../src/k8s/objects.js';
import { ManifestError } from '../src/policy/errors.js';
import { parseManifest, parseManifestFile, type ParseOptions } from '../src/policy/manifest.js';
import { agentVerdicts } from './k8s/agent-verdicts.js';

/*
 * Attack findings 2160–2164 (docs/attack-findings-26v.md): ClusterNetworkPolicy at policy.networking.k8s.io/v1beta1
 * (kubernetes-sigs/network-policy-api apis/v1beta1/clusternetworkpolicy_types.go at 30ea168a6e84), read as its own
 * version beside v1alpha2 (apis/v1alpha2 at 0eec1b0e5fa9). The oracles below are the CRD markers themselves (the
 * whole DomainName pattern of each version, the CIDR rule computed on integers), not distill's reader.
 */
type Obj = Record<string, unknown>;
const V1BETA1 = 'policy.networking.k8s.io/v1beta1';
const V1ALPHA2 = 'policy.networking.k8s.io/v1alpha2';

const cnp = (apiVersion: string, spec: Obj, name = 'p'): Obj => ({ apiVersion, kind: 'ClusterNetworkPolicy', metadata: { name, resourceVersion: '10' }, spec: { tier: 'Admin', priority: 5, subject: { namespaces: {} }, ...spec } });
const egress = (rule: Obj): Obj => ({ egress: [rule] });
const read = (doc: Obj, options: ParseOptions = {}) => parseManifest(doc, 't.yaml', options);
const thrown = (f: () => unknown): ManifestError | undefined => {
  try {
    f();
    return undefined;
  } catch (e) {
    if (e instanceof ManifestError) return e;
    throw e;
  }
};

/** The v1beta1 and v1alpha2 `DomainName` patterns as the CRDs write them (the whole name at once). */
const PATTERN_V1BETA1 = /^(\*\.)?([a-zA-Z0-9]([-a-zA-Z0-9_]*[a-zA-Z0-9])?\.)+[a-zA-Z0-9]([-a-zA-Z0-9_]*[a-zA-Z0-9])?\.?$/;
const PATTERN_V1ALPHA2 = /^(\*\.)?([a-zA-z0-9]([-a-zA-Z0-9_]*[a-zA-Z0-9])?\.)+[a-zA-z0-9]([-a-zA-Z0-9_]*[a-zA-Z0-9])?\.?$/;

describe('2160. v1beta1 is read (the base refused it: "is not the apiVersion of ClusterNetworkPolicy (expected policy.networking.k8s.io/v1alpha2)")', () => {
  const spec = { ingress: [{ name: 'r', action: 'Deny', from: [{ namespaces: { matchLabels: { team: 'a' } } }], protocols: [{ tcp: { destinationPort: { range: { start: 80, end: 90 } } } }] }] };
  it('a v1beta1 manifest reads as the same v1alpha2 manifest does', () => {
    expect(read(cnp(V1BETA1, spec)).tiered).toEqual(read(cnp(V1ALPHA2, spec)).tiered);
  });
  it('a ClusterNetworkPolicyList at v1beta1, and a file mixing both versions', () => {
    const list = { apiVersion: V1BETA1, kind: 'ClusterNetworkPolicyList', items: [cnp(V1BETA1, spec, 'a')] };
    const text = `${JSON.stringify(list)}\n---\n${JSON.stringify(cnp(V1ALPHA2, spec, 'b'))}\n`;
    expect(parseManifestFile(text, 'f.yaml').map((p) => p.ref.name)).toEqual(['a', 'b']);
  });
  it('any other version is refused naming both', () => {
    expect(() => read(cnp('policy.networking.k8s.io/v1', spec))).toThrow('(expected policy.networking.k8s.io/v1beta1 or policy.networking.k8s.io/v1alpha2)');
  });
  it("the agent's kinds take v1beta1 and v1alpha2 objects", () => {
    expect(objectKind(cnp(V1BETA1, spec))).toBe('ClusterNetworkPolicy');
    expect(objectKind(cnp(V1ALPHA2, spec))).toBe('ClusterNetworkPolicy');
    expect(objectKind(cnp('policy.networking.k8s.io/v1alpha1', spec))).toBeUndefined();
  });
});

describe("2161. a networks CIDR with host bits: v1beta1's cidr(self) == cidr(self).masked()", () => {
  const withNetwork = (apiVersion: string, cidr: string): Obj => cnp(apiVersion, egress({ action: 'Deny', to: [{ networks: [cidr] }] }));
  it('refused at v1beta1 naming the network address; read as that network at v1alpha2', () => {
    expect(() => read(withNetwork(V1BETA1, '10.0.0.1/8'))).toThrow('spec.egress[0].to[0].networks[0]: "10.0.0.1/8" has host bits set: v1beta1 takes only a network address');
    expect(() => read(withNetwork(V1BETA1, 'fd00::1/8'))).toThrow('write fd00::/8');
    const peer = read(withNetwork(V1ALPHA2, '10.0.0.1/8')).tiered?.rules[0]?.peers[0];
    expect(peer).toMatchObject({ kind: 'networks', cidrs: [{ text: '10.0.0.0/8' }] });
  });
  it('property: v1beta1 takes an IPv4 CIDR exactly when its address is its masked address; v1alpha2 takes each', () => {
    fc.assert(
      fc.property(fc.nat(0xffffffff), fc.integer({ min: 0, max: 32 }), (addr, len) => {
        const text = `${[24, 16, 8, 0].map((s) => (addr >>> s) & 255).join('.')}/${len}`;
        const hostBits = len === 32 ? 0 : addr & (2 ** (32 - len) - 1);
        const beta = thrown(() => read(withNetwork(V1BETA1, text)));
        expect(beta === undefined).toBe(hostBits === 0);
        if (beta !== undefined) expect(beta.detail).toContain('has host bits set');
        expect(thrown(() => read(withNetwork(V1ALPHA2, text)))).toBeUndefined();
      }),
      { numRuns: 300 },
    );
  });
});

describe('2162. a domain name: each version its own DomainName pattern', () => {
  const withNames = (apiVersion: string, names: readonly string[]): Obj => cnp(apiVersion, egress({ action: 'Accept', to: [{ domainNames: names }] }));
  it('"_http._tcp.example.com": refused at v1beta1, taken at v1alpha2', () => {
    expect(() => read(withNames(V1BETA1, ['_http._tcp.example.com']))).toThrow('"_http._tcp.example.com" is not a domain name the API takes (two or more labels, each of letters, digits, "-" and "_" that starts and ends with a letter or digit');
    expect(() => read(withNames(V1ALPHA2, ['_http._tcp.example.com']))).not.toThrow();
  });
  it('property: the reader takes a name exactly when its version\'s whole pattern matches it', () => {
    const label = fc.string({ unit: fc.constantFrom('a', 'Z', '0', '-', '_', '^', '[', '`', '\\', ']'), minLength: 1, maxLength: 4 });
    const name = fc.tuple(fc.boolean(), fc.array(label, { minLength: 1, maxLength: 3 }), fc.boolean()).map(([star, ls, dot]) => `${star ? '*.' : ''}${ls.join('.')}${dot ? '.' : ''}`);
    fc.assert(
      fc.property(name, (n) => {
        expect(thrown(() => read(withNames(V1BETA1, [n]))) === undefined).toBe(PATTERN_V1BETA1.test(n));
        expect(thrown(() => read(withNames(V1ALPHA2, [n]))) === undefined).toBe(PATTERN_V1ALPHA2.test(n));
      }),
      { numRuns: 400 },
    );
  });
});

describe('2163. destinationNamedPort beside a networks peer', () => {
  const rule = { action: 'Deny', to: [{ networks: ['10.0.0.0/8'] }], protocols: [{ destinationNamedPort: 'http' }] };
  it('v1beta1 refuses it as invalid (no v1beta1 CRD takes it); v1alpha2 keeps "not supported" (its standard CRD takes it)', () => {
    const beta = thrown(() => read(cnp(V1BETA1, egress(rule))));
    expect(beta?.detail).toContain('destinationNamedPort cannot be used with a networks peer');
    expect(beta?.unread).toBe(false);
    expect(thrown(() => read(cnp(V1ALPHA2, egress(rule))))?.unread).toBe(true);
  });
});

describe('2164. the agent reads a served v1beta1 object as v1alpha2 checks it (the object may have been written at v1alpha2)', () => {
  const served: ParseOptions = { served: true };
  it('served: host bits read as the network, an underscore label taken, a named port beside networks "not supported"', () => {
    expect(read(cnp(V1BETA1, egress({ action: 'Deny', to: [{ networks: ['10.0.0.1/8'] }] })), served).tiered?.rules[0]?.peers[0]).toMatchObject({ cidrs: [{ text: '10.0.0.0/8' }] });
    expect(() => read(cnp(V1BETA1, egress({ action: 'Accept', to: [{ domainNames: ['_a.example.com'] }] })), served)).not.toThrow();
    expect(thrown(() => read(cnp(V1BETA1, egress({ action: 'Deny', to: [{ networks: ['10.0.0.0/8'] }], protocols: [{ destinationNamedPort: 'http' }] })), served))?.unread).toBe(true);
  });
  const server = { pods: { namespaceSelector: {}, podSelector: { matchLabels: { app: 'server' } } } };
  it('a v1beta1 Deny to 10.0.0.3/31 (host bits, written at v1alpha2) denies client and other (the base ignored every v1beta1 object: allow)', () => {
    const r = agentVerdicts(cnp(V1BETA1, { subject: server, egress: [{ action: 'Deny', to: [{ networks: ['10.0.0.3/31'] }] }] }));
    expect(r.warn).toEqual([]);
    expect(r.verdict('client', 'egress')).toBe('deny');
    expect(r.verdict('other', 'egress')).toBe('deny');
  });
  it('a v1beta1 Deny with a named port beside networks is enforced fail closed, not skipped (the base: allow)', () => {
    const r = agentVerdicts(cnp(V1BETA1, { subject: server, egress: [{ action: 'Deny', to: [{ networks: ['10.0.0.2/32'] }], protocols: [{ destinationNamedPort: 'http' }] }] }));
    expect(r.warn).toEqual(['policy enforced fail-closed: it uses what distill does not read']);
    expect(r.verdict('other', 'egress')).toBe('deny');
  });
  it('control: a v1alpha2 object reads as before in the agent', () => {
    const r = agentVerdicts(cnp(V1ALPHA2, { subject: server, egress: [{ action: 'Deny', to: [{ networks: ['10.0.0.2/32'] }] }] }));
    expect(r.verdict('client', 'egress')).toBe('deny');
    expect(r.verdict('other', 'egress')).toBe('allow');
  });
});

describe('property: v1beta1 is v1alpha2 with three more refusals, and a served v1beta1 object is read as v1alpha2', () => {
  const selector = fc.constantFrom({}, { matchLabels: { team: 'a' } }, { matchExpressions: [{ key: 'team', operator: 'NotIn', values: ['b'] }] });
  const cidr = fc.constantFrom('10.0.0.0/8', '10.0.0.1/8', '0.0.0.0/0', '::/0', 'fd00::1/64', '192.168.1.7/32', '::ffff:10.0.0.0/104');
  const domain = fc.constantFrom('example.com', '*.kubernetes.io', '_srv.example.com', 'a.b.', 'x^y.example.com', 'single');
  const peer = fc.oneof(
    selector.map((s) => ({ namespaces: s })),
    selector.map((s) => ({ pods: { podSelector: s } })),
    fc.array(cidr, { minLength: 1, maxLength: 2 }).map((n) => ({ networks: [...new Set(n)] })),
    fc.array(domain, { minLength: 1, maxLength: 2 }).map((d) => ({ domainNames: [...new Set(d)] })),
  );
  const protocol = fc.oneof(fc.constant({ destinationNamedPort: 'http' }), fc.integer({ min: 1, max: 65535 }).map((n) => ({ udp: { destinationPort: { number: n } } })));
  const rule = fc.record({ action: fc.constantFrom('Accept', 'Deny', 'Pass'), to: fc.array(peer, { minLength: 1, maxLength: 2 }), protocols: fc.option(fc.array(protocol, { minLength: 1, maxLength: 2 }), { nil: undefined }) });
  const V1BETA1_ONLY = ['has host bits set', 'starts and ends with a letter or digit', 'destinationNamedPort cannot be used with a networks peer'];
  it('holds', () => {
    fc.assert(
      fc.property(fc.array(rule, { minLength: 1, maxLength: 3 }), (rules) => {
        const spec = { egress: rules.map((r) => (r.protocols === undefined ? { action: r.action, to: r.to } : r)) };
        let alpha: ReturnType<typeof read> | undefined;
        const alphaErr = thrown(() => (alpha = read(cnp(V1ALPHA2, spec))));
        let beta: ReturnType<typeof read> | undefined;
        const betaErr = thrown(() => (beta = read(cnp(V1BETA1, spec))));
        let served: ReturnType<typeof read> | undefined;
        const servedErr = thrown(() => (served = read(cnp(V1BETA1, spec), { served: true })));
        // Served v1beta1 = v1alpha2, error for error and policy for policy.
        expect(servedErr?.message.replace(V1BETA1, V1ALPHA2)).toEqual(alphaErr?.message);
        expect(served?.tiered).toEqual(alpha?.tiered);
        if (betaErr === undefined) {
          // v1beta1 never takes what v1alpha2 refuses, and reads what it takes alike.
          expect(alphaErr).toBeUndefined();
          expect(beta?.tiered).toEqual(alpha?.tiered);
        } else if (betaErr.message.replace(V1BETA1, V1ALPHA2) !== alphaErr?.message) {
          // An error v1alpha2 does not give is one of v1beta1's own rules (reading stops at the first invalid field).
          expect(V1BETA1_ONLY.some((m) => betaErr.detail.includes(m)), betaErr.message).toBe(true);
          expect(betaErr.unread).toBe(false);
        }
      }),
      { numRuns: 400 },
    );
  });
});
