import { readdirSync, readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { Engine } from '../../src/engine/engine.js';
import { fqdnSelectorMatches, fqdnSyntaxError, makeFqdnSelector } from '../../src/model/fqdn.js';
import { dnsRuleMatches } from '../../src/model/l7.js';
import { EngineDecider } from '../../src/harness/engine-decider.js';
import { parseScenario } from '../../src/scenario/format.js';
import { runScenario, scenarioEngineOptions } from '../../src/scenario/run.js';
import { evaluateDnsScenario, fqdn, patternRegexp } from './dns-policy.js';

/**
 * Differential test: distill's public scenario path (parseScenario, runScenario, the engine)
 * against the independent reader of test/independent/dns-policy.ts on random DNS policies,
 * answers, clocks and probes. DISTILL_SEED fixes the seed, DISTILL_DIFF_RUNS the number of runs.
 */
const SEED = process.env.DISTILL_SEED === undefined ? Date.now() % 1_000_000 : Number(process.env.DISTILL_SEED);
const RUNS = Number(process.env.DISTILL_DIFF_RUNS ?? 150);
const LABELS = ['api', 'www', '_srv', '_tcp', 'x-1', 'a', 'b0', 'cilium', 'io', 'com', 'example', 'svc'];
const EXTERNAL_IPS = ['192.0.2.10', '192.0.2.11', '192.0.2.12', '192.0.2.13', '192.0.2.14'];
type G = fc.GeneratorValue;

const pick = <T>(g: G, xs: readonly T[]): T => g(fc.constantFrom, ...xs);
const upTo = (g: G, max: number): number => g(fc.nat, { max });

function recase(g: G, s: string): string {
  return [...s].map((c) => (g(fc.boolean) ? c.toUpperCase() : c)).join('');
}

function spelt(g: G, labels: readonly string[]): string {
  return recase(g, labels.join('.')) + (g(fc.boolean) ? '.' : '');
}

/** A name of the pool as a query or answer spells it, or a deeper or shallower neighbour. */
function nameFrom(g: G, pool: readonly string[][]): string {
  const base = pick(g, pool);
  const v = upTo(g, 5);
  if (v === 0) return spelt(g, [pick(g, LABELS), ...base]);
  if (v === 1 && base.length > 1) return spelt(g, base.slice(1));
  return spelt(g, base);
}

/** A matchName or matchPattern derived from a pool name (wildcard depths, partial labels, match-all). */
function selector(g: G, pool: readonly string[][]): Record<string, string> {
  const base = pick(g, pool);
  const i = upTo(g, base.length - 1);
  switch (upTo(g, 7)) {
    case 0:
      return { matchName: spelt(g, base) };
    case 1:
      return { matchPattern: spelt(g, base.map((l, j) => (j === i ? '*' : l))) };
    case 2:
      return { matchPattern: spelt(g, base.map((l, j) => (j === i ? `${l.slice(0, upTo(g, l.length))}*${g(fc.boolean) ? l.slice(-1) : ''}` : l))) };
    case 3: {
      const stars = '*'.repeat(2 + upTo(g, 2));
      return { matchPattern: spelt(g, [stars, ...base.slice(Math.min(base.length - 1, 1 + upTo(g, 1)))]) };
    }
    case 4:
      return { matchPattern: pick(g, ['*', '**', '*.', '***.']) };
    case 5:
      return { matchPattern: spelt(g, ['*', ...base.slice(i)]) };
    case 6:
      return { matchPattern: spelt(g, base.map((l, j) => (j === i ? '**' : l))) };
    default:
      return { matchName: spelt(g, [pick(g, LABELS), ...base]) };
  }
}

const KUBE_DNS = { matchLabels: { 'k8s:io.kubernetes.pod.namespace': 'kube-system', 'k8s:k8s-app': 'kube-dns' } };

function dnsRule(g: G, pool: readonly string[][]): Record<string, unknown> {
  const peer = g(fc.boolean) ? { toEndpoints: [KUBE_DNS] } : { toEntities: ['world'] };
  const ports = [{ port: '53', protocol: pick(g, ['UDP', 'UDP', 'TCP', 'ANY']) }];
  const l7 = upTo(g, 5);
  if (l7 === 0) return { ...peer, toPorts: [{ ports }] };
  if (l7 === 1) return { ...peer, toPorts: [{ ports, rules: { dns: [] } }] };
  const dns = Array.from({ length: 1 + upTo(g, 2) }, () => selector(g, pool));
  return { ...peer, toPorts: [{ ports, rules: { dns } }] };
}

function fqdnRule(g: G, pool: readonly string[][]): Record<string, unknown> {
  const toFQDNs = Array.from({ length: 1 + upTo(g, 2) }, () => selector(g, pool));
  const p = upTo(g, 2);
  return p === 0 ? { toFQDNs } : { toFQDNs, toPorts: [{ ports: [{ port: p === 1 ? '443' : '80', protocol: 'TCP' }] }] };
}

/** Mostly none; else a deny over a learnt address, the whole range on 443, or a DNS server. */
function denyRule(g: G): Record<string, unknown> | undefined {
  switch (upTo(g, 8)) {
    case 0:
      return { toCIDR: [`${pick(g, EXTERNAL_IPS)}/32`] };
    case 1:
      return { toCIDR: ['192.0.2.0/24'], toPorts: [{ ports: [{ port: '443', protocol: 'TCP' }] }] };
    case 2:
      return { toEntities: ['world'], toPorts: [{ ports: [{ port: '53', protocol: pick(g, ['UDP', 'ANY']) }] }] };
    case 3:
      return { toEndpoints: [KUBE_DNS], toPorts: [{ ports: [{ port: '53', protocol: pick(g, ['UDP', 'TCP']) }] }] };
    default:
      return undefined;
  }
}

/** Sometimes kube-dns admits one client pod on 53 (the proxy forwards the query with the pod's identity). */
function serverPolicy(g: G): Record<string, unknown>[] {
  if (upTo(g, 3) !== 0) return [];
  const ports = [{ port: '53', protocol: pick(g, ['UDP', 'ANY', 'TCP']) }];
  const from = { matchLabels: { 'k8s:io.kubernetes.pod.namespace': 'x', app: pick(g, ['a', 'b']) } };
  return [{
    apiVersion: 'cilium.io/v2',
    kind: 'CiliumNetworkPolicy',
    metadata: { name: 'dns-in', namespace: 'kube-system' },
    spec: { endpointSelector: { matchLabels: { 'k8s-app': 'kube-dns' } }, ingress: [{ fromEndpoints: [from], toPorts: [{ ports }] }] },
  }];
}

function policy(g: G, pool: readonly string[][], app: string): Record<string, unknown> {
  const egress = [
    ...Array.from({ length: 1 + upTo(g, 2) }, () => dnsRule(g, pool)),
    ...Array.from({ length: upTo(g, 2) }, () => fqdnRule(g, pool)),
  ];
  const deny = denyRule(g);
  return {
    apiVersion: 'cilium.io/v2',
    kind: 'CiliumNetworkPolicy',
    metadata: { name: `p-${app}`, namespace: 'x' },
    spec: { endpointSelector: { matchLabels: { app } }, egress, ...(deny === undefined ? {} : { egressDeny: [deny] }) },
  };
}

const SERVERS = ['kube-system/kube-dns', 'dns-ext'];
const PODS = ['x/a', 'x/b'];

function change(g: G, pool: readonly string[][]): Record<string, unknown> {
  if (upTo(g, 3) === 0) return { advanceTime: pick(g, [0, 1, 1, 2, 3, 5, 12]) };
  const ips = [...new Set(Array.from({ length: 1 + upTo(g, 2) }, () => pick(g, EXTERNAL_IPS)))];
  return { dnsResponse: { pod: pick(g, PODS), name: nameFrom(g, pool), ips, ttl: pick(g, [0, 1, 2, 3, 5, 10]), server: pick(g, SERVERS) } };
}

function step(g: G, pool: readonly string[][]): Record<string, unknown> {
  const changes = Array.from({ length: upTo(g, 4) }, () => change(g, pool));
  const queries = Array.from({ length: 1 + upTo(g, 2) }, () => ({
    from: pick(g, PODS), to: pick(g, SERVERS), port: 53, protocol: pick(g, ['UDP', 'TCP']), dns: { name: nameFrom(g, pool) },
  }));
  const flows = PODS.flatMap((from) => EXTERNAL_IPS.map((_, i) => ({ from, to: `e${i}`, port: pick(g, [443, 443, 80]) })));
  return { changes, probes: [...queries, ...flows] };
}

/** A random scenario: x/a always under a DNS policy, x/b sometimes; answers, clock steps, probes. */
function scenarioText(g: G): string {
  const pool = Array.from({ length: 3 }, () => Array.from({ length: 1 + upTo(g, 3) }, () => pick(g, LABELS)));
  const policies = [policy(g, pool, 'a'), ...(g(fc.boolean) ? [policy(g, pool, 'b')] : []), ...serverPolicy(g)];
  const doc = {
    description: 'generated by test/independent/dns-policy.property.test.ts',
    dnsProxy: { minTtl: pick(g, [0, 0, 3]), maxIpsPerHostname: pick(g, [1000, 1, 2]) },
    namespaces: [{ name: 'x' }, { name: 'kube-system' }],
    pods: [
      { name: 'x/a', labels: { app: 'a' }, ip: '10.0.0.1' },
      { name: 'x/b', labels: { app: 'b' }, ip: '10.0.0.2' },
      { name: 'kube-system/kube-dns', labels: { 'k8s-app': 'kube-dns' }, ip: '10.96.0.10', ports: [{ port: 53, protocol: 'UDP' }, { port: 53, protocol: 'TCP' }] },
    ],
    externals: [{ name: 'dns-ext', ip: '8.8.8.8' }, ...EXTERNAL_IPS.map((ip, i) => ({ name: `e${i}`, ip }))],
    policies,
    steps: Array.from({ length: 1 + upTo(g, 4) }, () => step(g, pool)),
  };
  return stringify(doc);
}

/** Disagreements between distill's engine and the independent reader, as readable lines. */
const seen = { learntAllowed: 0, learntDenied: 0, queryAllowed: 0, queryRefused: 0, unknown: 0 };

function count(v: { to: string; allowed: boolean | 'unknown' }): void {
  if (v.allowed === 'unknown') seen.unknown++;
  else if (v.to.startsWith('e')) seen[v.allowed ? 'learntAllowed' : 'learntDenied']++;
  else seen[v.allowed ? 'queryAllowed' : 'queryRefused']++;
}

function disagreements(text: string): string[] {
  const scenario = parseScenario(text, 'generated.yaml');
  const run = runScenario(scenario, new EngineDecider(new Engine(scenarioEngineOptions(scenario))).decide);
  const got = new Map(run.steps.flatMap((s) => s.results).map((r) => [`${r.step}/${r.probe}/${r.from}->${r.to}`, r.allowed]));
  const out: string[] = [];
  for (const v of evaluateDnsScenario(text)) {
    const key = `${v.step}/${v.probe}/${v.from}->${v.to}`;
    count(v);
    if (!got.has(key)) out.push(`${key}: distill gave no result`);
    else if (v.allowed !== 'unknown' && got.get(key) !== v.allowed) out.push(`${key}: independent ${v.allowed}, distill ${got.get(key)}`);
  }
  return out;
}

describe('independent reader: its own matchpattern transcription', () => {
  it('reads the 1.19 wildcard forms as matchpattern.go builds them', () => {
    const t = (p: string, n: string): boolean => patternRegexp(p).test(fqdn(n));
    expect([t('*.cilium.io', 'docs.cilium.io'), t('*.cilium.io', 'cilium.io'), t('*.cilium.io', 'a.b.cilium.io')]).toEqual([true, false, false]);
    expect([t('**.cilium.io', 'a.b.cilium.io'), t('**.cilium.io', 'cilium.io'), t('a.**.io', 'a.b.c.io')]).toEqual([true, false, false]);
    expect([t('*', 'A.B'), t('*.', 'x.y.z.'), t('***.', '_srv.x'), t('*cilium.io', 'www.cilium.io')]).toEqual([true, true, true, false]);
    expect([t('part*ial.com', 'part-extra-ial.com'), t('*cilium.io', 'xcilium.io'), t('API.Example.', 'api.example')]).toEqual([true, true, true]);
  });
});

const DIFF_DIR = 'fixtures/conformance/dns-diff';

/** The verdict each `allow` / `deny` expectation of a one-pair probe asks for. */
function expected(text: string): Map<string, boolean> {
  const out = new Map<string, boolean>();
  const steps = (parse(text) as { steps: { probes: { from: string; to: string }[]; expect?: Record<string, unknown>[] }[] }).steps;
  steps.forEach((s, step) => {
    for (const e of s.expect ?? []) {
      const probe = Number(e.probe ?? 0);
      const p = s.probes[probe];
      if (p === undefined) throw new Error(`step ${step}: no probe ${probe}`);
      const pair = `${p.from}->${p.to}`;
      const list = (e.allow ?? e.deny) as string[] | undefined;
      if (list === undefined) continue;
      out.set(`${step}/${probe}/${pair}`, (e.allow !== undefined) === list.includes(pair));
    }
  });
  return out;
}

describe('independent reader: the hand-picked scenarios of fixtures/conformance/dns-diff', () => {
  const files = readdirSync(DIFF_DIR).filter((f) => f.endsWith('.yaml')).sort();
  it('has at least ten', () => expect(files.length).toBeGreaterThanOrEqual(10));
  for (const f of files) {
    it(f, () => {
      const text = readFileSync(`${DIFF_DIR}/${f}`, 'utf8');
      const want = expected(text);
      const got = new Map(evaluateDnsScenario(text).map((v) => [`${v.step}/${v.probe}/${v.from}->${v.to}`, v.allowed]));
      expect(want.size).toBeGreaterThan(0);
      for (const [k, v] of want) expect(got.get(k), k).toBe(v);
    });
  }
});

/** Every string of `alpha` up to `max` characters. */
function allStrings(alpha: readonly string[], max: number): string[] {
  const out: string[] = [];
  let cur = [''];
  for (let n = 1; n <= max; n++) {
    cur = cur.flatMap((c) => alpha.map((a) => c + a));
    out.push(...cur);
  }
  return out;
}

describe('independent reader: distill\'s matchers against the transcribed regexps, exhaustively', () => {
  // Length 4 here (~60,000 pairs); length 6 (11 million pairs) agreed too when run by hand.
  it('every valid pattern over {a, b, *, .} against every valid name over {a, b, _, .}', () => {
    const pats = allStrings(['a', 'b', '*', '.'], 4).filter((p) => fqdnSyntaxError('matchPattern', p) === undefined);
    const names = allStrings(['a', 'b', '_', '.'], 4).filter((n) => fqdnSyntaxError('matchName', n) === undefined);
    const bad: string[] = [];
    for (const p of pats) {
      const re = patternRegexp(p);
      const sel = makeFqdnSelector('matchPattern', p);
      for (const n of names) {
        const want = re.test(fqdn(n));
        if (fqdnSelectorMatches(sel, n) !== want) bad.push(`toFQDNs ${p} ~ ${n}: want ${want}`);
        if (dnsRuleMatches({ matchPattern: p }, { name: n }) !== want) bad.push(`rules.dns ${p} ~ ${n}: want ${want}`);
      }
    }
    expect(pats.length * names.length).toBeGreaterThan(10_000);
    expect(bad.slice(0, 20)).toEqual([]);
  });
});

describe('independent reader: toFQDNs and DNS rules, distill against it', () => {
  it(`agrees on every probe (DISTILL_SEED=${SEED}, ${RUNS} runs)`, () => {
    fc.assert(
      fc.property(fc.gen(), (g) => {
        const text = scenarioText(g);
        const d = disagreements(text);
        if (d.length > 0) throw new Error(`${d.slice(0, 8).join('\n')}\n--- scenario ---\n${text}`);
      }),
      { seed: SEED, numRuns: RUNS },
    );
    // The generator must reach both verdicts on learnt addresses and on queries, or it tests nothing.
    expect(Math.min(seen.learntAllowed, seen.learntDenied, seen.queryAllowed, seen.queryRefused), JSON.stringify(seen)).toBeGreaterThan(RUNS / 10);
    expect(seen.unknown, JSON.stringify(seen)).toBeLessThan(seen.learntAllowed);
  }, Math.max(180_000, RUNS * 1000));
});
