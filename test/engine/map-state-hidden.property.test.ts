import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { maskPort, PolicyEntry, PolicyKey, PRECEDENCE_ALLOW, PRECEDENCE_DEFAULT_ALLOW, PRECEDENCE_DENY, PRECEDENCE_REDIRECT } from '../../src/model/policy-map.js';
import { MapState } from '../../src/engine/map-state.js';
import { emptyStats } from '../../src/engine/stats.js';
import type { Contribution } from '../../src/engine/contribution.js';
import { fcReplay, fcRuns } from '../fc-knobs.js';

// The kernel layer's pruning (a key hidden by a broader-or-equal key of its identity or of
// identity 0 with higher precedence; an identity entry equal to identity 0's at the same key
// elided) is computed two ways in `MapState.hiddenAt`: by prefix lookups, or by a scan of the
// identity's raw entries when it holds fewer of them than the lookups would make. Identities here
// hold from one raw key to many, so both ways run, and each settle is held to this from-scratch
// reading of the same rules.
const ENTRIES: PolicyEntry[] = [
  { deny: false, proxyPort: 0, precedence: PRECEDENCE_ALLOW },
  { deny: true, proxyPort: 0, precedence: PRECEDENCE_DENY },
  { deny: false, proxyPort: 10000, precedence: PRECEDENCE_REDIRECT },
  { deny: false, proxyPort: 0, precedence: PRECEDENCE_DEFAULT_ALLOW },
];
const PORTS: [number, number, number][] = [
  [0, 0, 0],
  [6, 80, 16],
  [6, 81, 16],
  [6, 80, 15],
  [6, 64, 10],
  [6, 0, 4],
  [6, 0, 0],
  [17, 53, 16],
  [17, 0, 0],
];
const IDENTITIES = [0, 300, 301];
const contribs: Contribution[] = ENTRIES.flatMap((entry, i) => [0, 1].map((j) => ({ origin: null, entry, label: `c${i}.${j}` })));

interface Op {
  readonly c: number;
  readonly identity: number;
  readonly port: number;
  readonly sign: 1 | -1;
  readonly settle: boolean;
}
const opArb: fc.Arbitrary<Op> = fc.record({
  c: fc.integer({ min: 0, max: contribs.length - 1 }),
  identity: fc.constantFrom(...IDENTITIES),
  port: fc.integer({ min: 0, max: PORTS.length - 1 }),
  sign: fc.constantFrom<1 | -1>(1, 1, -1),
  settle: fc.boolean(),
});

const keyOf = (identity: number, port: number): PolicyKey => {
  const [protocol, p, len] = PORTS[port] as [number, number, number];
  return { identity, direction: 'ingress', protocol, port: p, portPrefixLen: len };
};
const better = (a: PolicyEntry, b: PolicyEntry): boolean => (a.precedence !== b.precedence ? a.precedence > b.precedence : a.proxyPort < b.proxyPort);
const broaderOrEqual = (outer: PolicyKey, inner: PolicyKey): boolean =>
  outer.protocol === 0 || (outer.protocol === inner.protocol && outer.portPrefixLen <= inner.portPrefixLen && maskPort(inner.port, outer.portPrefixLen) === maskPort(outer.port, outer.portPrefixLen));
const same = (a: PolicyKey, b: PolicyKey): boolean => a.protocol === b.protocol && a.port === b.port && a.portPrefixLen === b.portPrefixLen;

/** The kernel entries of a raw layer (held: contribution counts per (identity, port) cell). */
function expected(held: Map<string, Map<Contribution, number>>): string[] {
  const merged: { key: PolicyKey; entry: PolicyEntry }[] = [];
  for (const [cell, cs] of held) {
    let entry: PolicyEntry | undefined;
    for (const [c, n] of cs) if (n > 0 && (entry === undefined || better(c.entry, entry))) entry = c.entry;
    const [id, port] = cell.split('|').map(Number) as [number, number];
    if (entry) merged.push({ key: keyOf(id, port), entry });
  }
  const out: string[] = [];
  for (const m of merged) {
    const hidden = merged.some(
      (o) => o !== m && (o.key.identity === m.key.identity || o.key.identity === 0) && broaderOrEqual(o.key, m.key) && o.entry.precedence > m.entry.precedence && (o.key.identity === 0 || !same(o.key, m.key)),
    );
    const elided = m.key.identity !== 0 && merged.some((o) => o.key.identity === 0 && same(o.key, m.key) && o.entry.deny === m.entry.deny && o.entry.proxyPort === m.entry.proxyPort && o.entry.precedence === m.entry.precedence);
    if (!hidden && !elided) out.push(`${m.key.identity}/${m.key.protocol}/${m.key.port}/${m.key.portPrefixLen}=${m.entry.deny}/${m.entry.proxyPort}/${m.entry.precedence}`);
  }
  return out.sort();
}

const actual = (m: MapState): string[] => [...m.entries.values()].map(({ key: k, entry: e }) => `${k.identity}/${k.protocol}/${k.port}/${k.portPrefixLen}=${e.deny}/${e.proxyPort}/${e.precedence}`).sort();

describe('map state: hidden keys by lookup or by scan', () => {
  it('every settle leaves the entries the insertion rules give, however many raw keys an identity holds', () => {
    fc.assert(
      fc.property(fc.array(opArb, { maxLength: 60 }), (ops) => {
        const m = new MapState(emptyStats());
        const held = new Map<string, Map<Contribution, number>>();
        for (const op of ops) {
          const cell = `${op.identity}|${op.port}`;
          const c = contribs[op.c] as Contribution;
          const cs = held.get(cell) ?? new Map<Contribution, number>();
          const n = cs.get(c) ?? 0;
          if (op.sign < 0 && n === 0) continue;
          cs.set(c, n + op.sign);
          held.set(cell, cs);
          if (op.sign > 0) m.add(keyOf(op.identity, op.port), c);
          else m.remove(keyOf(op.identity, op.port), c);
          if (op.settle) {
            m.settle();
            expect(actual(m)).toEqual(expected(held));
          }
        }
        m.settle();
        expect(actual(m)).toEqual(expected(held));
      }),
      { numRuns: fcRuns(400), ...fcReplay() },
    );
  });
});
