import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { generateTrace } from '../../src/churn/profiles.js';
import { replay, type ReplayPhase } from '../../src/churn/replay.js';
import { parseTrace } from '../../src/churn/trace.js';
import { applyEventToCluster, trackLocality } from '../../src/harness/cluster-sync.js';
import { MutableCluster } from '../../src/harness/mutable-cluster.js';
import { ClusterChangeError, ClusterState, EMPTY_CLUSTER } from '../../src/model/cluster.js';
import { op, toEvent } from '../engine/gen.js';

const view = (s: ClusterState, local: ReadonlyMap<string, boolean>): unknown => ({
  namespaces: [...s.namespaces].sort(),
  pods: [...s.pods].sort(),
  // Write order decides who owns a shared address, and which addresses nobody owns (finding 730).
  podOrder: [...s.pods.keys()],
  unownedIps: [...(s.unownedIps ?? [])].sort(),
  policies: [...s.policies].sort(),
  local: [...local].sort(),
});

describe('MutableCluster', () => {
  it('after any event sequence equals the immutable fold (applyEventToCluster + trackLocality), refusing the same events', () => {
    fc.assert(
      fc.property(fc.array(op, { maxLength: 60 }), (ops) => {
        let immutable: ClusterState = EMPTY_CLUSTER;
        const local = new Map<string, boolean>();
        const mutable = new MutableCluster();
        for (const o of ops) {
          const e = toEvent(o);
          let refused = false;
          try {
            immutable = applyEventToCluster(immutable, e);
            trackLocality(local, immutable, e);
          } catch (err) {
            if (!(err instanceof ClusterChangeError)) throw err;
            refused = true;
          }
          if (refused) expect(() => mutable.apply(e)).toThrow(ClusterChangeError);
          else mutable.apply(e);
          expect(view(mutable, mutable.local)).toEqual(view(immutable, local));
        }
      }),
      { numRuns: 200 },
    );
  });
});

describe('replay progress', () => {
  it('reports each phase: the cold start before and after its transaction, then the churn up to its end', () => {
    const trace = parseTrace(generateTrace({ profile: 'cilium-ci', seed: 5, scale: 0.002, churnEvents: 600 }), 't.jsonl');
    const calls: [ReplayPhase, number, number][] = [];
    const r = replay(trace, { mode: 'incremental', verifyEvery: 100, onProgress: (done, total, phase) => calls.push([phase, done, total]) });
    const cold = calls.filter(([p]) => p === 'cold start');
    expect(cold).toEqual([['cold start', 0, r.coldStart.events], ['cold start', r.coldStart.events, r.coldStart.events]]);
    const churn = calls.filter(([p]) => p === 'churn');
    expect(churn[0]).toEqual(['churn', 0, r.churnEvents]);
    expect(churn.at(-1)).toEqual(['churn', r.churnEvents, r.churnEvents]);
    expect(churn.length).toBeGreaterThan(2);
    expect(calls.findIndex(([p]) => p === 'churn')).toBe(2);
    expect(r.verifications).toBe(Math.floor(r.churnEvents / 100));
  });

  it('parseTrace reports lines read, ending at the total', () => {
    const text = generateTrace({ profile: 'cilium-ci', seed: 5, scale: 0.002, churnEvents: 5000 });
    const calls: [number, number][] = [];
    parseTrace(text, 't.jsonl', { onProgress: (done, total) => calls.push([done, total]) });
    const lines = text.split('\n').length;
    expect(calls.at(-1)).toEqual([lines, lines]);
    expect(calls.length).toBe(Math.ceil(lines / 4096) + 1);
  });
});
