import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { TombstoneMap } from '../../src/engine/tombstone-map.js';
import { fcReplay, fcRuns } from '../fc-knobs.js';

type Op = readonly [set: boolean, key: number];

/** Applies `ops` to a TombstoneMap and a Map, checking they agree after each one. */
function agree(ops: readonly Op[]): void {
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
}

describe('TombstoneMap', () => {
  it('behaves as a Map under any sequence of sets and deletes over few keys (tombstones revived)', () => {
    fc.assert(fc.property(fc.array(fc.tuple(fc.boolean(), fc.integer({ min: 0, max: 20 })), { maxLength: 300 }), agree), { numRuns: fcRuns(300), ...fcReplay() });
  });

  it('behaves as a Map across sweeps (more tombstones than live keys, past 1,024)', () => {
    const ops: Op[] = [];
    for (let k = 0; k < 3000; k++) ops.push([true, k]);
    for (let k = 0; k < 2500; k++) ops.push([false, k]);
    for (let k = 0; k < 3000; k += 3) ops.push([true, k]);
    for (let k = 0; k < 3000; k += 2) ops.push([false, k]);
    agree(ops);
  });
});
