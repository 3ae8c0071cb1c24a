import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { WatchItem } from '../../src/k8s/watch.js';
import { parseIp } from '../../src/model/cidr.js';
import { EMPTY_CLUSTER, upsertExternal, type ClusterState } from '../../src/model/cluster.js';
import { fcReplay, fcRuns } from '../fc-knobs.js';
import { judgeHistory, serverObjects } from './judged-history.js';
import { objectHistory, type Objects } from './object-history.js';

/*
 * Findings 2431 and 2432 (session 28t): random histories of CiliumCIDRGroup and remote Node relabels and of denies on
 * their labels (on one port, or on 40 ports, which overflows x/server's small map once they select something), with a
 * wildcard allow around them, through a mirror feeding an engine of 24-entry maps (and 14) (a refused batch rolled back as the
 * agent does). After every committed batch of a step (review 29r: not only once it settles; group and node deletes too), no flow between x/server and the group's, the node's or an outside address
 * (ingress and egress, 80/TCP) that the maps allow is denied by both the input before the step and the input after it,
 * as the reference evaluator reads them (a fresh mirror's events, nothing refused). Every step is judged, those after
 * which a policy is held refused too (finding 2542, 29b: a policy whose deny side overflows too is held at its deny-all
 * side; before, such steps were skipped and failed so: `expected [ 'in-group ingress' ] to deeply equal []`).
 */
const RUNS = fcRuns(process.env.DISTILL_LONG ? 1000 : 60);
const PEERS = [
  { name: 'in-group', ip: '198.51.100.7' },
  { name: 'node-n2', ip: '172.16.0.2' },
  { name: 'outside', ip: '203.0.113.1' },
] as const;

type Op =
  | { readonly k: 'group'; readonly env: string | null; readonly gone?: boolean }
  | { readonly k: 'node'; readonly role: string | null; readonly gone?: boolean }
  | { readonly k: 'denyGroup'; readonly env: string | null; readonly many: boolean }
  | { readonly k: 'denyNode'; readonly role: string | null; readonly many: boolean }
  | { readonly k: 'allowAll'; readonly on: boolean }
  | { readonly k: 'allowMany'; readonly on: boolean }
  | { readonly k: 'allowGroup'; readonly env: string | null }
  | { readonly k: 'unrelated' };

const value = fc.constantFrom('a', 'b', null);
const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ k: fc.constant('group' as const), env: value, gone: fc.boolean() }, { requiredKeys: ['k', 'env'] }) },
  { weight: 3, arbitrary: fc.record({ k: fc.constant('node' as const), role: value, gone: fc.boolean() }, { requiredKeys: ['k', 'role'] }) },
  { weight: 3, arbitrary: fc.record({ k: fc.constant('denyGroup' as const), env: value, many: fc.boolean() }) },
  { weight: 3, arbitrary: fc.record({ k: fc.constant('denyNode' as const), role: value, many: fc.boolean() }) },
  { weight: 1, arbitrary: fc.constant({ k: 'unrelated' as const }) },
  // Review 29r: the wildcard allow may go, a 40-port allow on the group's prefix (shadowed by a deny on its labels),
  // an allow on group labels (findings 2600, 2601).
  { weight: 1, arbitrary: fc.record({ k: fc.constant('allowAll' as const), on: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('allowMany' as const), on: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('allowGroup' as const), env: value }) },
);

const { item, set: setObject, inputState: readInput } = objectHistory();
let unrelated = 0;
const labels = (key: string, v: string | null): Record<string, string> => (v === null ? {} : { [key]: v });
const PORTS = Array.from({ length: 40 }, (_, i) => ({ port: String(70 + i), protocol: 'TCP' }));
const cnp = (name: string, spec: Record<string, unknown>) => ({ apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name, namespace: 'x' }, spec: { endpointSelector: { matchLabels: { app: 'server' } }, ...spec } });
const groupObject = (env: string | null) => ({ apiVersion: 'cilium.io/v2', kind: 'CiliumCIDRGroup', metadata: { name: 'g', labels: labels('env', env) }, spec: { externalCIDRs: ['198.51.100.0/24'] } });
const nodeObject = (role: string | null) => ({ apiVersion: 'v1', kind: 'Node', metadata: { name: 'n2', labels: labels('role', role) }, status: { addresses: [{ type: 'InternalIP', address: '172.16.0.2' }] } });
const denyGroup = (env: string, many: boolean) => cnp('deny-group', { ingressDeny: [{ fromCIDRSet: [{ cidrGroupSelector: { matchLabels: { env } } }], ...(many ? { toPorts: [{ ports: PORTS }] } : {}) }] });
const denyNode = (role: string, many: boolean) => ({
  apiVersion: 'policy.networking.k8s.io/v1beta1',
  kind: 'ClusterNetworkPolicy',
  metadata: { name: 'deny-node' },
  spec: { tier: 'Admin', priority: 5, subject: { namespaces: {} }, egress: [{ action: 'Deny', to: [{ nodes: { matchLabels: { role } } }], ...(many ? { protocols: PORTS.slice(0, 20).map((p) => ({ tcp: { destinationPort: { number: Number(p.port) } } })) } : {}) }] },
});

const ALLOW_ALL = cnp('allow-all', { ingress: [{ fromEntities: ['all'] }], egress: [{ toEntities: ['all'] }] });
const MANY = Array.from({ length: 40 }, (_, i) => ({ port: String(1000 + i), protocol: 'TCP' }));

function applyOp(objects: Objects, o: Op): WatchItem {
  const set = (key: string, object: Record<string, unknown> | null): WatchItem => setObject(objects, key, object, () => cnp(key, {}));
  switch (o.k) {
    case 'group':
      return set('group', o.gone === true ? null : groupObject(o.env));
    case 'node':
      return set('node', o.gone === true ? null : nodeObject(o.role));
    case 'denyGroup':
      return set('deny-group', o.env === null ? null : denyGroup(o.env, o.many));
    case 'denyNode':
      return set('deny-node', o.role === null ? null : denyNode(o.role, o.many));
    case 'allowAll':
      return set('allow-all', o.on ? ALLOW_ALL : null);
    case 'allowMany':
      return set('allow-many', o.on ? cnp('allow-many', { ingress: [{ fromCIDR: ['198.51.100.0/24'], toPorts: [{ ports: MANY }] }] }) : null);
    case 'allowGroup':
      return set('allow-group', o.env === null ? null : cnp('allow-group', { ingress: [{ fromCIDRSet: [{ cidrGroupSelector: { matchLabels: { env: o.env } } }], toPorts: [{ ports: [{ port: '80', protocol: 'TCP' }] }] }] }));
    case 'unrelated':
      return set('unrelated', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: `u${unrelated++}` } });
  }
}

function initial(): Objects {
  const objects: Objects = serverObjects();
  objects.set('allow-all', ALLOW_ALL);
  objects.set('group', groupObject('a'));
  objects.set('node', nodeObject('a'));
  return objects;
}

/** The input as the reference evaluator reads it, the peers as externals. */
const inputState = (objects: Objects): ClusterState => readInput(objects, PEERS.reduce((st, p) => upsertExternal(st, { name: p.name, ip: parseIp(p.ip) }), EMPTY_CLUSTER), { cidrGroups: true });

describe('2431, 2432: refused group and node relabels never open a flow both inputs deny', () => {
  // 14 entries: the ClusterNetworkPolicy's 20-port Deny overflows its deny side too (2542's tiered case, 29b).
  it.each([24, 14])('random histories through a mirror and an engine of %i-entry maps', (mapCapacity) => {
    let refused = 0;
    fc.assert(
      fc.property(fc.array(op, { maxLength: 3 }), fc.array(fc.array(op, { minLength: 1, maxLength: 2 }), { minLength: 1, maxLength: 10 }), (start, steps) => {
        const objects = initial();
        for (const o of start) applyOp(objects, o);
        // What the maps allow after each committed batch (the agent writes each one): judged once the step settles.
        const probes = PEERS.flatMap((p) => (['ingress', 'egress'] as const).map((dir) => ({ peer: p.name, ip: p.ip, dir, port: 80 })));
        const items = [...objects.values()].map((o) => item('ADDED', o));
        refused += judgeHistory({ mapCapacity, mirrorOptions: { cidrGroups: true }, start: items, steps: steps.map((ops) => () => ops.map((o) => applyOp(objects, o))), input: () => inputState(objects), probes, refusedKey: () => true });
      }),
      { numRuns: RUNS, ...fcReplay(20261202) },
    );
    expect(refused).toBeGreaterThan(0);
  });
});
