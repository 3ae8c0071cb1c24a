import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.js';
import type { EngineEvent } from '../../src/engine/events.js';
import { applyEventToCluster } from '../../src/harness/cluster-sync.js';
import { parseIp } from '../../src/model/cidr.js';
import { type ClusterState, EMPTY_CLUSTER, type NodeHold } from '../../src/model/cluster.js';
import { endpointAddress, resolveEndpoint } from '../../src/model/flow.js';
import { PROTOCOL_NUMBER } from '../../src/model/ports.js';
import { decideDirection } from '../../src/naive/evaluator.js';
import { parseManifest } from '../../src/policy/manifest.js';
import { heldNodePeer, nodeLabels } from './held-node-arbitraries.js';

/*
 * Findings 2541 and 2730 (30a): the agent's own node held fail-closed (`upsertNode.failClosed` with `local`: the engine
 * refused its relabel from L1 to L2 alone) reads its labels as unknown; `allPorts` (that form refused too), every Deny
 * or Pass rule with a `nodes` peer denies it on every port. Checked against the oracle for random
 * ClusterNetworkPolicy tiers (`nodes`, `networks` and `pods` peers, Accept/Deny/Pass, Admin and Baseline, shared
 * priorities) and a NetworkPolicy-tier rule on the host entity:
 *  - the held engine's verdicts equal the oracle's on the held state (src/naive/tiers.ts `heldLocalNode`);
 *  - a flow the held engine allows, the oracle allows under L1 and under L2 (so never one both deny);
 *  - liveness: the relabel then read as written (L2, not held), the engine equals the oracle under L2.
 */
const HOST = '172.18.0.1';
const REMOTE = '172.18.0.2';
const PROBES: readonly { port: number; protocol: 'TCP' | 'UDP' }[] = [{ port: 22, protocol: 'TCP' }, { port: 80, protocol: 'TCP' }, { port: 53, protocol: 'UDP' }];
const RUNS = Number(process.env.DISTILL_HELD_NODE_RUNS ?? 300);
const SEED = process.env.DISTILL_SEED ? Number(process.env.DISTILL_SEED) : Date.now() % 2 ** 31;
type Json = Record<string, unknown>;

const labels = nodeLabels;
const peer = heldNodePeer;
const rule = fc
  .record({ action: fc.constantFrom('Accept', 'Deny', 'Pass'), to: fc.array(peer, { minLength: 1, maxLength: 2 }), protocols: fc.constantFrom([], [{ tcp: { destinationPort: { number: 80 } } }], [{ udp: { destinationPort: { number: 53 } } }, { tcp: { destinationPort: { range: { start: 20, end: 80 } } } }]) })
  .map(({ protocols, ...r }) => (protocols.length > 0 ? { ...r, protocols } : r));
const tiered = fc.record({ name: fc.constantFrom('t1', 't2', 't3'), tier: fc.constantFrom('Admin', 'Baseline'), priority: fc.integer({ min: 1, max: 2 }), egress: fc.array(rule, { minLength: 1, maxLength: 3 }) }).map(({ name, tier, priority, egress }) => ({
  apiVersion: 'policy.networking.k8s.io/v1beta1',
  kind: 'ClusterNetworkPolicy',
  metadata: { name },
  spec: { tier, priority, subject: { namespaces: {} }, egress },
}));
/** A NetworkPolicy-tier rule of web on the host entity (or none): decides where the Admin tier passes. */
const npTier = fc.constantFrom<Json[]>([], [{ egress: [{ toEntities: ['host'], toPorts: [{ ports: [{ port: '80', protocol: 'TCP' }] }] }] }], [{ egressDeny: [{ toEntities: ['host'], toPorts: [{ ports: [{ port: '22', protocol: 'TCP' }] }] }] }]);
const scenario = fc.record({ l1: labels, l2: labels, remote: labels, policies: fc.uniqueArray(tiered, { minLength: 1, maxLength: 3, selector: (p) => p.metadata.name }), np: npTier, hold: fc.constantFrom<NodeHold>(true, 'allPorts') });

const counts = { allPorts: 0, cases: 0, flows: 0, heldAllows: 0, stricter: 0, hostTierRules: 0 };
const node = (name: string, ip: string, local: boolean, l: Record<string, string>, failClosed?: NodeHold): EngineEvent => ({ type: 'upsertNode', name, ips: [parseIp(ip)], local, labels: l, ...(failClosed !== undefined ? { failClosed } : {}) });
const web: EngineEvent = { type: 'upsertPod', local: true, pod: { namespace: 'a', name: 'web', labels: { app: 'web' }, ip: parseIp('10.244.0.10'), serviceAccount: 'default', ports: [] } };

/** web's egress verdict to `peerName` (a node address or a pod) per probe, from the engine and the oracle. */
function verdicts(e: Engine | null, s: ClusterState, peerName: string): string[] {
  const subject = resolveEndpoint(s, 'a/web');
  if (subject.kind !== 'pod') throw new Error('a/web is not a pod');
  const p = resolveEndpoint(s, peerName);
  return PROBES.map(({ port, protocol }) => {
    if (e === null) return decideDirection(s, subject, 'egress', p, protocol, port).allowed ? 'allow' : 'deny';
    const id = s.pods.has(peerName) ? (e.identityOfPod(peerName) as number) : e.identityOfIp(endpointAddress(p));
    const hit = e.lookup('a/web', id, 'egress', PROTOCOL_NUMBER[protocol], port);
    return hit !== undefined && !hit.entry.deny ? 'allow' : 'deny';
  });
}

describe('30a: the local node held with its labels unknown', () => {
  it('equals the oracle, never allows what L1 or L2 denies, and reads L2 once it is read as written', () => {
    fc.assert(
      fc.property(scenario, ({ l1, l2, remote, policies, np, hold }) => {
        const setup: EngineEvent[] = [{ type: 'upsertNamespace', name: 'a', labels: {} }, web, { type: 'upsertPod', local: false, pod: { namespace: 'a', name: 'db', labels: { app: 'db' }, ip: parseIp('10.244.1.5'), serviceAccount: 'default', ports: [] } }, node('n1', REMOTE, false, remote)];
        const pols: EngineEvent[] = [...policies, ...np.map((spec) => ({ apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name: 'np', namespace: 'a' }, spec: { endpointSelector: { matchLabels: { app: 'web' } }, ...spec } }))].map((m) => ({ type: 'upsertPolicy', policy: parseManifest(m, 'p.yaml') }));
        const stateOf = (...events: EngineEvent[]): ClusterState => [...setup, ...pols, ...events].reduce(applyEventToCluster, EMPTY_CLUSTER);
        const e = new Engine();
        e.apply([...setup, node('n0', HOST, true, l1), ...pols]);
        e.apply([node('n0', HOST, true, l2, hold)]);
        const held = stateOf(node('n0', HOST, true, l2, hold));
        const under1 = stateOf(node('n0', HOST, true, l1));
        const under2 = stateOf(node('n0', HOST, true, l2));
        counts.cases++;
        if (hold === 'allPorts') counts.allPorts++;
        if (policies.some((p) => p.spec.egress.some((r) => r.to.some((x) => 'nodes' in x)))) counts.hostTierRules++;
        for (const peerName of [HOST, REMOTE, 'a/db']) {
          const got = verdicts(e, held, peerName);
          expect(got, `held engine against the held oracle, peer ${peerName}`).toEqual(verdicts(null, held, peerName));
          const [v1, v2] = [verdicts(null, under1, peerName), verdicts(null, under2, peerName)];
          got.forEach((g, i) => {
            counts.flows++;
            if (g === 'allow') counts.heldAllows++;
            if (g === 'deny' && (v1[i] === 'allow' || v2[i] === 'allow')) counts.stricter++;
            if (g === 'allow') expect([v1[i], v2[i]], `held allows ${peerName} ${PROBES[i]?.port}: allowed under L1 and L2`).toEqual(['allow', 'allow']);
          });
        }
        e.apply([node('n0', HOST, true, l2)]);
        for (const peerName of [HOST, REMOTE]) expect(verdicts(e, under2, peerName), `read as written, peer ${peerName}`).toEqual(verdicts(null, under2, peerName));
      }),
      { numRuns: RUNS, seed: SEED },
    );
    expect(counts.heldAllows).toBeGreaterThan(counts.flows / 10);
    expect(counts.stricter).toBeGreaterThan(10);
  }, 300_000);
});

afterAll(() => {
  process.stdout.write(`held local node (seed ${SEED}): ${JSON.stringify(counts)}\n`);
});
