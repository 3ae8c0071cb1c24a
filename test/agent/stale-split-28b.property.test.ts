import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { staleVeto } from '../../src/agent/agent.js';
import { Engine } from '../../src/engine/engine.js';
import { EngineEvent, MapCapacityError, TransactionVetoedError } from '../../src/engine/events.js';
import { ClusterMirror } from '../../src/k8s/mirror.js';
import type { WatchItem } from '../../src/k8s/watch.js';
import { cnp, deleted, fill, identity, meta, pod, shop } from './crd-fixtures.js';
import { fcReplay, fcRuns } from '../fc-knobs.js';

/*
 * Finding 2440 (docs/attack-findings-28b.md): in CRD identity mode a batch vetoed for admitting a number whose
 * CiliumIdentity narrows outside it (`MirrorBatch.stale`, agent.ts `staleVeto`) is retried in halves, so only the
 * objects that open such a number wait; one object vetoed alone is sent again with the identity joined. The loop is
 * the agent's CRD path (agent.ts `applyPending`) on a small map capacity. Openers: a policy letting client reach a
 * number's labels, a local pod no policy selects (its default allow, identity 0). Non-openers: remote web pods (a
 * number whose entries every map has). Claims: (safety) from the moment a narrowing is read until the number is
 * readable again, every committed state keeps every local endpoint denying the number in each direction where it
 * denied it then (an endpoint made since counts as denying); (liveness) at the end of a step that deletes no policy
 * (743's join of refused policies makes such a batch wait as a whole), every remote web pod the step changed is in
 * force; once nothing is over capacity, everything commits.
 */
const CAP = 24;
const NUMBERS = [303, 306] as const;
const APP: ReadonlyMap<number, string> = new Map([[303, 'db'], [306, 'api']]);
const DIRECTIONS = ['ingress', 'egress'] as const;
type Op =
  | { readonly k: 'id'; readonly n: number; readonly to: 'readable' | 'unreadable' | 'deleted' }
  | { readonly k: 'allow'; readonly n: number; readonly on: boolean }
  | { readonly k: 'deny'; readonly n: number; readonly on: boolean }
  | { readonly k: 'all'; readonly on: boolean }
  | { readonly k: 'peer'; readonly n: number; readonly i: number; readonly on: boolean }
  | { readonly k: 'fill'; readonly on: 'web' | 'client'; readonly size: number }
  | { readonly k: 'remote'; readonly i: number; readonly on: boolean }
  | { readonly k: 'lonely'; readonly i: number; readonly on: boolean };
const num = fc.constantFrom(...NUMBERS);
const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ k: fc.constant('id' as const), n: num, to: fc.constantFrom('readable' as const, 'unreadable' as const, 'deleted' as const) }) },
  { weight: 3, arbitrary: fc.record({ k: fc.constant('allow' as const), n: num, on: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('fill' as const), on: fc.constantFrom('web' as const, 'client' as const), size: fc.oneof(fc.constant(0), fc.integer({ min: CAP - 6, max: CAP })) }) },
  { weight: 3, arbitrary: fc.record({ k: fc.constant('remote' as const), i: fc.integer({ min: 0, max: 3 }), on: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('lonely' as const), i: fc.integer({ min: 0, max: 1 }), on: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('deny' as const), n: num, on: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('all' as const), on: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('peer' as const), n: num, i: fc.integer({ min: 0, max: 1 }), on: fc.boolean() }) },
);
/** client's egress deny of a number's labels (a deny delete opens it). */
const deny = (n: number, on: boolean): WatchItem => {
  const app = APP.get(n) ?? '';
  return { type: on ? 'ADDED' : 'DELETED', object: { apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: meta(`deny-${app}`, { namespace: 'shop' }), spec: { endpointSelector: { matchLabels: { app: 'client' } }, egressDeny: [{ toEndpoints: [{ matchLabels: { app } }] }] } } };
};
/** A remote pod of a number's labels (its address moves to that number). */
const peerPod = (n: number, i: number): WatchItem => pod(`${APP.get(n) ?? ''}${i}`, APP.get(n) ?? '', 'n2', `10.0.${n - 290}.${i + 1}`);
const remotePod = (i: number): WatchItem => pod(`web${i}`, 'web', 'n2', `10.0.2.${i + 1}`);
const lonelyPod = (i: number): WatchItem => pod(`lonely${i}`, 'lonely', 'n1', `10.0.0.${i + 10}`);

/**
 * Histories run before the random ones: a deny of a waiting number deleted (under an identity-0 allow), an opener
 * vetoed alone while a remote pod arrives before the next flush (it must not wait with the opener), 2441 and 2442.
 */
const EXAMPLES: [[Op[], number][]][] = [
  [[[[{ k: 'all', on: true }, { k: 'deny', n: 303, on: true }, { k: 'fill', on: 'web', size: CAP - 3 }], 0], [[{ k: 'id', n: 303, to: 'unreadable' }], 0], [[{ k: 'deny', n: 303, on: false }], 0]]],
  [[[[{ k: 'id', n: 303, to: 'deleted' }], 0], [[{ k: 'lonely', i: 0, on: true }, { k: 'remote', i: 0, on: true }], 1]]],
  // 2441: a joined identity back to what the engine holds leaves `lagging`.
  [[[[{ k: 'id', n: 306, to: 'unreadable' }], 0], [[{ k: 'allow', n: 306, on: true }, { k: 'id', n: 306, to: 'readable' }], 1]]],
  // 2442: an opener of two waiting numbers (the second's delete arrives after its first veto) is not vetoed in turns forever.
  [[[[{ k: 'id', n: 303, to: 'deleted' }], 0], [[{ k: 'fill', on: 'web', size: 0 }, { k: 'id', n: 306, to: 'deleted' }], 1]]],
];

/** Each local endpoint's verdict on `n` by direction (true: denied), as `engine.lookup` on TCP/80. */
function verdicts(engine: Engine, n: number): Map<string, boolean> {
  const out = new Map<string, boolean>();
  for (const ep of engine.endpoints()) for (const d of DIRECTIONS) out.set(`${ep} ${d}`, engine.lookup(ep, n, d, 6, 80)?.entry.deny ?? true);
  return out;
}

const stats28b = { commits: 0, vetoed: 0, capacity: 0, checks: 0, live: 0, transactions: 0, maxPerSettle: 0 };

describe('28b: a vetoed CRD batch is split, so only the objects that open a waiting number wait', () => {
  it('every local endpoint keeps denying a narrowing number it denied, a step\'s remote pods commit, and nothing stays refused once it fits', () => {
    const stats = stats28b;
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.array(op, { minLength: 1, maxLength: 4 }), fc.nat({ max: 4 })), { minLength: 1, maxLength: 10 }), (steps) => {
        const mirror = new ClusterMirror({ nodeName: 'n1', externalIdentities: true });
        const engine = new Engine({ identitySource: 'external', mapCapacity: CAP });
        /** Numbers whose narrowing was read, with each endpoint's verdict on them then. */
        const narrowed = new Map<number, Map<string, boolean>>();
        const state = new Map<number, 'readable' | 'unreadable' | 'deleted'>(NUMBERS.map((n) => [n, 'readable']));
        const addresses = (n: number): Set<string> => new Set(engine.ipcache().filter((e) => e.identity === n).map((e) => e.prefix));
        /** The addresses each narrowed number had when its narrowing was read. */
        const hadAddresses = new Map<number, Set<string>>();
        const check = (): void => {
          for (const [n, then] of narrowed) {
            if (engine.identityLabels(n) === undefined) continue;
            // An address moved to the number while its narrowing waits is a new packet carrying it (old: another number or world).
            if (!engine.unreadableIdentities().includes(n)) for (const a of addresses(n)) expect(hadAddresses.get(n)?.has(a), `${a} moved to ${n} while its narrowing waits`).toBe(true);
            for (const [at, denied] of verdicts(engine, n)) {
              if (then.get(at) === false) continue;
              stats.checks++;
              expect(denied, `${at} admits ${n} while its narrowing waits`).toBe(true);
            }
          }
        };
        /** Identity items that narrow a number (readable → unreadable or deleted) or make it readable again. */
        const narrows = new Map<WatchItem, number>();
        const widens = new Map<WatchItem, number>();
        /** The mirror reads `item`: a narrowing is recorded with the verdicts of that moment. */
        const observe = (item: WatchItem): void => {
          const n = narrows.get(item);
          if (n !== undefined && !narrowed.has(n) && engine.identityLabels(n) !== undefined) {
            narrowed.set(n, verdicts(engine, n));
            hadAddresses.set(n, addresses(n));
          }
          const w = widens.get(item);
          if (w !== undefined) narrowed.delete(w);
          mirror.observe(item, 'test');
        };
        /** `early` arrives, one flush runs, then `items` arrive (between two flushes, as in the agent), then flushes until idle. */
        const settle = (items: readonly WatchItem[], early: readonly WatchItem[] = []): void => {
          for (const item of early) observe(item);
          let late = items;
          const arrive = (): void => {
            for (const item of late) observe(item);
            late = [];
          };
          let n = 0;
          for (let i = 0; i < 300; i++) {
            if (mirror.idle) arrive();
            if (mirror.idle) break;
            const b = mirror.flush();
            const veto = b.stale.size > 0 ? staleVeto(b.stale) : undefined;
            n++;
            try {
              engine.apply(b.events as EngineEvent[], veto);
            } catch (e) {
              if (!(e instanceof MapCapacityError || e instanceof TransactionVetoedError)) throw e;
              if (e instanceof TransactionVetoedError) stats.vetoed++;
              else stats.capacity++;
              b.rollback(veto !== undefined && e instanceof TransactionVetoedError);
              arrive();
              continue;
            }
            b.commit();
            stats.commits++;
            check();
            arrive();
          }
          stats.transactions += n;
          stats.maxPerSettle = Math.max(stats.maxPerSettle, n);
          expect(mirror.idle).toBe(true);
        };
        settle([
          shop(),
          pod('web', 'web', 'n1', '10.0.0.2'), pod('client', 'client', 'n1', '10.0.0.3'), pod('db', 'db', 'n2', '10.0.1.4'), pod('api', 'api', 'n2', '10.0.1.5'),
          cnp('client-web', 'client', [{ toEndpoints: [{ matchLabels: { app: 'web' } }] }]),
          identity(300, 'web', 'ADDED'), identity(301, 'client', 'ADDED'), identity(303, 'db', 'ADDED'), identity(306, 'api', 'ADDED'), identity(310, 'lonely', 'ADDED'),
          fill('fill-web', 'web', 1000, CAP - 2),
        ]);
        const remoteOn = new Map<number, boolean>();
        const lonelyOn = new Map<number, boolean>();
        const allowOn = new Map<number, boolean>();
        const denyOn = new Map<number, boolean>();
        let allOn = false;
        /** The policies the inputs hold, by mirror key. */
        const policies = new Set(['CiliumNetworkPolicy/shop/client-web', 'CiliumNetworkPolicy/shop/fill-web']);
        for (const [ops, cut] of steps) {
          const items: WatchItem[] = [];
          const remotes = new Set<number>();
          // A policy delete that waits from an earlier step deletes one in this step's batches too.
          let deletesPolicy = mirror.refusedObjects().some((key) => key.startsWith('CiliumNetworkPolicy/') && !policies.has(key));
          for (const o of ops) {
            if (o.k === 'id') {
              const was = state.get(o.n);
              if (was === o.to) continue;
              state.set(o.n, o.to);
              const item = o.to === 'deleted' ? identity(o.n, APP.get(o.n) ?? null, 'DELETED') : identity(o.n, o.to === 'readable' ? (APP.get(o.n) ?? null) : null, was === 'deleted' ? 'ADDED' : 'MODIFIED');
              (o.to === 'readable' ? widens : narrows).set(item, o.n);
              items.push(item);
            } else if (o.k === 'allow') {
              const app = APP.get(o.n) ?? '';
              items.push(cnp(`client-${app}`, 'client', [{ toEndpoints: [{ matchLabels: { app } }] }], o.on ? 'ADDED' : 'DELETED'));
              deletesPolicy ||= !o.on;
              allowOn.set(o.n, o.on);
              if (o.on) policies.add(`CiliumNetworkPolicy/shop/client-${app}`);
              else policies.delete(`CiliumNetworkPolicy/shop/client-${app}`);
            } else if (o.k === 'deny') {
              items.push(deny(o.n, o.on));
              denyOn.set(o.n, o.on);
              deletesPolicy ||= !o.on;
              if (o.on) policies.add(`CiliumNetworkPolicy/shop/deny-${APP.get(o.n) ?? ''}`);
              else policies.delete(`CiliumNetworkPolicy/shop/deny-${APP.get(o.n) ?? ''}`);
            } else if (o.k === 'all') {
              items.push(cnp('client-all', 'client', [{ toEntities: ['all'] }], o.on ? 'ADDED' : 'DELETED'));
              deletesPolicy ||= !o.on;
              allOn = o.on;
              if (o.on) policies.add('CiliumNetworkPolicy/shop/client-all');
              else policies.delete('CiliumNetworkPolicy/shop/client-all');
            } else if (o.k === 'peer') {
              items.push(o.on ? peerPod(o.n, o.i) : deleted(peerPod(o.n, o.i)));
            } else if (o.k === 'fill') {
              items.push(fill(`fill-${o.on}`, o.on, o.on === 'web' ? 1000 : 2000, o.size));
              deletesPolicy ||= o.size === 0;
              if (o.size > 0) policies.add(`CiliumNetworkPolicy/shop/fill-${o.on}`);
              else policies.delete(`CiliumNetworkPolicy/shop/fill-${o.on}`);
            } else if (o.k === 'remote') {
              items.push(o.on ? remotePod(o.i) : deleted(remotePod(o.i)));
              remotes.add(o.i);
              remoteOn.set(o.i, o.on);
            } else {
              items.push(o.on ? lonelyPod(o.i) : deleted(lonelyPod(o.i)));
              lonelyOn.set(o.i, o.on);
            }
          }
          settle(items.slice(cut), items.slice(0, cut));
          if (deletesPolicy) continue;
          for (const i of remotes) {
            stats.live++;
            expect(engine.identityOfPod(`shop/web${i}`), `remote pod web${i} waits (refused: ${mirror.refusedObjects().join(', ')})`).toBe(remoteOn.get(i) === true ? 300 : undefined);
          }
        }
        settle([fill('fill-web', 'web', 1000, 0), fill('fill-client', 'client', 2000, 0), pod('late', 'web', 'n2', '10.0.3.1')]);
        expect(mirror.refusedObjects()).toEqual([]);
        for (const n of NUMBERS) {
          const s = state.get(n);
          expect(engine.identityLabels(n) === undefined).toBe(s === 'deleted');
          expect(engine.unreadableIdentities().includes(n)).toBe(s === 'unreadable');
          // Every object in force: client reaches a readable number exactly while its policy is there.
          // (A deleted number has no labels: an identity-0 entry decides it, as for any unknown number.)
          if (s !== 'deleted') expect(engine.lookup('shop/client', n, 'egress', 6, 80)?.entry.deny ?? true).toBe(!(s === 'readable' && (allowOn.get(n) === true || allOn) && denyOn.get(n) !== true));
        }
        for (const [i, on] of lonelyOn) expect(engine.endpoints().includes(`shop/lonely${i}`)).toBe(on);
        for (const [i, on] of remoteOn) expect(engine.identityOfPod(`shop/web${i}`)).toBe(on ? 300 : undefined);
      }),
      { numRuns: fcRuns(200), ...fcReplay(2440), examples: EXAMPLES },
    );
    if (process.env.DISTILL_STATS) console.log(JSON.stringify(stats));
    expect(stats.vetoed).toBeGreaterThan(0);
    expect(stats.checks).toBeGreaterThan(0);
    expect(stats.live).toBeGreaterThan(0);
  });
});
