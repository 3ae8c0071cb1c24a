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
    expect([allowed(s, 'node:n1'), allowed(s, 'fd00::2'), allowed(s, 'node:n2')]).toEqual([true, true, false]);
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
          const selected = Object.entries(selector).every(([k, v]) => l[k] === v);
          expect(allowed(s, `172.18.0.${i + 2}`)).toBe(!selected);
        });
      }),
      { numRuns: 200, ...(process.env.DISTILL_SEED ? { seed: Number(process.env.DISTILL_SEED) } : {}) },
    );
  });
});

describe('ClusterNetworkPolicy nodes peer: engine and agent', () => {
  it('the engine refuses it (node addresses share the host and remote-node identities), naming the rule', () => {
    const e = new Engine();
    expect(() => e.apply([{ type: 'upsertPolicy', policy: parseManifest(cnp('Accept', {}), 't.yaml') }])).toThrow('spec.egress[0] (nodes): a nodes peer needs node identities split by node labels');
  });
  it('the agent enforces its fail-closed stand-in: an Accept to nodes matches nothing, the policy reaches the engine', () => {
    const warn: string[] = [];
    const mirror = new ClusterMirror({ nodeName: 'n1', warn: (m) => warn.push(m) });
    const parser = new WatchStreamParser('w');
    const obj = { ...cnp('Accept', { matchLabels: { pool: 'gpu' } }), metadata: { name: 'to-nodes', resourceVersion: '3' } };
    for (const item of parser.push(JSON.stringify({ type: 'ADDED', object: obj }) + '\n')) mirror.observe(item, 'w');
    const batch = mirror.flush();
    const events = batch.events as EngineEvent[];
    const up = events.find((ev) => ev.type === 'upsertPolicy');
    expect(warn).toEqual(['policy enforced fail-closed: it uses what distill does not read']);
    expect(up?.type === 'upsertPolicy' && up.policy.tiered?.rules[0]?.peers.map((p) => p.kind)).toEqual(['unknown']);
    expect(() => new Engine().apply(events)).not.toThrow();
  });
});
