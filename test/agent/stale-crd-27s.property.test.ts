import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { staleVeto } from '../../src/agent/agent.js';
import { Engine } from '../../src/engine/engine.js';
import { EngineEvent, MapCapacityError, TransactionVetoedError } from '../../src/engine/events.js';
import { ClusterMirror } from '../../src/k8s/mirror.js';
import type { WatchItem } from '../../src/k8s/watch.js';
import { cnp, deleted, fill, identity, pod, shop } from './crd-fixtures.js';
import { fcReplay, fcRuns } from '../fc-knobs.js';

/*
 * Finding 2373 (docs/attack-findings-27s.md): in CRD identity mode the mirror retries a refused object alone and a
 * refused batch in halves, so a CiliumIdentity that narrows (turns unreadable: the fail-closed stand-in; or is deleted)
 * can wait while other objects commit. The mirror's batch names those numbers (`MirrorBatch.stale`); the agent applies
 * it with `staleVeto` of them and a vetoed batch is sent again with them joined (`rollback(true)`). The loop below is
 * the agent's CRD path (agent.ts `applyPending`, `identities: 'external'`) on a small map capacity, so that stand-ins,
 * deletes and policies are refused and retried in every order. Claim: from the moment a narrowing is read until the
 * number is read readable again, every committed state keeps client's egress denying the number if it denied it when
 * the narrowing was read (the old inputs deny it; the new ones deny a stand-in everywhere and a deleted number has no
 * labels). And once nothing is over capacity, everything commits (nothing stays refused).
 */
const CAP = 24;
const NUMBERS = [303, 306] as const;
const APP: ReadonlyMap<number, string> = new Map([[303, 'db'], [306, 'api']]);
type Op =
  | { readonly k: 'id'; readonly n: number; readonly to: 'readable' | 'unreadable' | 'deleted' }
  | { readonly k: 'allow'; readonly n: number; readonly on: boolean }
  | { readonly k: 'fill'; readonly on: 'web' | 'client'; readonly size: number }
  | { readonly k: 'pod'; readonly i: number; readonly on: boolean };
const num = fc.constantFrom(...NUMBERS);
const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ k: fc.constant('id' as const), n: num, to: fc.constantFrom('readable' as const, 'unreadable' as const, 'deleted' as const) }) },
  { weight: 3, arbitrary: fc.record({ k: fc.constant('allow' as const), n: num, on: fc.boolean() }) },
  { weight: 3, arbitrary: fc.record({ k: fc.constant('fill' as const), on: fc.constantFrom('web' as const, 'client' as const), size: fc.oneof(fc.constant(0), fc.integer({ min: CAP - 6, max: CAP })) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('pod' as const), i: fc.integer({ min: 0, max: 2 }), on: fc.boolean() }) },
);

describe('27s: CRD identities, a batch that would admit a number whose identity narrows waits for it', () => {
  it('client keeps denying a narrowing number it denied, at every commit, and nothing stays refused once it fits', () => {
    const stats = { commits: 0, vetoed: 0, capacity: 0, checks: 0 };
    fc.assert(
      fc.property(fc.array(fc.array(op, { minLength: 1, maxLength: 3 }), { minLength: 1, maxLength: 10 }), (steps) => {
        const mirror = new ClusterMirror({ nodeName: 'n1', externalIdentities: true });
        const engine = new Engine({ identitySource: 'external', mapCapacity: CAP });
        /** Numbers whose narrowing was read, and whether client denied them then. */
        const narrowed = new Map<number, boolean>();
        /** What the inputs say of each number (readable, unreadable, deleted). */
        const state = new Map<number, 'readable' | 'unreadable' | 'deleted'>(NUMBERS.map((n) => [n, 'readable']));
        const denies = (n: number): boolean => engine.lookup('shop/client', n, 'egress', 6, 80)?.entry.deny ?? true;
        const check = (): void => {
          for (const [n, denied] of narrowed) {
            if (!denied || engine.identityLabels(n) === undefined) continue;
            stats.checks++;
            expect(denies(n), `client admits ${n} while its narrowing waits`).toBe(true);
          }
        };
        const settle = (items: readonly WatchItem[]): void => {
          for (const item of items) mirror.observe(item, 'test');
          for (let i = 0; i < 200 && !mirror.idle; i++) {
            const b = mirror.flush();
            const veto = b.stale.size > 0 ? staleVeto(b.stale) : undefined;
            try {
              engine.apply(b.events as EngineEvent[], veto);
            } catch (e) {
              if (!(e instanceof MapCapacityError || e instanceof TransactionVetoedError)) throw e;
              if (e instanceof TransactionVetoedError) stats.vetoed++;
              else stats.capacity++;
              b.rollback(veto !== undefined && e instanceof TransactionVetoedError);
              continue;
            }
            b.commit();
            stats.commits++;
            check();
          }
          expect(mirror.idle).toBe(true);
        };
        settle([
          shop(),
          pod('web', 'web', 'n1', '10.0.0.2'), pod('client', 'client', 'n1', '10.0.0.3'), pod('db', 'db', 'n2', '10.0.1.4'), pod('api', 'api', 'n2', '10.0.1.5'),
          cnp('client-web', 'client', [{ toEndpoints: [{ matchLabels: { app: 'web' } }] }]),
          identity(300, 'web', 'ADDED'), identity(301, 'client', 'ADDED'), identity(303, 'db', 'ADDED'), identity(306, 'api', 'ADDED'),
        ]);
        for (const ops of steps) {
          const items: WatchItem[] = [];
          for (const o of ops) {
            if (o.k === 'id') {
              const was = state.get(o.n);
              if (was === o.to) continue;
              state.set(o.n, o.to);
              if (o.to === 'readable') narrowed.delete(o.n);
              else if (!narrowed.has(o.n) && engine.identityLabels(o.n) !== undefined) narrowed.set(o.n, denies(o.n));
              items.push(o.to === 'deleted' ? identity(o.n, APP.get(o.n) ?? null, 'DELETED') : identity(o.n, o.to === 'readable' ? (APP.get(o.n) ?? null) : null, was === 'deleted' ? 'ADDED' : 'MODIFIED'));
            } else if (o.k === 'allow') {
              const app = APP.get(o.n) ?? '';
              items.push(cnp(`client-${app}`, 'client', [{ toEndpoints: [{ matchLabels: { app } }] }], o.on ? 'ADDED' : 'DELETED'));
            } else if (o.k === 'fill') items.push(fill(`fill-${o.on}`, o.on, o.on === 'web' ? 1000 : 2000, o.size));
            else {
              const p = pod(`web${o.i}`, 'web', 'n2', `10.0.2.${o.i + 1}`);
              items.push(o.on ? p : deleted(p));
            }
          }
          settle(items);
        }
        // Nothing over capacity any more: the commit that deletes the fills retries what waits (a batch vetoed with it
        // is sent again with the identity joined), and everything commits.
        settle([fill('fill-web', 'web', 1000, 0), fill('fill-client', 'client', 2000, 0), pod('late', 'web', 'n2', '10.0.3.1')]);
        expect(mirror.refusedObjects()).toEqual([]);
        for (const n of NUMBERS) {
          const s = state.get(n);
          expect(engine.identityLabels(n) === undefined).toBe(s === 'deleted');
          expect(engine.unreadableIdentities().includes(n)).toBe(s === 'unreadable');
        }
      }),
      { numRuns: fcRuns(300), ...fcReplay(2373) },
    );
    expect(stats.vetoed).toBeGreaterThan(0);
    expect(stats.checks).toBeGreaterThan(0);
  });
});
