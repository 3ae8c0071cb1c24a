import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { fqdnSelectorMatches, fqdnSyntaxError, makeFqdnSelector } from '../src/model/fqdn.js';
import { dnsRuleMatches } from '../src/model/l7.js';

/**
 * Differential check of distill's matchPattern readings against a restatement of Cilium 1.19's
 * pkg/fqdn/matchpattern/matchpattern.go (isDNSWildcard, Sanitize, ToAnchoredRegexp,
 * escapeRegexpCharacters) and of the DNS proxy's GeneratePattern (matchName and matchPattern of
 * a PortRuleDNS ORed, a wildcard making the whole port match-all). Any name distill lets through
 * that Cilium's regexp refuses is a fail-open; the converse would be a needless denial.
 */
const CHARS = '[-a-zA-Z0-9_]';

function ciliumIsWildcard(p: string): boolean {
  const body = p.endsWith('.') ? p.slice(0, -1) : p;
  return body.length > 0 && /^\*+$/.test(body);
}

/** escapeRegexpCharacters: a leading run of two or more stars then a dot takes one or more labels; other star runs one label's characters. */
function ciliumEscape(p: string): string {
  let out = '';
  let i = 0;
  let stars = 0;
  while (stars < p.length && p[stars] === '*') stars++;
  if (stars >= 2 && stars < p.length && p[stars] === '.') {
    out += `(${CHARS}+([.]${CHARS}+){0,})[.]`;
    i = stars + 1;
  }
  for (; i < p.length; i++) {
    const c = p[i]!;
    if (c === '.') out += '[.]';
    else if (c === '*') {
      while (p[i + 1] === '*') i++;
      out += `${CHARS}*`;
    } else out += c;
  }
  return out;
}

const fqdn = (s: string): string => (s.endsWith('.') ? s : `${s}.`);
const sanitize = (p: string): string => (ciliumIsWildcard(p) ? p : fqdn(p));

/** toFQDNs: FQDNSelector.ToRegex → ToAnchoredRegexp(Sanitize(pattern)). */
function ciliumSelectorMatches(pattern: string, name: string): boolean {
  const p = sanitize(pattern).trim().toLowerCase();
  const re = ciliumIsWildcard(p) ? `(^(${CHARS}+[.])+$)|(^[.]$)` : `^${ciliumEscape(p)}$`;
  return new RegExp(re).test(fqdn(name).toLowerCase());
}

/** The DNS proxy: GeneratePattern over one rule's matchName and matchPattern (unanchored pieces ORed, anchored once). */
function ciliumDnsRuleMatches(rule: { matchName?: string; matchPattern?: string }, name: string): boolean {
  const pieces: string[] = [];
  if (rule.matchName) pieces.push(ciliumEscape(fqdn(rule.matchName).toLowerCase()));
  if (rule.matchPattern) {
    const p = sanitize(rule.matchPattern).trim().toLowerCase();
    if (ciliumIsWildcard(p)) return true;
    pieces.push(ciliumEscape(p));
  }
  return new RegExp(`^(?:${pieces.join('|')})$`).test(fqdn(name).toLowerCase());
}

const label = fc.stringMatching(/^[-a-cA-C0-9_]{1,4}$/);
const nameArb = fc.array(fc.constantFrom('a', 'b', 'ab', 'B', 'c-1', '_x', 'io'), { minLength: 1, maxLength: 5 }).chain((ls) =>
  fc.tuple(fc.constant(ls.join('.')), fc.boolean()).map(([n, dot]) => (dot ? `${n}.` : n)),
);
const patternLabel = fc.oneof(label, fc.constantFrom('*', '**', '***', 'a*', '*b', 'a**b', '*a*', 'A*', 'io'));
const patternArb = fc.array(patternLabel, { minLength: 1, maxLength: 4 }).chain((ls) =>
  fc.tuple(fc.constant(ls.join('.')), fc.boolean()).map(([p, dot]) => (dot ? `${p}.` : p)),
);

describe('matchPattern: distill vs a restatement of Cilium 1.19 matchpattern.go', () => {
  it('toFQDNs selectors and DNS rules select exactly the names Cilium does (valid names and patterns)', () => {
    let compared = 0;
    fc.assert(
      fc.property(patternArb, nameArb, nameArb, (pattern, name, ruleName) => {
        if (fqdnSyntaxError('matchPattern', pattern) !== undefined || fqdnSyntaxError('matchName', name) !== undefined) return;
        if (fqdnSyntaxError('matchName', ruleName) !== undefined) return;
        compared++;
        const want = ciliumSelectorMatches(pattern, name);
        expect([pattern, name, fqdnSelectorMatches(makeFqdnSelector('matchPattern', pattern), name)]).toEqual([pattern, name, want]);
        expect([pattern, name, dnsRuleMatches({ matchPattern: pattern }, { name })]).toEqual([pattern, name, ciliumDnsRuleMatches({ matchPattern: pattern }, name)]);
        const both = { matchName: ruleName, matchPattern: pattern };
        expect([both, name, dnsRuleMatches(both, { name })]).toEqual([both, name, ciliumDnsRuleMatches(both, name)]);
      }),
      process.env.DISTILL_LONG ? { numRuns: 200_000 } : { numRuns: 3000, seed: 20261130 },
    );
    expect(compared).toBeGreaterThan(1000);
  });

  it('corner cases: stars next to the multi-label prefix, a lone star label, case', () => {
    const rows: [string, string][] = [
      ['**.*', 'a.b'],
      ['**.*', 'a'],
      ['***.**.io', 'a.b.io'],
      ['**.**', 'a'],
      ['**a.io', 'xa.io'],
      ['**a.io', 'x.a.io'],
      ['*.**.io', 'a.io'],
      ['**.', 'a.b'],
      ['**.IO', 'a.io'],
      ['a.**', 'a.b.c'],
      ['a.**', 'a.b'],
    ];
    for (const [pattern, name] of rows) {
      expect([pattern, name, fqdnSelectorMatches(makeFqdnSelector('matchPattern', pattern), name)]).toEqual([pattern, name, ciliumSelectorMatches(pattern, name)]);
      expect([pattern, name, dnsRuleMatches({ matchPattern: pattern }, { name })]).toEqual([pattern, name, ciliumDnsRuleMatches({ matchPattern: pattern }, name)]);
    }
  });
});

describe('DNS rule query names outside ASCII', () => {
  it('fold case in ASCII only, as the proxy sees them (miekg/dns escapes other bytes): the Kelvin sign is not k', () => {
    expect(dnsRuleMatches({ matchName: 'kube.io' }, { name: 'KUBE.io.' })).toBe(true);
    expect(dnsRuleMatches({ matchName: 'kube.io' }, { name: '\u212Aube.io' })).toBe(false);
    expect(dnsRuleMatches({ matchPattern: '*.kube.io' }, { name: 'a.\u212Aube.io' })).toBe(false);
    expect(dnsRuleMatches({ matchPattern: 'k*.io' }, { name: '\u212Aube.io' })).toBe(false);
    // A match-all rule is `(?:)` in GeneratePattern: every query, whatever its bytes.
    expect(dnsRuleMatches({ matchPattern: '**' }, { name: '\u212Aube.io' })).toBe(true);
  });
});
