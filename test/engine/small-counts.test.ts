import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { SmallCounts } from '../../src/engine/small-counts.js';
import { fcReplay, fcRuns } from '../fc-knobs.js';

// SmallCounts stands in for the Map<Contribution, number> of a raw map entry: the merge and the L7
// tables read its items in order, so it must answer and iterate exactly as that Map would.
describe('SmallCounts', () => {
  it('agrees with a Map under any sequence of sets and deletes, iteration order included', () => {
    const op = fc.oneof(
      fc.record({ set: fc.integer({ min: 0, max: 4 }), n: fc.integer({ min: 1, max: 3 }) }),
      fc.record({ del: fc.integer({ min: 0, max: 4 }) }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 40 }), (ops) => {
        const items = [{ i: 0 }, { i: 1 }, { i: 2 }, { i: 3 }, { i: 4 }];
        // Built holding a first item (a new raw key's counts, map-state.ts addRawAt) or empty.
        const first = ops.length % 2 === 0 ? (items[0] as object) : undefined;
        const m = new Map<object, number>(first === undefined ? [] : [[first, 1]]);
        const s = new SmallCounts<object>(first);
        expect([...s]).toEqual([...m]);
        for (const o of ops) {
          if ('set' in o) {
            m.set(items[o.set] as object, o.n);
            s.set(items[o.set] as object, o.n);
          } else {
            m.delete(items[o.del] as object);
            s.delete(items[o.del] as object);
          }
          expect(s.size).toBe(m.size);
          expect([...s]).toEqual([...m]);
          expect([...s.keys()]).toEqual([...m.keys()]);
          for (const x of items) expect(s.get(x)).toBe(m.get(x));
        }
      }),
      { numRuns: fcRuns(500), ...fcReplay() },
    );
  });
});
