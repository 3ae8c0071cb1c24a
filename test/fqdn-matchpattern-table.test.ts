import { describe, expect, it } from 'vitest';
import { fqdnSelectorMatches, fqdnSyntaxError, makeFqdnSelector } from '../src/model/fqdn.js';
import { dnsRuleMatches } from '../src/model/l7.js';
import { parseManifest } from '../src/policy/manifest.js';

/**
 * Cilium's own tables for matchPattern, restated against both distill matchers (toFQDNs selectors
 * and DNS L7 rules). Names in Cilium are always fully qualified and lower-cased before matching;
 * distill normalises them the same way, so only names distill can receive are kept (the empty
 * name and names with an empty label are refused at input, checked below).
 */
interface Row {
  readonly pattern: string;
  readonly accept: readonly string[];
  readonly reject: readonly string[];
}

/** pkg/fqdn/matchpattern/matchpattern_test.go, TestAnchoredMatchPatternMatching (main before #43420). */
const CILIUM_TABLE: readonly Row[] = [
  { pattern: 'cilium.io.', accept: ['cilium.io.'], reject: ['anysub.cilium.io.', 'anysub.ci.io.', 'anysub.ciliumandmore.io.'] },
  { pattern: '*.cilium.io.', accept: ['anysub.cilium.io.'], reject: ['cilium.io.', 'anysub.ci.io.', 'anysub.ciliumandmore.io.'] },
  { pattern: '*.ci*.io.', accept: ['anysub.cilium.io.', 'anysub.ci.io.', 'anysub.ciliumandmore.io.'], reject: ['cilium.io.'] },
  { pattern: '*', accept: ['io.', 'cilium.io.', 'svc.cluster.local.', 'service.namesace.svc.cluster.local.', '_foobar._tcp.cilium.io.'], reject: [] },
  { pattern: '_foobar._tcp.cilium.io.', accept: ['_foobar._tcp.cilium.io.'], reject: ['_tcp.cilium.io.', 'cilium.io.'] },
  { pattern: '*.*.cilium.io.', accept: ['_foobar._tcp.cilium.io.'], reject: [] },
];

/**
 * Cilium 1.19 (cilium#43420), derived by hand from matchpattern.go: `dnsWildcardRegex`
 * (`^[*]{1,}[.]?$`: match-all), `subdomainWildcardSpecifierPrefix` (`^[*]{2,}[.]` ->
 * `([-a-zA-Z0-9_]+([.][-a-zA-Z0-9_]+){0,})[.]`, one or more labels) and `wildcardSpecifier`
 * (`[*]{1,}` -> `[-a-zA-Z0-9_]*`, within one label).
 */
const CILIUM_119: readonly Row[] = [
  { pattern: '**', accept: ['io.', 'a.b.c.cilium.io.', '_foobar._tcp.cilium.io.'], reject: [] },
  { pattern: '**.', accept: ['io.', 'a.b.cilium.io.'], reject: [] },
  { pattern: '***', accept: ['a.b.cilium.io.'], reject: [] },
  { pattern: '*.', accept: ['io.', 'a.b.cilium.io.'], reject: [] },
  { pattern: '**.cilium.io.', accept: ['anysub.cilium.io.', '_foobar._tcp.cilium.io.', 'sub11.sub22.sub33._foobar._tcp.cilium.io.'], reject: ['cilium.io.', 'anysub.ci.io.', 'anysub.ciliumandmore.io.'] },
  { pattern: '***.cilium.io', accept: ['a.cilium.io.', 'c.b.a.cilium.io.'], reject: ['cilium.io.'] },
  { pattern: '**.ci*.io.', accept: ['anysub.cilium.io.', 'anysub.ci.io.', '1.anysub.ciliumandmore.io.'], reject: ['cilium.io.', 'ci.io.'] },
  { pattern: '**.*.io.', accept: ['anysub.cilium.io.', 'a.b.c.io.'], reject: ['io.', 'cilium.io.'] },
  { pattern: 'a.**.io', accept: ['a.b.io.'], reject: ['a.b.c.io.', 'a.io.'] },
  { pattern: 'a**b.io', accept: ['ab.io.', 'axxb.io.'], reject: ['a.b.io.'] },
  { pattern: '*cilium.io', accept: ['cilium.io.', 'xcilium.io.'], reject: ['www.cilium.io.'] },
];

function check(rows: readonly Row[]): void {
  for (const { pattern, accept, reject } of rows) {
    expect(fqdnSyntaxError('matchPattern', pattern)).toBeUndefined();
    const sel = makeFqdnSelector('matchPattern', pattern);
    for (const [names, want] of [[accept, true], [reject, false]] as const) {
      for (const name of names) {
        expect([pattern, name, 'toFQDNs', fqdnSelectorMatches(sel, name)]).toEqual([pattern, name, 'toFQDNs', want]);
        expect([pattern, name, 'dns rule', dnsRuleMatches({ matchPattern: pattern }, { name })]).toEqual([pattern, name, 'dns rule', want]);
        expect([pattern, name.toUpperCase(), fqdnSelectorMatches(sel, name.toUpperCase())]).toEqual([pattern, name.toUpperCase(), want]);
      }
    }
  }
}

describe("Cilium's matchpattern tables", () => {
  it('TestAnchoredMatchPatternMatching rows hold for toFQDNs selectors and DNS rules', () => check(CILIUM_TABLE));

  it('the 1.19 wildcard forms (stars alone, a leading run of two or more stars and a dot)', () => check(CILIUM_119));

  it("refuses what the table's reject lists hold that no DNS answer can carry", () => {
    // "", ".io.", ".cilium.io.", ".svc.cluster.local." are rejected by "*" in Cilium; distill
    // never receives them: a DNS answer's name must be a valid matchName.
    for (const bad of ['', '.io.', '.cilium.io.', '.svc.cluster.local.', 'a..b.io']) expect(fqdnSyntaxError('matchName', bad)).toBeDefined();
    // The CRD's pattern `^([-a-zA-Z0-9_*]+[.]?)+$` refuses "." and characters outside the set.
    for (const bad of ['.', 'a b.io', 'a/b.io', '[a].io', 'a+.io']) expect(fqdnSyntaxError('matchPattern', bad)).toBeDefined();
    expect(fqdnSyntaxError('matchPattern', `${'a'.repeat(253)}.io`)).toMatch(/longer than 255/);
  });
});

describe('DNS rules on port ranges', () => {
  const policy = (ports: unknown[]): unknown => ({
    apiVersion: 'cilium.io/v2',
    kind: 'CiliumNetworkPolicy',
    metadata: { name: 'p', namespace: 'default' },
    spec: { endpointSelector: {}, egress: [{ toEndpoints: [{}], toPorts: [{ ports, rules: { dns: [{ matchPattern: '*' }] } }] }] },
  });

  it('are refused as Cilium refuses them (cilium#34023, PortProtocol.Validate: "DNS rules do not support port ranges")', () => {
    expect(() => parseManifest(policy([{ port: '53', endPort: 54, protocol: 'UDP' }]), 'f')).toThrow('f spec.egress[0].toPorts[0].ports[0].endPort: DNS rules do not support port ranges');
    // "EndPort is considered not present when it is equal to or less than the Port" (cilium#34023).
    expect(parseManifest(policy([{ port: '53', endPort: 53, protocol: 'UDP' }]), 'f').rules).toHaveLength(1);
  });
});

describe('DNS rule fields set to the empty string', () => {
  const policy = (dns: unknown): unknown => ({
    apiVersion: 'cilium.io/v2',
    kind: 'CiliumNetworkPolicy',
    metadata: { name: 'p', namespace: 'default' },
    spec: { endpointSelector: {}, egress: [{ toEndpoints: [{}], toPorts: [{ ports: [{ port: '53', protocol: 'UDP' }], rules: { dns: [dns] } }] }] },
  });

  it('are refused as the API server refuses them (CRD pattern ^([-a-zA-Z0-9_]+[.]?)+$; TestFQDNNameRegex lists "" as bad)', () => {
    expect(() => parseManifest(policy({ matchName: '', matchPattern: '*.io' }), 'f')).toThrow(/f spec\.egress\[0\]\.toPorts\[0\]\.rules\.dns\[0\]\.matchName: "" is not a valid DNS name/);
    expect(() => parseManifest(policy({ matchName: 'a.io', matchPattern: '' }), 'f')).toThrow(/dns\[0\]\.matchPattern: "" is not a valid DNS pattern/);
  });

  it('a rule with both fields is refused, as the CRD refuses it (rules.dns[] items: oneOf matchName / matchPattern, as toFQDNs items)', () => {
    expect(() => parseManifest(policy({ matchName: 'a.io', matchPattern: '*.io' }), 'f')).toThrow(/f spec\.egress\[0\]\.toPorts\[0\]\.rules\.dns\[0\]: exactly one of matchName or matchPattern/);
    expect(() => parseManifest(policy({}), 'f')).toThrow(/dns\[0\]: exactly one of matchName or matchPattern/);
    expect(parseManifest(policy({ matchName: 'a.io' }), 'f').rules).toHaveLength(1);
  });

  it('in toFQDNs too', () => {
    const fqdns = (sel: unknown): unknown => ({
      apiVersion: 'cilium.io/v2',
      kind: 'CiliumNetworkPolicy',
      metadata: { name: 'p', namespace: 'default' },
      spec: { endpointSelector: {}, egress: [{ toFQDNs: [sel] }] },
    });
    expect(() => parseManifest(fqdns({ matchName: '', matchPattern: '*.io' }), 'f')).toThrow(/f spec\.egress\[0\]\.toFQDNs\[0\]\.matchName: "" is not a valid DNS name/);
    expect(() => parseManifest(fqdns({ matchPattern: '' }), 'f')).toThrow(/toFQDNs\[0\]\.matchPattern: "" is not a valid DNS pattern/);
    expect(() => parseManifest(fqdns({ matchName: 'a.io', matchPattern: '*.io' }), 'f')).toThrow(/exactly one of matchName or matchPattern/);
    expect(() => parseManifest(fqdns({}), 'f')).toThrow(/exactly one of matchName or matchPattern/);
    expect(parseManifest(fqdns({ matchPattern: '*.IO.' }), 'f').rules[0]?.toFQDNs).toEqual([{ matchPattern: '*.io' }]);
  });
});
