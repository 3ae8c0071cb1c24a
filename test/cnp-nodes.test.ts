import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Engine } from '../src/engine/engine.js';
import type { EngineEvent } from '../src/engine/events.js';
import { ClusterMirror } from '../src/k8s/mirror.js';
import { WatchStreamParser } from '../src/k8s/watch.js';
import { parseIp } from '../src/model/cidr.js';
import { ClusterState, EMPTY_CLUSTER, namespaceWithDefaults, upsertNamespace, upsertNode, upsertPod, upsertPolicy, deleteNode, upsertExternal } from '../src/model/cluster.js';
import type { Policy } from '../src/model/rules.js';
import { decideFlow } from '../src/naive/evaluator.js';
import { parseManifest } from '../src/policy/manifest.js';

/*
 * ClusterNetworkPolicy `nodes` peers (kubernetes-sigs/network-policy-api @0eec1b0 apis/v1alpha2
 * clusternetworkpolicy_types.go `ClusterNetworkPolicyEgressPeer.Nodes`): "selects a set of nodes in
 * the cluster (based on the node's labels) ... by matching on the IPs present in the
 * node.Status.Addresses field of the node ... if present but empty, it selects all Nodes".
 */
type Labels = Record<string, string>;

function cnp(action: string, nodes: unknown, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    apiVersion: 'policy.networking.k8s.io/v1alpha2',
    kind: 'ClusterNetworkPolicy',
    metadata: { name: 'to-nodes' },
    spec: { tier: 'Admin', priority: 5, subject: { namespaces: {} }, egress: [{ name: 'nodes', action, to: [{ nodes }], ...extra }] },
  };
}

function cluster(policy: Policy): ClusterState {
  let s = upsertNamespace(EMPTY_CLUSTER, namespaceWithDefaults('x', {}));
  s = upsertPod(s, { namespace: 'x', name: 'client', labels: {}, ip: parseIp('10.244.0.10'), serviceAccount: 'default', ports: [] });
  return upsertPolicy(s, policy);
}

const allowed = (s: ClusterState, to: string, port = 22): boolean => decideFlow(s, { from: 'x/client', to, port, protocol: 'TCP' }).allowed;

describe('ClusterNetworkPolicy nodes peer: reader', () => {
  it('reads a LabelSelector over node labels', () => {
    const p = parseManifest(cnp('Deny', { matchExpressions: [{ key: 'kubernetes.io/os', operator: 'In', values: ['linux'] }] }), 't.yaml');
    const peer = p.tiered?.rules[0]?.peers[0];
    expect(peer?.kind).toBe('nodes');
    expect(parseManifest(cnp('Accept', {}), 't.yaml').tiered?.rules[0]?.peers[0]?.kind).toBe('nodes');
  });
  it('refuses it with a named port and on ingress', () => {
    expect(() => parseManifest(cnp('Deny', {}, { protocols: [{ destinationNamedPort: 'web' }] }), 't.yaml')).toThrow('destinationNamedPort cannot be used with a nodes peer');
    const ingress = { ...cnp('Deny', {}), spec: { tier: 'Admin', priority: 5, subject: { namespaces: {} }, ingress: [{ action: 'Deny', from: [{ nodes: {} }] }] } };
    expect(() => parseManifest(ingress, 't.yaml')).toThrow('"nodes" is an egress peer');
  });
});

describe('ClusterNetworkPolicy nodes peer: oracle', () => {
  it("selects a node's own addresses by its labels, not its health address, and follows relabels and deletes", () => {
    let s = cluster(parseManifest(cnp('Deny', { matchLabels: { pool: 'gpu' } }), 't.yaml'));
    s = upsertNode(s, { name: 'n1', ips: [parseIp('172.18.0.2'), parseIp('fd00::2')], local: false, health: [parseIp('10.244.9.9')], labels: { pool: 'gpu' } });
    s = upsertNode(s, { name: 'n2', ips: [parseIp('172.18.0.3')], local: true, labels: { pool: 'cpu' } });
    expect([allowed(s, 'node:n1'), allowed(s, 'fd00::2'), allowed(s, '10.244.9.9'), allowed(s, 'node:n2')]).toEqual([false, false, true, true]);
    s = upsertNode(s, { name: 'n2', ips: [parseIp('172.18.0.3')], local: true, labels: { pool: 'gpu' } });
    s = upsertNode(s, { name: 'n1', ips: [parseIp('172.18.0.2'), parseIp('fd00::2')], local: false });
    // n2 is the agent's own node: never selected (Cilium's kcnpProcessNodeSelector ANDs reserved:remote-node; finding 571).
    expect([allowed(s, 'node:n1'), allowed(s, 'fd00::2'), allowed(s, 'node:n2')]).toEqual([true, true, true]);
    s = upsertExternal(deleteNode(s, 'n2'), { name: 'was-n2', ip: parseIp('172.18.0.3') });
    expect(allowed(s, 'was-n2')).toBe(true);
  });

  const key = fc.constantFrom('os', 'pool', 'zone');
  const value = fc.constantFrom('a', 'b');
  const labels = fc.dictionary(key, value, { maxKeys: 3 });
  it('a Deny rule denies exactly the node addresses whose node carries every matchLabels pair (property)', () => {
    fc.assert(
      fc.property(fc.array(labels, { minLength: 1, maxLength: 4 }), labels, fc.array(fc.tuple(fc.nat(3), labels), { maxLength: 4 }), (nodes, selector, relabels) => {
        let s = cluster(parseManifest(cnp('Deny', { matchLabels: selector }), 't.yaml'));
        const current: Labels[] = [];
        const put = (i: number, l: Labels): void => {
          current[i] = l;
          s = upsertNode(s, { name: `n${i}`, ips: [parseIp(`172.18.0.${i + 2}`)], local: i === 0, labels: l });
        };
        nodes.forEach((l, i) => put(i, l));
        for (const [i, l] of relabels) if (i < nodes.length) put(i, l);
        current.forEach((l, i) => {
          const selected = i > 0 && Object.entries(selector).every(([k, v]) => l[k] === v);
          expect(allowed(s, `172.18.0.${i + 2}`)).toBe(!selected);
        });
      }),
      { numRuns: 200, ...(process.env.DISTILL_SEED ? { seed: Number(process.env.DISTILL_SEED) } : {}) },
    );
  });
});

describe('ClusterNetworkPolicy nodes peer: engine and agent', () => {
  const node = (name: string, ip: string, labels: Record<string, string>, rv: number): string =>
    JSON.stringify({ type: 'ADDED', object: { apiVersion: 'v1', kind: 'Node', metadata: { name, labels, resourceVersion: String(rv) }, status: { addresses: [{ type: 'InternalIP', address: ip }] } } });
  /** The agent's path: Node objects with labels, a client pod on n1, a Deny to the gpu nodes. */
  function agent(): { engine: Engine; warn: string[] } {
    const warn: string[] = [];
    const mirror = new ClusterMirror({ nodeName: 'n1', warn: (m) => warn.push(m) });
    const parser = new WatchStreamParser('w');
    const lines = [
      JSON.stringify({ type: 'ADDED', object: { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'x', resourceVersion: '1' } } }),
      JSON.stringify({ type: 'ADDED', object: { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'client', namespace: 'x', resourceVersion: '2', labels: { app: 'client' } }, spec: { nodeName: 'n1', containers: [] }, status: { phase: 'Running', podIP: '10.244.0.10' } } }),
      node('n1', '172.18.0.2', { pool: 'cpu' }, 3),
      node('n2', '172.18.0.3', { pool: 'gpu' }, 4),
      node('n3', '172.18.0.4', {}, 5),
      JSON.stringify({ type: 'ADDED', object: { ...cnp('Deny', { matchLabels: { pool: 'gpu' } }), metadata: { name: 'to-nodes', resourceVersion: '6' } } }),
    ];
    for (const item of parser.push(lines.join('\n') + '\n')) mirror.observe(item, 'w');
    const engine = new Engine();
    const batch = mirror.flush();
    engine.apply(batch.events as EngineEvent[]);
    batch.commit();
    return { engine, warn };
  }
  const egress = (engine: Engine, ip: string): string => {
    const hit = engine.lookup('x/client', engine.identityOfIp(parseIp(ip))!, 'egress', 6, 22);
    return hit === undefined || hit.entry.deny ? 'deny' : 'allow';
  };
  it('the agent reads Node labels: a remote node with labels gets its own identity, the Deny selects exactly it', () => {
    const { engine, warn } = agent();
    expect(warn).toEqual([]);
    const ids = ['172.18.0.2', '172.18.0.3', '172.18.0.4'].map((ip) => engine.identityOfIp(parseIp(ip)));
    // host (1) for the agent's node, remote-node (6) for a node without labels, a node-local one for n2's label set.
    expect([ids[0], ids[2]]).toEqual([1, 6]);
    expect(ids[1]).toBeGreaterThan(1 << 24);
    expect(['172.18.0.2', '172.18.0.3', '172.18.0.4'].map((ip) => egress(engine, ip))).toEqual(['allow', 'deny', 'allow']);
  });
  it('a relabelled node moves in and out of the peer; the own node never (finding 571)', () => {
    const { engine } = agent();
    engine.apply([
      { type: 'upsertNode', name: 'n2', ips: [parseIp('172.18.0.3')], local: false, labels: {} },
      { type: 'upsertNode', name: 'n1', ips: [parseIp('172.18.0.2')], local: true, labels: { pool: 'gpu' } },
    ]);
    expect(['172.18.0.2', '172.18.0.3'].map((ip) => egress(engine, ip))).toEqual(['allow', 'allow']);
    expect(engine.identityOfIp(parseIp('172.18.0.3'))).toBe(6);
    expect(() => engine.apply([{ type: 'upsertNode', name: 'n3', ips: [parseIp('172.18.0.4')], labels: { 'bad key!': 'x' } }])).toThrow('invalid label key');
  });
});
