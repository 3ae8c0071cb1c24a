import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.js';
import { ChangeSet, EngineError, EngineEvent, MapCapacityError } from '../../src/engine/events.js';
import { comparableIpcache, endpointMaps, sameEndpointMaps } from '../../src/harness/cluster-sync.js';
import { parseCidr } from '../../src/model/cidr.js';
import { cidrGroupNameKey, CidrGroup } from '../../src/model/cidr-group.js';
import type { ClusterState } from '../../src/model/cluster.js';
import { endpointAddress, resolveEndpoint } from '../../src/model/flow.js';
import { labelSetKey } from '../../src/model/labels.js';
import { datapathLookup, datapathPasses, LookupResult, policyKeyString } from '../../src/model/policy-map.js';
import { PROTOCOL_NUMBER } from '../../src/model/ports.js';
import { parseManifest } from '../../src/policy/manifest.js';
import { decideDirection } from '../../src/naive/evaluator.js';
import { checkAllFlows, peerAt } from './all-flows.js';
import { freshEngine } from './fresh-engine.js';
import { ALL_INITIAL, AllOp, allOp, hasBad, SETUP, toEvents } from './gen-all.js';
import { acceptedEvents, modelAfter, normalizedMaps, PROBE_PORTS, prng, REQUESTS, trackLocality } from './gen.js';
import { Kernel } from './kernel-view.js';
import { learnt, learntByOracle } from './learnt.js';
import { poison, UNPOISON } from './poison.js';
import { fcReplay, fcRuns } from '../fc-knobs.js';

/*
 * CiliumCIDRGroups among every other input, under refusals and internal errors (attack round 26e).
 * gen-all.ts's histories (tiers with Pass/Deny/Accept and priorities, named ports across pods that
 * change, pods relabelled under deny rules, DNS rules and answers, nodes, refused events) mixed
 * with CIDR groups created, changed and deleted, and CiliumNetworkPolicies whose CIDRSet peers name
 * them (allow and deny, `except`, beside toCIDR and entities), and toFQDNs/DNS-proxy rules towards
 * the groups' prefixes. Each transaction is plain, carries a policy that overflows the local maps
 * at some position (refused at commit: the undo path runs) or an internal error after 1–80 fault points. A refused or
 * failed transaction leaves every observable of the engine as it was; after each accepted one the
 * kernel (fed the change sets only) and the engine agree with the oracle on every flow probed (L7
 * verdicts included), and the engine's maps equal a fresh engine's on the model.
 */
const RUNS = fcRuns(process.env.DISTILL_LONG ? 5000 : 30);
const TIMEOUT = process.env.DISTILL_LONG || process.env.DISTILL_RUNS ? 120 * 60_000 : 240_000;
const CAPACITY = 600;
const POISON = poison(16);

const PREFIXES = ['10.0.0.0/8', '10.1.0.0/16', '10.1.2.3/32', '192.168.0.0/16', '192.168.1.0/24', '8.8.8.0/24', '0.0.0.0/0', '2001:db8::/32', '198.51.100.0/24', '203.0.113.7/32', '10.244.0.0/16', '10.244.1.2/32'];
const GROUP_NAMES = ['g1', 'g2', 'g3'];
const LABEL = fc.constantFrom<[string, string][]>([], [['env', 'prod']], [['env', 'dev']], [['env', 'prod'], ['tier', 'a']], [['tier', 'b']]);

type GOp =
  | { readonly k: 'all'; readonly op: AllOp }
  | { readonly k: 'group'; readonly name: string; readonly cidrs: readonly string[]; readonly labels: [string, string][] }
  | { readonly k: 'delGroup'; readonly name: string }
  | { readonly k: 'gpolicy'; readonly manifest: Record<string, unknown> };

const groupItem = fc.oneof(
  fc.record({ cidrGroupRef: fc.constantFrom(...GROUP_NAMES, 'missing') }),
  fc.record({ cidrGroupSelector: fc.constantFrom({ matchLabels: { env: 'prod' } }, { matchExpressions: [{ key: 'tier', operator: 'Exists' }] }, { matchExpressions: [{ key: 'env', operator: 'NotIn', values: ['dev'] }, { key: 'tier', operator: 'Exists' }] }) }),
  fc.record({ cidrGroupRef: fc.constantFrom(...GROUP_NAMES), except: fc.constantFrom(['10.1.0.0/16'], ['192.168.1.5/32'], ['198.51.100.0/30'], ['10.244.1.0/24']) }),
  fc.record({ cidr: fc.constantFrom('0.0.0.0/0', '10.0.0.0/8'), except: fc.constantFrom(['10.244.0.0/16'], ['10.1.2.3/32']) }),
);
const PORTS: (unknown[] | undefined)[] = [
  undefined,
  [{ ports: [{ port: '80', protocol: 'TCP' }] }],
  [{ ports: [{ port: '80', protocol: 'TCP' }], rules: { http: [{ method: 'GET', path: '/public' }] } }],
  [{ ports: [{ port: 'http' }] }],
  // Plain allows around the DNS port: their own L4Filters, or the DNS port's (finding 2030).
  [{ ports: [{ port: '53', endPort: 54, protocol: 'UDP' }] }],
  [{ ports: [{ port: '53', endPort: 60, protocol: 'ANY' }, { port: '80', protocol: 'UDP' }] }],
  [{ ports: [{ port: '53', protocol: 'ANY' }] }],
  [{ ports: [{ port: 'dns', protocol: 'UDP' }] }],
];
const DNS_PORTS: unknown[][] = [
  [{ ports: [{ port: '53', protocol: 'UDP' }], rules: { dns: [{ matchPattern: '*.example.com' }] } }],
  [{ ports: [{ port: '53', protocol: 'ANY' }], rules: { dns: [{ matchName: 'x.cilium.io' }] } }],
];
/** DNS rules are egress-only in Cilium. */
const toPorts = (dir: 'to' | 'from') => fc.constantFrom<unknown[] | undefined>(...PORTS, ...(dir === 'to' ? DNS_PORTS : []));
const denyPorts = fc.constantFrom<unknown[] | undefined>(undefined, [{ ports: [{ port: '80', protocol: 'TCP' }] }], [{ ports: [{ port: '53', protocol: 'ANY' }] }]);
const rule = (dir: 'to' | 'from', deny: boolean) =>
  fc.oneof(
    { weight: 4, arbitrary: fc.record({ [`${dir}CIDRSet`]: fc.array(groupItem, { minLength: 1, maxLength: 2 }), toPorts: deny ? denyPorts : toPorts(dir) }, { requiredKeys: [`${dir}CIDRSet`] }) },
    { weight: 1, arbitrary: fc.record({ [`${dir}CIDR`]: fc.constantFrom(['10.1.2.0/24'], ['8.8.8.8/32'], ['198.51.100.1/32']) }) },
    { weight: 1, arbitrary: fc.constant({ [`${dir}Entities`]: ['world'] }) },
    { weight: 2, arbitrary: fc.record({ [`${dir}Endpoints`]: fc.constantFrom([{}], [{ matchLabels: { app: 'web' } }]), toPorts: deny ? denyPorts : toPorts(dir) }, { requiredKeys: [`${dir}Endpoints`] }) },
    ...(dir === 'to' && !deny ? [{ weight: 1, arbitrary: fc.constant({ toFQDNs: [{ matchPattern: '*.example.com' }] }) }] : []),
  );
const groupPolicy: fc.Arbitrary<GOp> = fc
  .record({
    name: fc.constantFrom('cg-a', 'cg-b'),
    ns: fc.constantFrom('n0', 'n1', 'n2'),
    sel: fc.constantFrom<Record<string, unknown>>({}, { matchLabels: { app: 'web' } }, { matchLabels: { tier: 'back' } }),
    egress: fc.array(rule('to', false), { maxLength: 2 }),
    egressDeny: fc.array(rule('to', true), { maxLength: 1 }),
    ingress: fc.array(rule('from', false), { maxLength: 1 }),
    ingressDeny: fc.array(rule('from', true), { maxLength: 1 }),
  })
  .filter((s) => s.egress.length + s.egressDeny.length + s.ingress.length + s.ingressDeny.length > 0)
  .map(({ name, ns, sel, ...spec }) => ({ k: 'gpolicy' as const, manifest: { apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name, namespace: ns }, spec: { endpointSelector: sel, ...spec } } }));

const gop: fc.Arbitrary<GOp> = fc.oneof(
  { weight: 6, arbitrary: allOp.map((op) => ({ k: 'all' as const, op })) },
  { weight: 4, arbitrary: fc.record({ k: fc.constant('group' as const), name: fc.constantFrom(...GROUP_NAMES), cidrs: fc.subarray(PREFIXES, { maxLength: 3 }), labels: LABEL }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('delGroup' as const), name: fc.constantFrom(...GROUP_NAMES) }) },
  { weight: 3, arbitrary: groupPolicy },
);

function events(o: GOp): EngineEvent[] {
  if (o.k === 'all') return toEvents(o.op);
  if (o.k === 'group') {
    const group: CidrGroup = { name: o.name, labels: new Map([...o.labels, [cidrGroupNameKey(o.name), '']]), cidrs: o.cidrs.map(parseCidr) };
    return [{ type: 'upsertCidrGroup', group }];
  }
  if (o.k === 'delGroup') return [{ type: 'deleteCidrGroup', name: o.name }];
  return [{ type: 'upsertPolicy', policy: parseManifest(o.manifest, 'gen#1', { cidrGroups: true }) }];
}

/** Everything observable of the engine, exactly. */
function exactState(engine: Engine): string {
  const endpoints = engine.endpoints().map((ep) => ({
    ep,
    map: [...engine.mapState(ep).values()].map((r) => `${policyKeyString(r.key)} ${JSON.stringify(r.entry)}`).sort(),
    l7: engine.l7Table(ep).map((r) => JSON.stringify(r)).sort(),
    redirects: engine.redirects(ep),
  }));
  const ids = engine.identities().map((id) => `${id} ${labelSetKey(engine.identityLabels(id) ?? [])}`);
  return JSON.stringify({ endpoints, ids, ipcache: engine.ipcache(), sizes: engine.sizes(), dns: engine.dnsCacheFile() });
}

function addresses(state: ClusterState): string[] {
  const out = new Set<string>();
  for (const p of state.pods.values()) out.add(p.ip.text);
  for (const x of state.externals.values()) out.add(x.ip.text);
  for (const n of state.nodes?.values() ?? []) for (const ip of [...n.ips, ...(n.health ?? [])]) out.add(ip.text);
  return [...out];
}

const stats = { histories: 0, txns: 0, refusedBad: 0, refusedCapacity: 0, refusedPoison: 0, faults: 0, kernelFlows: 0, engineFlows: 0, l7: 0, groupTxns: 0, groupsLive: 0 };

function checkKernelFlows(engine: Engine, kernel: Kernel, state: ClusterState, probes: readonly (typeof PROBE_PORTS)[number][], rnd: () => number, step: string): void {
  const networksInForce = [...state.policies.values()].some((p) => p.tiered?.rules.some((r) => r.peers.some((x) => x.kind === 'networks')));
  for (const ep of engine.endpoints()) {
    const subject = resolveEndpoint(state, ep);
    if (subject.kind !== 'pod') throw new Error(`${ep} is not a pod`);
    const map = kernel.maps.get(ep) ?? new Map<string, LookupResult>();
    for (const addr of addresses(state)) {
      const at = peerAt(state, addr);
      if (at === undefined) continue;
      const { peer } = at;
      const id = kernel.identityOf(endpointAddress(peer));
      for (const direction of ['ingress', 'egress'] as const) {
        const list = probes.length > 0 ? probes : [PROBE_PORTS[Math.floor(rnd() * PROBE_PORTS.length)] as (typeof PROBE_PORTS)[number]];
        for (const { protocol, port } of list) {
          const request = rnd() < 0.4 ? REQUESTS[Math.floor(rnd() * REQUESTS.length)] : undefined;
          const naive = decideDirection(at.state, subject, direction, peer, protocol, port, request);
          const hit = datapathLookup(map, id, direction, PROTOCOL_NUMBER[protocol], port);
          const { allowed: l4, proxied } = datapathPasses(hit?.entry, protocol);
          const verdict = proxied && hit && request ? engine.l7Verdict(ep, hit.entry.proxyPort, id, request, port) : undefined;
          if (verdict) stats.l7++;
          const allowed = verdict ? verdict.allowed : l4;
          stats.kernelFlows++;
          const got = { step, ep, addr, direction, protocol, port, request, allowed, proxied };
          if (peer.kind === 'node' && networksInForce) {
            if (allowed) expect({ ...got, oracle: naive.allowed }).toEqual({ ...got, oracle: true });
            continue;
          }
          expect(got).toEqual({ ...got, allowed: naive.allowed, proxied: naive.proxied });
        }
      }
    }
  }
}

class InjectedFault extends Error {}
type Mode = 'plain' | 'poison' | 'fault';
type Txn = [GOp[], Mode, number];

describe('CIDR groups among every input, under refusals and internal errors (26e)', () => {
  it('refused/failed transactions change nothing; accepted ones agree with the oracle, the kernel view and a fresh engine', () => {
    const txn = fc.tuple(fc.array(gop, { minLength: 1, maxLength: 5 }), fc.constantFrom<Mode>('plain', 'plain', 'poison', 'fault'), fc.integer({ min: 1, max: 80 }));
    fc.assert(
      fc.property(fc.array(txn, { minLength: 3, maxLength: 16 }), fc.nat(), (txns: Txn[], seed) => {
        stats.histories++;
        const hook = { at: 0, calls: 0, fired: null as string | null };
        const faultHook = (point: string): void => {
          if (point.startsWith('rebuild:') || hook.at === 0) return;
          if (++hook.calls === hook.at) {
            hook.fired = point;
            throw new InjectedFault(point);
          }
        };
        const engine = new Engine({ faultHook, mapCapacity: CAPACITY });
        const kernel = new Kernel();
        const local = new Map<string, boolean>();
        const rnd = prng(seed);
        let state = ALL_INITIAL;
        const all: Txn[] = [[SETUP.map((op) => ({ k: 'all' as const, op })), 'plain', 0], ...txns];
        all.forEach(([ops, mode, at], ti) => {
          // Events naming absent objects are dropped (gen.ts acceptedEvents): refusals come from `bad` ops, the poison and faults.
          const bad = ops.some((o) => o.k === 'all' && hasBad([o.op]));
          const evs = bad ? ops.flatMap(events) : acceptedEvents(state, ops.flatMap(events));
          const next = bad ? null : modelAfter(state, evs);
          if (evs.length === 0) return;
          const before = exactState(engine);
          Object.assign(hook, { at: mode === 'fault' ? at : 0, calls: 0, fired: null });
          let cs: ChangeSet | null = null;
          try {
            cs = engine.apply(mode === 'poison' ? [...evs.slice(0, at % (evs.length + 1)), POISON, ...evs.slice(at % (evs.length + 1))] : evs);
          } catch (e) {
            if (hook.fired !== null) {
              expect(e).toBeInstanceOf(InjectedFault);
              stats.faults++;
            } else if (e instanceof MapCapacityError) {
              if (mode === 'poison') stats.refusedPoison++;
              else stats.refusedCapacity++;
            } else {
              expect({ refused: String(e), modelRefuses: next === null }).toEqual({ refused: String(e), modelRefuses: true });
              expect(e).toBeInstanceOf(EngineError);
              stats.refusedBad++;
            }
            expect(exactState(engine), `txn ${ti}: state changed by a refused/failed transaction`).toBe(before);
          }
          hook.at = 0;
          if (next === null) {
            expect(cs, 'the engine accepted a batch the model refuses').toBeNull();
            return;
          }
          if (cs !== null && mode === 'poison') {
            // No local endpoint: the poison fits. Take it out again in the kernel's view too.
            kernel.feed(cs);
            cs = engine.apply([UNPOISON]);
          } else if (cs === null) {
            try {
              cs = engine.apply(evs);
            } catch (e) {
              if (!(e instanceof MapCapacityError)) throw e;
              stats.refusedCapacity++;
              expect(exactState(engine)).toBe(before);
              return;
            }
          }
          stats.txns++;
          if (ops.some((o) => o.k === 'group' || o.k === 'delGroup')) stats.groupTxns++;
          kernel.feed(cs);
          state = next;
          stats.groupsLive += state.cidrGroups?.size ?? 0;
          for (const e of evs) trackLocality(local, state, e);
          expect(sameEndpointMaps(kernel.maps, endpointMaps(engine)), `${ti}: kernel maps`).toBe(true);
          expect(kernel.ipcache).toEqual(new Map(engine.ipcache().map((e) => [e.prefix, e.identity])));
          const fresh = freshEngine(engine, state, local, { mapCapacity: CAPACITY });
          expect(normalizedMaps(engine)).toEqual(normalizedMaps(fresh));
          expect(comparableIpcache(engine)).toEqual(comparableIpcache(fresh));
          expect(learnt(engine)).toEqual(learntByOracle(state));
          const last = ti === all.length - 1;
          const probes = last ? PROBE_PORTS.filter((p) => [80, 53, 443, 8080].includes(p.port)) : [PROBE_PORTS[(seed + ti) % PROBE_PORTS.length] as (typeof PROBE_PORTS)[number]];
          const networksInForce = [...state.policies.values()].some((p) => p.tiered?.rules.some((r) => r.peers.some((x) => x.kind === 'networks')));
          stats.engineFlows += checkAllFlows(engine, state, probes, `txn ${ti}`, (peer) => networksInForce && peer.kind === 'node').flows;
          checkKernelFlows(engine, kernel, state, last ? probes : [], rnd, `txn ${ti}`);
        });
      }),
      { numRuns: RUNS, ...fcReplay(2030) },
    );
  }, TIMEOUT);
});

afterAll(() => {
  process.stdout.write(`group mix: ${JSON.stringify(stats)}\n`);
});
