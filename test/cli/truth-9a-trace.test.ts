import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import type { DirectionDecision, FlowDecision } from '../../src/model/flow.js';
import { cli } from '../cli-helpers.js';
import { scenarioEngine } from '../../src/scenario/engine.js';
import { traceFlow } from '../../src/explain/trace.js';
import { corpus, CorpusFlow, CorpusScenario, LONG, traceArgs } from './truth-9-corpus.js';
import { formatOrigin } from '../../src/explain/format.js';

/** Origins in the words reach's JSON and trace share (allow-localhost has its own). */
const fmt = formatOrigin;

/** The flow's verdict in trace's words, from reach's decision. */
function expectedVerdict(d: FlowDecision, hasRequest: boolean): RegExp {
  if (!d.proxied) return new RegExp(`^${d.allowed ? 'FORWARDED' : 'DROPPED'}$`);
  return new RegExp(`^REDIRECTED${hasRequest ? `.*, L7 ${d.allowed ? 'FORWARDED' : 'DROPPED'}$` : '( to proxy port \\d+)?$'}`);
}

interface TracedSide {
  endpoint: string;
  table?: string;
  direction: string;
  verdict: string;
  /** The other end's identity (30u finding 2942); a side whose entry matched is keyed on it or on the any-peer 0. */
  peer: { identity: number; labels: string[] };
  entry: { proxyPort: number; identity: number } | null;
  defaultDeny: boolean;
  enforcedBy: string[];
  allowedBy: string[];
  deniedBy: string[];
  passedBy: string[];
  redirectedBy: string[];
  alsoAllowedBy: string[];
  l7?: { parser: string; verdict: string; allowedBy: string[] };
  tierRules?: { reason: string; tier: string; priority: number; rule: string; action: string }[];
}

function sideOf(d: DirectionDecision): Omit<TracedSide, 'entry' | 'endpoint' | 'peer' | 'alsoAllowedBy' | 'tierRules'> {
  return {
    direction: d.direction,
    verdict: !d.allowed && d.l7 === undefined ? 'DROPPED' : d.proxied ? 'REDIRECTED' : 'FORWARDED',
    defaultDeny: d.enforcedBy.length > 0,
    enforcedBy: d.enforcedBy.map(fmt),
    // A Pass rule's entry neither allows nor denies: the flow went on to the lower tiers (findings 2633, 2742).
    allowedBy: d.allowedBy.filter((o) => o.tier?.action !== 'Pass').map(fmt),
    deniedBy: d.deniedBy.filter((o) => o.tier?.action !== 'Pass').map(fmt),
    passedBy: [...d.deniedBy, ...d.allowedBy].filter((o) => o.tier?.action === 'Pass').map(fmt),
    redirectedBy: d.redirectedBy.map(fmt),
    ...(d.l7 ? { l7: { parser: d.l7.parser, verdict: d.l7.allowed ? 'FORWARDED' : 'DROPPED', allowedBy: d.l7.allowedBy.map(fmt) } } : {}),
  };
}

type Traced = { verdict: string; allowed: boolean; proxied: boolean; sides: TracedSide[] };

/** Every disagreement of one traced flow with reach (and of reach's verdict with the oracle's), as text. */
function compare(f: CorpusFlow, t: Traced): string[] {
  const where = `${f.file} step ${f.step} probe ${f.probe} ${f.flow.from} -> ${f.flow.to} ${f.flow.port}/${f.flow.protocol}`;
  const bad: string[] = [];
  const d = f.decision;
  if (t.allowed !== d.allowed || t.proxied !== d.proxied) bad.push(`${where}: trace allowed=${t.allowed} proxied=${t.proxied}, reach ${d.allowed}/${d.proxied}`);
  if (f.oracle.allowed !== d.allowed || f.oracle.proxied !== d.proxied) bad.push(`${where}: reach ${d.allowed}/${d.proxied}, oracle ${f.oracle.allowed}/${f.oracle.proxied}`);
  if (!expectedVerdict(d, f.flow.request !== undefined).test(t.verdict)) bad.push(`${where}: trace says "${t.verdict}", reach decided allowed=${d.allowed} proxied=${d.proxied}`);
  const want = [d.egress, d.ingress].filter((x): x is DirectionDecision => x !== undefined).map(sideOf);
  // `l7.allowAll`/`l7.rules` (the proxy's rules, 21u finding 1606) are the L7 table's, not a decision reach makes.
  const got = t.sides.map(({ entry: _e, endpoint: _p, peer: _pe, table: _t, alsoAllowedBy: _a, tierRules: _tr, l7, ...rest }) => ({ ...rest, ...(l7 ? { l7: { parser: l7.parser, verdict: l7.verdict, allowedBy: l7.allowedBy } } : {}) }));
  if (JSON.stringify(got) !== JSON.stringify(want)) bad.push(`${where}: sides differ\n  trace ${JSON.stringify(got)}\n  reach ${JSON.stringify(want)}`);
  // tierRules (finding 2305): every ClusterNetworkPolicy origin reach names, with its tier, priority, rule and action, and no other.
  const decided = [d.egress, d.ingress].filter((x): x is DirectionDecision => x !== undefined);
  t.sides.forEach((s, i) => {
    const dd = decided[i];
    if (dd === undefined) return;
    const named = new Set([...s.allowedBy, ...s.deniedBy, ...s.passedBy, ...s.redirectedBy, ...s.alsoAllowedBy]);
    for (const tr of s.tierRules ?? []) if (!named.has(tr.reason)) bad.push(`${where}: ${s.direction} tierRules names ${tr.reason}, no reason of the side`);
    for (const o of [...dd.allowedBy, ...dd.deniedBy, ...dd.redirectedBy]) {
      if (!o.tier) continue;
      const want = JSON.stringify({ reason: fmt(o), tier: o.tier.tier, priority: o.tier.priority, rule: o.tier.rule, action: o.tier.action });
      if (!(s.tierRules ?? []).some((tr) => JSON.stringify(tr) === want)) bad.push(`${where}: ${s.direction} tierRules lacks ${want}`);
    }
  });
  for (const s of t.sides) {
    // A redirected side shows the entry that redirects; a side that passes under default deny has an entry.
    if (s.verdict === 'REDIRECTED' && !(s.entry && s.entry.proxyPort > 0)) bad.push(`${where}: ${s.direction} REDIRECTED without a proxy port entry`);
    if (s.verdict !== 'DROPPED' && s.entry === null && s.defaultDeny) bad.push(`${where}: ${s.direction} ${s.verdict} with no entry under default deny`);
    if (s.entry && s.entry.identity !== 0 && s.entry.identity !== s.peer.identity) bad.push(`${where}: ${s.direction} entry of identity ${s.entry.identity}, peer ${s.peer.identity}`);
  }
  return bad;
}

/** Through the CLI (in-process `runCli`): a fresh engine per call, as an operator runs it. */
function viaCli(f: CorpusFlow): string[] {
  const r = cli(...traceArgs(f));
  if (r.code !== 0) return [`${f.file} step ${f.step} probe ${f.probe}: trace exit ${r.code}: ${r.err}`];
  return compare(f, JSON.parse(r.out) as Traced);
}

/** Through `traceFlow`, one engine per step (as `trace --step` builds it) for every flow of the step. */
function viaModule(c: CorpusScenario): string[] {
  const bad: string[] = [];
  for (let step = 0; step < c.scenario.steps.length; step++) {
    const flows = c.flows.filter((f) => f.step === step);
    if (flows.length === 0) continue;
    const built = scenarioEngine(c.scenario, step);
    for (const f of flows) bad.push(...compare(f, JSON.parse(JSON.stringify(traceFlow(built, f.flow.from, f.flow.to, f.flow.port, f.flow.protocol, f.flow.request))) as Traced));
  }
  return bad;
}

describe('trace tells what reach decides (fixtures/scenarios + fixtures/conformance, every probe at its step)', () => {
  const all = corpus();
  it('covers the corpus: pods, externals, node and plain addresses, IPv6, ICMP, L7 with headers', () => {
    const flows = all.flatMap((c) => c.flows);
    expect(all.length).toBeGreaterThan(150);
    expect(flows.some((f) => f.flow.from.startsWith('node:') || f.flow.to.startsWith('node:'))).toBe(true);
    expect(flows.some((f) => f.flow.to.includes(':') && !f.flow.to.startsWith('node:'))).toBe(true);
    expect(flows.some((f) => f.flow.protocol === 'ICMP' || f.flow.protocol === 'ICMPv6')).toBe(true);
    expect(flows.some((f) => f.flow.request !== undefined && 'http' in f.flow.request && f.flow.request.http.headers !== undefined)).toBe(true);
  });
  it('every flow of every probe, in-process', () => {
    expect(all.flatMap(viaModule)).toEqual([]);
  });
  it(`through the CLI: ${LONG ? 'every flow' : 'one flow per scenario, and every flow with HTTP headers'}`, () => {
    const picked = all.flatMap((c, i) => (LONG ? c.flows : c.flows.filter((f, j) => j === i % c.flows.length || (f.flow.request !== undefined && 'http' in f.flow.request && f.flow.request.http.headers !== undefined))));
    expect(picked.flatMap(viaCli)).toEqual([]);
  });
});

describe('trace through the built binary (node dist/cli/main.js; npm run build first)', () => {
  it.runIf(existsSync('dist/cli/main.js'))('a flow per protocol family and peer kind', () => {
    const flows = corpus().flatMap((c) => c.flows);
    const kinds = [(f: CorpusFlow) => f.flow.request !== undefined, (f: CorpusFlow) => f.flow.to.startsWith('node:'), (f: CorpusFlow) => f.flow.protocol === 'ICMPv6', (f: CorpusFlow) => /^[0-9a-f:.]+$/.test(f.flow.to), (f: CorpusFlow) => !f.decision.allowed];
    for (const pick of kinds) {
      const f = flows.find(pick) as CorpusFlow;
      const r = spawnSync(process.execPath, ['dist/cli/main.js', ...traceArgs(f)], { encoding: 'utf8' });
      expect(r.status, r.stderr).toBe(0);
      expect(compare(f, JSON.parse(r.stdout) as Traced)).toEqual([]);
    }
  });
});

describe('trace --http-header', () => {
  it('carries the headers to the proxy (attack round 9e, finding 180)', () => {
    const s = 'fixtures/conformance/cilium-l7/http-headers-and-header-matches.yaml';
    const f = corpus().find((c) => c.file === s)?.flows.find((x) => x.flow.request !== undefined && 'http' in x.flow.request && x.flow.request.http.headers !== undefined && x.decision.allowed);
    expect(f).toBeDefined();
    expect(viaCli(f as CorpusFlow)).toEqual([]);
  });
  it('refuses a header that is not Name: value', () => {
    const r = cli('trace', '--scenario', 'fixtures/conformance/cilium-l7/http-headers-and-header-matches.yaml', '--from', 'x/hdr', '--to', 'x/server', '--port', '80/TCP', '--http-header', 'novalue');
    expect(r.code).toBe(2);
    expect(r.err).toContain('--http-header: "novalue" is not "Name: value"');
  });
});
