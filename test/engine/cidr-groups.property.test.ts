import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseCidr, parseIp } from '../../src/model/cidr.js';
import { cidrGroupNameKey, CidrGroup } from '../../src/model/cidr-group.js';
import { ClusterState } from '../../src/model/cluster.js';
import { endpointAddress, resolveEndpoint } from '../../src/model/flow.js';
import { UNALLOCATED_POD_IDENTITY } from '../../src/model/identity.js';
import { Engine } from '../../src/engine/engine.js';
import { EngineEvent } from '../../src/engine/events.js';
import { engineDecision } from '../../src/harness/engine-decider.js';
import { initialEvents } from '../../src/harness/cluster-sync.js';
import { decideFlow } from '../../src/naive/evaluator.js';
import { parseManifest } from '../../src/policy/manifest.js';
import { EXTERNALS, INITIAL_CLUSTER, modelAfter, normalizedMaps, Op, opWithNodes, toEvent, trackLocality } from './gen.js';
import { fcRuns } from '../fc-knobs.js';

/**
 * CiliumCIDRGroup objects (docs/semantics.md, "CIDR groups"): random histories of pods, policies with
 * `cidrGroupRef`/`cidrGroupSelector` peers (allow and deny, with `except`, beside longer toCIDR
 * prefixes) and groups created, changed (prefixes and labels, nested and equal prefixes across
 * groups) and deleted, and API server sets some of whose addresses are held fail-closed (32a's 3265, 32v's 3621: inside
 * held, nested and equal group prefixes, v4 and v6). After every transaction the engine's maps equal a fresh engine's on the
 * final state, its ipcache deltas are exact, and every flow between local pods and the externals
 * (192.168.1.5, 8.8.8.8, 10.1.2.3, 2001:db8::5) is decided as the oracle decides it.
 */
const REPLAY = process.env.DISTILL_SEED ? { seed: Number(process.env.DISTILL_SEED), ...(process.env.DISTILL_PATH ? { path: process.env.DISTILL_PATH } : {}) } : {};
const RUNS = fcRuns(process.env.DISTILL_LONG ? 2000 : 120);

const PREFIXES = ['10.0.0.0/8', '10.1.0.0/16', '10.1.2.3/32', '192.168.0.0/16', '192.168.1.0/24', '8.8.8.0/24', '0.0.0.0/0', '2001:db8::/32', '2001:db8::5/128'];
const GROUP_NAMES = ['g1', 'g2', 'g3'];
// Groups labelled io.kubernetes.pod.namespace: `any:` namespace selectors select them (attack finding 2172).
const LABEL = fc.constantFrom<[string, string][]>([], [['env', 'prod']], [['env', 'dev']], [['env', 'prod'], ['tier', 'a']], [['tier', 'b']], [['io.kubernetes.pod.namespace', 'n0']], [['io.kubernetes.pod.namespace', 'n1'], ['env', 'prod']]);

type GOp =
  | Op
  | { readonly k: 'group'; readonly name: string; readonly cidrs: readonly string[]; readonly labels: [string, string][]; readonly failClosed: boolean }
  | { readonly k: 'delGroup'; readonly name: string }
  | { readonly k: 'gpolicy'; readonly manifest: Record<string, unknown> }
  | { readonly k: 'heldNode'; readonly name: string; readonly ips: readonly string[]; readonly labels: [string, string][] }
  | { readonly k: 'api'; readonly ips: readonly string[]; readonly held: readonly string[] };

// A group or remote node the agent holds fail-closed (findings 2431, 2432): its addresses read the unallocated number.
const groupOp: fc.Arbitrary<GOp> = fc.record({ k: fc.constant('group' as const), name: fc.constantFrom(...GROUP_NAMES), cidrs: fc.subarray(PREFIXES, { maxLength: 3 }), labels: LABEL, failClosed: fc.boolean() });
const heldNodeOp: fc.Arbitrary<GOp> = fc.record({ k: fc.constant('heldNode' as const), name: fc.constantFrom('n1', 'n2'), ips: fc.constantFrom(['192.168.1.7'], ['192.168.1.8', '2001:db8::8'], ['10.1.2.9']), labels: LABEL });
const NODE_PEERS = ['node:n1', 'node:n2'];
/** API server sets over the externals (inside held and nested groups) and node addresses, some held fail-closed (32a's 3265, 32v). */
const API_ADDRESSES = ['192.168.1.5', '8.8.8.8', '10.1.2.3', '2001:db8::5', '192.168.1.7', '2001:db8::8', '10.1.2.9'];
const apiOp: fc.Arbitrary<GOp> = fc.record({ k: fc.constant('api' as const), ips: fc.subarray(API_ADDRESSES, { maxLength: 3 }), held: fc.subarray(API_ADDRESSES, { maxLength: 3 }) });
const delGroupOp: fc.Arbitrary<GOp> = fc.record({ k: fc.constant('delGroup' as const), name: fc.constantFrom(...GROUP_NAMES) });
const groupItem = fc.oneof(
  fc.record({ cidrGroupRef: fc.constantFrom(...GROUP_NAMES, 'missing') }),
  fc.record({ cidrGroupSelector: fc.constantFrom({ matchLabels: { env: 'prod' } }, { matchExpressions: [{ key: 'tier', operator: 'Exists' }] }, { matchExpressions: [{ key: 'env', operator: 'In', values: ['dev'] }, { key: 'tier', operator: 'DoesNotExist' }] }, { matchExpressions: [{ key: 'env', operator: 'NotIn', values: ['dev'] }, { key: 'tier', operator: 'Exists' }] }) }),
  fc.record({ cidrGroupRef: fc.constantFrom(...GROUP_NAMES), except: fc.constantFrom(['10.1.0.0/16'], ['192.168.1.5/32'], ['2001:db8::/64']) }),
);
const namespaceKey = fc.constantFrom({ matchLabels: { 'io.kubernetes.pod.namespace': 'n0' } }, { matchLabels: { 'io.kubernetes.pod.namespace': 'n1', env: 'prod' } }, { matchExpressions: [{ key: 'io.kubernetes.pod.namespace', operator: 'Exists' }, { key: 'env', operator: 'NotIn', values: ['dev'] }] });
const rule = (dir: 'to' | 'from') =>
  fc.oneof(
    { weight: 4, arbitrary: fc.record({ [`${dir}CIDRSet`]: fc.array(groupItem, { minLength: 1, maxLength: 2 }) }) },
    { weight: 1, arbitrary: fc.record({ [`${dir}CIDR`]: fc.constantFrom(['10.1.2.0/24'], ['8.8.8.8/32']) }) },
    { weight: 1, arbitrary: fc.constantFrom({ [`${dir}Entities`]: ['world'] }, { [`${dir}Entities`]: ['kube-apiserver'] }) },
    { weight: 2, arbitrary: fc.record({ [`${dir}Endpoints`]: fc.array(namespaceKey, { minLength: 1, maxLength: 1 }) }) },
  );
const groupPolicy: fc.Arbitrary<GOp> = fc
  .record({
    name: fc.constantFrom('cg-a', 'cg-b'),
    ns: fc.constantFrom('n0', 'n1', 'n2'),
    spec: fc.record({ endpointSelector: fc.constant({}), egress: fc.array(rule('to'), { maxLength: 2 }), egressDeny: fc.array(rule('to'), { maxLength: 1 }), ingress: fc.array(rule('from'), { maxLength: 1 }), ingressDeny: fc.array(rule('from'), { maxLength: 1 }) }, { requiredKeys: ['endpointSelector'] }).filter((s) => [s.egress, s.egressDeny, s.ingress, s.ingressDeny].some((l) => (l?.length ?? 0) > 0)),
  })
  .map(({ name, ns, spec }) => ({ k: 'gpolicy' as const, manifest: { apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name, namespace: ns }, spec } }));
const noTiers = opWithNodes.filter((o) => o.k !== 'policy' || o.manifest.kind !== 'ClusterNetworkPolicy');
const gop: fc.Arbitrary<GOp> = fc.oneof({ weight: 5, arbitrary: noTiers }, { weight: 4, arbitrary: groupOp }, { weight: 1, arbitrary: delGroupOp }, { weight: 4, arbitrary: groupPolicy }, { weight: 1, arbitrary: heldNodeOp }, { weight: 1, arbitrary: apiOp });

function event(o: GOp): EngineEvent {
  if (o.k === 'group') {
    const group: CidrGroup = { name: o.name, labels: new Map([...o.labels, [cidrGroupNameKey(o.name), '']]), cidrs: o.cidrs.map(parseCidr), ...(o.failClosed ? { failClosed: true as const } : {}) };
    return { type: 'upsertCidrGroup', group };
  }
  if (o.k === 'delGroup') return { type: 'deleteCidrGroup', name: o.name };
  if (o.k === 'heldNode') return { type: 'upsertNode', name: o.name, ips: o.ips.map(parseIp), labels: Object.fromEntries(o.labels), failClosed: true };
  if (o.k === 'api') return { type: 'setApiServer', addresses: o.ips.map(parseIp), ...(o.held.length > 0 ? { held: o.held.map(parseIp) } : {}) };
  if (o.k === 'gpolicy') return { type: 'upsertPolicy', policy: parseManifest(o.manifest, 'gen#1', { cidrGroups: true }) };
  return toEvent(o);
}

let flows = 0;
let groupAllowed = 0;
let heldDenied = 0;

function checkFlows(engine: Engine, state: ClusterState): void {
  for (const ep of engine.endpoints()) {
    for (const peer of [...engine.endpoints(), ...EXTERNALS.map((e) => e.name), ...NODE_PEERS.filter((n) => state.nodes?.has(n.slice('node:'.length)))]) {
      if (peer === ep) continue;
      for (const [from, to] of [[ep, peer], [peer, ep]] as const) {
        const flow = { from, to, port: 80, protocol: 'TCP' as const };
        const want = decideFlow(state, flow).allowed;
        expect(engineDecision(engine, state, flow).allowed, `${from} -> ${to}`).toBe(want);
        flows++;
        if (want && (state.cidrGroups?.size ?? 0) > 0) groupAllowed++;
        if (engine.identityOfIp(endpointAddress(resolveEndpoint(state, peer))) === UNALLOCATED_POD_IDENTITY) heldDenied++;
      }
    }
  }
}

describe('CiliumCIDRGroup objects: engine vs oracle', () => {
  it('maps = fresh engine, ipcache deltas exact, every local flow = oracle, while groups change', () => {
    fc.assert(
      fc.property(fc.array(fc.array(gop, { minLength: 1, maxLength: 3 }), { minLength: 3, maxLength: 20 }), (txns: GOp[][]) => {
        const engine = new Engine();
        let state = INITIAL_CLUSTER;
        const local = new Map<string, boolean>();
        let ipcache = new Map<string, number>();
        for (const ops of txns) {
          const events = ops.map(event);
          const next = modelAfter(state, events);
          if (next === null) {
            expect(() => engine.apply(events)).toThrow();
            continue;
          }
          const cs = engine.apply(events);
          for (const e of events) trackLocality(local, next, e);
          state = next;
          const now = new Map(engine.ipcache().map((e) => [e.prefix, e.identity]));
          for (const d of cs.ipcache) {
            expect(ipcache.get(d.prefix)).toBe(d.op === 'delete' ? d.identity : d.previous);
            if (d.op === 'delete') ipcache.delete(d.prefix);
            else ipcache.set(d.prefix, d.identity);
          }
          expect(ipcache).toEqual(now);
          const fresh = new Engine();
          fresh.apply(initialEvents(state, (p) => local.get(`${p.namespace}/${p.name}`) ?? false));
          expect(normalizedMaps(engine)).toEqual(normalizedMaps(fresh));
          checkFlows(engine, state);
        }
      }),
      { numRuns: RUNS, ...REPLAY },
    );
    expect(flows).toBeGreaterThan(1000);
    expect(groupAllowed).toBeGreaterThan(0);
    expect(heldDenied).toBeGreaterThan(0);
  });
});
