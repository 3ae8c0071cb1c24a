import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { adminLevel, passFloorPrecedence, PolicyEntry, PRECEDENCE_ALLOW, PRECEDENCE_DENY } from '../../src/model/policy-map.js';
import { MapState } from '../../src/engine/map-state.js';
import { emptyStats } from '../../src/engine/stats.js';
import type { Contribution } from '../../src/engine/contribution.js';
import type { PortKey } from '../../src/engine/rule-units.js';
import { fcReplay, fcRuns } from '../fc-knobs.js';

// `MapState.change` sends a contribution flagged `plain` straight to its raw keys while no Pass
// band is open. The same operations with the flag and without it (the general path: tier check,
// copies, Pass effects) must leave the same kernel entries after every settle, Pass bands included.
const ALLOW: PolicyEntry = { deny: false, proxyPort: 0, precedence: PRECEDENCE_ALLOW };
const DENY: PolicyEntry = { deny: true, proxyPort: 0, precedence: PRECEDENCE_DENY };
const FLOOR: PolicyEntry = { deny: false, proxyPort: 0, precedence: passFloorPrecedence(adminLevel(5, 0)) };
const PORT_KEYS: PortKey[][] = [
  [{ protocol: 0, port: 0, portPrefixLen: 0 }],
  [{ protocol: 6, port: 80, portPrefixLen: 16 }],
  [{ protocol: 6, port: 0, portPrefixLen: 0 }, { protocol: 17, port: 53, portPrefixLen: 16 }],
  [{ protocol: 6, port: 8080, portPrefixLen: 12 }],
];

interface Op {
  readonly floor: boolean;
  readonly c: number;
  readonly peer: number;
  readonly keys: number;
  readonly sign: 1 | -1;
}

const opArb: fc.Arbitrary<Op> = fc.record({
  floor: fc.boolean(),
  c: fc.integer({ min: 0, max: 3 }),
  peer: fc.constantFrom(0, 300, 301),
  keys: fc.integer({ min: 0, max: PORT_KEYS.length - 1 }),
  sign: fc.constantFrom<1 | -1>(1, -1),
});

const entriesOf = (m: MapState): string[] => [...m.entries].map(([k, r]) => `${k}=${r.entry.deny}/${r.entry.precedence}`).sort();

describe('map state: plain contributions', () => {
  it('the plain shortcut leaves the same entries as the general path, with and without open Pass bands', () => {
    const flagged: Contribution[] = [0, 1, 2, 3].map((i) => ({ origin: null, entry: i % 2 === 0 ? ALLOW : DENY, label: `c${i}`, plain: true }));
    const general: Contribution[] = flagged.map((c) => ({ origin: null, entry: c.entry, label: c.label }));
    const floor: Contribution = { origin: null, entry: FLOOR, label: 'floor' };
    fc.assert(
      fc.property(fc.array(opArb, { maxLength: 40 }), (ops) => {
        const a = new MapState(emptyStats());
        const b = new MapState(emptyStats());
        // What is held per (contribution, peer, keys): removals only of what was added.
        const held = new Map<string, number>();
        for (const op of ops) {
          const hk = `${op.floor ? 'f' : op.c}|${op.peer}|${op.keys}`;
          const n = held.get(hk) ?? 0;
          if (op.sign < 0 && n === 0) continue;
          held.set(hk, n + op.sign);
          const keys = PORT_KEYS[op.keys] as PortKey[];
          if (op.floor) {
            a.change(op.peer, 'ingress', keys, floor, op.sign);
            b.change(op.peer, 'ingress', keys, floor, op.sign);
          } else {
            a.change(op.peer, 'ingress', keys, flagged[op.c] as Contribution, op.sign);
            b.change(op.peer, 'ingress', keys, general[op.c] as Contribution, op.sign);
          }
          a.settle();
          b.settle();
          expect(entriesOf(a)).toEqual(entriesOf(b));
        }
      }),
      { numRuns: fcRuns(300), ...fcReplay() },
    );
  });
});
