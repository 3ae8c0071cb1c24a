import { describe, expect, it } from 'vitest';
import { httpRuleMatches } from '../src/model/l7.js';
import { normalizedHttpPath } from '../src/model/l7-path.js';

describe('finding 280: a request target Envoy refuses before normalizing matches no HTTP rule', () => {
  it('a target not starting with "/" (404 before any filter) matches neither its "/"-prefixed form nor a match-all rule', () => {
    for (const p of ['admin', '\\admin', '%2Fadmin', '*', 'shop/admin', '']) {
      expect(normalizedHttpPath(p), JSON.stringify(p)).toBeUndefined();
      expect(httpRuleMatches({ path: '/admin' }, { method: 'GET', path: p }), p).toBe(false);
      expect(httpRuleMatches({ method: 'GET' }, { method: 'GET', path: p }), p).toBe(false);
    }
  });

  it('a "#fragment" anywhere in the target (rejected by default) matches no rule, not even the path it would resolve to', () => {
    for (const p of ['/public#/../admin', '/admin#x', '/admin?q=1#/x', '/admin%23x#']) {
      expect(normalizedHttpPath(p), p).toBeUndefined();
      expect(httpRuleMatches({ path: '/admin.*' }, { method: 'GET', path: p }), p).toBe(false);
    }
    // An escaped '#' is no fragment: it stays escaped in the path.
    expect(normalizedHttpPath('/admin%23x')).toBe('/admin%23x');
  });
});

describe('review 10r, held: Chromium CanonicalizePath edge cases (url_canon_path.cc DoPartialPath)', () => {
  it('escaped dots, trailing dot segments, ";" params, overlong UTF-8, an escaped "?"', () => {
    const cases: [string, string][] = [
      ['/a/%2e%2e/b', '/b'], ['/a/.%2E/b', '/b'], ['/a/b/.', '/a/b/'], ['/a/b/%2e', '/a/b/'], ['/a/%2E%2e', '/'],
      ['/a;x=1/../b', '/b'], ['/a/..;/b', '/a/..;/b'], ['/a/%c0%ae%c0%ae/b', '/a/%c0%ae%c0%ae/b'], ['/a%3f/../b', '/b'],
    ];
    for (const [raw, want] of cases) expect(normalizedHttpPath(raw), raw).toBe(want);
    expect(httpRuleMatches({ path: '/a/\\.\\.;/b' }, { method: 'GET', path: '/a/..;/b' })).toBe(true);
    expect(httpRuleMatches({ path: '/b' }, { method: 'GET', path: '/a/..;/b' })).toBe(false);
  });
});
