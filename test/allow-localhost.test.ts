import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Engine } from '../src/engine/engine.js';
import { EngineDecider } from '../src/harness/engine-decider.js';
import { parseIp } from '../src/model/cidr.js';
import { ClusterState, deleteNode, deletePolicy, EMPTY_CLUSTER, namespaceWithDefaults, upsertNamespace, upsertNode, upsertPod, upsertPolicy } from '../src/model/cluster.js';
import type { Flow } from '../src/model/flow.js';
import { ALLOW_LOCALHOST_VALUES, type AllowLocalhost } from '../src/model/localhost.js';
import { policyKeyString } from '../src/model/policy-map.js';
import { decideFlow } from '../src/naive/evaluator.js';
import { parseManifest } from '../src/policy/manifest.js';

/*
 * allow-localhost (docs/semantics.md, Nodes): the engine against the oracle on flows from the
 * local host, a remote node and pods into pods, after every step of random histories of CNP
 * ingress allow and deny rules (host, remote-node, cluster, world and pod peers; L3, L4 and HTTP
 * rules; enableDefaultDeny), pod relabels and the local node readdressed, relabelled or deleted.
 * The option is fixed per run (both values are drawn); the engine is incremental and fresh.
 */
const PODS = ['web', 'db'];
const NODES: readonly { name: string; ips: string[]; local: boolean }[] = [
  { name: 'n1', ips: ['172.18.0.1'], local: true },
  { name: 'n1', ips: ['172.18.0.3'], local: true },
  { name: 'n2', ips: ['172.18.0.2'], local: false },
];
const PROBES: readonly Pick<Flow, 'port' | 'protocol' | 'request'>[] = [
  { port: 8080, protocol: 'TCP' },
  { port: 8080, protocol: 'TCP', request: { http: { method: 'POST', path: '/x', headers: {} } } },
  { port: 8080, protocol: 'TCP', request: { http: { method: 'GET', path: '/', headers: {} } } },
  { port: 9090, protocol: 'TCP' },
  { port: 53, protocol: 'UDP' },
];

type Json = Record<string, unknown>;
type Op = { k: 'policy'; name: string; manifest: Json } | { k: 'delPolicy'; name: string } | { k: 'node'; n: number } | { k: 'delNode' } | { k: 'label'; pod: string; app: string };

const from: fc.Arbitrary<Json> = fc.oneof(
  fc.constantFrom(['host'], ['remote-node'], ['cluster'], ['world'], ['all']).map((e) => ({ fromEntities: e })),
  fc.constantFrom('web', 'db').map((app) => ({ fromEndpoints: [{ matchLabels: { app } }] })),
  fc.constant({}),
);
const ports = fc.constantFrom<Json>(
  {},
  { toPorts: [{ ports: [{ port: '8080', protocol: 'TCP' }] }] },
  { toPorts: [{ ports: [{ port: '8080', protocol: 'TCP' }], rules: { http: [{ method: 'GET', path: '/' }] } }] },
);
const rule = fc.record({ from, ports, deny: fc.boolean() }).map(({ from: f, ports: p, deny }) => ({ deny, rule: deny && 'rules' in ((p.toPorts as Json[] | undefined)?.[0] ?? {}) ? { ...f, toPorts: [{ ports: [{ port: '8080', protocol: 'TCP' }] }] } : { ...f, ...p } }));
const policyOp: fc.Arbitrary<Op> = fc
  .record({ name: fc.constantFrom('p1', 'p2'), app: fc.constantFrom('web', 'db'), rules: fc.array(rule, { minLength: 1, maxLength: 3 }), defaultDeny: fc.boolean() })
  .map(({ name, app, rules, defaultDeny }) => {
    const allow = rules.filter((r) => !r.deny).map((r) => r.rule);
    const deny = rules.filter((r) => r.deny).map((r) => r.rule);
    const spec: Json = { endpointSelector: { matchLabels: { app } }, ...(allow.length > 0 ? { ingress: allow } : {}), ...(deny.length > 0 ? { ingressDeny: deny } : {}), ...(defaultDeny ? {} : { enableDefaultDeny: { ingress: false } }) };
    return { k: 'policy', name, manifest: { apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { namespace: 'a', name }, spec } };
  });
const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 4, arbitrary: policyOp },
  { weight: 1, arbitrary: fc.constantFrom('p1', 'p2').map((name): Op => ({ k: 'delPolicy', name })) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: NODES.length - 1 }).map((n): Op => ({ k: 'node', n })) },
  { weight: 1, arbitrary: fc.constant<Op>({ k: 'delNode' }) },
  { weight: 1, arbitrary: fc.record({ pod: fc.constantFrom(...PODS), app: fc.constantFrom('web', 'db') }).map((r): Op => ({ k: 'label', ...r })) },
);

function initial(option: AllowLocalhost): ClusterState {
  let s: ClusterState = { ...EMPTY_CLUSTER, allowLocalhost: option };
  s = upsertNamespace(s, namespaceWithDefaults('a', {}));
  PODS.forEach((name, i) => (s = upsertPod(s, { namespace: 'a', name, labels: { app: name }, ip: parseIp(`10.244.0.${10 + i}`), serviceAccount: 'default', ports: [] })));
  for (const n of NODES.slice(1)) s = upsertNode(s, { name: n.name, ips: n.ips.map(parseIp), local: n.local, labels: {} });
  return s;
}

function applyOp(s: ClusterState, o: Op): ClusterState {
  switch (o.k) {
    case 'policy':
      return upsertPolicy(s, parseManifest(o.manifest, `${o.name}.yaml`));
    case 'delPolicy': {
      const p = [...s.policies.values()].find((x) => x.ref.name === o.name);
      return p ? deletePolicy(s, p.ref) : s;
    }
    case 'node': {
      const n = NODES[o.n]!;
      return upsertNode(s, { name: n.name, ips: n.ips.map(parseIp), local: n.local, labels: {} });
    }
    case 'delNode':
      return s.nodes?.has('n1') ? deleteNode(s, 'n1') : s;
    case 'label': {
      const pod = s.pods.get(`a/${o.pod}`)!;
      return upsertPod(s, { ...pod, labels: { app: o.app } });
    }
  }
}

function flows(s: ClusterState): Flow[] {
  const nodes = [...(s.nodes?.values() ?? [])].flatMap((n) => n.ips.map((ip) => ip.text));
  const sources = [...nodes, ...PODS.map((p) => `a/${p}`)];
  return sources.flatMap((from) => PODS.map((p) => `a/${p}`).filter((to) => to !== from).flatMap((to) => PROBES.map((p) => ({ from, to, ...p }))));
}

const verdict = (d: { allowed: boolean; proxied: boolean }): string => `${d.allowed ? 'allow' : 'deny'}${d.proxied ? ' proxied' : ''}`;
const line = (f: Flow, v: string): string => `${f.from}->${f.to} ${f.port}/${f.protocol} ${f.request ? 'http ' : ''}${v}`;

describe('allow-localhost: engine against the oracle', () => {
  it('agree on every flow into the pods after every step of random policy, pod and node histories, incrementally and fresh', () => {
    let checked = 0;
    let hostOpened = 0;
    fc.assert(
      fc.property(fc.constantFrom(...ALLOW_LOCALHOST_VALUES), fc.array(op, { minLength: 1, maxLength: 10 }), (option, ops) => {
        const incremental = new EngineDecider(new Engine({ allowLocalhost: option }));
        let s = initial(option);
        for (const o of ops) {
          s = applyOp(s, o);
          const fresh = new EngineDecider(new Engine({ allowLocalhost: option }));
          for (const f of flows(s)) {
            const want = decideFlow(s, f);
            if (want.ingress?.allowedBy.some((x) => x.policy.name === 'reserved:allow-localhost-ingress')) hostOpened++;
            expect(line(f, verdict(incremental.decide(s, f)))).toBe(line(f, verdict(want)));
            expect(line(f, verdict(fresh.decide(s, f)))).toBe(line(f, verdict(want)));
            checked++;
          }
        }
      }),
      { numRuns: 80, ...(process.env.DISTILL_SEED ? { seed: Number(process.env.DISTILL_SEED) } : {}) },
    );
    expect(checked).toBeGreaterThan(5000);
    expect(hostOpened).toBeGreaterThan(100);
  });

  it('writes Cilium\'s localHostKey (ingress, identity 1, every port) into every endpoint map under always only', () => {
    for (const option of ALLOW_LOCALHOST_VALUES) {
      const engine = new Engine({ allowLocalhost: option });
      const d = new EngineDecider(engine);
      const s = initial(option);
      d.sync(s);
      for (const p of PODS) {
        const host = [...engine.mapState(`a/${p}`).values()].filter((r) => r.key.identity === 1);
        expect(host.map((r) => `${policyKeyString(r.key)} deny=${r.entry.deny}`), `${option} a/${p}`).toEqual(option === 'always' ? [`${policyKeyString({ identity: 1, direction: 'ingress', protocol: 0, port: 0, portPrefixLen: 0 })} deny=false`] : []);
      }
    }
  });
});
