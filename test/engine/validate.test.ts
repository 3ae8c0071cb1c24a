import { describe, expect, it } from 'vitest';
import { parseIp } from '../../src/model/cidr.js';
import type { Pod } from '../../src/model/cluster.js';
import { Engine } from '../../src/engine/engine.js';
import { EngineError, EngineEvent } from '../../src/engine/events.js';
import { checkEvents } from '../../src/engine/validate.js';
import { decideFlow } from '../../src/naive/evaluator.js';
import { parseScenario } from '../../src/scenario/format.js';
import { runScenario } from '../../src/scenario/run.js';
import { EngineDecider } from '../../src/harness/engine-decider.js';
import { parseManifestFile, readManifestFile } from '../../src/policy/manifest.js';

function pod(name: string, labels: Record<string, string>, over: Partial<Pod> = {}): Pod {
  return { namespace: 'x', name, labels, ip: parseIp('10.0.0.9'), serviceAccount: 'default', ports: [], ...over };
}
const upsert = (p: unknown): EngineEvent => ({ type: 'upsertPod', pod: p, local: true }) as EngineEvent;

/** Prototype property names, the classic hostile keys. */
const PROTO_NAMES = [...Object.getOwnPropertyNames(Object.prototype), 'prototype'];

function refusal(events: readonly unknown[]): EngineError {
  const e = new Engine();
  const before = JSON.stringify({ eps: e.endpoints(), ids: e.identities(), stats: e.stats() });
  let err: unknown;
  try {
    e.apply(events as EngineEvent[]);
  } catch (x) {
    err = x;
  }
  expect(err).toBeInstanceOf(EngineError);
  expect(JSON.stringify({ eps: e.endpoints(), ids: e.identities(), stats: e.stats() })).toBe(before);
  return err as EngineError;
}

describe('engine events are validated as the Kubernetes API validates objects', () => {
  it('refuses malformed events with EngineError, never a TypeError', () => {
    const bad: unknown[] = [
      null,
      42,
      { type: 'upsertPod' },
      { type: 'upsertPod', pod: null },
      upsert({ ...pod('a', {}), ports: [null] }),
      upsert({ ...pod('a', {}), ports: [{ port: 80, protocol: 'ICMP' }] }),
      upsert({ ...pod('a', {}), ip: '10.0.0.1' }),
      upsert({ ...pod('a', {}), ip: { family: 'ipv6', value: 5n, text: '10.0.0.1' } }),
      upsert({ ...pod('a', {}), labels: null }),
      upsert({ ...pod('a', {}), labels: { app: 7 } }),
      upsert({ ...pod('a', {}), namespace: 'X_Y' }),
      upsert({ ...pod('a', {}), serviceAccount: undefined }),
      { type: 'upsertPolicy', policy: { ref: { kind: 'NetworkPolicy', name: 'n' }, rules: [], enforcements: [] } },
      { type: 'deletePolicy', ref: null },
      { type: 'deletePolicy', ref: { kind: 'constructor', name: 'n' } },
      { type: 'deletePod', namespace: 3, name: 'a' },
      { type: 'upsertNamespace', name: 'x', labels: [] },
      { type: 'toString' },
      { type: 'upsertPod', pod: new Proxy({}, { get: () => { throw new Error('hostile getter'); } }) },
    ];
    bad.forEach((ev, i) => expect(refusal([ev]).message, `bad event ${i}`).toMatch(/^event #0 /));
  });

  it('refuses every prototype property name as a label key, in pods, namespaces and selectors', () => {
    for (const k of PROTO_NAMES) {
      const labels = Object.create(null) as Record<string, string>;
      labels[k] = 'v';
      // Valid Kubernetes label keys (constructor, toString...) are accepted as ordinary keys.
      const valid = /^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/.test(k);
      const e = new Engine();
      const apply = (): unknown => e.apply([upsert(pod('a', labels)), { type: 'upsertNamespace', name: 'x', labels }]);
      if (valid) expect(apply).not.toThrow();
      else expect(apply).toThrow(EngineError);
    }
    for (const k of PROTO_NAMES) {
      const text = `apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p}\nspec:\n  podSelector: {matchLabels: {${JSON.stringify(k)}: x}}\n`;
      const valid = /^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/.test(k);
      if (valid) {
        const [p] = parseManifestFile(text, 'f.yaml');
        // The key really is a requirement: the selector is not the empty (select-all) one.
        expect(p!.rules.length + p!.enforcements.length).toBeGreaterThan(0);
        expect(p!.enforcements[0]!.subject.key).toContain(k);
      } else {
        expect(() => parseManifestFile(text, 'f.yaml')).toThrow(/f\.yaml#1 spec\.podSelector\.matchLabels.*invalid label key/);
      }
    }
  });

  it('refuses IPv6 zone addresses', () => {
    expect(() => parseIp('fe80::1%eth0')).toThrow(/not a valid IP address/);
    expect(refusal([upsert({ ...pod('a', {}), ip: { family: 'ipv6', value: 0xfe800000000000000000000000000001n, text: 'fe80::1%eth0' } })]).message).toMatch(/pod\.ip/);
  });

  it('checks a whole history against the model as it evolves (checkEvents), naming the event', () => {
    const ns: EngineEvent = { type: 'upsertNamespace', name: 'x', labels: {} };
    expect(() => checkEvents([ns, upsert(pod('a', {})), { type: 'deletePod', namespace: 'x', name: 'a' }])).not.toThrow();
    expect(() => checkEvents([ns, { type: 'deletePod', namespace: 'x', name: 'a' }])).toThrow(/^event #1 \(deletePod\): pod "x\/a" does not exist/);
    expect(() => checkEvents([ns, upsert(pod('a', {})), { type: 'deleteNamespace', name: 'x' }, { type: 'deletePod', namespace: 'x', name: 'a' }])).toThrow(/^event #3/);
  });

  it('a namespace deleted in a batch takes the pods and policies the batch created in it, before and after an earlier deletion', () => {
    const nsOf = (name: string): EngineEvent => ({ type: 'upsertNamespace', name, labels: {} });
    const inNs = (namespace: string, name: string): EngineEvent => upsert(pod(name, {}, { namespace }));
    const [policy] = parseManifestFile('apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: "y"}\nspec: {podSelector: {}}\n', 'p.yaml');
    const created = [nsOf('x'), nsOf('y'), inNs('x', 'a'), { type: 'upsertPolicy', policy } as EngineEvent];
    const delY: EngineEvent = { type: 'deleteNamespace', name: 'y' };
    const delPolicy: EngineEvent = { type: 'deletePolicy', ref: { kind: 'NetworkPolicy', namespace: 'y', name: 'p' } } as EngineEvent;
    expect(() => checkEvents([...created, delPolicy, nsOf('z')])).not.toThrow();
    expect(() => checkEvents([...created, delY, delPolicy, nsOf('z')])).toThrow(/^event #5 .*does not exist/);
    // Indexed by the first deletion (x), then created (y/b) and deleted with its namespace.
    const later = [...created, { type: 'deleteNamespace', name: 'x' } as EngineEvent, inNs('y', 'b'), delY];
    expect(() => checkEvents([...later, { type: 'deletePod', namespace: 'y', name: 'b' }, nsOf('z')])).toThrow(/^event #7 .*does not exist/);
    expect(() => checkEvents([...later, delPolicy, nsOf('z')])).toThrow(/^event #7 .*does not exist/);
    expect(() => checkEvents([...later, { type: 'deletePod', namespace: 'x', name: 'a' }, nsOf('z')])).toThrow(/^event #7 .*does not exist/);
  });
});

describe('pod labels cannot forge identity labels', () => {
  const scenario = (podLabels: string): string => `
namespaces: [{name: red, labels: {}}, {name: blue, labels: {team: blue}}]
pods:
  - {name: red/forger, labels: ${podLabels}}
  - {name: blue/honest, labels: {app: b}}
  - {name: blue/server, labels: {app: server}}
policies:
  - apiVersion: networking.k8s.io/v1
    kind: NetworkPolicy
    metadata: {name: only-team-blue, namespace: blue}
    spec:
      podSelector: {matchLabels: {app: server}}
      ingress: [{from: [{namespaceSelector: {matchLabels: {team: blue}}}]}]
  - apiVersion: cilium.io/v2
    kind: CiliumNetworkPolicy
    metadata: {name: only-sa-admin, namespace: blue}
    spec:
      endpointSelector: {matchLabels: {app: b}}
      ingress: [{fromEndpoints: [{matchLabels: {io.cilium.k8s.policy.serviceaccount: admin, k8s:io.kubernetes.pod.namespace: red}}]}]
steps:
  - probes: [{from: red/forger, to: blue/server, port: 80}, {from: red/forger, to: blue/honest, port: 80}]
    expect: [{probe: 0, allow: []}, {probe: 1, allow: []}]
`;
  for (const labels of [
    '{io.cilium.k8s.namespace.labels.team: blue}',
    '{io.kubernetes.pod.namespace: blue}',
    '{io.cilium.k8s.policy.serviceaccount: admin}',
    '{io.cilium.k8s.policy.cluster: other, io.cilium.k8s.namespace.labels.team: blue}',
  ]) {
    it(`a pod labelled ${labels} is not admitted (engine and oracle)`, () => {
      const s = parseScenario(scenario(labels), 'forge.yaml');
      for (const decide of [decideFlow, new EngineDecider(new Engine()).decide]) {
        const run = runScenario(s, decide);
        expect(run.steps.flatMap((st) => st.mismatches)).toEqual([]);
      }
    });
  }
});

describe('derived-label pod labels are reported', () => {
  it('by scenarios and by validate (v1 Pod manifests, also inside a List)', () => {
    const s = parseScenario('pods: [{name: x/a, labels: {app: a, io.cilium.k8s.policy.serviceaccount: admin}}]\n', 's.yaml');
    expect(s.warnings).toEqual([expect.stringMatching(/^s\.yaml pods\[0\]\.labels\["io\.cilium\.k8s\.policy\.serviceaccount"\]: dropped from the pod's identity/)]);
    const text = 'apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Pod, metadata: {name: a, namespace: x, labels: {io.kubernetes.pod.namespace: kube-system}}}\n- {apiVersion: v1, kind: Namespace, metadata: {name: x, labels: {team: a}}}\n';
    const { policies, objects } = readManifestFile(text, 'p.yaml');
    expect(policies).toEqual([]);
    expect(objects.map((o) => o.name)).toEqual(['x/a', 'x']);
    expect(objects[0]!.warnings).toEqual([{ source: 'p.yaml#1.items[0]', path: 'metadata.labels["io.kubernetes.pod.namespace"]', detail: expect.stringMatching(/dropped from the pod's identity/) }]);
    expect(() => readManifestFile('apiVersion: v1\nkind: Pod\nmetadata: {name: a, labels: {"__proto__": x}}\n', 'p.yaml')).toThrow(/p\.yaml#1 \(Pod a\) metadata\.labels.*invalid label key "__proto__"/);
  });
});

describe('the DNS clock stays exact (attack round 9b, left open)', () => {
  const ns: EngineEvent = { type: 'upsertNamespace', name: 'x', labels: {} };
  const answer = (ttl: number): EngineEvent => ({ type: 'dnsResponse', endpoint: 'x/a', name: 'example.com', ips: [parseIp('192.0.2.1')], ttl });
  const step = (seconds: number): EngineEvent => ({ type: 'advanceTime', seconds });

  it('refuses a step or a TTL that would take the clock past 2^52 seconds, within a batch and across batches', () => {
    expect(refusal([step(2 ** 51), step(2 ** 51), step(1)]).message).toContain('passes 2^52 seconds');
    expect(refusal([ns, upsert(pod('a', {}, { namespace: 'x' })), step(2 ** 52 - 5), answer(10)]).message).toContain('ttl');
    const e = new Engine();
    e.apply([ns, upsert(pod('a', {}, { namespace: 'x' })), step(2 ** 52 - 100)]);
    expect(() => e.apply([step(101)])).toThrow(EngineError);
    e.apply([step(100)]);
    expect(() => e.apply([answer(1)])).toThrow(EngineError);
  });
});

describe("an embedder's engine options are checked (review 9r, finding 224)", () => {
  it('refuses options that would switch a limit off or keep answers live for good', () => {
    for (const bad of [{ dns: { minTtl: Infinity } }, { dns: { minTtl: -1 } }, { dns: { maxIpsPerHostname: Number.NaN } }, { dns: { maxIpsPerHostname: -1 } }, { dns: { maxSelectorCombinations: 1.5 } }, { mapCapacity: 0 }]) {
      expect(() => new Engine(bad)).toThrow(RangeError);
    }
    expect(() => new Engine({ dns: { minTtl: 3600, maxIpsPerHostname: 50, maxSelectorCombinations: 0 }, mapCapacity: 16384 })).not.toThrow();
  });
});

describe('label maps checked once per frozen copy (a cold start checks replicas once, perf18)', () => {
  const ns: EngineEvent = { type: 'upsertNamespace', name: 'x', labels: {} };

  it('a label map that can change is checked again on every use: changed to invalid after passing, it is refused', () => {
    const labels: Record<string, string> = { app: 'web' };
    expect(() => checkEvents([ns, upsert(pod('a', labels))])).not.toThrow();
    labels['bad key!'] = 'v';
    expect(() => checkEvents([ns, upsert(pod('b', labels))])).toThrow(/^event #1 \(upsertPod\): pod\.labels: invalid label key/);
  });

  it('a frozen invalid label map is refused each time it is given, in one batch and across batches', () => {
    const bad = Object.freeze({ app: 'web', 'bad key!': 'v' });
    expect(() => checkEvents([ns, upsert(pod('a', bad)), upsert(pod('b', bad))])).toThrow(/^event #1 /);
    expect(() => checkEvents([ns, upsert(pod('b', bad))])).toThrow(/^event #1 /);
    expect(refusal([ns, upsert(pod('a', bad))]).message).toMatch(/invalid label key/);
    expect(refusal([ns, upsert(pod('a', bad))]).message).toMatch(/invalid label key/);
  });

  it("an engine's shared copy passing once does not let the caller's object, changed later, through", () => {
    const labels: Record<string, string> = { app: 'web' };
    const e = new Engine();
    e.apply([ns, upsert(pod('a', labels)), upsert(pod('b', labels, { ip: parseIp('10.0.0.10') }))]);
    labels['bad key!'] = 'v';
    expect(() => e.apply([upsert(pod('c', labels, { ip: parseIp('10.0.0.11') }))])).toThrow(/invalid label key/);
    expect(e.endpoints().sort()).toEqual(['x/a', 'x/b']);
  });
});
