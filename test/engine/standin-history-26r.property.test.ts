import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.js';
import { EngineEvent, MapCapacityError } from '../../src/engine/events.js';
import { endpointMaps, l7Tables } from '../../src/harness/cluster-sync.js';
import { ClusterState, namespaceWithDefaults } from '../../src/model/cluster.js';
import { podIdentityLabels, securityLabels } from '../../src/model/identity.js';
import { applyToModel, INITIAL_CLUSTER, needsIdentitySplits, op, Op, PROBE_PORTS, toEventSharedAddress } from './gen.js';
import { poison, UNPOISON } from './poison.js';
import { fcReplay, fcRuns } from '../fc-knobs.js';
import { PROTOCOL_NUMBER } from '../../src/model/ports.js';
import { UNALLOCATED_POD_IDENTITY } from '../../src/model/identity.js';

/*
 * Review 26r of fix26id (findings 2000/2001): fail-closed stand-ins of external identities under
 * histories. 25e's property (external-history.property.test.ts) with unreadable upserts added: a
 * number turns unreadable under its last labels (what the mirror and the etcd source send), under
 * none (never readable), or under some pod's labels, and back, several times in one transaction or
 * across them; transactions plain, refused (a policy overflowing every map) or failing after 1–60
 * fault points. Checked after every accepted transaction: the stand-in contract (every endpoint
 * whose identity is no stand-in denies every stand-in number in both directions on every probed
 * port; an endpoint of a stand-in number has an empty map), equality with a twin that saw no
 * refusal or fault, and with a fresh engine given the twin's final model (history-free); after a
 * refused or failed one, the kernel view exactly as before.
 */

const POISON = poison(6);
class InjectedFault extends Error {}
type IdOp =
  | { readonly k: 'id'; readonly id: number; readonly pod: number }
  | { readonly k: 'delId'; readonly id: number }
  | { readonly k: 'bad'; readonly id: number; readonly how: 'last' | 'none' | 'pod'; readonly pod: number };
const ID = fc.integer({ min: 256, max: 260 });
const idOp: fc.Arbitrary<IdOp> = fc.oneof(
  fc.record({ k: fc.constant('id' as const), id: ID, pod: fc.nat({ max: 50 }) }),
  fc.record({ k: fc.constant('delId' as const), id: ID }),
  fc.record({ k: fc.constant('bad' as const), id: ID, how: fc.constantFrom('last' as const, 'none' as const, 'pod' as const), pod: fc.nat({ max: 50 }) }),
);

interface Known {
  /** Number → its last labels and whether it is a stand-in. */
  readonly ids: Map<number, { labels: Readonly<Record<string, string>>; unreadable: boolean }>;
}

function podLabels(state: ClusterState, n: number): Readonly<Record<string, string>> | undefined {
  const pods = [...state.pods.values()];
  const p = pods[n % Math.max(pods.length, 1)];
  if (!p) return undefined;
  const nsLabels = state.namespaces.get(p.namespace)?.labels ?? namespaceWithDefaults(p.namespace, {}).labels;
  return securityLabels(podIdentityLabels(p, nsLabels));
}

function identityEvent(o: IdOp, state: ClusterState, known: Known): EngineEvent | null {
  if (o.k === 'delId') return known.ids.has(o.id) ? { type: 'deleteIdentity', id: o.id } : null;
  if (o.k === 'id') {
    const labels = podLabels(state, o.pod);
    return labels ? { type: 'upsertIdentity', id: o.id, labels } : null;
  }
  const labels = o.how === 'last' ? (known.ids.get(o.id)?.labels ?? {}) : o.how === 'none' ? {} : podLabels(state, o.pod);
  return labels ? { type: 'upsertIdentity', id: o.id, labels, unreadable: true } : null;
}

function kernelView(e: Engine): unknown {
  const maps = [...endpointMaps(e)].map(([ep, m]) => [ep, [...m.keys()].sort().map((k) => `${k} ${JSON.stringify(m.get(k)?.entry)}`)]);
  const l7 = [...l7Tables(e)].map(([ep, rows]) => [ep, [...rows].map(([k, v]) => `${k} ${v}`).sort()]);
  return { maps, l7, redirects: e.endpoints().map((ep) => [ep, e.redirects(ep)]), ipcache: e.ipcache(), ids: e.identities().map((i) => [i, e.identityLabels(i)]) };
}

/** Every endpoint's verdict for every external number (and 0) on every probed port, with its own number. */
function externalVerdicts(e: Engine): string[] {
  const out: string[] = [];
  for (const ep of e.endpoints()) {
    out.push(`${ep} is ${e.identityOfPod(ep)}`);
    for (let peer = 255; peer <= 260; peer++)
      for (const d of ['ingress', 'egress'] as const)
        for (const { protocol, port } of PROBE_PORTS) {
          const hit = e.lookup(ep, peer === 255 ? 0 : peer, d, PROTOCOL_NUMBER[protocol], port);
          out.push(`${ep} ${peer} ${d} ${protocol}/${port} ${hit === undefined ? 'none' : `${hit.entry.deny ? 'deny' : hit.entry.proxyPort !== 0 ? 'redirect' : 'allow'} ${hit.entry.precedence}`}`);
        }
  }
  return out;
}

/** The stand-in contract, on the engine's maps (`lookup`: the datapath's verdict). */
function checkStandIns(e: Engine, standIns: ReadonlySet<number>): void {
  for (const ep of e.endpoints()) {
    const own = e.identityOfPod(ep);
    if (own !== undefined && standIns.has(own)) {
      expect(e.mapState(ep).size, `${ep} of stand-in ${own}`).toBe(0);
      continue;
    }
    for (const s of standIns)
      for (const d of ['ingress', 'egress'] as const)
        for (const { protocol, port } of PROBE_PORTS) {
          const hit = e.lookup(ep, s, d, PROTOCOL_NUMBER[protocol], port);
          expect(hit === undefined || hit.entry.deny, `${ep} ${d} ${protocol}/${port} from stand-in ${s}: ${JSON.stringify(hit)}`).toBe(true);
        }
  }
}

/**
 * Finding 2132 (27a): the deny of a number no selector names (a stand-in, or 255 while some pod holds it) is held
 * exactly where something could admit it, recomputed here from each map's kernel entries: in every direction with an
 * identity-0 entry that is no deny (needed: the datapath's identity-0 lookup would admit it), and only in directions
 * with some identity-0 entry (the engine decides from its raw layer, where an identity-0 allow hidden under a broader
 * identity-0 deny still counts); never a number that is denied nowhere.
 */
function checkPlacement(e: Engine, denied: ReadonlySet<number>, stats: { placed: number; skipped: number }): void {
  for (const ep of e.endpoints()) {
    const m = e.mapState(ep);
    if (m.size === 0) continue;
    for (const d of ['ingress', 'egress'] as const) {
      const wild = [...m.values()].filter((r) => r.key.identity === 0 && r.key.direction === d);
      const admits = wild.some((r) => !r.entry.deny);
      for (let x = 255; x <= 261; x++) {
        const hit = m.get(`${x}/${d}/0/0/0`);
        const deny = hit !== undefined && hit.entry.deny && hit.entry.precedence === 0xffffffff;
        if (!denied.has(x)) {
          expect(deny, `${ep} ${d}: ${x} is denied nowhere`).toBe(false);
          continue;
        }
        if (admits) expect(deny, `${ep} ${d} admits every number: ${x} must be denied`).toBe(true);
        if (deny) expect(wild.length, `${ep} ${d}: ${x} denied without an identity-0 entry`).toBeGreaterThan(0);
        if (deny) stats.placed++;
        else stats.skipped++;
      }
    }
  }
}

describe('26r: stand-ins of unreadable identities under histories, refusals and faults', () => {
  it('the stand-in contract holds after every accepted transaction; refused or failed ones change nothing; twin and fresh engine agree', () => {
    const stats = { txns: 0, refused: 0, faults: 0, standIns: 0 };
    const placement = { placed: 0, skipped: 0 };
    const anyOp = fc.oneof({ weight: 3, arbitrary: op.filter((o) => !needsIdentitySplits(o)).map((o): Op | IdOp => o) }, { weight: 4, arbitrary: idOp.map((o): Op | IdOp => o) });
    const txn = fc.tuple(fc.array(anyOp, { minLength: 1, maxLength: 6 }), fc.constantFrom('plain', 'poison', 'fault'), fc.integer({ min: 1, max: 60 }));
    fc.assert(
      fc.property(fc.array(txn, { minLength: 3, maxLength: 16 }), (txns) => {
        const fault = { at: 0, calls: 0, fired: false };
        const faultHook = (point: string): void => {
          if (point.startsWith('rebuild:') || fault.at === 0) return;
          if (++fault.calls === fault.at) {
            fault.fired = true;
            throw new InjectedFault(point);
          }
        };
        const engine = new Engine({ identitySource: 'external', mapCapacity: 160, faultHook });
        const twin = new Engine({ identitySource: 'external', mapCapacity: 160 });
        let state = INITIAL_CLUSTER;
        const known: Known = { ids: new Map() };
        const history: EngineEvent[] = [];
        for (const [ops, how, at] of txns) {
          const events: EngineEvent[] = [];
          let next: ClusterState | null = state;
          const knownNext: Known = { ids: new Map(known.ids) };
          for (const o of ops) {
            const ev = o.k === 'id' || o.k === 'delId' || o.k === 'bad' ? identityEvent(o, next, knownNext) : toEventSharedAddress(o);
            if (!ev) continue;
            try {
              next = applyToModel(next, ev);
            } catch {
              next = null;
              break;
            }
            events.push(ev);
            if (ev.type === 'upsertIdentity') knownNext.ids.set(ev.id, { labels: ev.labels, unreadable: ev.unreadable === true });
            if (ev.type === 'deleteIdentity') knownNext.ids.delete(ev.id);
          }
          if (next === null || events.length === 0) continue;
          const before = kernelView(engine);
          let applied = false;
          if (how !== 'plain') {
            fault.at = how === 'fault' ? at : 0;
            fault.calls = 0;
            fault.fired = false;
            try {
              engine.apply(how === 'poison' ? [...events, POISON] : events);
              if (how === 'poison') engine.apply([UNPOISON]);
              applied = true;
            } catch (err) {
              if (!(err instanceof MapCapacityError || (err instanceof InjectedFault && fault.fired))) throw err;
              if (err instanceof InjectedFault) stats.faults++;
              else stats.refused++;
              expect(kernelView(engine)).toEqual(before);
            }
            fault.at = 0;
          }
          let refused = false;
          if (!applied) {
            try {
              engine.apply(events);
            } catch (err) {
              if (!(err instanceof MapCapacityError)) throw err;
              refused = true;
            }
          }
          let twinRefused = false;
          try {
            twin.apply(events);
          } catch (err) {
            if (!(err instanceof MapCapacityError)) throw err;
            twinRefused = true;
          }
          expect(refused).toBe(twinRefused);
          if (refused) continue;
          stats.txns++;
          history.push(...events);
          state = next;
          known.ids.clear();
          for (const [k, v] of knownNext.ids) known.ids.set(k, v);
          // Proxy ports included: a rebuilt engine visits endpoints by id, as the twin does (2131, 2151; commit.ts `allocatePorts`).
          expect(kernelView(engine)).toEqual(kernelView(twin));
          const standIns = new Set([...known.ids].filter(([, v]) => v.unreadable).map(([k]) => k));
          if (standIns.size > 0) stats.standIns++;
          checkStandIns(engine, standIns);
          const denied = new Set(standIns);
          if ([...state.pods.values()].some((p) => engine.identityOfPod(`${p.namespace}/${p.name}`) === UNALLOCATED_POD_IDENTITY)) denied.add(UNALLOCATED_POD_IDENTITY);
          checkPlacement(engine, denied, placement);
        }
        // History-free: a fresh engine given the accepted history in one batch gives the same verdicts
        // for every external number (node-local numbers and proxy ports depend on allocation order, so only these, and redirects without their port).
        const fresh = new Engine({ identitySource: 'external', mapCapacity: 160 });
        try {
          fresh.apply(history);
        } catch (err) {
          if (!(err instanceof MapCapacityError)) throw err;
          return;
        }
        expect(externalVerdicts(fresh)).toEqual(externalVerdicts(engine));
      }),
      { numRuns: fcRuns(40), ...fcReplay(2130) },
    );
    expect(stats.standIns).toBeGreaterThan(20);
    // Both outcomes met: denies held, and denies left out of a direction nothing could admit them in.
    expect(placement.placed).toBeGreaterThan(20);
    expect(placement.skipped).toBeGreaterThan(20);
    expect(stats.refused).toBeGreaterThan(5);
    expect(stats.faults).toBeGreaterThan(5);
  }, 1_800_000);
});
