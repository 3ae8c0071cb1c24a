import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { Policy } from '../../src/model/rules.js';
import { ManifestError } from '../../src/policy/errors.js';
import { parseManifest, parseManifestFile } from '../../src/policy/manifest.js';
import { parseScenario } from '../../src/scenario/format.js';

const RUNS = process.env.DISTILL_LONG ? 5000 : 300;

// --- generators of valid manifests -------------------------------------------------------------
const key = fc.constantFrom('app', 'role', 'tier', 'pod', 'team', 'example.com/env');
const value = fc.constantFrom('a', 'b', 'web', 'db', 'x-1');
const expr = fc.oneof(
  fc.record({ key, operator: fc.constantFrom('In', 'NotIn'), values: fc.uniqueArray(value, { minLength: 1, maxLength: 3 }) }),
  fc.record({ key, operator: fc.constantFrom('Exists', 'DoesNotExist') }),
);
const selector = fc.record({ matchLabels: fc.dictionary(key, value, { maxKeys: 2 }), matchExpressions: fc.array(expr, { maxLength: 2 }) }, { requiredKeys: [] });
const portNumber = fc.integer({ min: 1, max: 65535 });
const npPort = fc.oneof(
  fc.record({ port: portNumber, protocol: fc.constantFrom('TCP', 'UDP', 'SCTP') }, { requiredKeys: ['port'] }),
  fc.record({ port: fc.constantFrom('http', 'serve-80-tcp', 'dns') }),
  fc.record({ protocol: fc.constantFrom('TCP', 'UDP', 'SCTP') }),
  fc.tuple(fc.integer({ min: 1, max: 60000 }), fc.integer({ min: 0, max: 5000 })).map(([p, d]) => ({ port: p, endPort: p + d })),
);
const ipBlock = fc.constantFrom({ cidr: '10.0.0.0/8', except: ['10.96.0.0/12'] }, { cidr: '192.0.2.0/24' }, { cidr: '2001:db8::/32', except: ['2001:db8:1::/48'] });
const npPeer = fc.oneof(
  fc.record({ podSelector: selector }),
  fc.record({ namespaceSelector: selector }),
  fc.record({ podSelector: selector, namespaceSelector: selector }),
  fc.record({ ipBlock }),
);
const npRule = (peerField: 'from' | 'to') => fc.record({ [peerField]: fc.array(npPeer, { maxLength: 3 }), ports: fc.array(npPort, { maxLength: 3 }) }, { requiredKeys: [] });
const networkPolicy = fc.record({
  apiVersion: fc.constant('networking.k8s.io/v1'),
  kind: fc.constant('NetworkPolicy'),
  metadata: fc.record({ name: fc.constantFrom('p1', 'allow-web', 'deny.all'), namespace: fc.constantFrom('x', 'default') }),
  spec: fc.record(
    {
      podSelector: selector,
      policyTypes: fc.subarray(['Ingress', 'Egress']),
      ingress: fc.array(npRule('from'), { maxLength: 3 }),
      egress: fc.array(npRule('to'), { maxLength: 3 }),
    },
    { requiredKeys: ['podSelector'] },
  ),
});

const ciliumPort = fc.oneof(
  fc.record({ port: portNumber.map(String), protocol: fc.constantFrom('TCP', 'UDP', 'SCTP', 'ANY') }, { requiredKeys: ['port'] }),
  fc.tuple(fc.integer({ min: 1, max: 60000 }), fc.integer({ min: 0, max: 5000 })).map(([p, d]) => ({ port: String(p), endPort: p + d, protocol: 'TCP' })),
  fc.record({ port: fc.constantFrom('http', 'dns-tcp') }),
);
const portRule = fc.oneof(
  fc.record({ ports: fc.array(ciliumPort, { minLength: 1, maxLength: 3 }) }),
  fc.record({ ports: fc.constant([{ port: '80', protocol: 'TCP' }]), rules: fc.constant({ http: [{ method: 'GET', path: '/public/.*' }] }) }),
);
const entity = fc.constantFrom('all', 'world', 'cluster', 'host', 'remote-node', 'kube-apiserver', 'health', 'init', 'ingress', 'unmanaged');
const cidrRule = fc.constantFrom({ cidr: '10.0.0.0/8', except: ['10.96.0.0/12'] }, { cidr: '0.0.0.0/0' });
const ciliumRule = (dir: 'from' | 'to', deny: boolean) =>
  fc.record(
    {
      [`${dir}Endpoints`]: fc.array(selector, { maxLength: 2 }),
      [`${dir}Entities`]: fc.uniqueArray(entity, { maxLength: 2 }),
      [`${dir}CIDR`]: fc.array(fc.constantFrom('20.1.1.1/32', '192.0.2.7/32', '2001:db8::/64'), { maxLength: 2 }),
      [`${dir}CIDRSet`]: fc.array(cidrRule, { maxLength: 1 }),
      toPorts: fc.array(deny ? fc.record({ ports: fc.array(ciliumPort, { minLength: 1, maxLength: 2 }) }) : portRule, { maxLength: 2 }),
    },
    { requiredKeys: [] },
  ).map((rule) => {
    // Cilium refuses two non-empty peer kinds in one rule: keep the first.
    const kinds = ['Endpoints', 'Entities', 'CIDR', 'CIDRSet'].map((k) => `${dir}${k}`);
    const nonEmpty = kinds.filter((k) => Array.isArray(rule[k]) && (rule[k] as unknown[]).length > 0);
    return Object.fromEntries(Object.entries(rule).filter(([k]) => !nonEmpty.slice(1).includes(k)));
  });
const SECTIONS = ['ingress', 'ingressDeny', 'egress', 'egressDeny'] as const;
const hasSection = (spec: Record<string, unknown>): boolean => SECTIONS.some((k) => Array.isArray(spec[k]) && (spec[k] as unknown[]).length > 0);
const anyCiliumSpec = fc.record(
  {
    endpointSelector: selector,
    ingress: fc.array(ciliumRule('from', false), { maxLength: 2 }),
    ingressDeny: fc.array(ciliumRule('from', true), { maxLength: 2 }),
    egress: fc.array(ciliumRule('to', false), { maxLength: 2 }),
    egressDeny: fc.array(ciliumRule('to', true), { maxLength: 2 }),
    enableDefaultDeny: fc.record({ ingress: fc.boolean(), egress: fc.boolean() }, { requiredKeys: [] }),
  },
  { requiredKeys: ['endpointSelector'] },
);
// Cilium 1.19 Rule.Sanitize refuses a rule with none of the four sections, empty lists counting as none (finding 713).
const ciliumSpec = anyCiliumSpec.filter(hasSection);
const ciliumPolicy = fc.oneof(
  fc.record({ apiVersion: fc.constant('cilium.io/v2'), kind: fc.constant('CiliumNetworkPolicy'), metadata: fc.record({ name: fc.constant('c1'), namespace: fc.constantFrom('x', 'y') }), spec: ciliumSpec }),
  fc.record({ apiVersion: fc.constant('cilium.io/v2'), kind: fc.constant('CiliumClusterwideNetworkPolicy'), metadata: fc.record({ name: fc.constant('cc') }), specs: fc.array(ciliumSpec, { minLength: 1, maxLength: 2 }) }),
);
const validManifest = fc.oneof(networkPolicy, ciliumPolicy);

/** A policy as comparable plain data (CIDRs carry bigints). */
function canonical(p: Policy): string {
  return JSON.stringify({ ref: p.ref, rules: p.rules, enforcements: p.enforcements }, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v));
}

describe('manifest properties', () => {
  it('generated valid manifests parse, and round-trip through YAML to the same rules', () => {
    fc.assert(
      fc.property(validManifest, (m) => {
        const p = parseManifest(m, 'gen#1');
        // kubectl's YAML (go-yaml v2) reads `y`, `no`, `on` as booleans: written as YAML 1.1, such strings are quoted.
        const again = parseManifestFile(stringify(p.manifest, { version: '1.1' }), 'gen.yaml');
        expect(again).toHaveLength(1);
        expect(canonical(again[0]!)).toBe(canonical(p));
        // Every rule of a namespaced policy only ever applies to pods of that namespace.
        if (p.ref.namespace !== undefined) {
          for (const r of p.rules) expect(r.subject.key).toContain(`k8s:io.kubernetes.pod.namespace=${p.ref.namespace}`);
        }
      }),
      { numRuns: RUNS },
    );
  });

  it('a Cilium rule with no non-empty ingress, ingressDeny, egress or egressDeny is refused, and with it the whole policy (713)', () => {
    fc.assert(
      fc.property(fc.array(anyCiliumSpec, { minLength: 1, maxLength: 3 }), (specs) => {
        const m = { apiVersion: 'cilium.io/v2', kind: 'CiliumClusterwideNetworkPolicy', metadata: { name: 'cc' }, specs };
        const bad = specs.findIndex((s) => !hasSection(s));
        if (bad < 0) expect(parseManifest(m, 'gen#1').rules.length).toBeGreaterThan(0);
        else expect(() => parseManifest(m, 'gen#1')).toThrow(`specs[${bad}]: rule must have at least one of Ingress, IngressDeny, Egress, EgressDeny`);
      }),
      { numRuns: RUNS },
    );
  });

  /** Mutations that always make a valid manifest invalid, each at a random place. */
  const mutation = fc.constantFrom('unknownField', 'badPort', 'badOperator', 'badProtocol', 'badCidr', 'badKind', 'wrongType');
  function paths(v: unknown, prefix: (string | number)[] = []): (string | number)[][] {
    if (Array.isArray(v)) return [prefix, ...v.flatMap((x, i) => paths(x, [...prefix, i]))];
    if (typeof v === 'object' && v !== null) return [prefix, ...Object.entries(v).flatMap(([k, x]) => paths(x, [...prefix, k]))];
    return [prefix];
  }
  function mutate(m: Record<string, unknown>, kind: string, pick: number): { doc: unknown; applied: boolean } {
    const doc = structuredClone(m) as Record<string, unknown>;
    const all = paths(doc);
    const get = (path: (string | number)[]) => path.reduce<unknown>((o, k) => (o as Record<string | number, unknown>)[k], doc);
    const objects = all.filter((p) => { const v = get(p); return typeof v === 'object' && v !== null && !Array.isArray(v); });
    const byKey = (k: string) => all.filter((p) => p[p.length - 1] === k);
    const choose = <T>(xs: T[]): T | undefined => (xs.length === 0 ? undefined : xs[pick % xs.length]);
    const setAt = (path: (string | number)[] | undefined, v: unknown): boolean => {
      if (!path || path.length === 0) return false;
      const parent = get(path.slice(0, -1)) as Record<string | number, unknown>;
      parent[path[path.length - 1] as string | number] = v;
      return true;
    };
    switch (kind) {
      case 'unknownField': {
        const o = choose(objects);
        if (!o) return { doc, applied: false };
        (get(o) as Record<string, unknown>).bogusField = { nested: true };
        return { doc, applied: true };
      }
      case 'badPort':
        return { doc, applied: setAt(choose([...byKey('port'), ...byKey('endPort')]), 70000) };
      case 'badOperator':
        return { doc, applied: setAt(choose(byKey('operator')), 'Like') };
      case 'badProtocol':
        return { doc, applied: setAt(choose(byKey('protocol')), 'HTTP') };
      case 'badCidr':
        return { doc, applied: setAt(choose(byKey('cidr')), '300.0.0.0/8') };
      case 'badKind':
        return { doc, applied: setAt(['kind'], 'NetPol') };
      default:
        return { doc, applied: setAt(choose([...byKey('ingress'), ...byKey('egress'), ...byKey('metadata')]), 'not-a-list') };
    }
  }

  it('invalid manifests always produce a ManifestError naming the source, never another exception', () => {
    fc.assert(
      fc.property(validManifest, mutation, fc.nat(), (m, kind, pick) => {
        const { doc, applied } = mutate(m as Record<string, unknown>, kind, pick);
        fc.pre(applied);
        let thrown: unknown;
        try {
          parseManifest(doc, 'bad.yaml#3');
        } catch (e) {
          thrown = e;
        }
        expect(thrown).toBeInstanceOf(ManifestError);
        expect((thrown as ManifestError).message.startsWith('bad.yaml#3')).toBe(true);
      }),
      { numRuns: RUNS },
    );
  });

  it('arbitrary documents and texts never escape as anything but ManifestError', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (v) => {
        try {
          parseManifest(v, 'any#1');
        } catch (e) {
          expect(e).toBeInstanceOf(ManifestError);
        }
      }),
      { numRuns: RUNS },
    );
    fc.assert(
      fc.property(fc.string({ maxLength: 200 }), (text) => {
        for (const parse of [() => parseManifestFile(text, 'f.yaml'), () => parseScenario(text, 's.yaml')]) {
          try {
            parse();
          } catch (e) {
            expect(e).toBeInstanceOf(ManifestError);
          }
        }
      }),
      { numRuns: RUNS },
    );
  });
});
