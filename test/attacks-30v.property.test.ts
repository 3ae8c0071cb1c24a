import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { fcReplay, fcRuns } from './fc-knobs.js';
import { mirrorAgent } from './k8s/mirror-agent.js';
import { allowGood, ev, expired, pod, podChange, podList, stateAt } from './k8s/replay-objects.js';

/*
 * 2960: one pod stream, delivered in order but with any delivered event replayed at any time, and relists (a List or
 * a watch-list's initial events at the last delivered version), with at most 0-2 tombstones kept. Whenever the stream
 * does not await a relist, the verdicts equal those of a fresh mirror fed the pods delivered so far as a List.
 */
type Obj = Record<string, unknown>;
const PODS = 4;
const ip = (i: number): string => `10.0.1.${i + 1}`;
const server = (): Obj => pod('server', 1, 'n1', 'server', '10.0.0.1');
type Delivery = { how: 'next' | 'replay' | 'relist' | 'watchlist'; pick: number };
const stepArb = fc.oneof(
  fc.record({ i: fc.nat(PODS - 1), del: fc.boolean(), good: fc.boolean() }).map((op) => ({ op })),
  fc.record({ how: fc.constantFrom<Delivery['how']>('next', 'next', 'next', 'replay', 'replay', 'relist', 'watchlist'), pick: fc.nat(1000) }).map((d) => ({ d })),
);

function verdicts(a: ReturnType<typeof mirrorAgent>): string[] {
  return Array.from({ length: PODS }, (_, i) => a.verdict(ip(i)));
}

describe('2960. replays of a stream delivered in order never bring back a deleted pod, whatever the tombstone bound', () => {
  it('holds after every step', () => {
    fc.assert(
      fc.property(fc.constantFrom(0, 1, 2), fc.array(stepArb, { minLength: 1, maxLength: 80 }), (maxTombstones, steps) => {
        const a = mirrorAgent('n1', { maxTombstones });
        a.step('policies', ev('ADDED', allowGood));
        a.step('pods', podList(10, [server()]));
        const log: { type: string; object: Obj; rv: number }[] = [];
        const live = new Map<number, Obj>();
        let rv = 10;
        let at = 0;
        for (const s of steps) {
          if ('op' in s) {
            rv++;
            podChange(log, live, s.op, rv, ip(s.op.i));
            continue;
          }
          const { how, pick } = s.d;
          const last = (): number => (at === 0 ? 10 : log[at - 1]!.rv);
          const listed = (): Obj[] => [server(), ...stateAt(log, at).values()];
          if (how === 'next' && at < log.length) a.step('pods', ev(log[at]!.type, log[at++]!.object));
          else if (how === 'replay' && at > 0) a.step('pods', ev(log[pick % at]!.type, log[pick % at]!.object));
          else if (how === 'relist') a.step('pods', expired, podList(last(), listed()));
          else if (how === 'watchlist') a.step('pods', expired, ...listed().map((o) => ev('ADDED', o)), ev('BOOKMARK', { apiVersion: 'v1', kind: 'Pod', metadata: { resourceVersion: String(last()), annotations: { 'k8s.io/initial-events-end': 'true' } } }));
          if (a.mirror.streamsAwaitingRelist().length > 0) continue;
          const fresh = mirrorAgent('n1');
          fresh.step('policies', ev('ADDED', allowGood));
          fresh.step('pods', podList(last(), listed()));
          expect(verdicts(a), JSON.stringify({ at, how })).toEqual(verdicts(fresh));
        }
      }),
      { numRuns: fcRuns(300), ...fcReplay() },
    );
  });
});
