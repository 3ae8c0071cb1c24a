import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { EngineDecider } from '../src/harness/engine-decider.js';
import { Engine } from '../src/engine/engine.js';
import { httpRuleMatches } from '../src/model/l7.js';
import { normalizedHttpPath } from '../src/model/l7-path.js';
import { decideFlow } from '../src/naive/evaluator.js';
import { parseScenario } from '../src/scenario/format.js';
import { runScenario, scenarioEngineOptions } from '../src/scenario/run.js';

/** Oracle and engine verdicts of a scenario, with its expectations checked. */
function run(file: string): void {
  const scenario = parseScenario(readFileSync(file, 'utf8'), file);
  const naive = runScenario(scenario, decideFlow);
  const engine = runScenario(scenario, new EngineDecider(new Engine(scenarioEngineOptions(scenario))).decide);
  expect(naive.steps.flatMap((s) => s.mismatches)).toEqual([]);
  expect(engine.steps.flatMap((s) => s.mismatches)).toEqual([]);
}

describe('finding 240: HTTP path rules match the path Envoy normalizes', () => {
  const rule = { method: 'GET', path: '/public/.*' };
  const get = (path: string) => httpRuleMatches(rule, { method: 'GET', path });

  it('dot segments, escaped dots and escaped slashes cannot step out of an allowed prefix', () => {
    for (const p of ['/public/../admin', '/public/%2e%2E/admin', '/public/..%2Fadmin', '/public/..%5cadmin', '/public/..\\admin', '/public/./../admin']) expect(get(p), p).toBe(false);
  });

  it('paths that normalize into the prefix are allowed, the query is not normalized', () => {
    for (const p of ['//public/x', '/public/%78', '/other/../public/x', '/public/x?next=/../admin', '/./public/x']) expect(get(p), p).toBe(true);
  });

  it('a path Envoy rejects (NUL, raw or escaped) or an unmodelled bad escape matches no rule', () => {
    for (const p of ['/public/x%00', '/public/x\u0000', '/public/%zz']) expect(get(p), JSON.stringify(p)).toBe(false);
    expect(httpRuleMatches({ method: 'GET' }, { method: 'GET', path: '/a%00' })).toBe(false);
  });

  it("Chromium's canonical forms", () => {
    const cases: [string, string][] = [
      ['/a/b/..', '/a/'], ['/..', '/'], ['/../../x', '/x'], ['/a/..b', '/a/..b'], ['/a/...', '/a/...'], ['/a/.b', '/a/.b'],
      ['/%41%7e%2D%2f', '/A~-/'], ['/a b', '/a%20b'], ['/caf\u00e9', '/caf%C3%A9'], ['/%c3%a9', '/%c3%a9'], ['/a//b///c/', '/a/b/c/'],
    ];
    for (const [raw, want] of cases) expect(normalizedHttpPath(raw), raw).toBe(want);
  });

  it('scenario 10a-http-path-normalized (oracle and engine)', () => run('fixtures/scenarios/attacks-10/10a-http-path-normalized.yaml'));
});

describe('finding 241: a repeated header is matched on its values joined with ","', () => {
  const req = (headers: Record<string, string>) => ({ method: 'GET', path: '/', headers });

  it('an exact `headers` entry fails when the header is sent twice, whatever the order', () => {
    const rule = { headers: ['X-Token: yes'] };
    expect(httpRuleMatches(rule, req({ 'X-Token': 'yes' }))).toBe(true);
    expect(httpRuleMatches(rule, req({ 'x-token': 'yes', 'X-Token': 'no' }))).toBe(false);
    expect(httpRuleMatches(rule, req({ 'X-Token': 'no', 'x-token': 'yes' }))).toBe(false);
    expect(httpRuleMatches(rule, req({ 'X-Token': 'yes,no' }))).toBe(false);
  });

  it('headerMatches without mismatch likewise; presence still holds', () => {
    expect(httpRuleMatches({ headerMatches: [{ name: 'X-Role', value: 'admin' }] }, req({ 'X-Role': 'admin', 'x-role': 'admin' }))).toBe(false);
    expect(httpRuleMatches({ headers: ['X-Role'] }, req({ 'X-Role': 'a', 'x-role': 'b' }))).toBe(true);
  });

  it('scenario 10a-http-header-repeated (list form keeps both values)', () => run('fixtures/scenarios/attacks-10/10a-http-header-repeated.yaml'));
});

describe('finding 242: header matchers on Host and pseudo-headers see the request line and authority', () => {
  it('`Host` and `:authority` entries match the request host, `:method`/`:path` the request line (normalized)', () => {
    const req = { method: 'GET', path: '/a/../b', host: 'shop.example' };
    expect(httpRuleMatches({ headers: ['Host: shop.example'] }, req)).toBe(true);
    expect(httpRuleMatches({ headers: ['Host'] }, req)).toBe(true);
    expect(httpRuleMatches({ headerMatches: [{ name: ':authority', value: 'shop.example' }] }, req)).toBe(true);
    expect(httpRuleMatches({ headerMatches: [{ name: ':method', value: 'GET' }] }, req)).toBe(true);
    expect(httpRuleMatches({ headerMatches: [{ name: ':path', value: '/b' }] }, req)).toBe(true);
    expect(httpRuleMatches({ headerMatches: [{ name: ':path', value: '/a/../b' }] }, req)).toBe(false);
    expect(httpRuleMatches({ headers: ['Host: other.example'] }, req)).toBe(false);
  });

  it('a Host header listed without `host` is the authority the `host` regex sees', () => {
    expect(httpRuleMatches({ host: 'shop\\.example' }, { method: 'GET', path: '/', headers: { Host: 'shop.example' } })).toBe(true);
    expect(httpRuleMatches({ host: 'shop\\.example' }, { method: 'GET', path: '/', headers: { Host: 'evil.example' } })).toBe(false);
    // `host` given: it is the authority, whatever Host header the probe also lists.
    expect(httpRuleMatches({ headers: ['Host: evil.example'] }, { method: 'GET', path: '/', host: 'shop.example', headers: { Host: 'evil.example' } })).toBe(false);
  });
});
