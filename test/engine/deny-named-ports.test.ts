import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseIp } from '../../src/model/cidr.js';
import { ClusterState, Pod } from '../../src/model/cluster.js';
import { ContainerPort, FlowProtocol } from '../../src/model/ports.js';
import { Engine } from '../../src/engine/engine.js';
import type { EngineEvent } from '../../src/engine/events.js';
import { L7ParserConflictError } from '../../src/engine/rule-units.js';
import { applyEventToCluster, comparableMaps, initialEvents } from '../../src/harness/cluster-sync.js';
import { parseManifestFile } from '../../src/policy/manifest.js';
import { INITIAL_CLUSTER } from './gen.js';
import { checkAllFlows } from './all-flows.js';

/**
 * Deny rules on named ports, incrementally: pods bringing and dropping (name, port) pairs, relabels,
 * the deny before or after the pods, toPorts-only / toEndpoints / toEntities / toCIDR denies, ANY,
 * one name on TCP and UDP. After every transaction: every flow of every local endpoint against the
 * oracle, and the map state against a fresh engine built from the final cluster.
 */
const POD_NAMES = ['a', 'b', 'c', 'd'];
const PORT_CHOICES: readonly (readonly ContainerPort[])[] = [
  [],
  [{ name: 'web', protocol: 'TCP', port: 80 }],
  [{ name: 'web', protocol: 'TCP', port: 8080 }],
  [{ name: 'web', protocol: 'UDP', port: 80 }],
  [{ name: 'web', protocol: 'TCP', port: 80 }, { name: 'dns', protocol: 'UDP', port: 53 }],
  [{ name: 'dns', protocol: 'TCP', port: 53 }, { name: 'web', protocol: 'SCTP', port: 80 }],
  [{ protocol: 'TCP', port: 80 }],
];
const PROBES: readonly { protocol: FlowProtocol; port: number }[] = [
  { protocol: 'TCP', port: 80 },
  { protocol: 'TCP', port: 8080 },
  { protocol: 'UDP', port: 80 },
  { protocol: 'SCTP', port: 80 },
  { protocol: 'UDP', port: 53 },
  { protocol: 'TCP', port: 53 },
];

function cnp(name: string, body: string, kind = 'CiliumNetworkPolicy'): EngineEvent {
  const meta = kind === 'CiliumNetworkPolicy' ? `{name: ${name}, namespace: x}` : `{name: ${name}}`;
  const [p] = parseManifestFile(`apiVersion: cilium.io/v2\nkind: ${kind}\nmetadata: ${meta}\nspec:\n${body}`, `${name}.yaml`);
  return { type: 'upsertPolicy', policy: p! };
}

const POLICIES: readonly EngineEvent[] = [
  cnp('allow-all', '  endpointSelector: {}\n  egress: [{toEntities: [all]}]\n  ingress: [{fromEntities: [all]}]\n'),
  cnp('deny-ports-only', '  endpointSelector: {matchLabels: {app: one}}\n  egressDeny: [{toPorts: [{ports: [{port: web, protocol: TCP}]}]}]\n'),
  cnp('deny-to-two', '  endpointSelector: {}\n  egressDeny: [{toEndpoints: [{matchLabels: {app: two}}], toPorts: [{ports: [{port: web}]}]}]\n'),
  cnp('deny-world', '  endpointSelector: {matchLabels: {app: two}}\n  egressDeny: [{toEntities: [world], toPorts: [{ports: [{port: dns, protocol: ANY}]}]}]\n'),
  cnp('deny-cidr', '  endpointSelector: {}\n  egressDeny: [{toCIDR: [192.168.1.0/24], toPorts: [{ports: [{port: web, protocol: UDP}]}]}]\n'),
  cnp('deny-any-ep', '  endpointSelector: {matchLabels: {app: two}}\n  egressDeny: [{toEndpoints: [{}], toPorts: [{ports: [{port: dns}]}]}]\n'),
  cnp('deny-ingress', '  endpointSelector: {}\n  ingressDeny: [{fromEndpoints: [{}], toPorts: [{ports: [{port: web}]}]}]\n'),
  cnp('ccnp-deny', '  endpointSelector: {}\n  egressDeny: [{toEndpoints: [{matchLabels: {app: one}}], toPorts: [{ports: [{port: web, protocol: ANY}]}]}]\n', 'CiliumClusterwideNetworkPolicy'),
  cnp('ccnp-deny-all-ep', '  endpointSelector: {matchLabels: {app: three}}\n  egressDeny: [{toEndpoints: [{}], toPorts: [{ports: [{port: web, protocol: TCP}]}]}]\n', 'CiliumClusterwideNetworkPolicy'),
  cnp('allow-named', '  endpointSelector: {matchLabels: {app: one}}\n  egress: [{toEndpoints: [{}], toPorts: [{ports: [{port: web}]}]}]\n'),
];

type Op =
  | { readonly k: 'pod'; readonly name: number; readonly app: number; readonly ports: number; readonly local: boolean }
  | { readonly k: 'delPod'; readonly name: number }
  | { readonly k: 'policy'; readonly i: number }
  | { readonly k: 'delPolicy'; readonly i: number }
  /** A pod change batched with a local pod bringing web=53/UDP and two policies whose HTTP and Kafka rules on 80/TCP conflict there: refused, undone. */
  | { readonly k: 'refused'; readonly pod: Op & { k: 'pod' } };

const APPS = ['one', 'two', 'three'];
const L7_CONFLICT: readonly EngineEvent[] = [
  cnp('l7-http', '  endpointSelector: {}\n  egress: [{toEndpoints: [{}], toPorts: [{ports: [{port: "80", protocol: TCP}], rules: {http: [{}]}}]}]\n'),
  cnp('l7-kafka', '  endpointSelector: {}\n  egress: [{toEndpoints: [{}], toPorts: [{ports: [{port: "80", protocol: TCP}], rules: {kafka: [{}]}}]}]\n'),
];

function toEvent(o: Op): EngineEvent {
  switch (o.k) {
    case 'pod': {
      const name = POD_NAMES[o.name]!;
      const pod: Pod = { namespace: 'x', name, labels: { app: APPS[o.app]! }, ip: parseIp(`10.244.0.${o.name + 2}`), serviceAccount: 'default', ports: PORT_CHOICES[o.ports]! };
      return { type: 'upsertPod', pod, local: o.local };
    }
    case 'delPod':
      return { type: 'deletePod', namespace: 'x', name: POD_NAMES[o.name]! };
    case 'policy':
      return POLICIES[o.i]!;
    case 'refused':
      throw new Error('a batch, see events()');
    case 'delPolicy': {
      const e = POLICIES[o.i]!;
      if (e.type !== 'upsertPolicy') throw new Error('not a policy');
      return { type: 'deletePolicy', ref: e.policy.ref };
    }
  }
}

function events(o: Op): EngineEvent[] {
  if (o.k !== 'refused') return [toEvent(o)];
  const z: Pod = { namespace: 'x', name: 'z', labels: {}, ip: parseIp('10.244.0.99'), serviceAccount: 'default', ports: [{ name: 'web', protocol: 'UDP', port: 53 }] };
  return [toEvent(o.pod), { type: 'upsertPod', pod: z, local: true }, ...L7_CONFLICT];
}

const podArb = fc.record({ k: fc.constant('pod' as const), name: fc.nat(POD_NAMES.length - 1), app: fc.nat(APPS.length - 1), ports: fc.nat(PORT_CHOICES.length - 1), local: fc.boolean() });
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 1, arbitrary: fc.record({ k: fc.constant('refused' as const), pod: podArb }) },
  { weight: 4, arbitrary: fc.record({ k: fc.constant('pod' as const), name: fc.nat(POD_NAMES.length - 1), app: fc.nat(APPS.length - 1), ports: fc.nat(PORT_CHOICES.length - 1), local: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('delPod' as const), name: fc.nat(POD_NAMES.length - 1) }) },
  { weight: 3, arbitrary: fc.record({ k: fc.constant('policy' as const), i: fc.nat(POLICIES.length - 1) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('delPolicy' as const), i: fc.nat(POLICIES.length - 1) }) },
);

const BASE: EngineEvent = { type: 'upsertNamespace', name: 'x', labels: {} };

let flowsChecked = 0;
let deniedByNamedPort = 0;
let refusals = 0;

function checkFlows(engine: Engine, state: ClusterState, step: string): void {
  const { flows, egressDenies } = checkAllFlows(engine, state, PROBES, step);
  flowsChecked += flows;
  deniedByNamedPort += egressDenies;
}

function run(ops: readonly Op[]): void {
  const engine = new Engine();
  let state = applyEventToCluster(INITIAL_CLUSTER, BASE);
  const local = new Map<string, boolean>();
  engine.apply([...initialEvents(INITIAL_CLUSTER), BASE]);
  ops.forEach((o, i) => {
    const batch = events(o);
    const [e] = batch;
    if (e?.type === 'deletePod' && !state.pods.has(`x/${e.name}`)) return;
    if (e?.type === 'deletePolicy' && ![...state.policies.values()].some((p) => JSON.stringify(p.ref) === JSON.stringify(e.ref))) return;
    const before = comparableMaps(engine);
    try {
      engine.apply(batch);
    } catch (err) {
      if (!(err instanceof L7ParserConflictError) || o.k !== 'refused') throw err;
      expect(comparableMaps(engine)).toEqual(before);
      refusals++;
      return checkFlows(engine, state, `#${i} refused ${JSON.stringify(o)}`);
    }
    for (const ev of batch) {
      state = applyEventToCluster(state, ev);
      if (ev.type === 'upsertPod') local.set(`x/${ev.pod.name}`, ev.local ?? false);
      if (ev.type === 'deletePod') local.delete(`x/${ev.name}`);
    }
    const step = `#${i} ${JSON.stringify(o)}`;
    checkFlows(engine, state, step);
  });
  const fresh = new Engine();
  fresh.apply(initialEvents(state, (p) => local.get(`${p.namespace}/${p.name}`) ?? false));
  expect(comparableMaps(engine)).toEqual(comparableMaps(fresh));
}

describe('egress deny on named ports, incrementally (engine vs oracle after every transaction)', () => {
  it('hand-picked: deny before the pods, a name moving between ports and protocols, the last pod with a pair leaving', () => {
    run([
      { k: 'policy', i: 0 },
      { k: 'policy', i: 1 },
      { k: 'policy', i: 2 },
      { k: 'pod', name: 0, app: 0, ports: 0, local: true },
      { k: 'pod', name: 1, app: 1, ports: 1, local: false },
      { k: 'pod', name: 2, app: 1, ports: 3, local: true },
      { k: 'pod', name: 1, app: 1, ports: 2, local: false },
      { k: 'policy', i: 3 },
      { k: 'policy', i: 5 },
      { k: 'pod', name: 3, app: 2, ports: 4, local: false },
      { k: 'pod', name: 3, app: 0, ports: 5, local: true },
      { k: 'delPod', name: 2 },
      { k: 'policy', i: 7 },
      { k: 'policy', i: 4 },
      { k: 'pod', name: 1, app: 0, ports: 6, local: true },
      { k: 'delPolicy', i: 2 },
      { k: 'delPod', name: 3 },
    ]);
    expect(deniedByNamedPort).toBeGreaterThan(0);
  });

  it('random event sequences (fast-check)', () => {
    const before = flowsChecked;
    fc.assert(fc.property(fc.array(opArb, { minLength: 1, maxLength: 14 }), (ops) => run(ops)), process.env.DISTILL_LONG ? { numRuns: 3000 } : { numRuns: 120, seed: 20261130 });
    expect(flowsChecked - before).toBeGreaterThan(10_000);
    expect(refusals).toBeGreaterThan(5);
  });
});
