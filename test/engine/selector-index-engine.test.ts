import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseIp } from '../../src/model/cidr.js';
import { ClusterState, Pod } from '../../src/model/cluster.js';
import { FlowProtocol } from '../../src/model/ports.js';
import { Engine } from '../../src/engine/engine.js';
import type { EngineEvent } from '../../src/engine/events.js';
import { L7ParserConflictError } from '../../src/engine/rule-units.js';
import { applyEventToCluster, comparableMaps, initialEvents } from '../../src/harness/cluster-sync.js';
import { parseManifestFile } from '../../src/policy/manifest.js';
import { INITIAL_CLUSTER } from './gen.js';
import { checkAllFlows } from './all-flows.js';

/**
 * The selector cache files identities only under label keys some selector uses, indexed on first
 * need. Here selectors on keys no earlier selector used (pod keys, namespace-label keys, the
 * namespace key; In, NotIn, Exists, DoesNotExist) arrive after the pods, inside refused
 * transactions, and after identities were released and reused: every flow vs the oracle after
 * every transaction, and the maps vs a fresh engine at the end.
 */
const NAMESPACES = ['x', 'y'];
const POD_NAMES = ['a', 'b', 'c'];
const VALUES = ['p', 'q'];
const PROBES: readonly { protocol: FlowProtocol; port: number }[] = [
  { protocol: 'TCP', port: 80 },
  { protocol: 'UDP', port: 53 },
];

function policy(name: string, body: string, kind = 'CiliumClusterwideNetworkPolicy'): EngineEvent {
  const [p] = parseManifestFile(`apiVersion: cilium.io/v2\nkind: ${kind}\nmetadata: {name: ${name}}\nspec:\n${body}`, `${name}.yaml`);
  return { type: 'upsertPolicy', policy: p! };
}

const sel = (expr: string): string => `{matchExpressions: [${expr}]}`;
const POLICIES: readonly EngineEvent[] = [
  policy('allow-all', '  endpointSelector: {}\n  egress: [{toEntities: [all]}]\n  ingress: [{fromEntities: [all]}]\n'),
  policy('deny-tier-in', `  endpointSelector: {}\n  egressDeny: [{toEndpoints: [${sel('{key: tier, operator: In, values: [p]}')}]}]\n`),
  policy('deny-tier-notin', `  endpointSelector: {}\n  egressDeny: [{toEndpoints: [${sel('{key: tier, operator: NotIn, values: [p]}')}], toPorts: [{ports: [{port: "80"}]}]}]\n`),
  policy('deny-zone-exists', `  endpointSelector: ${sel('{key: zone, operator: Exists}')}\n  ingressDeny: [{fromEndpoints: [${sel('{key: io.cilium.k8s.namespace.labels.team, operator: Exists}')}], toPorts: [{ports: [{port: "53", protocol: UDP}]}]}]\n`),
  policy('deny-team-missing', `  endpointSelector: {}\n  egressDeny: [{toEndpoints: [${sel('{key: io.cilium.k8s.namespace.labels.team, operator: DoesNotExist}')}], toPorts: [{ports: [{port: "53", protocol: UDP}]}]}]\n`),
  policy('deny-team-q', `  endpointSelector: ${sel('{key: io.cilium.k8s.namespace.labels.team, operator: In, values: [q]}')}\n  ingressDeny: [{fromEndpoints: [${sel('{key: zone, operator: In, values: [q]}')}]}]\n`),
  policy('deny-ns-y', `  endpointSelector: {}\n  egressDeny: [{toEndpoints: [${sel('{key: io.kubernetes.pod.namespace, operator: In, values: ["y"]}, {key: tier, operator: Exists}')}], toPorts: [{ports: [{port: "80"}]}]}]\n`),
];
const CONFLICT: readonly EngineEvent[] = [
  policy('l7-http', `  endpointSelector: {}\n  egress: [{toEndpoints: [${sel('{key: color, operator: In, values: [p]}')}], toPorts: [{ports: [{port: "80", protocol: TCP}], rules: {http: [{}]}}]}]\n`),
  policy('l7-kafka', `  endpointSelector: {}\n  egress: [{toEndpoints: [${sel('{key: color, operator: Exists}')}], toPorts: [{ports: [{port: "80", protocol: TCP}], rules: {kafka: [{}]}}]}]\n`),
];
const COLOR_ALLOW = policy('color', `  endpointSelector: {}\n  egressDeny: [{toEndpoints: [${sel('{key: color, operator: Exists}')}], toPorts: [{ports: [{port: "53", protocol: UDP}]}]}]\n`);

type Labels = Record<string, string>;
type Op =
  | { readonly k: 'ns'; readonly ns: number; readonly team: number }
  | { readonly k: 'pod'; readonly ns: number; readonly name: number; readonly labels: Labels; readonly local: boolean }
  | { readonly k: 'delPod'; readonly ns: number; readonly name: number }
  | { readonly k: 'policy'; readonly i: number }
  | { readonly k: 'delPolicy'; readonly i: number }
  | { readonly k: 'refused'; readonly labels: Labels }
  | { readonly k: 'color' };

const labelsArb: fc.Arbitrary<Labels> = fc
  .record({ tier: fc.option(fc.constantFrom(...VALUES)), zone: fc.option(fc.constantFrom(...VALUES)), color: fc.option(fc.constantFrom(...VALUES)) })
  .map((r) => Object.fromEntries(Object.entries(r).filter(([, v]) => v !== null)) as Labels);
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 1, arbitrary: fc.record({ k: fc.constant('ns' as const), ns: fc.nat(1), team: fc.nat(2) }) },
  { weight: 4, arbitrary: fc.record({ k: fc.constant('pod' as const), ns: fc.nat(1), name: fc.nat(POD_NAMES.length - 1), labels: labelsArb, local: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('delPod' as const), ns: fc.nat(1), name: fc.nat(POD_NAMES.length - 1) }) },
  { weight: 3, arbitrary: fc.record({ k: fc.constant('policy' as const), i: fc.nat(POLICIES.length - 1) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('delPolicy' as const), i: fc.nat(POLICIES.length - 1) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('refused' as const), labels: labelsArb }) },
  { weight: 1, arbitrary: fc.constant({ k: 'color' as const }) },
);

function podEvent(ns: number, name: number, labels: Labels, local: boolean): EngineEvent {
  const pod: Pod = { namespace: NAMESPACES[ns]!, name: POD_NAMES[name]!, labels, ip: parseIp(`10.244.${ns}.${name + 2}`), serviceAccount: 'default', ports: [] };
  return { type: 'upsertPod', pod, local };
}

function batch(o: Op, state: ClusterState): EngineEvent[] {
  switch (o.k) {
    case 'ns':
      return [{ type: 'upsertNamespace', name: NAMESPACES[o.ns]!, labels: o.team === 2 ? {} : { team: VALUES[o.team]! } }];
    case 'pod':
      return [podEvent(o.ns, o.name, o.labels, o.local)];
    case 'delPod':
      return state.pods.has(`${NAMESPACES[o.ns]}/${POD_NAMES[o.name]}`) ? [{ type: 'deletePod', namespace: NAMESPACES[o.ns]!, name: POD_NAMES[o.name]! }] : [];
    case 'policy':
      return [POLICIES[o.i]!];
    case 'delPolicy': {
      const e = POLICIES[o.i]!;
      if (e.type !== 'upsertPolicy') throw new Error('not a policy');
      return state.policies.has(`CiliumClusterwideNetworkPolicy//${e.policy.ref.name}`) || [...state.policies.values()].some((p) => p.ref.name === e.policy.ref.name) ? [{ type: 'deletePolicy', ref: e.policy.ref }] : [];
    }
    case 'refused':
      // A local pod the conflicting HTTP and Kafka rules both select on 80/TCP (its color=p and a
      // peer with color=p exist in the batch): always refused, after registering `color` selectors.
      return [podEvent(1, 2, { ...o.labels, color: 'p' }, true), ...CONFLICT];
    case 'color':
      return [COLOR_ALLOW];
  }
}

let flows = 0;
let refusals = 0;

function checkFlows(engine: Engine, state: ClusterState, step: string): void {
  flows += checkAllFlows(engine, state, PROBES, step).flows;
}

function run(ops: readonly Op[]): void {
  const engine = new Engine();
  const base: EngineEvent[] = NAMESPACES.map((name) => ({ type: 'upsertNamespace', name, labels: {} }));
  let state = base.reduce(applyEventToCluster, INITIAL_CLUSTER);
  engine.apply([...initialEvents(INITIAL_CLUSTER), ...base]);
  const local = new Map<string, boolean>();
  ops.forEach((o, i) => {
    const events = batch(o, state);
    if (events.length === 0) return;
    const before = comparableMaps(engine);
    try {
      engine.apply(events);
    } catch (err) {
      if (!(err instanceof L7ParserConflictError) || o.k !== 'refused') throw err;
      refusals++;
      expect(comparableMaps(engine)).toEqual(before);
      return checkFlows(engine, state, `#${i} refused`);
    }
    for (const e of events) {
      state = applyEventToCluster(state, e);
      if (e.type === 'upsertPod') local.set(`${e.pod.namespace}/${e.pod.name}`, e.local ?? false);
      if (e.type === 'deletePod') local.delete(`${e.namespace}/${e.name}`);
    }
    checkFlows(engine, state, `#${i} ${JSON.stringify(o)}`);
  });
  const fresh = new Engine();
  fresh.apply(initialEvents(state, (p) => local.get(`${p.namespace}/${p.name}`) ?? false));
  expect(comparableMaps(engine)).toEqual(comparableMaps(fresh));
}

describe('selector-cache key indexing through the engine (engine vs oracle after every transaction)', () => {
  it('a key first needed inside a refused transaction, then by a later policy, finds the pods added before', () => {
    run([
      { k: 'ns', ns: 1, team: 0 },
      { k: 'pod', ns: 0, name: 0, labels: { color: 'q' }, local: true },
      { k: 'pod', ns: 1, name: 1, labels: { color: 'p', tier: 'p' }, local: false },
      { k: 'policy', i: 0 },
      { k: 'refused', labels: {} },
      { k: 'color' },
      { k: 'policy', i: 4 },
      { k: 'delPod', ns: 1, name: 1 },
      { k: 'pod', ns: 1, name: 1, labels: { zone: 'p' }, local: true },
      { k: 'policy', i: 3 },
    ]);
    expect(refusals).toBe(1);
  });

  it('random event sequences (fast-check)', () => {
    const before = flows;
    fc.assert(fc.property(fc.array(opArb, { minLength: 1, maxLength: 14 }), (ops) => run(ops)), process.env.DISTILL_LONG ? { numRuns: 3000 } : { numRuns: 100, seed: 20261130 });
    expect(flows - before).toBeGreaterThan(2000);
    expect(refusals).toBeGreaterThan(5);
  });
});
