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
 * 30s, a review of 30a's held local node (findings 2541, 2730) and finding 2900: the property of
 * held-local-node-30a.property.test.ts (egress: ClusterNetworkPolicy `nodes` and `networks` are egress peers) along the
 * orders the agent reaches it by:
 *  - `after`: the policies arrive while the node is held (selectors added over a held `host`);
 *  - the hold moved among its forms (`true`, `allPorts`, `addresses`) and a second relabel L2 → L3 held again;
 *  - a remote node held at 255 (`remoteHeld`), a second node marked local (`second`: its address stays `host`);
 * at each step the engine equals the oracle on the held state, and a flow the held engine allows is allowed under the
 * labels before and after the relabel (fail closed); then the relabel read as written equals the oracle, and a fresh
 * engine given the held input equals the incremental one.
 */
const HOST = '172.18.0.1';
const REMOTE = '172.18.0.2';
/** A second node marked local (its addresses are `host` too; the first local node's labels decide). */
const SECOND = '172.18.0.3';
const PROBES: readonly { port: number; protocol: 'TCP' | 'UDP' }[] = [{ port: 22, protocol: 'TCP' }, { port: 80, protocol: 'TCP' }, { port: 53, protocol: 'UDP' }];
const RUNS = Number(process.env.DISTILL_HELD_NODE_RUNS ?? 200);
const SEED = process.env.DISTILL_SEED ? Number(process.env.DISTILL_SEED) : Date.now() % 2 ** 31;
type Json = Record<string, unknown>;
type Direction = 'egress';

const labels = nodeLabels;
const peer = heldNodePeer;
const protocols = fc.constantFrom([], [{ tcp: { destinationPort: { number: 80 } } }], [{ udp: { destinationPort: { number: 53 } } }, { tcp: { destinationPort: { range: { start: 20, end: 80 } } } }]);
const rule = fc.record({ action: fc.constantFrom('Accept', 'Deny', 'Pass'), peers: fc.array(peer, { minLength: 1, maxLength: 2 }), protocols }).map(({ protocols: p, ...r }) => (p.length > 0 ? { ...r, protocols: p } : r));
const tiered = (dir: Direction) =>
  fc.record({ name: fc.constantFrom('t1', 't2', 't3'), tier: fc.constantFrom('Admin', 'Baseline'), priority: fc.integer({ min: 1, max: 2 }), rules: fc.array(rule, { minLength: 1, maxLength: 3 }) }).map(({ name, tier, priority, rules }) => ({
    apiVersion: 'policy.networking.k8s.io/v1beta1',
    kind: 'ClusterNetworkPolicy',
    metadata: { name },
    spec: { tier, priority, subject: { namespaces: {} }, [dir]: rules.map(({ peers, ...r }) => ({ ...r, [dir === 'egress' ? 'to' : 'from']: peers })) },
  }));
const npTier = (dir: Direction): fc.Arbitrary<Json[]> => {
  const ents = dir === 'egress' ? 'toEntities' : 'fromEntities';
  return fc.constantFrom<Json[]>([], [{ [dir]: [{ [ents]: ['host'], toPorts: [{ ports: [{ port: '80', protocol: 'TCP' }] }] }] }], [{ [`${dir}Deny`]: [{ [ents]: ['host'], toPorts: [{ ports: [{ port: '22', protocol: 'TCP' }] }] }] }]);
};
const hold = fc.constantFrom<NodeHold>(true, 'allPorts', 'addresses');
const scenario = fc.constant<Direction>('egress').chain((dir) =>
  fc.record({ dir: fc.constant(dir), l1: labels, l2: labels, l3: labels, remote: labels, policies: fc.uniqueArray(tiered(dir), { minLength: 1, maxLength: 3, selector: (p) => p.metadata.name }), np: npTier(dir), holds: fc.array(hold, { minLength: 1, maxLength: 3 }), after: fc.boolean(), remoteHeld: fc.boolean(), second: fc.boolean() }),
);

const counts = { cases: 0, flows: 0, heldAllows: 0, stricter: 0 };
const node = (name: string, ip: string, local: boolean, l: Record<string, string>, failClosed?: NodeHold): EngineEvent => ({ type: 'upsertNode', name, ips: [parseIp(ip)], local, labels: l, ...(failClosed !== undefined ? { failClosed } : {}) });
const web: EngineEvent = { type: 'upsertPod', local: true, pod: { namespace: 'a', name: 'web', labels: { app: 'web' }, ip: parseIp('10.244.0.10'), serviceAccount: 'default', ports: [] } };

function verdicts(e: Engine | null, s: ClusterState, dir: Direction, peerName: string): string[] {
  const subject = resolveEndpoint(s, 'a/web');
  if (subject.kind !== 'pod') throw new Error('a/web is not a pod');
  const p = resolveEndpoint(s, peerName);
  return PROBES.map(({ port, protocol }) => {
    if (e === null) return decideDirection(s, subject, dir, p, protocol, port).allowed ? 'allow' : 'deny';
    const id = s.pods.has(peerName) ? (e.identityOfPod(peerName) as number) : e.identityOfIp(endpointAddress(p));
    const hit = e.lookup('a/web', id, dir, PROTOCOL_NUMBER[protocol], port);
    return hit !== undefined && !hit.entry.deny ? 'allow' : 'deny';
  });
}

describe('30s: the held local node reached in any order, in any of its forms', () => {
  it('equals the oracle and never allows what the labels before and after deny', () => {
    fc.assert(
      fc.property(scenario, ({ dir, l1, l2, l3, remote, policies, np, holds, after, remoteHeld, second }) => {
        const remoteNode = node('n1', REMOTE, false, remote, remoteHeld ? true : undefined);
        const setup: EngineEvent[] = [{ type: 'upsertNamespace', name: 'a', labels: {} }, web, { type: 'upsertPod', local: false, pod: { namespace: 'a', name: 'db', labels: { app: 'db' }, ip: parseIp('10.244.1.5'), serviceAccount: 'default', ports: [] } }, remoteNode];
        const peers = [HOST, REMOTE, 'a/db', ...(second ? [SECOND] : [])];
        const extra = second ? [node('n2', SECOND, true, {})] : [];
        const pols: EngineEvent[] = [...policies, ...np.map((spec) => ({ apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name: 'np', namespace: 'a' }, spec: { endpointSelector: { matchLabels: { app: 'web' } }, ...spec } }))].map((m) => ({ type: 'upsertPolicy', policy: parseManifest(m, 'p.yaml') }));
        const stateOf = (n0: EngineEvent): ClusterState => [...setup, ...pols, n0, ...extra].reduce(applyEventToCluster, EMPTY_CLUSTER);
        const e = new Engine();
        e.apply([...setup, node('n0', HOST, true, l1), ...(after ? [] : pols)]);
        e.apply(extra);
        counts.cases++;
        const check = (from: Record<string, string>, to: Record<string, string>, h: NodeHold, step: string): void => {
          const held = stateOf(node('n0', HOST, true, to, h));
          const [under1, under2] = [stateOf(node('n0', HOST, true, from)), stateOf(node('n0', HOST, true, to))];
          for (const peerName of peers) {
            const got = verdicts(e, held, dir, peerName);
            expect(got, `${step}: held engine against the held oracle, ${dir} peer ${peerName}`).toEqual(verdicts(null, held, dir, peerName));
            const [v1, v2] = [verdicts(null, under1, dir, peerName), verdicts(null, under2, dir, peerName)];
            got.forEach((g, i) => {
              counts.flows++;
              if (g === 'allow') counts.heldAllows++;
              if (g === 'deny' && (v1[i] === 'allow' || v2[i] === 'allow')) counts.stricter++;
              if (g === 'allow') expect([v1[i], v2[i]], `${step}: held allows ${dir} ${peerName} ${PROBES[i]?.port}`).toEqual(['allow', 'allow']);
            });
          }
        };
        holds.forEach((h, i) => {
          e.apply([node('n0', HOST, true, l2, h), ...(after && i === 0 ? pols : [])]);
          check(l1, l2, h, `hold ${i} (${String(h)})`);
        });
        // Relabelled again while held (the agent sends the new version's held form).
        e.apply([node('n0', HOST, true, l3, holds[0])]);
        check(l2, l3, holds[0] as NodeHold, 'second relabel');
        e.apply([node('n0', HOST, true, l3)]);
        const under3 = stateOf(node('n0', HOST, true, l3));
        for (const peerName of peers) expect(verdicts(e, under3, dir, peerName), `read as written, ${dir} peer ${peerName}`).toEqual(verdicts(null, under3, dir, peerName));
        // A fresh engine with the same held input equals the incremental one.
        const fresh = new Engine();
        fresh.apply([...setup, ...pols, node('n0', HOST, true, l3, holds[0]), ...extra]);
        e.apply([node('n0', HOST, true, l3, holds[0])]);
        const heldState = stateOf(node('n0', HOST, true, l3, holds[0]));
        for (const peerName of peers) expect(verdicts(e, heldState, dir, peerName), `fresh against incremental, ${dir} ${peerName}`).toEqual(verdicts(fresh, heldState, dir, peerName));
      }),
      { numRuns: RUNS, seed: SEED },
    );
    expect(counts.heldAllows).toBeGreaterThan(counts.flows / 10);
    expect(counts.stricter).toBeGreaterThan(10);
  }, 600_000);
});

afterAll(() => {
  process.stdout.write(`held local node 30s (seed ${SEED}): ${JSON.stringify(counts)}\n`);
});
