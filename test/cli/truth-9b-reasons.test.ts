import { describe, expect, it } from 'vitest';
import type { ClusterState } from '../../src/model/cluster.js';
import { deletePolicy } from '../../src/model/cluster.js';
import { droppedAtProxy, type DirectionDecision } from '../../src/model/flow.js';
import { policyRefKey, PolicyRef } from '../../src/model/rules.js';
import { decideFlow } from '../../src/naive/evaluator.js';
import { allowChain } from '../../src/naive/reasons.js';
import { scenarioEngine } from '../../src/scenario/engine.js';
import { traceFlow } from '../../src/explain/trace.js';
import { ALLOW_LOCALHOST_ORIGIN } from '../../src/model/localhost.js';
import { corpus, CorpusFlow, CorpusScenario, sample } from './truth-9-corpus.js';
import { formatOrigin } from '../../src/explain/format.js';

/** One side as `trace -o json` prints it. */
interface TracedSide {
  direction: string;
  verdict: string;
  enforcedBy: string[];
  allowedBy: string[];
  deniedBy: string[];
  passedBy: string[];
  redirectedBy: string[];
  alsoAllowedBy: string[];
  l7?: { allowedBy: string[] };
  tierRules?: { reason: string; tier: string; priority: number; action: string }[];
}

/** The agent option allow-localhost as trace names it: a reason, but no policy to delete. */
const LOCALHOST = formatOrigin(ALLOW_LOCALHOST_ORIGIN);

/** `Kind/ns/name spec.ingress[0]` → the policy's ref, from the cluster's policies. */
function refsOf(state: ClusterState, origins: readonly string[]): PolicyRef[] {
  const byKey = new Map([...state.policies.values()].map((p) => [policyRefKey(p.ref), p.ref]));
  return [...new Set(origins.filter((o) => o !== LOCALHOST).map((o) => o.split(' ')[0] as string))].map((k) => {
    const ref = byKey.get(k);
    if (!ref) throw new Error(`trace names ${k}, which is no policy of the cluster`);
    return ref;
  });
}

function only(state: ClusterState, keep: PolicyRef): ClusterState {
  return { ...state, policies: new Map([...state.policies].filter(([, p]) => policyRefKey(p.ref) === policyRefKey(keep))) };
}

function sideIn(state: ClusterState, f: CorpusFlow, direction: string): DirectionDecision | undefined {
  const d = decideFlow(state, f.flow);
  return direction === 'egress' ? d.egress : d.ingress;
}

/**
 * An L4 pass: allowed, or handed to a proxy (whatever the proxy then says; a redirect of a protocol
 * no proxy takes, SCTP on a DNS rule's ANY port, is handed over and dropped there: finding 1244).
 */
const passes = (d: DirectionDecision | undefined): boolean => d === undefined || d.allowed || d.l7 !== undefined || droppedAtProxy(d);
const redirects = (d: DirectionDecision | undefined): boolean => d !== undefined && (d.proxied || droppedAtProxy(d));

/** Each listed policy, alone in the cluster, does what it is listed for. */
function sound(f: CorpusFlow, s: TracedSide, where: string): string[] {
  const bad: string[] = [];
  const alone = (ref: PolicyRef): DirectionDecision | undefined => sideIn(only(f.state, ref), f, s.direction);
  for (const ref of refsOf(f.state, [...s.allowedBy, ...s.alsoAllowedBy])) if (!passes(alone(ref))) bad.push(`${where}: allowed by ${policyRefKey(ref)}, which alone does not allow it`);
  for (const ref of refsOf(f.state, s.redirectedBy)) if (!redirects(alone(ref))) bad.push(`${where}: redirected by ${policyRefKey(ref)}, which alone does not redirect it`);
  for (const ref of refsOf(f.state, s.deniedBy)) if (passes(alone(ref))) bad.push(`${where}: denied by ${policyRefKey(ref)}, which alone does not drop it`);
  for (const ref of refsOf(f.state, s.enforcedBy)) if ((alone(ref)?.enforcedBy.length ?? 0) === 0) bad.push(`${where}: default deny enforced by ${policyRefKey(ref)}, which alone does not select the endpoint in this direction`);
  for (const o of s.redirectedBy) if (!s.allowedBy.includes(o)) bad.push(`${where}: redirected by ${o} but not listed as allowing`);
  if ([...s.allowedBy, ...s.alsoAllowedBy].includes(LOCALHOST) && (s.direction !== 'ingress' || f.state.allowLocalhost === 'policy')) bad.push(`${where}: allow-localhost listed where it does not apply`);
  return bad;
}

/**
 * Without every policy listed as allowing (or as allowing the request at the proxy), the side
 * drops, unless nothing enforces that direction any more (the allow-all default). A dropped side
 * names its deny, or the policies that make it default deny.
 */
function complete(f: CorpusFlow, s: TracedSide, where: string): string[] {
  if (s.verdict === 'DROPPED') return s.deniedBy.length === 0 && s.passedBy.length === 0 && s.enforcedBy.length === 0 ? [`${where}: dropped with no reason listed`] : [];
  const allowers = [...s.allowedBy, ...s.alsoAllowedBy, ...(s.l7?.allowedBy ?? [])];
  if (s.enforcedBy.length === 0 && allowers.length === 0) return [];
  // Without allow-localhost too, when it is listed: the option set to `policy`.
  let st: ClusterState = allowers.includes(LOCALHOST) ? { ...f.state, allowLocalhost: 'policy' } : f.state;
  for (const ref of refsOf(f.state, allowers)) st = deletePolicy(st, ref);
  const after = sideIn(st, f, s.direction);
  if (!passes(after) || (after?.enforcedBy.length ?? 0) === 0) return [];
  return [`${where}: still passes without ${refsOf(f.state, allowers).map(policyRefKey).join(', ')}: allowed by ${(after?.allowedBy ?? []).map((o) => `${policyRefKey(o.policy)} ${o.path}`).join(', ')}`];
}

/** The deciding rules, then the others, in tier order (finding 2550): Admin by priority, the NetworkPolicy tier, Baseline by priority. */
function ordered(s: TracedSide, where: string): string[] {
  const tiers = new Map((s.tierRules ?? []).map((t) => [t.reason, t]));
  const rank = (o: string): [number, number] => {
    const t = tiers.get(o);
    return t === undefined ? [1, 0] : [t.tier === 'Admin' ? 0 : 2, t.priority];
  };
  const all = [...s.allowedBy, ...s.alsoAllowedBy];
  for (let i = 1; i < all.length; i++) {
    const [a, b] = [rank(all[i - 1] as string), rank(all[i] as string)];
    if (a[0] > b[0] || (a[0] === b[0] && a[1] > b[1])) return [`${where}: allowers out of tier order: ${all.join(', ')}`];
  }
  return [];
}

/**
 * The engine's reasons agree with the oracle's: each rule of the matched entry allowing the flow is
 * one the oracle finds it passing on (a Pass rule is listed under passedBy, never as allowing: finding 2742).
 */
function agrees(f: CorpusFlow, s: TracedSide, where: string): string[] {
  if (s.verdict === 'DROPPED') return [];
  const chain = new Set(allowChain(f.state, f.flow, s.direction === 'egress' ? 'egress' : 'ingress').map(formatOrigin));
  return s.allowedBy.filter((o) => !chain.has(o)).map((o) => `${where}: the engine's ${o} allows it, the oracle does not name it`);
}

function checkScenario(c: CorpusScenario, perProbe: number): string[] {
  const bad: string[] = [];
  const picked = sample(c.flows, perProbe);
  for (let step = 0; step < c.scenario.steps.length; step++) {
    const flows = picked.filter((f) => f.step === step);
    if (flows.length === 0) continue;
    const built = scenarioEngine(c.scenario, step);
    for (const f of flows) {
      const t = JSON.parse(JSON.stringify(traceFlow(built, f.flow.from, f.flow.to, f.flow.port, f.flow.protocol, f.flow.request))) as { sides: TracedSide[] };
      for (const s of t.sides) {
        const where = `${f.file} step ${f.step} probe ${f.probe} ${f.flow.from} -> ${f.flow.to} ${f.flow.port}/${f.flow.protocol} ${s.direction}`;
        bad.push(...sound(f, s, where), ...complete(f, s, where), ...ordered(s, where), ...agrees(f, s, where));
      }
    }
  }
  return bad;
}

describe('trace reasons are sound and complete (against the oracle on counterfactual clusters)', () => {
  const all = corpus();
  for (const c of all) {
    it(c.file, () => {
      expect(checkScenario(c, 2)).toEqual([]);
    });
  }
  it('finding 182: an allow the map state leaves out as covered is named (it failed before left-10)', () => {
    const c = all.find((x) => x.file === 'fixtures/conformance/cilium/redirect-beats-plain-allow.yaml') as CorpusScenario;
    const f = c.flows.find((x) => x.step === 1 && x.probe === 0) as CorpusFlow;
    const t = traceFlow(scenarioEngine(c.scenario, 1), f.flow.from, f.flow.to, f.flow.port, f.flow.protocol, f.flow.request);
    const s = JSON.parse(JSON.stringify(t.sides.find((x) => x.direction === 'ingress'))) as TracedSide;
    expect(complete(f, s, 'x')).toEqual([]);
  });
});
