import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { WatchItem } from '../../src/k8s/watch.js';
import { parseIp } from '../../src/model/cidr.js';
import { EMPTY_CLUSTER, upsertExternal, type ClusterState } from '../../src/model/cluster.js';
import { fcReplay, fcRuns } from '../fc-knobs.js';
import { judgeHistory, serverObjects } from './judged-history.js';
import { objectHistory, type Objects } from './object-history.js';

/*
 * Findings 2541, 2730 (30a) and 2900 (30s), through the agent: random histories of the local Node's labels and
 * address (172.16.0.1 or .9, or deleted), of ClusterNetworkPolicy Deny/Accept rules on its labels and an Accept on
 * 172.16.0.8/29 (one port, or 20 and 8, which overflow x/server's 14-entry map once they meet the host), of a
 * CiliumNetworkPolicy allowing the host entity, beside x/server's egress to 198.51.100.0/24 (its default deny). After
 * every committed batch of a step, no egress flow from x/server to either address or outside, on 80 or 443/TCP, that
 * the maps allow is denied by both the input before the step and the input after it (the reference evaluator).
 * One to three objects change per step: a step refused is retried in parts, each object first at its narrowing form
 * (finding 2916, fixed in 31b as 3020: a Node upsert committed before the delete of an allow of the host opened it).
 */
const RUNS = fcRuns(process.env.DISTILL_LONG ? 1000 : 200);
const PEERS = [
  { name: 'at-1', ip: '172.16.0.1' },
  { name: 'at-9', ip: '172.16.0.9' },
  { name: 'outside', ip: '203.0.113.1' },
] as const;
const PORTS = [80, 443];

type Op =
  | { readonly k: 'node'; readonly role: string | null; readonly at9: boolean; readonly gone?: boolean }
  | { readonly k: 'nodesRule'; readonly action: 'Deny' | 'Accept'; readonly role: string | null; readonly many: boolean }
  | { readonly k: 'acceptNet'; readonly on: boolean; readonly many: boolean }
  | { readonly k: 'toHost'; readonly on: boolean }
  | { readonly k: 'unrelated' };

const value = fc.constantFrom('a', 'b', null);
const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ k: fc.constant('node' as const), role: value, at9: fc.boolean(), gone: fc.boolean() }, { requiredKeys: ['k', 'role', 'at9'] }) },
  { weight: 3, arbitrary: fc.record({ k: fc.constant('nodesRule' as const), action: fc.constantFrom('Deny' as const, 'Accept' as const), role: value, many: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('acceptNet' as const), on: fc.boolean(), many: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('toHost' as const), on: fc.boolean() }) },
  { weight: 1, arbitrary: fc.constant({ k: 'unrelated' as const }) },
);

const { item, set: setObject, inputState: readInput } = objectHistory();
let unrelated = 0;
const protocols = (n: number) => Array.from({ length: n }, (_, i) => ({ tcp: { destinationPort: { number: n > 1 ? 60 + i : 80 } } }));
const cnp = (name: string, spec: Record<string, unknown>) => ({ apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name, namespace: 'x' }, spec: { endpointSelector: { matchLabels: { app: 'server' } }, ...spec } });
const tiered = (name: string, priority: number, rule: Record<string, unknown>) => ({ apiVersion: 'policy.networking.k8s.io/v1beta1', kind: 'ClusterNetworkPolicy', metadata: { name }, spec: { tier: 'Admin', priority, subject: { namespaces: {} }, egress: [rule] } });
const nodeObject = (role: string | null, at9: boolean) => ({ apiVersion: 'v1', kind: 'Node', metadata: { name: 'n1', labels: role === null ? {} : { role } }, status: { addresses: [{ type: 'InternalIP', address: at9 ? '172.16.0.9' : '172.16.0.1' }] } });

const acceptNet = (many: boolean) => tiered('accept-net', 20, { action: 'Accept', to: [{ networks: ['172.16.0.8/29'] }], protocols: protocols(many ? 8 : 1) });
const TO_HOST = cnp('to-host', { egress: [{ toEntities: ['host'] }] });

function applyOp(objects: Objects, o: Op): WatchItem {
  const set = (key: string, object: Record<string, unknown> | null): WatchItem => setObject(objects, key, object, () => cnp(key, {}));
  switch (o.k) {
    case 'node':
      return set('node', o.gone === true ? null : nodeObject(o.role, o.at9));
    case 'nodesRule': {
      const name = o.action === 'Deny' ? 'deny-nodes' : 'accept-nodes';
      return set(name, o.role === null ? null : tiered(name, o.action === 'Deny' ? 5 : 10, { action: o.action, to: [{ nodes: { matchLabels: { role: o.role } } }], protocols: protocols(o.many ? 20 : 1) }));
    }
    case 'acceptNet':
      return set('accept-net', o.on ? acceptNet(o.many) : null);
    case 'toHost':
      return set('to-host', o.on ? TO_HOST : null);
    case 'unrelated':
      return set('unrelated', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: `u${unrelated++}` } });
  }
}

function initial(): Objects {
  const objects: Objects = serverObjects();
  objects.set('only-ext', cnp('only-ext', { egress: [{ toCIDR: ['198.51.100.0/24'] }] }));
  objects.set('node', nodeObject('a', false));
  // The 8-port Accept on 172.16.0.8/29 and the host allowed from the start: a readdress to .9 overflows (2900).
  objects.set('accept-net', acceptNet(true));
  objects.set('to-host', TO_HOST);
  return objects;
}

const inputState = (objects: Objects): ClusterState => readInput(objects, PEERS.reduce((st, p) => upsertExternal(st, { name: p.name, ip: parseIp(p.ip) }), EMPTY_CLUSTER));

describe('2541, 2730, 2900: refused local node changes never open a flow both inputs deny', () => {
  it('random histories through a mirror and an engine of 14-entry maps', () => {
    let refused = 0;
    fc.assert(
      fc.property(fc.array(op, { maxLength: 3 }), fc.array(fc.array(op, { minLength: 1, maxLength: 3 }), { minLength: 1, maxLength: 10 }), (start, steps) => {
        const objects = initial();
        for (const o of start) applyOp(objects, o);
        const probes = PEERS.flatMap((p) => PORTS.map((port) => ({ peer: p.name, ip: p.ip, dir: 'egress' as const, port })));
        const items = [...objects.values()].map((o) => item('ADDED', o));
        refused += judgeHistory({ mapCapacity: 14, start: items, steps: steps.map((ops) => () => ops.map((o) => applyOp(objects, o))), input: () => inputState(objects), probes, refusedKey: (k) => k === 'Node//n1' });
      }),
      { numRuns: RUNS, ...fcReplay(20261203) },
    );
    expect(refused).toBeGreaterThan(0);
  });
});
