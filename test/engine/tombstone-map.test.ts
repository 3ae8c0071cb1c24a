import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { TombstoneMap } from '../../src/engine/tombstone-map.js';

describe('TombstoneMap', () => {
  it('behaves as a Map (size, lookups, iteration order) under any sequence of sets and deletes, sweeps included', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.boolean(), fc.integer({ min: 0, max: 3000 })), { maxLength: 6000 }), (ops) => {
        const t = new TombstoneMap<number, { v: number }>();
        const m = new Map<number, { v: number }>();
        let n = 0;
        for (const [set, k] of ops) {
          if (set) {
            const v = { v: n++ };
            t.set(k, v);
            m.set(k, v);
          } else {
            expect(t.delete(k)).toBe(m.delete(k));
          }
          expect(t.size).toBe(m.size);
          expect(t.get(k)).toBe(m.get(k));
          expect(t.has(k)).toBe(m.has(k));
        }
        expect(new Map(t)).toEqual(m);
      }),
      { numRuns: 30 },
    );
  });
});
