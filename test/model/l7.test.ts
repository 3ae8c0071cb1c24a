import { describe, expect, it } from 'vitest';
import { canonicalJson, dnsRuleMatches, httpRuleMatches, kafkaRuleMatches, l7Allows, l7PolicyAllows, l7PolicyKey, mergeL7Rules } from '../../src/model/l7.js';

describe('L7 request matching', () => {
  it('HTTP: method, path and host are anchored regexes; headers must be present or equal', () => {
    const rule = { method: 'GET', path: '/public/.*' };
    expect(httpRuleMatches(rule, { method: 'GET', path: '/public/x' })).toBe(true);
    expect(httpRuleMatches(rule, { method: 'GET', path: '/private/public/x' })).toBe(false);
    expect(httpRuleMatches(rule, { method: 'GETX', path: '/public/x' })).toBe(false);
    expect(httpRuleMatches({ method: 'GET|HEAD' }, { method: 'HEAD', path: '/' })).toBe(true);
    expect(httpRuleMatches({ host: 'api\\.example\\.com' }, { method: 'GET', path: '/', host: 'api.example.com' })).toBe(true);
    expect(httpRuleMatches({ host: 'api\\.example\\.com' }, { method: 'GET', path: '/', host: 'API.example.com' })).toBe(false);
    expect(httpRuleMatches({ host: 'api\\.example\\.com' }, { method: 'GET', path: '/', host: 'api.example.com:8080' })).toBe(false);
    expect(httpRuleMatches({ headers: ['X-Token: abc', 'X-Trace'] }, { method: 'GET', path: '/', headers: { 'x-token': 'abc', 'x-trace': '1' } })).toBe(true);
    expect(httpRuleMatches({ headers: ['X-Token: abc'] }, { method: 'GET', path: '/', headers: { 'x-token': 'abd' } })).toBe(false);
    expect(httpRuleMatches({ headerMatches: [{ name: 'X-Key', value: 'k' }] }, { method: 'GET', path: '/', headers: {} })).toBe(false);
    expect(httpRuleMatches({ headerMatches: [{ name: 'X-Key', value: 'k', mismatch: 'LOG' }] }, { method: 'GET', path: '/', headers: {} })).toBe(true);
    expect(httpRuleMatches({}, { method: 'DELETE', path: '/anything' })).toBe(true);
  });

  it('Kafka: roles expand to API keys; topic, client and version must match when set', () => {
    expect(kafkaRuleMatches({ role: 'produce', topic: 'orders' }, { apiKey: 'produce', topic: 'orders' })).toBe(true);
    expect(kafkaRuleMatches({ role: 'produce', topic: 'orders' }, { apiKey: 'fetch', topic: 'orders' })).toBe(false);
    expect(kafkaRuleMatches({ role: 'consume' }, { apiKey: 'fetch', topic: 'x' })).toBe(true);
    expect(kafkaRuleMatches({ apiKey: 'produce', apiVersion: '3' }, { apiKey: 'produce', apiVersion: 2 })).toBe(false);
    expect(kafkaRuleMatches({ clientID: 'a' }, { apiKey: 'fetch', clientID: 'b' })).toBe(false);
    // Only produce, fetch and offset commit/fetch requests name topics the rule's topic is held to.
    expect(kafkaRuleMatches({ role: 'produce', topic: 'orders' }, { apiKey: 'produce', topic: 'audit' })).toBe(false);
    expect(kafkaRuleMatches({ role: 'produce', topic: 'orders' }, { apiKey: 'metadata' })).toBe(true);
    expect(kafkaRuleMatches({ role: 'consume', topic: 'orders' }, { apiKey: 'offsetcommit', topic: 'audit' })).toBe(false);
    expect(kafkaRuleMatches({ role: 'consume', topic: 'orders' }, { apiKey: 'heartbeat' })).toBe(true);
  });

  it('merged L7 policies: union of rules, empty list or empty rule = allow all, canonical order', () => {
    const a = { parser: 'http' as const, http: [{ path: '/b', method: 'GET' }] };
    const b = { parser: 'http' as const, http: [{ method: 'GET', path: '/b' }, { path: '/a' }] };
    const merged = mergeL7Rules('http', [a, b]);
    expect(merged).toEqual({ allowAll: false, rules: { parser: 'http', http: [{ method: 'GET', path: '/b' }, { path: '/a' }] } });
    expect(mergeL7Rules('http', [b, a])).toEqual(merged);
    expect(mergeL7Rules('http', [a, { parser: 'http', http: [] }])).toEqual({ allowAll: true });
    expect(mergeL7Rules('http', [a, { parser: 'http', http: [{}] }])).toEqual({ allowAll: true });
    expect(mergeL7Rules('http', [{ parser: 'kafka', kafka: [{}] }, a]).allowAll).toBe(false);
    expect(l7PolicyAllows(merged, { http: { method: 'PUT', path: '/a' } })).toBe(true);
    expect(l7PolicyAllows(merged, { http: { method: 'PUT', path: '/b' } })).toBe(false);
  });

  it('DNS: matchName is exact (case, trailing dot ignored); * stays within one label; a lone * matches all', () => {
    expect(dnsRuleMatches({ matchName: 'Cilium.io.' }, { name: 'cilium.io' })).toBe(true);
    expect(dnsRuleMatches({ matchPattern: '*.cilium.io' }, { name: 'sub.cilium.io.' })).toBe(true);
    expect(dnsRuleMatches({ matchPattern: '*.cilium.io' }, { name: 'a.b.cilium.io' })).toBe(false);
    expect(dnsRuleMatches({ matchPattern: '*.cilium.io' }, { name: 'cilium.io' })).toBe(false);
    expect(dnsRuleMatches({ matchPattern: 'api*.example.com' }, { name: 'api-v2.example.com' })).toBe(true);
    expect(dnsRuleMatches({ matchPattern: '*' }, { name: '.' })).toBe(true);
    expect(dnsRuleMatches({ matchPattern: '*' }, { name: 'a.b.c' })).toBe(true);
    // Cilium 1.19: a leading **. matches one or more labels; elsewhere ** is *.
    expect(dnsRuleMatches({ matchPattern: '**.cilium.io' }, { name: 'app.cilium.io' })).toBe(true);
    expect(dnsRuleMatches({ matchPattern: '**.cilium.io' }, { name: 'test.app.cilium.io' })).toBe(true);
    expect(dnsRuleMatches({ matchPattern: '**.cilium.io' }, { name: 'cilium.io' })).toBe(false);
    expect(dnsRuleMatches({ matchPattern: 'a**.io' }, { name: 'a.b.io' })).toBe(false);
    expect(dnsRuleMatches({ matchPattern: 'a**.io' }, { name: 'abc.io' })).toBe(true);
  });

  it('a list allows when any rule matches; an empty list allows all; another protocol is refused', () => {
    const http = { parser: 'http' as const, http: [{ method: 'GET' }, { method: 'POST', path: '/submit' }] };
    expect(l7Allows(http, { http: { method: 'POST', path: '/submit' } })).toBe(true);
    expect(l7Allows(http, { http: { method: 'POST', path: '/other' } })).toBe(false);
    expect(l7Allows({ parser: 'http', http: [] }, { http: { method: 'PUT', path: '/' } })).toBe(true);
    expect(l7Allows(http, { dns: { name: 'x' } })).toBe(false);
  });
});

describe('L7 policy keys', () => {
  it('the key of a merged policy is the canonical JSON of its rules', () => {
    for (const lists of [
      [{ parser: 'http' as const, http: [{ path: '/b', method: 'GET' }, { headers: ['X: 1'], headerMatches: [{ value: 'v', name: 'n' }] }] }],
      [{ parser: 'kafka' as const, kafka: [{ topic: 't', role: 'produce' as const }] }],
      [{ parser: 'dns' as const, dns: [{ matchPattern: '*.io' }, { matchName: 'a.io' }] }],
    ]) {
      const p = mergeL7Rules(lists[0]!.parser, lists);
      expect(p.allowAll).toBe(false);
      if (!p.allowAll) expect(l7PolicyKey(p)).toBe(canonicalJson(p.rules));
    }
  });
});
