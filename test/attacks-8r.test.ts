import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Engine } from '../src/engine/engine.js';
import type { ChangeSet, EngineEvent } from '../src/engine/events.js';
import { ALL_LOCAL, clusterEvents } from '../src/harness/cluster-sync.js';
import { EngineDecider, engineDecision } from '../src/harness/engine-decider.js';
import { IpAddress, parseIp } from '../src/model/cidr.js';
import { ClusterState, deleteNode, EMPTY_CLUSTER, namespaceWithDefaults, nodeAddresses, upsertNamespace, upsertNode, upsertPod, upsertPolicy } from '../src/model/cluster.js';
import type { Flow } from '../src/model/flow.js';
import type { Policy } from '../src/model/rules.js';
import { decideFlow } from '../src/naive/evaluator.js';
import { parseManifest } from '../src/policy/manifest.js';

/*
 * Round 8r attacks (docs/attack-findings-8r.md): ClusterNetworkPolicy `nodes` peers and the node
 * identities behind them, judged through what the kernel gets (the change sets' ipcache deltas),
 * not the engine's own view.
 */

/** An engine and the ipcache a kernel holds after its change sets. */
class Kernel {
  readonly engine = new Engine();
  readonly ipcache = new Map<string, number>();
  apply(events: readonly EngineEvent[]): ChangeSet {
    const cs = this.engine.apply(events);
    for (const d of cs.ipcache) {
      if (d.op === 'delete') this.ipcache.delete(d.prefix);
      else this.ipcache.set(d.prefix, d.identity);
    }
    return cs;
  }
  readonly lookup = (ip: IpAddress): number => this.ipcache.get(`${ip.text}/${ip.family === 'ipv4' ? 32 : 128}`) ?? 2;
}

const WEB = { namespace: 'a', name: 'web', labels: { app: 'web' }, ip: parseIp('10.244.0.10'), serviceAccount: 'default', ports: [] };
const GPU_NODE = { name: 'n1', ips: [parseIp('172.18.0.2')], local: false, labels: { pool: 'gpu' } };
const denyGpuNodes = (): Policy =>
  parseManifest(
    { apiVersion: 'policy.networking.k8s.io/v1alpha2', kind: 'ClusterNetworkPolicy', metadata: { name: 'no-gpu' }, spec: { tier: 'Admin', priority: 1, subject: { namespaces: {} }, egress: [{ action: 'Deny', to: [{ nodes: { matchLabels: { pool: 'gpu' } } }] }] } },
    'no-gpu.yaml',
  );

describe('90. a nodes peer applied after its node: the kernel ipcache gets the node identity', () => {
  it('a Deny on nodes pool=gpu applied to a running cluster denies egress to the gpu node in the kernel', () => {
    const k = new Kernel();
    k.apply([
      { type: 'upsertNamespace', name: 'a', labels: {} },
      { type: 'upsertPod', pod: WEB, local: true },
      { type: 'upsertNode', name: GPU_NODE.name, ips: GPU_NODE.ips, labels: GPU_NODE.labels },
    ]);
    const policy = denyGpuNodes();
    k.apply([{ type: 'upsertPolicy', policy }]);
    // The node left remote-node (6) for its labels' identity; the kernel must be told.
    expect(k.ipcache.get('172.18.0.2/32')).toBe(k.engine.identityOfIp(parseIp('172.18.0.2')));
    let s: ClusterState = upsertPod(upsertNamespace(EMPTY_CLUSTER, namespaceWithDefaults('a', {})), WEB);
    s = upsertPolicy(upsertNode(s, GPU_NODE), policy);
    const flow = { from: 'a/web', to: '172.18.0.2', port: 80, protocol: 'TCP' as const };
    expect(decideFlow(s, flow).allowed).toBe(false);
    expect(engineDecision(k.engine, s, flow, undefined, k.lookup).allowed, 'the kernel, by its ipcache').toBe(false);
  });

  it('deleting the policy gives the node its remote-node entry back in the kernel', () => {
    const k = new Kernel();
    const policy = denyGpuNodes();
    k.apply([{ type: 'upsertNamespace', name: 'a', labels: {} }, { type: 'upsertPod', pod: WEB, local: true }, { type: 'upsertPolicy', policy }, { type: 'upsertNode', name: GPU_NODE.name, ips: GPU_NODE.ips, labels: GPU_NODE.labels }]);
    expect(k.ipcache.get('172.18.0.2/32')).toBeGreaterThan(1 << 24);
    k.apply([{ type: 'deletePolicy', ref: policy.ref }]);
    expect(k.ipcache.get('172.18.0.2/32')).toBe(6);
  });
});

describe("91. a remote node's label identity is in Cilium's remote-node scope (2<<24), not the CIDR identities' local scope", () => {
  it('numbers it from 2<<24 + 1, keeps it out of the DNS cache file, and a restart reads that file back', () => {
    const k = new Kernel();
    k.apply([{ type: 'upsertNamespace', name: 'a', labels: {} }, { type: 'upsertPod', pod: WEB, local: true }, { type: 'upsertPolicy', policy: denyGpuNodes() }, { type: 'upsertNode', name: GPU_NODE.name, ips: GPU_NODE.ips, labels: GPU_NODE.labels }]);
    const id = k.engine.identityOfIp(parseIp('172.18.0.2'));
    expect(id).toBe((2 << 24) + 1);
    expect(k.engine.identityLabels(id)?.some((l) => l.source === 'reserved' && l.key === 'remote-node')).toBe(true);
    const file = k.engine.dnsCacheFile();
    expect(file).not.toMatch(/remote-node/);
    const restarted = new Engine();
    restarted.restoreDnsCache(file, 'dns.jsonl');
    restarted.apply([{ type: 'upsertNode', name: GPU_NODE.name, ips: GPU_NODE.ips, labels: GPU_NODE.labels }, { type: 'upsertPolicy', policy: denyGpuNodes() }]);
    expect(restarted.identityOfIp(parseIp('172.18.0.2'))).toBe((2 << 24) + 1);
  });
});

/*
 * Random histories of nodes (labels, shared addresses, the own node), ClusterNetworkPolicy `nodes`
 * peers, Cilium entities and NetworkPolicy ipBlocks; some steps are refused (an ingress policy too
 * big for the maps) or fail inside (an injected fault) and must change nothing.
 */
const KEYS = ['os', 'pool'] as const;
const VALUES = ['a', 'b'] as const;
const ADDRESSES = ['172.18.0.1', '172.18.0.2', '172.18.0.3', 'fd00::1'];
const NODES = ['n0', 'n1', 'n2'];
type Json = Record<string, unknown>;
type Op = { k: 'node'; name: string; ips: string[]; local: boolean; labels: Record<string, string> } | { k: 'delNode'; name: string } | { k: 'policy'; manifest: Json };

const labels = fc.dictionary(fc.constantFrom(...KEYS), fc.constantFrom(...VALUES), { maxKeys: 2 });
const nodeSelector: fc.Arbitrary<Json> = fc.oneof(
  fc.constant({}),
  labels.map((m) => ({ matchLabels: m })),
  fc.record({ key: fc.constantFrom(...KEYS), operator: fc.constantFrom('Exists', 'DoesNotExist', 'In', 'NotIn'), v: fc.constantFrom(...VALUES) }).map(({ key, operator, v }) => ({ matchExpressions: [{ key, operator, ...(operator === 'In' || operator === 'NotIn' ? { values: [v] } : {}) }] })),
);
const cnpRule = fc.record({ action: fc.constantFrom('Accept', 'Deny', 'Pass'), to: fc.array(nodeSelector.map((s) => ({ nodes: s })), { minLength: 1, maxLength: 2 }) });
const cnp: fc.Arbitrary<Op> = fc.record({ name: fc.constantFrom('c1', 'c2'), tier: fc.constantFrom('Admin', 'Baseline'), egress: fc.array(cnpRule, { minLength: 1, maxLength: 2 }) }).map(({ name, tier, egress }) => ({
  k: 'policy',
  manifest: { apiVersion: 'policy.networking.k8s.io/v1alpha2', kind: 'ClusterNetworkPolicy', metadata: { name }, spec: { tier, priority: 1, subject: { namespaces: {} }, egress } },
}));
const entity = fc.constantFrom('remote-node', 'cluster', 'host', 'all', 'world');
const cilium: fc.Arbitrary<Op> = fc.record({ name: fc.constantFrom('k1', 'k2'), deny: fc.boolean(), ent: entity, sel: fc.constantFrom('web', 'db') }).map(({ name, deny, ent, sel }) => ({
  k: 'policy',
  manifest: { apiVersion: 'cilium.io/v2', kind: 'CiliumClusterwideNetworkPolicy', metadata: { name }, spec: { endpointSelector: { matchLabels: { app: sel } }, [deny ? 'egressDeny' : 'egress']: [{ toEntities: [ent] }] } },
}));
const knp: fc.Arbitrary<Op> = fc.record({ name: fc.constantFrom('np1'), cidr: fc.constantFrom('0.0.0.0/0', '172.18.0.0/16') }).map(({ name, cidr }) => ({
  k: 'policy',
  manifest: { apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { name, namespace: 'a' }, spec: { podSelector: {}, policyTypes: ['Egress'], egress: [{ to: [{ ipBlock: { cidr } }] }] } },
}));
const nodeOp: fc.Arbitrary<Op> = fc.record({ name: fc.constantFrom(...NODES), ips: fc.subarray(ADDRESSES, { minLength: 1, maxLength: 2 }), local: fc.boolean(), labels }).map((n) => ({ k: 'node', ...n }));
const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 4, arbitrary: nodeOp },
  { weight: 1, arbitrary: fc.constantFrom(...NODES).map((name): Op => ({ k: 'delNode', name })) },
  { weight: 3, arbitrary: cnp },
  { weight: 2, arbitrary: cilium },
  { weight: 1, arbitrary: knp },
);

function initial(): ClusterState {
  let s = upsertNamespace(upsertNamespace(EMPTY_CLUSTER, namespaceWithDefaults('a', {})), namespaceWithDefaults('b', {}));
  s = upsertPod(s, { namespace: 'a', name: 'web', labels: { app: 'web' }, ip: parseIp('10.244.0.10'), serviceAccount: 'default', ports: [] });
  return upsertPod(s, { namespace: 'b', name: 'db', labels: { app: 'db' }, ip: parseIp('10.244.0.11'), serviceAccount: 'default', ports: [] });
}

function applyOp(s: ClusterState, o: Op): ClusterState {
  switch (o.k) {
    case 'node':
      return upsertNode(s, { name: o.name, ips: o.ips.map(parseIp), local: o.local, labels: o.labels });
    case 'delNode':
      return s.nodes?.has(o.name) ? deleteNode(s, o.name) : s;
    case 'policy':
      return upsertPolicy(s, parseManifest(o.manifest, 'p.yaml'));
  }
}

function flows(s: ClusterState): Flow[] {
  const targets = new Set<string>(['b/db', 'a/web']);
  for (const n of s.nodes?.values() ?? []) for (const { ip } of nodeAddresses(n)) targets.add(ip.text);
  return [...s.pods.keys()].flatMap((from) => [...targets].map((to) => ({ from, to, port: 80, protocol: 'TCP' as const })));
}

const bomb = (): EngineEvent => ({
  type: 'upsertPolicy',
  policy: parseManifest({ apiVersion: 'cilium.io/v2', kind: 'CiliumClusterwideNetworkPolicy', metadata: { name: 'bomb' }, spec: { endpointSelector: {}, ingress: [{ fromCIDR: Array.from({ length: 300 }, (_, i) => `192.0.${i >> 8}.${i & 255}/32`) }] } }, 'bomb.yaml'),
});

function snapshot(e: Engine): string {
  const maps = e.endpoints().map((ep) => [ep, JSON.stringify(e.mapState(ep), (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v))]);
  const ids = e.identities().map((id) => [id, JSON.stringify(e.identityLabels(id))]);
  return JSON.stringify({ maps, ipcache: e.ipcache(), ids });
}

describe('90 (property). node identities through the kernel ipcache, refusals and internal errors', () => {
  it('the kernel ipcache follows the engine, decisions through it agree with the oracle, and a refused or failed transaction changes nothing', () => {
    let checked = 0;
    fc.assert(
      fc.property(fc.array(fc.tuple(op, fc.constantFrom('apply', 'refuse', 'fault'), fc.integer({ min: 1, max: 40 })), { minLength: 1, maxLength: 10 }), (ops) => {
        let countdown = 0;
        const faultHook = (): void => {
          if (countdown > 0 && --countdown === 0) throw new Error('injected fault');
        };
        const engine = new Engine({ mapCapacity: 200, faultHook });
        const kernel = new Map<string, number>();
        const feed = (cs: ChangeSet): void => {
          for (const d of cs.ipcache) {
            if (d.op === 'delete') kernel.delete(d.prefix);
            else kernel.set(d.prefix, d.identity);
          }
        };
        const lookup = (ip: IpAddress): number => kernel.get(`${ip.text}/${ip.family === 'ipv4' ? 32 : 128}`) ?? 2;
        const dec = new EngineDecider(engine, ALL_LOCAL, feed, undefined, lookup);
        let s = initial();
        dec.sync(s);
        for (const [o, mode, fault] of ops) {
          const next = applyOp(s, o);
          if (mode !== 'apply' && next !== s) {
            const before = snapshot(engine);
            let failed = true;
            if (mode === 'refuse') expect(() => engine.apply([...clusterEvents(s, next, ALL_LOCAL), bomb()])).toThrow();
            else {
              countdown = fault;
              try {
                feed(engine.apply(clusterEvents(s, next, ALL_LOCAL)));
                // No fault before the end: undone by the inverse events (numbers freed at commit are not reused).
                failed = false;
                countdown = 0;
                feed(engine.apply(clusterEvents(next, s, ALL_LOCAL)));
              } catch {
                // the injected fault: recovered from the committed model
              }
              countdown = 0;
            }
            if (failed) expect(snapshot(engine)).toBe(before);
          }
          s = next;
          dec.sync(s);
          expect(new Map(engine.ipcache().map((e) => [e.prefix, e.identity]))).toEqual(kernel);
          for (const f of flows(s)) {
            const want = decideFlow(s, f).allowed;
            expect(`${f.from}->${f.to} ${String(dec.decide(s, f).allowed)}`).toBe(`${f.from}->${f.to} ${String(want)}`);
            checked++;
          }
        }
      }),
      { numRuns: 60, ...(process.env.DISTILL_SEED ? { seed: Number(process.env.DISTILL_SEED) } : {}) },
    );
    expect(checked).toBeGreaterThan(300);
  });
});
