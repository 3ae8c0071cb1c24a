import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.js';
import type { EngineEvent } from '../../src/engine/events.js';
import { applyEventToCluster } from '../../src/harness/cluster-sync.js';
import { parseIp } from '../../src/model/cidr.js';
import { type ClusterState, EMPTY_CLUSTER } from '../../src/model/cluster.js';
import { resolveEndpoint } from '../../src/model/flow.js';
import { PROTOCOL_NUMBER } from '../../src/model/ports.js';
import type { Policy } from '../../src/model/rules.js';
import { decideDirection } from '../../src/naive/evaluator.js';
import { parseManifest } from '../../src/policy/manifest.js';
import { denySideOf } from '../../src/policy/stand-in.js';
import { fcReplay, fcRuns } from '../fc-knobs.js';

/*
 * 31r, a review of 30r (finding 2800): the deny side of a ClusterNetworkPolicy update held beside the version in force
 * (`denySideOf(new, kept)`, `tieredDenySide`: both versions' Deny and Pass rules as Denies, for a subject covering both,
 * at the higher precedence). Its claim, read by the oracle over random versions (subjects by namespace and pod labels,
 * In/NotIn/Exists/DoesNotExist, tier moves, Pass rules, other ClusterNetworkPolicies and a NetworkPolicy around it):
 * for every local pod, peer, direction and port, a flow the held form allows is allowed by the input with the old
 * version or by the input with the new one; the same for a second update held beside the first form (the agent's
 * re-read: `kept` is then the held form), and a third time (31f, finding 3300: a form held beside a form places by
 * the version that form stands for, `standsFor`); and the engine given the held form equals the oracle. 32r (finding
 * 3540): a form stays held while the rest changes (a later event, or the other objects of a split step committed at
 * their own forms), so half the time another policy (often an Admin Pass) is added beside the form: the form then
 * allows only what the new version allows with or without it (a later event), and only what the old version without
 * it or the new one with it allows (a split step).
 */
type Json = Record<string, unknown>;
type Dir = 'ingress' | 'egress';
const APPS = ['a', 'b', 'c'] as const;
const TEAMS = ['x', 'y'] as const;
const PODS = [
  { namespace: 'na', name: 'p1', labels: { app: 'a' }, ip: '10.244.0.11', local: true },
  { namespace: 'na', name: 'p2', labels: { app: 'b' }, ip: '10.244.0.12', local: true },
  { namespace: 'nb', name: 'p3', labels: { app: 'a' }, ip: '10.244.0.13', local: true },
  { namespace: 'nb', name: 'p4', labels: { app: 'c', tier: 'f' }, ip: '10.244.0.14', local: true },
  { namespace: 'nb', name: 'r1', labels: { app: 'b' }, ip: '10.244.1.5', local: false },
] as const;
const LOCAL = PODS.filter((p) => p.local).map((p) => `${p.namespace}/${p.name}`);
const ALL = PODS.map((p) => `${p.namespace}/${p.name}`);
const PROBES: readonly { port: number; protocol: 'TCP' | 'UDP' }[] = [{ port: 80, protocol: 'TCP' }, { port: 53, protocol: 'UDP' }, { port: 443, protocol: 'TCP' }];

const podSel: fc.Arbitrary<Json> = fc.oneof(
  fc.constant({}),
  fc.constantFrom(...APPS).map((app) => ({ matchLabels: { app } })),
  fc.record({ op: fc.constantFrom('In', 'NotIn', 'Exists', 'DoesNotExist'), key: fc.constantFrom('app', 'tier'), vs: fc.subarray([...APPS, 'f'], { minLength: 1 }) }).map(({ op, key, vs }) => ({
    matchExpressions: [{ key, operator: op, ...(op === 'In' || op === 'NotIn' ? { values: vs } : {}) }],
  })),
  fc.tuple(fc.constantFrom(...APPS), fc.subarray([...APPS], { minLength: 1 })).map(([app, vs]) => ({ matchLabels: { app }, matchExpressions: [{ key: 'app', operator: 'In', values: vs }] })),
);
const nsSel: fc.Arbitrary<Json> = fc.oneof(fc.constant({}), fc.constantFrom(...TEAMS).map((team) => ({ matchLabels: { team } })), fc.subarray([...TEAMS], { minLength: 1 }).map((vs) => ({ matchExpressions: [{ key: 'team', operator: 'In', values: vs }] })));
const subject: fc.Arbitrary<Json> = fc.oneof(nsSel.map((n) => ({ namespaces: n })), fc.record({ namespaceSelector: nsSel, podSelector: podSel }).map((p) => ({ pods: p })));
const peer: fc.Arbitrary<Json> = fc.oneof(nsSel.map((n) => ({ namespaces: n })), fc.record({ namespaceSelector: nsSel, podSelector: podSel }).map((p) => ({ pods: p })));
const protocols = fc.constantFrom<Json[]>([], [{ tcp: { destinationPort: { number: 80 } } }], [{ udp: { destinationPort: { number: 53 } } }, { tcp: { destinationPort: { range: { start: 79, end: 443 } } } }]);
const rule = fc.record({ action: fc.constantFrom('Accept', 'Deny', 'Pass'), peers: fc.array(peer, { minLength: 1, maxLength: 2 }), protocols, dir: fc.constantFrom<Dir>('ingress', 'egress') });
const spec = fc.record({ tier: fc.constantFrom('Admin', 'Baseline'), priority: fc.integer({ min: 0, max: 3 }), subject, rules: fc.array(rule, { minLength: 1, maxLength: 4 }) });
/** Another policy Passing at the Admin tier above or beside the versions (31f, finding 3300: a Pass skipping a held form). */
const adminPass = fc.record({ tier: fc.constant('Admin'), priority: fc.integer({ min: 0, max: 2 }), subject, rules: fc.array(rule.map((r) => ({ ...r, action: 'Pass' })), { minLength: 1, maxLength: 2 }) });

function cnp(name: string, s: { tier: string; priority: number; subject: Json; rules: readonly { action: string; peers: Json[]; protocols: Json[]; dir: Dir }[] }): Json {
  const side = (d: Dir) => s.rules.filter((r) => r.dir === d).map((r) => ({ action: r.action, [d === 'egress' ? 'to' : 'from']: r.peers, ...(r.protocols.length > 0 ? { protocols: r.protocols } : {}) }));
  const [ingress, egress] = [side('ingress'), side('egress')];
  return { apiVersion: 'policy.networking.k8s.io/v1beta1', kind: 'ClusterNetworkPolicy', metadata: { name }, spec: { tier: s.tier, priority: s.priority, subject: s.subject, ...(ingress.length ? { ingress } : {}), ...(egress.length ? { egress } : {}) } };
}
const parse = (m: Json): Policy => parseManifest(m, 'p.yaml');

const np: fc.Arbitrary<Json[]> = fc.constantFrom<Json[]>(
  [],
  [{ apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { name: 'np', namespace: 'na' }, spec: { podSelector: {}, policyTypes: ['Ingress'], ingress: [{ from: [{ podSelector: { matchLabels: { app: 'a' } } }] }] } }],
  [{ apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { name: 'np', namespace: 'nb' }, spec: { podSelector: { matchLabels: { app: 'a' } }, policyTypes: ['Egress'], egress: [{ ports: [{ port: 80, protocol: 'TCP' }] }] } }],
);

const setup: EngineEvent[] = [
  { type: 'upsertNamespace', name: 'na', labels: { team: 'x' } },
  { type: 'upsertNamespace', name: 'nb', labels: { team: 'y' } },
  ...PODS.map((p): EngineEvent => ({ type: 'upsertPod', local: p.local, pod: { namespace: p.namespace, name: p.name, labels: { ...p.labels }, ip: parseIp(p.ip), serviceAccount: 'default', ports: [] } })),
];

/** Every (subject, direction, peer, probe) verdict, by the oracle on `s` (engine null) or by `e`'s maps. */
function verdicts(e: Engine | null, s: ClusterState): string[] {
  const out: string[] = [];
  for (const at of LOCAL) {
    const subj = resolveEndpoint(s, at);
    if (subj.kind !== 'pod') throw new Error(`${at} is not a pod`);
    for (const peerName of ALL) {
      if (peerName === at) continue;
      const p = resolveEndpoint(s, peerName);
      for (const dir of ['ingress', 'egress'] as const) {
        for (const { port, protocol } of PROBES) {
          let allowed: boolean;
          if (e === null) allowed = decideDirection(s, subj, dir, p, protocol, port).allowed;
          else {
            const hit = e.lookup(at, e.identityOfPod(peerName) as number, dir, PROTOCOL_NUMBER[protocol], port);
            allowed = hit !== undefined && !hit.entry.deny;
          }
          out.push(`${at} ${dir} ${peerName} ${port}/${protocol} ${allowed ? 'allow' : 'deny'}`);
        }
      }
    }
  }
  return out;
}

const counts = { cases: 0, formAllows: 0, changedSubject: 0, laterAllows: 0 };

/**
 * 3540: each form beside the added policy `added` against the new version `next` with and without it (a later event:
 * both inputs hold `next`), and against the old input `before` and `next` with it (a split step); the engine equals the
 * oracle there too.
 */
function laterStep(steps: readonly (readonly [Policy, readonly string[], Policy])[], stateWith: (p: Policy, extra?: readonly EngineEvent[]) => ClusterState, around: readonly EngineEvent[], added: readonly EngineEvent[]): void {
  for (const [i, [form, before, next]] of steps.entries()) {
    const got = verdicts(null, stateWith(form, added));
    const [without, withAdded] = [verdicts(null, stateWith(next)), verdicts(null, stateWith(next, added))];
    got.forEach((g, j) => {
      if (!g.endsWith('allow')) return;
      counts.laterAllows++;
      const [w, a, b] = [without[j] as string, withAdded[j] as string, before[j] as string];
      expect(w.endsWith('allow') || a.endsWith('allow'), `form ${i + 1}, a policy added later: ${g}, new version ${w}, with the added policy ${a}`).toBe(true);
      expect(b.endsWith('allow') || a.endsWith('allow'), `form ${i + 1}, a policy added in its split step: ${g}, old input ${b}, new input ${a}`).toBe(true);
    });
    const e = new Engine();
    e.apply([...setup, ...around, ...added, { type: 'upsertPolicy', policy: form }]);
    expect(verdicts(e, stateWith(form, added)), `form ${i + 1} beside the added policy: engine against the oracle`).toEqual(got);
  }
}

describe('31r: the held deny side of a ClusterNetworkPolicy update (30r, 2800)', () => {
  it('allows only what the old or the new input allows, for every pod; the engine equals the oracle on it', () => {
    fc.assert(
      fc.property(fc.record({ v0: spec, v1: spec, v2: spec, v3: spec, others: fc.tuple(fc.array(spec, { maxLength: 2 }), fc.option(adminPass)).map(([o, p]) => (p === null ? o : [...o, p])), np, later: fc.option(fc.oneof(adminPass, adminPass, spec)) }), ({ v0, v1, v2, v3, others, np: nps, later }) => {
        counts.cases++;
        const around: EngineEvent[] = [...others.map((o, i) => parse(cnp(`o${i}`, o))), ...nps.map(parse)].map((policy) => ({ type: 'upsertPolicy', policy }));
        const added: EngineEvent[] = later === null ? [] : [{ type: 'upsertPolicy', policy: parse(cnp('later', later)) }];
        const stateWith = (p: Policy, extra: readonly EngineEvent[] = []): ClusterState => [...setup, ...around, ...extra, { type: 'upsertPolicy', policy: p } as EngineEvent].reduce(applyEventToCluster, EMPTY_CLUSTER);
        const [p0, p1, p2, p3] = [parse(cnp('p', v0)), parse(cnp('p', v1)), parse(cnp('p', v2)), parse(cnp('p', v3))];
        if (p0.tiered?.subject.key !== p1.tiered?.subject.key) counts.changedSubject++;
        const f1 = denySideOf(p1, p0);
        const f2 = denySideOf(p2, f1);
        const f3 = denySideOf(p3, f2);
        const [o0, o1, o2, o3] = [p0, p1, p2, p3].map((p) => verdicts(null, stateWith(p))) as [string[], string[], string[], string[]];
        const steps = [[f1, o0, o1, 'held beside v0'], [f2, o1, o2, 'held again beside the form'], [f3, o2, o3, 'held a third time']] as const;
        if (added.length > 0) laterStep([[f1, o0, p1], [f2, o1, p2], [f3, o2, p3]], stateWith, around, added);
        for (const [form, before, after, step] of steps) {
          const got = verdicts(null, stateWith(form));
          got.forEach((g, i) => {
            if (!g.endsWith('allow')) return;
            counts.formAllows++;
            const [b, a] = [before[i] as string, after[i] as string];
            expect(b.endsWith('allow') || a.endsWith('allow'), `${step}: ${g}, old ${b}, new ${a}`).toBe(true);
          });
          const e = new Engine();
          e.apply([...setup, ...around, { type: 'upsertPolicy', policy: form }]);
          expect(verdicts(e, stateWith(form)), `${step}: engine against the oracle`).toEqual(got);
        }
      }),
      { numRuns: fcRuns(150), ...fcReplay() },
    );
    expect(counts.changedSubject).toBeGreaterThan(counts.cases / 2);
  }, 600_000);
});

afterAll(() => {
  process.stdout.write(`tiered deny side 31r: ${JSON.stringify(counts)}\n`);
});
