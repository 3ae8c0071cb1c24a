import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseIp } from '../../src/model/cidr.js';
import { type ClusterState, EMPTY_CLUSTER, type Pod } from '../../src/model/cluster.js';
import type { L7Request } from '../../src/model/l7.js';
import { type ContainerPort, PROTOCOL_NUMBER } from '../../src/model/ports.js';
import { Engine } from '../../src/engine/engine.js';
import { L7ParserConflictError } from '../../src/engine/rule-units.js';
import type { EngineEvent } from '../../src/engine/events.js';
import { peerIdentity } from '../../src/harness/engine-decider.js';
import { type FlowEndpoint, resolveEndpoint } from '../../src/model/flow.js';
import { datapathPasses } from '../../src/model/policy-map.js';
import type { Direction } from '../../src/model/rules.js';
import { applyEventToCluster, comparableMaps, initialEvents } from '../../src/harness/cluster-sync.js';
import { decideDirection } from '../../src/naive/evaluator.js';
import { parseManifestFile } from '../../src/policy/manifest.js';
import { fcReplay, fcRuns } from '../fc-knobs.js';
import { ownerDepartures } from './fresh-engine.js';
import { PROXY_ID_KEYS as KEYS, type ProxyIdParser as Parser, proxyIdRuleLines, SERVERS } from './dns-filter-probes.js';

/*
 * Review 32t of 3381/3382 (named L7 filters counted per endpoint, the name resolved node-wide on egress): long
 * histories of raw engine events. kube-system servers come and go, local, on another node or held fail-closed by the
 * agent (`failClosed`, their named ports still node-wide: 3264); they are relabelled (one by one, or all with their
 * namespace) and move their n1/n2 ports between 53 and 54/TCP (a name unique, ambiguous, unique again). x/a's policy
 * is replaced, or only one rule's L7 rules change; the subjects x/a, x/b (same labels, other own ports: another map
 * state) and x/c (another identity) leave and come back; an ingress policy on the subjects' own named port; a server
 * change refused in one batch with an L7 parser conflict (undone). After every transaction: every request of every
 * subject to and from every server, the engine against the oracle; at the end, the incremental engine's maps and L7
 * tables against a fresh engine given the last state (attack findings 3580, docs/attack-findings-32t.md). Session 33
 * (3740, docs/attack-findings-33c.md): servers claim one another's addresses, so a server loses its address to one
 * written later, or to none when its owner is deleted, and brings no named port node-wide until it is written again.
 */
const RUNS = fcRuns(process.env.DISTILL_LONG ? 600 : 60);
const SEED = fcReplay();

type Rule = { readonly peer: string | null; readonly port: (typeof KEYS)[number]; readonly l7: 0 | 1 | 2 };
type ServerPorts = readonly { readonly name: string; readonly port: number }[];
type Op =
  /** `addr`: the index of the address it claims (null: its own), so servers share one (the last written owns it: 3740). */
  | { readonly k: 'server'; readonly i: number; readonly app: number; readonly ports: ServerPorts; readonly where: 'local' | 'remote' | 'held'; readonly addr: number | null }
  | { readonly k: 'delServer'; readonly i: number }
  | { readonly k: 'policy'; readonly rules: readonly Rule[] }
  | { readonly k: 'l7Only'; readonly rule: number; readonly l7: 1 | 2 }
  | { readonly k: 'subject'; readonly which: 0 | 1 | 2; readonly present: boolean }
  | { readonly k: 'ingress'; readonly present: boolean; readonly parser: IngressParser }
  /** kube-system relabelled: every server moves to another identity (each pod leaves and joins with its named ports). */
  | { readonly k: 'nsLabel'; readonly team: number }
  /** A server change batched with HTTP and Kafka rules on one port of x/z: refused (L7 parser conflict), undone. */
  | { readonly k: 'refused'; readonly server: Op & { k: 'server' } };
type IngressParser = 'http' | 'kafka';

const portsArb = fc.uniqueArray(fc.record({ name: fc.constantFrom('n1', 'n2'), port: fc.constantFrom(53, 53, 54) }), { maxLength: 2, selector: (p) => p.name });
const ruleArb: fc.Arbitrary<Rule> = fc.record({ peer: fc.constantFrom<string | null>(null, 'nobody', ...SERVERS), port: fc.constantFrom(...KEYS), l7: fc.constantFrom<0 | 1 | 2>(0, 1, 1, 2) });
const serverArb = fc.record({
  k: fc.constant('server' as const),
  i: fc.nat(2),
  app: fc.nat(3),
  ports: portsArb,
  where: fc.constantFrom('local' as const, 'local' as const, 'remote' as const, 'held' as const),
  addr: fc.option(fc.nat(2), { freq: 2 }),
});
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 6, arbitrary: serverArb },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('refused' as const), server: serverArb }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('nsLabel' as const), team: fc.nat(2) }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('delServer' as const), i: fc.nat(2) }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('policy' as const), rules: fc.array(ruleArb, { minLength: 1, maxLength: 4 }) }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('l7Only' as const), rule: fc.nat(), l7: fc.constantFrom<1 | 2>(1, 2) }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('subject' as const), which: fc.constantFrom<0 | 1 | 2>(0, 1, 2), present: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('ingress' as const), present: fc.boolean(), parser: fc.constantFrom<IngressParser>('http', 'kafka') }) },
);
const scenarioArb = fc.record({
  parsers: fc.tuple(fc.constantFrom<Parser>('http', 'dns', 'dns'), fc.constantFrom<Parser>('http', 'dns', 'dns'), fc.constantFrom<Parser>('http', 'dns', 'dns')),
  rules: fc.array(ruleArb, { minLength: 1, maxLength: 4 }),
  ops: fc.array(opArb, { minLength: 3, maxLength: 12 }),
});

const APPS = ['s0', 's1', 's2', 'other'];
const SUBJECTS = ['a', 'b', 'c'] as const;
/**
 * x/b (x/a's identity, another map state) gives n1 too: a subject leaving or joining moves a name node-wide while its
 * own map states go or come; x/c has another identity adopting the same rules.
 */
const SUBJECT_PORTS: readonly (readonly ContainerPort[])[] = [[{ name: 'web', protocol: 'TCP', port: 53 }], [{ name: 'web', protocol: 'TCP', port: 54 }, { name: 'n1', protocol: 'TCP', port: 54 }], [{ name: 'web', protocol: 'TCP', port: 53 }]];

function policyEvent(yaml: string): EngineEvent {
  const [p] = parseManifestFile(yaml, 'p.yaml');
  return { type: 'upsertPolicy', policy: p! };
}

const egressPolicy = (parsers: readonly Parser[], rules: readonly Rule[]): EngineEvent =>
  policyEvent(['apiVersion: cilium.io/v2', 'kind: CiliumNetworkPolicy', 'metadata: {name: a, namespace: x}', 'spec:', '  endpointSelector: {matchLabels: {app: a}}', '  egress:', ...rules.flatMap((r) => proxyIdRuleLines(parsers, r)).map((l) => `  ${l}`)].join('\n'));

/** The subjects' ingress: an HTTP or Kafka rule on their own named port `web` (53 or 54) beside a numbered HTTP rule on 53 (3382). */
const ingressPolicy = (parser: IngressParser): EngineEvent =>
  policyEvent(
    [
      'apiVersion: cilium.io/v2',
      'kind: CiliumNetworkPolicy',
      'metadata: {name: in, namespace: x}',
      'spec:',
      '  endpointSelector: {matchLabels: {app: a}}',
      '  ingress:',
      `    - fromEndpoints: [{matchLabels: {app: nobody}}]`,
      `      toPorts: [{ports: [{port: web, protocol: TCP}], rules: ${parser === 'http' ? '{http: [{method: GET}]}' : '{kafka: [{role: produce, topic: t}]}'}}]`,
      '    - fromEndpoints: [{matchLabels: {k8s:io.kubernetes.pod.namespace: kube-system}}]',
      '      toPorts: [{ports: [{port: "53", protocol: TCP}], rules: {http: [{method: POST}]}}]',
    ].join('\n'),
  );

const CONFLICT: readonly EngineEvent[] = (['http: [{method: GET}]', 'kafka: [{role: produce}]'] as const).map((rules, i) =>
  policyEvent(`apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: conflict${i}, namespace: x}\nspec:\n  endpointSelector: {matchLabels: {app: z}}\n  egress: [{toEndpoints: [{}], toPorts: [{ports: [{port: "80", protocol: TCP}], rules: {${rules}}}]}]\n`),
);
const Z: EngineEvent = { type: 'upsertPod', pod: { namespace: 'x', name: 'z', labels: { app: 'z' }, ip: parseIp('10.0.0.9'), serviceAccount: 'default', ports: [] }, local: true };

const server = (o: Op & { k: 'server' }): EngineEvent => {
  const pod: Pod = {
    namespace: 'kube-system',
    name: SERVERS[o.i]!,
    // A held pod is selected by no selector in the engine (finding 2352), which the oracle does not model: a label of its own.
    labels: { app: o.where === 'held' ? `held${o.i}` : APPS[o.app]! },
    ip: parseIp(`10.96.0.${10 + (o.addr ?? o.i)}`),
    serviceAccount: 'default',
    ports: o.ports.map((p) => ({ name: p.name, port: p.port, protocol: 'TCP' as const })),
    ...(o.where === 'held' ? { failClosed: true as const } : {}),
  };
  return { type: 'upsertPod', pod, local: o.where !== 'remote' };
};

const subject = (which: 0 | 1 | 2): EngineEvent => ({
  type: 'upsertPod',
  pod: { namespace: 'x', name: SUBJECTS[which], labels: which === 2 ? { app: 'a', tier: 'c' } : { app: 'a' }, ip: parseIp(`10.0.0.${2 + which}`), serviceAccount: 'default', ports: SUBJECT_PORTS[which]! },
  local: true,
});

const REQUESTS: readonly L7Request[] = [{ http: { method: 'GET', path: '/' } }, { http: { method: 'POST', path: '/' } }, { dns: { name: 'good.example' } }, { dns: { name: 'other.example' } }, { kafka: { apiKey: 'produce', topic: 't' } }];

/** x/`ep`'s side of a request with `peer` (its egress to it, its ingress from it), from its map and L7 table. */
function engineSide(engine: Engine, state: ClusterState, ep: string, peer: string, direction: Direction, port: number, request: L7Request): boolean {
  const id = peerIdentity(engine, resolveEndpoint(state, peer));
  const entry = engine.lookup(ep, id, direction, PROTOCOL_NUMBER.TCP, port)?.entry;
  const { allowed, proxied } = datapathPasses(entry, 'TCP');
  if (!proxied || entry === undefined) return allowed;
  const verdict = engine.l7Verdict(ep, entry.proxyPort, id, request, port);
  if (verdict === undefined) throw new Error(`${ep}: ${direction} redirects to proxy port ${entry.proxyPort}, none of its redirects`);
  return verdict.allowed;
}

/** Every request both ways between every subject and every server (local, remote or held) on 53 and 54/TCP: engine = oracle, side by side. */
function checkFlows(engine: Engine, state: ClusterState, step: string): number {
  let n = 0;
  const subjects = SUBJECTS.map((s) => `x/${s}`).filter((s) => state.pods.has(s));
  const servers = SERVERS.map((s) => `kube-system/${s}`).filter((s) => state.pods.has(s));
  for (const s of subjects) {
    const subjectEp = resolveEndpoint(state, s) as FlowEndpoint & { kind: 'pod' };
    for (const peer of servers) {
      for (const direction of ['egress', 'ingress'] as const) {
        for (const port of [53, 54]) {
          for (const request of REQUESTS) {
            const got = engineSide(engine, state, s, peer, direction, port, request);
            // A held peer is the unallocated number, denied both ways by every local map (the oracle does not model holds).
            const held = state.pods.get(peer)?.failClosed === true;
            const naive = !held && decideDirection(state, subjectEp, direction, resolveEndpoint(state, peer), 'TCP', port, request).allowed;
            const what = `${s} ${direction} ${peer}:${port} ${JSON.stringify(request)}`;
            expect({ step, what, allowed: got }).toEqual({ step, what, allowed: naive });
            n++;
          }
        }
      }
    }
  }
  return n;
}

type Gen = typeof scenarioArb extends fc.Arbitrary<infer T> ? T : never;

function opEvents(g: Gen, rules: Rule[], o: Op, state: ClusterState): { events: EngineEvent[]; rules: Rule[] } {
  switch (o.k) {
    case 'server':
      return { events: [server(o)], rules };
    case 'refused':
      return { events: [server(o.server), ...CONFLICT], rules };
    case 'nsLabel':
      return { events: [{ type: 'upsertNamespace', name: 'kube-system', labels: o.team === 0 ? {} : { team: `t${o.team}` } }], rules };
    case 'delServer':
      return { events: state.pods.has(`kube-system/${SERVERS[o.i]}`) ? [{ type: 'deletePod', namespace: 'kube-system', name: SERVERS[o.i]! }] : [], rules };
    case 'policy':
      return { events: [egressPolicy(g.parsers, o.rules)], rules: [...o.rules] };
    case 'l7Only': {
      const next = rules.map((r, i) => (i === o.rule % rules.length && r.l7 !== 0 ? { ...r, l7: o.l7 } : r));
      return { events: [egressPolicy(g.parsers, next)], rules: next };
    }
    case 'subject': {
      const has = state.pods.has(`x/${SUBJECTS[o.which]}`);
      if (o.present) return { events: has ? [] : [subject(o.which)], rules };
      return { events: has ? [{ type: 'deletePod', namespace: 'x', name: SUBJECTS[o.which] }] : [], rules };
    }
    case 'ingress': {
      const ev = ingressPolicy(o.parser);
      return { events: [o.present ? ev : { type: 'deletePolicy', ref: (ev as EngineEvent & { type: 'upsertPolicy' }).policy.ref }], rules };
    }
  }
}

let flowsChecked = 0;
let refusals = 0;
/** Histories with two servers at one address after some transaction. */
let shared = 0;

function run(g: Gen): void {
  const engine = new Engine();
  const local = new Map<string, boolean>();
  let state: ClusterState = EMPTY_CLUSTER;
  let rules = [...g.rules];
  let ingress = false;
  let sharing = false;
  const apply = (events: EngineEvent[], refused = false): void => {
    if (events.length === 0) return;
    if (refused) {
      const before = comparableMaps(engine);
      expect(() => engine.apply(events)).toThrow(L7ParserConflictError);
      expect(comparableMaps(engine)).toEqual(before);
      refusals++;
      return;
    }
    engine.apply(events);
    for (const e of events) {
      state = applyEventToCluster(state, e);
      if (e.type === 'upsertPod') local.set(`${e.pod.namespace}/${e.pod.name}`, e.local ?? false);
    }
  };
  apply([{ type: 'upsertNamespace', name: 'x', labels: {} }, { type: 'upsertNamespace', name: 'kube-system', labels: {} }, subject(0), Z, egressPolicy(g.parsers, rules)]);
  g.ops.forEach((o, i) => {
    // A delete of the ingress policy that is not there is skipped (the engine would refuse it).
    if (o.k === 'ingress' && !o.present && !ingress) return;
    if (o.k === 'ingress') ingress = o.present;
    const r = opEvents(g, rules, o, state);
    rules = r.rules;
    apply(r.events, o.k === 'refused');
    flowsChecked += checkFlows(engine, state, `#${i} ${JSON.stringify(o)}`);
    sharing ||= sharesAnAddress(state);
  });
  const fresh = new Engine();
  fresh.apply([...initialEvents(state, (p) => local.get(`${p.namespace}/${p.name}`) ?? false), ...ownerDepartures(state)]);
  expect(comparableMaps(engine)).toEqual(comparableMaps(fresh));
  if (sharing) shared++;
}

/** Whether two servers claim one address. */
function sharesAnAddress(state: ClusterState): boolean {
  const servers = [...state.pods.values()].filter((p) => p.namespace === 'kube-system');
  return new Set(servers.map((p) => p.ip.text)).size < servers.length;
}

describe('32t review of 3381/3382: named L7 filters over long histories (engine = oracle each step, = fresh at the end)', () => {
  it('servers local, remote, held, relabelled, re-ported; L7-only policy updates; subjects leaving and joining', () => {
    fc.assert(fc.property(scenarioArb, (g) => run(g)), { numRuns: RUNS, ...SEED });
    expect(flowsChecked).toBeGreaterThan(RUNS * 50);
    expect(refusals).toBeGreaterThan(RUNS / 20);
    // Observed 11–20 of 60 runs share an address (random seeds); the bound only checks the generator still makes them.
    expect(shared).toBeGreaterThan(RUNS / 12);
  }, 900_000);
});
