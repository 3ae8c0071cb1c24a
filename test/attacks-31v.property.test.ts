import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { fcReplay, fcRuns } from './fc-knobs.js';
import { mirrorAgent } from './k8s/mirror-agent.js';
import { recordedInformer } from './k8s/recorded-informer.js';
import { allowGood, ev, pod, podChange, podList, stateAt } from './k8s/replay-objects.js';

/*
 * 3040: one client-node informer of pods (a real `ListWatch`) whose server delivers the cluster's changes in order,
 * replays any event its watch delivered at any time, and expires the watch (410: the informer relists the cluster as it is
 * now, the changes in between never delivered), with 0-2 tombstones kept. After every step the verdicts equal those of
 * a fresh mirror fed, as a List, the pods the informer was shown: no replay brings a deleted pod back, and no pod the
 * informer gives (its relist's adds and updates come in any order) is dropped.
 * 3203: the same with the informer built with `replayGuard` and the server replaying DELETEDs more often (a pod deleted,
 * created again, its first DELETED replayed, then deleted for good); without the guard it fails in a few runs.
 */
type Obj = Record<string, unknown>;
const PODS = 4;
const ip = (i: number): string => `10.0.1.${i + 1}`;
const server = (): Obj => pod('server', 1, 'n1', 'server', '10.0.0.1');
const BASE_HOWS = ['next', 'next', 'next', 'replay', 'replay', 'relist'];
const stepArb = (hows: readonly string[]) =>
  fc.oneof(
    fc.record({ i: fc.nat(PODS - 1), del: fc.boolean(), good: fc.boolean() }).map((op) => ({ op })),
    fc.record({ how: fc.constantFrom(...hows), pick: fc.nat(1000) }).map((d) => ({ d })),
  );

function verdicts(a: ReturnType<typeof mirrorAgent>): string[] {
  return Array.from({ length: PODS }, (_, i) => a.verdict(ip(i)));
}

/**
 * `guard`: the informer is built with `replayGuard` (3203); `hows`: what the server may do besides changing pods;
 * `size`: fast-check's length bias (its default, small, gives about 10 steps).
 */
function replaysHold(guard: boolean, hows: readonly string[], seed: number, size?: fc.SizeForArbitrary): Promise<void> {
  return fc.assert(
    fc.asyncProperty(fc.constantFrom(0, 0, 1, 2), fc.array(stepArb(hows), { minLength: 1, maxLength: 60, ...(size === undefined ? {} : { size }) }), async (maxTombstones, steps) => {
      const a = mirrorAgent('n1', { maxTombstones });
      a.step('policies', ev('ADDED', allowGood));
      const log: { type: string; object: Obj; rv: number }[] = [];
      const live = new Map<number, Obj>();
      let rv = 10;
      let at = 0;
      const delivered: { type: string; object: Obj }[] = [];
      const last = (): number => (at === 0 ? 10 : log[at - 1]!.rv);
      const listed = (): Obj[] => [server(), ...stateAt(log, at).values()];
      const inf = await recordedInformer(a.mirror, [], [], () => ({ items: listed(), resourceVersion: last() }), guard);
      for (const s of steps) {
        if ('op' in s) {
          if (podChange(log, live, s.op, rv + 1, ip(s.op.i))) rv++;
          continue;
        }
        const { how, pick } = s.d;
        if (how === 'next' && at < log.length) {
          delivered.push(log[at]!);
          await inf.send(log[at]!.type, log[at++]!.object);
        } else if (how === 'replay' && delivered.length > 0) {
          // Any event the watch delivered, or (half the time) one of the last ones: the event before a delete.
          const n = delivered.length;
          const e = delivered[pick % 2 === 0 ? pick % n : Math.max(0, n - 2 - ((pick >> 1) % 2))]!;
          await inf.send(e.type, e.object);
        } else if (how === 'replayDeleted') {
          // A DELETED the watch delivered (of an incarnation that may have been created again since: 3203).
          const dels = delivered.filter((e) => e.type === 'DELETED');
          if (dels.length > 0) await inf.send('DELETED', dels[pick % dels.length]!.object);
        } else if (how === 'relist') {
          // The watch expired: what happened since is listed, never delivered.
          at = log.length;
          await inf.expire();
        }
        a.step('policies');
        const fresh = mirrorAgent('n1');
        fresh.step('policies', ev('ADDED', allowGood));
        fresh.step('pods', podList(last(), listed()));
        expect(verdicts(a), JSON.stringify({ at, how })).toEqual(verdicts(fresh));
      }
    }),
    { numRuns: fcRuns(200), ...fcReplay(seed) },
  );
}

describe('3040. an informer\'s replays never bring back a deleted pod, and its relists drop no pod, whatever the tombstone bound', () => {
  it('holds after every step', () => replaysHold(false, BASE_HOWS, 3));
});

describe('3203. an informer built with `replayGuard`: replayed DELETEDs of older incarnations leave no deleted pod', () => {
  it('holds after every step', () => replaysHold(true, [...BASE_HOWS, 'replayDeleted', 'replayDeleted'], 5, 'max'));
});
