import fc from 'fast-check';
import { describe, expect, it, vi } from 'vitest';
import type { MapDelta } from '../../src/engine/events.js';
import { PolicyEntry, PolicyKey, policyKeyString, PRECEDENCE_ALLOW, PRECEDENCE_DEFAULT_ALLOW, PRECEDENCE_DENY, PRECEDENCE_REDIRECT, passCopyPrecedence } from '../../src/model/policy-map.js';
import { opSafe, unsafeKeys } from '../../src/backend/write-check.js';

/*
 * `unsafeKeys` (write-check.ts) finds each operation's trie by identity and direction and its key
 * string by position, and `opSafe` memoises the check against unwritten ancestors by the
 * operation's kind and sides (perf26). Two guards:
 * - the keys it reports are the ones the straightforward form reports: every operation checked by
 *   `opSafe` against the written keys of its trie (identity and direction) in the plan, in order;
 * - the memos change no answer: every kind of single operation answered in opposite orders by two
 *   freshly loaded modules, so no memo key merges two operations whose answers differ.
 */
const SEED = process.env.DISTILL_SEED === undefined ? {} : { seed: Number(process.env.DISTILL_SEED), ...(process.env.DISTILL_PATH ? { path: process.env.DISTILL_PATH } : {}) };

const identityArb = fc.constantFrom(0, 1000, 70000);
const directionArb = fc.constantFrom('ingress' as const, 'egress' as const);
// Keys of a few tries with ancestors among them: protocol 0, port prefixes 0, 1, 8, 12 and 16.
const keyArb: fc.Arbitrary<PolicyKey> = fc.oneof(
  fc.record({ identity: identityArb, direction: directionArb, protocol: fc.constant(0), port: fc.constant(0), portPrefixLen: fc.constant(0) }),
  fc.record({ identity: identityArb, direction: directionArb, protocol: fc.constantFrom(6, 17), port: fc.constantFrom(80, 8080), portPrefixLen: fc.constant(16) }),
  fc.record({ identity: identityArb, direction: directionArb, protocol: fc.constant(6), port: fc.constantFrom(0, 32768), portPrefixLen: fc.constantFrom(0, 1) }),
  fc.record({ identity: identityArb, direction: directionArb, protocol: fc.constant(6), port: fc.constant(0), portPrefixLen: fc.constantFrom(8, 12) }),
);
const precedences = [
  PRECEDENCE_ALLOW,
  PRECEDENCE_DENY,
  PRECEDENCE_DEFAULT_ALLOW,
  PRECEDENCE_REDIRECT,
  0xffffffff, // the transient deny
  3 * 0x10000 + 0xffff,
  3 * 0x10000 + 0xff01,
  5 * 0x10000 + 0xfe00,
  0x0001_0000 + 0xff01,
  0x0001_0000 + 0xffff,
  passCopyPrecedence(4, PRECEDENCE_ALLOW),
  passCopyPrecedence(4, PRECEDENCE_DENY),
];
const entryArb: fc.Arbitrary<PolicyEntry> = fc.record({ precedence: fc.constantFrom(...precedences), kind: fc.constantFrom('allow', 'deny', 'redirect') }).map(({ precedence, kind }) => ({
  deny: kind === 'deny',
  proxyPort: kind === 'redirect' ? 15001 : 0,
  precedence,
}));
const deltaArb: fc.Arbitrary<MapDelta> = fc.oneof(
  fc.record({ key: keyArb, entry: entryArb }).map(({ key, entry }): MapDelta => ({ endpoint: 'a', op: 'upsert', key, entry })),
  fc.record({ key: keyArb, entry: entryArb, previous: entryArb }).map(({ key, entry, previous }): MapDelta => ({ endpoint: 'a', op: 'upsert', key, entry, previous })),
  fc.record({ key: keyArb, entry: entryArb }).map(({ key, entry }): MapDelta => ({ endpoint: 'a', op: 'delete', key, entry })),
);
const planArb = fc.record({ tighten: fc.array(deltaArb, { maxLength: 12 }), loosen: fc.array(deltaArb, { maxLength: 12 }), trustedMask: fc.nat() });

/** The straightforward form: tries named by identity and direction, ancestors found in order. */
function reference(plan: { tighten: readonly MapDelta[]; loosen: readonly MapDelta[] }, trusted: ReadonlySet<MapDelta>): Set<string> {
  const current = new Map<string, PolicyEntry | undefined>();
  const tries = new Map<string, PolicyKey[]>();
  const trieName = (k: PolicyKey): string => `${k.identity} ${k.direction}`;
  for (const d of [...plan.tighten, ...plan.loosen]) {
    const ks = policyKeyString(d.key);
    if (current.has(ks)) continue;
    current.set(ks, d.op === 'delete' ? d.entry : d.previous);
    tries.set(trieName(d.key), [...(tries.get(trieName(d.key)) ?? []), d.key]);
  }
  const bad = new Set<string>();
  const ops: [MapDelta, boolean][] = [...plan.tighten.map((d): [MapDelta, boolean] => [d, true]), ...plan.loosen.map((d): [MapDelta, boolean] => [d, false])];
  for (const [d, tighten] of ops) {
    const ks = policyKeyString(d.key);
    const now = d.op === 'upsert' ? d.entry : undefined;
    if (!trusted.has(d) && !opSafe(d.key, current.get(ks), now, tighten, current, tries.get(trieName(d.key)) ?? [])) bad.add(ks);
    current.set(ks, now);
  }
  return bad;
}

const trustedOf = (plan: { tighten: MapDelta[]; loosen: MapDelta[]; trustedMask: number }): Set<MapDelta> =>
  new Set([...plan.tighten, ...plan.loosen].filter((_, i) => i < 30 && (plan.trustedMask >> i) % 8 === 0));

describe('write check: unsafeKeys', () => {
  it('reports the keys the straightforward form reports', () => {
    let unsafe = 0;
    fc.assert(
      fc.property(planArb, (plan) => {
        const trusted = trustedOf(plan);
        const got = unsafeKeys(plan, trusted);
        expect([...got].sort()).toEqual([...reference(plan, trusted)].sort());
        if (got.size > 0) unsafe++;
      }),
      { numRuns: 3000, ...SEED },
    );
    // The generator reaches plans with unsafe operations.
    expect(unsafe).toBeGreaterThan(100);
  });

  it('answers every operation alike whatever the memos hold (cases in opposite orders)', async () => {
    // Every kind of single operation with only its own key written (the unwritten-ancestor check
    // alone): two fresh modules answer them in opposite orders. A memo key that merged two cases with
    // different answers would give the first-asked answer to both, in each module a different one.
    const cases: { key: PolicyKey; was: PolicyEntry | undefined; now: PolicyEntry | undefined; tighten: boolean }[] = [];
    const kinds: [number, number, number][] = [[0, 0, 0], [6, 80, 16], [6, 0, 8], [6, 32768, 1]];
    const entries: (PolicyEntry | undefined)[] = [undefined];
    for (const precedence of precedences) for (const kind of ['allow', 'deny', 'redirect']) entries.push({ deny: kind === 'deny', proxyPort: kind === 'redirect' ? 15001 : 0, precedence });
    for (const identity of [0, 1000])
      for (const [protocol, port, portPrefixLen] of kinds)
        for (const was of entries)
          for (const now of entries)
            for (const tighten of [true, false]) if (was !== undefined || now !== undefined) cases.push({ key: { identity, direction: 'ingress', protocol, port, portPrefixLen }, was, now, tighten });
    const answers = async (order: readonly number[]): Promise<boolean[]> => {
      vi.resetModules();
      const m = await import('../../src/backend/write-check.js');
      const out = new Array<boolean>(cases.length);
      for (const i of order) {
        const c = cases[i] as (typeof cases)[number];
        out[i] = m.opSafe(c.key, c.was, c.now, c.tighten, new Map(), [c.key]);
      }
      return out;
    };
    const forward = cases.map((_, i) => i);
    const a = await answers(forward);
    const b = await answers([...forward].reverse());
    const differ = cases.filter((_, i) => a[i] !== b[i]);
    expect(differ.slice(0, 3)).toEqual([]);
    // Both kinds of answer occur, and the identity-0 trie's differ from a peer's somewhere.
    expect(a.filter((x) => !x).length).toBeGreaterThan(0);
    expect(a.filter((x) => x).length).toBeGreaterThan(0);
    const half = cases.length / 2;
    expect(a.slice(0, half).some((x, i) => x !== a[half + i])).toBe(true);
  });
});
