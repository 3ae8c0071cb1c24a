import { describe, expect, it } from 'vitest';
import { httpRuleMatches } from '../src/model/l7.js';
import { normalizedHttpPath } from '../src/model/l7-path.js';

describe('finding 280: a request target Envoy refuses before normalizing matches no HTTP rule', () => {
  it('a target not starting with "/" (404 before any filter) matches neither its "/"-prefixed form nor a match-all rule', () => {
    for (const p of ['admin', '\\admin', '%2Fadmin', '*', 'http://shop/admin', '']) {
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
