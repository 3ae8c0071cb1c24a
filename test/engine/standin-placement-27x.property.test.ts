import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.js';
import { EngineEvent, MapCapacityError } from '../../src/engine/events.js';
import { endpointMaps } from '../../src/harness/cluster-sync.js';
import { ClusterState, namespaceWithDefaults } from '../../src/model/cluster.js';
import { podIdentityLabels, securityLabels, UNALLOCATED_POD_IDENTITY } from '../../src/model/identity.js';
import { maskedPortEnd } from '../../src/model/policy-map.js';
import { applyToModel, INITIAL_CLUSTER, needsIdentitySplits, Op, opWithNodes, tierHeavyOp, toEventSharedAddress } from './gen.js';
import { poison, UNPOISON } from './poison.js';
import { fcReplay, fcRuns } from '../fc-knobs.js';

/*
 * Review 27x of fix2132 (finding 2200: the deny of a number no selector names is placed only in directions with an
 * identity-0 allow). 26r's property probes a fixed list of ports; this one probes every decision point of every map: for
 * each kernel entry of a direction (any identity), its protocol (every protocol for ANY) at the first and last port it
 * covers and the ports just outside. A number no selector names (a stand-in, or 255 while a pod holds it) must be
 * dropped at every one of them (Cilium 1.19 bpf/lib/policy.h `__policy_can_access`: the peer's LPM lookup and identity
 * 0's, the deny or nothing wins). Histories dense in ClusterNetworkPolicy tiers (Pass, Accept, Deny, same-priority
 * groups), CCNPs with `{}` selectors, `toEntities: all`, port ranges, L7 and DNS redirects on identity 0, node
 * changes; stand-ins appear and leave in the same transactions as those, some refused in the middle (a poison policy
 * over a small capacity, or the capacity itself). After a refused transaction the maps are as before; an accepted one
 * equals a twin's that saw no refusal.
 */

const POISON = poison(6);
type IdOp =
  | { readonly k: 'id'; readonly id: number; readonly pod: number }
  | { readonly k: 'delId'; readonly id: number }
  | { readonly k: 'bad'; readonly id: number; readonly how: 'last' | 'none' | 'pod'; readonly pod: number };
const ID = fc.integer({ min: 256, max: 259 });
const idOp: fc.Arbitrary<IdOp> = fc.oneof(
  fc.record({ k: fc.constant('id' as const), id: ID, pod: fc.nat({ max: 50 }) }),
  fc.record({ k: fc.constant('delId' as const), id: ID }),
  fc.record({ k: fc.constant('bad' as const), id: ID, how: fc.constantFrom('last' as const, 'none' as const, 'pod' as const), pod: fc.nat({ max: 50 }) }),
);

function podLabels(state: ClusterState, n: number): Readonly<Record<string, string>> | undefined {
  const pods = [...state.pods.values()];
  const p = pods[n % Math.max(pods.length, 1)];
  if (!p) return undefined;
  const nsLabels = state.namespaces.get(p.namespace)?.labels ?? namespaceWithDefaults(p.namespace, {}).labels;
  return securityLabels(podIdentityLabels(p, nsLabels));
}

type Ids = Map<number, { labels: Readonly<Record<string, string>>; unreadable: boolean }>;

function identityEvent(o: IdOp, state: ClusterState, ids: Ids): EngineEvent | null {
  if (o.k === 'delId') return ids.has(o.id) ? { type: 'deleteIdentity', id: o.id } : null;
  if (o.k === 'id') {
    const labels = podLabels(state, o.pod);
    return labels ? { type: 'upsertIdentity', id: o.id, labels } : null;
  }
  const labels = o.how === 'last' ? (ids.get(o.id)?.labels ?? {}) : o.how === 'none' ? {} : podLabels(state, o.pod);
  return labels ? { type: 'upsertIdentity', id: o.id, labels, unreadable: true } : null;
}

function view(e: Engine): unknown {
  return [...endpointMaps(e)].map(([ep, m]) => [ep, [...m.keys()].sort().map((k) => `${k} ${JSON.stringify(m.get(k)?.entry)}`)]);
}

const ALL_PROTOCOLS = [1, 6, 17, 58, 132];

/** Every (protocol, port) where some kernel entry of direction `d` starts or ends, and the ports just outside. */
function decisionPoints(e: Engine, ep: string, d: 'ingress' | 'egress'): [number, number][] {
  const out = new Map<string, [number, number]>();
  for (const r of e.mapState(ep).values()) {
    if (r.key.direction !== d) continue;
    const end = r.key.portPrefixLen === 0 ? 65535 : maskedPortEnd(r.key.port, r.key.portPrefixLen);
    for (const proto of r.key.protocol === 0 ? ALL_PROTOCOLS : [r.key.protocol])
      for (const port of [r.key.port - 1, r.key.port, end, end + 1]) if (port >= 0 && port <= 65535) out.set(`${proto}/${port}`, [proto, port]);
  }
  return [...out.values()];
}

describe('27x: the deny of a number no selector names, at every decision point, under tier-heavy histories', () => {
  it('no map admits a stand-in or 255 (while a pod holds it) on any protocol or port; refusals change nothing', () => {
    const stats = { txns: 0, refused: 0, denied: 0, probes: 0, placed: 0 };
    const anyOp = fc.oneof(
      { weight: 3, arbitrary: tierHeavyOp.filter((o) => !needsIdentitySplits(o)).map((o): Op | IdOp => o) },
      { weight: 2, arbitrary: opWithNodes.filter((o) => !needsIdentitySplits(o)).map((o): Op | IdOp => o) },
      { weight: 4, arbitrary: idOp.map((o): Op | IdOp => o) },
    );
    const txn = fc.tuple(fc.array(anyOp, { minLength: 1, maxLength: 6 }), fc.constantFrom('plain', 'poison', 'poison'));
    fc.assert(
      fc.property(fc.array(txn, { minLength: 3, maxLength: 14 }), fc.constantFrom(120, 160, 400), (txns, capacity) => {
        const engine = new Engine({ identitySource: 'external', mapCapacity: capacity });
        const twin = new Engine({ identitySource: 'external', mapCapacity: capacity });
        let state = INITIAL_CLUSTER;
        const ids: Ids = new Map();
        for (const [ops, how] of txns) {
          const events: EngineEvent[] = [];
          let next: ClusterState | null = state;
          const idsNext: Ids = new Map(ids);
          for (const o of ops) {
            const ev = o.k === 'id' || o.k === 'delId' || o.k === 'bad' ? identityEvent(o, next, idsNext) : toEventSharedAddress(o);
            if (!ev) continue;
            try {
              next = applyToModel(next, ev);
            } catch {
              next = null;
              break;
            }
            events.push(ev);
            if (ev.type === 'upsertIdentity') idsNext.set(ev.id, { labels: ev.labels, unreadable: ev.unreadable === true });
            if (ev.type === 'deleteIdentity') idsNext.delete(ev.id);
          }
          if (next === null || events.length === 0) continue;
          if (how === 'poison') {
            const before = view(engine);
            try {
              engine.apply([...events, POISON]);
              engine.apply([UNPOISON]);
            } catch (err) {
              if (!(err instanceof MapCapacityError)) throw err;
              stats.refused++;
              expect(view(engine)).toEqual(before);
              try {
                engine.apply(events);
              } catch (err2) {
                if (!(err2 instanceof MapCapacityError)) throw err2;
              }
            }
          } else {
            try {
              engine.apply(events);
            } catch (err) {
              if (!(err instanceof MapCapacityError)) throw err;
            }
          }
          let twinRefused = false;
          try {
            twin.apply(events);
          } catch (err) {
            if (!(err instanceof MapCapacityError)) throw err;
            twinRefused = true;
          }
          expect(view(engine)).toEqual(view(twin));
          if (twinRefused) {
            stats.refused++;
            continue;
          }
          stats.txns++;
          state = next;
          ids.clear();
          for (const [k, v] of idsNext) ids.set(k, v);
          const denied = new Set([...ids].filter(([, v]) => v.unreadable).map(([k]) => k));
          if ([...state.pods.values()].some((p) => engine.identityOfPod(`${p.namespace}/${p.name}`) === UNALLOCATED_POD_IDENTITY)) denied.add(UNALLOCATED_POD_IDENTITY);
          if (denied.size > 0) stats.denied++;
          for (const ep of engine.endpoints()) {
            const own = engine.identityOfPod(ep);
            if (own !== undefined && denied.has(own)) continue;
            for (const d of ['ingress', 'egress'] as const)
              for (const [proto, port] of decisionPoints(engine, ep, d))
                for (const x of denied) {
                  stats.probes++;
                  const hit = engine.lookup(ep, x, d, proto, port);
                  if (hit?.entry.deny === true && hit.key.identity === x) stats.placed++;
                  expect(hit === undefined || hit.entry.deny, `${ep} ${d} ${proto}/${port} admits ${x}: ${JSON.stringify(hit)}`).toBe(true);
                }
          }
        }
      }),
      { numRuns: fcRuns(30), ...fcReplay(2370) },
    );
    expect(stats.denied).toBeGreaterThan(20);
    expect(stats.placed).toBeGreaterThan(20);
    expect(stats.refused).toBeGreaterThan(5);
  }, 1_800_000);
});
