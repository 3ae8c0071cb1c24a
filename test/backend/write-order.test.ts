import { diffMaps } from '../../src/engine/map-deltas.js';
import { endpointMaps } from '../../src/harness/cluster-sync.js';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.js';
import type { ChangeSet, MapDelta } from '../../src/engine/events.js';
import { entryEquals } from '../../src/engine/map-deltas.js';
import { LookupResult, PolicyEntry, PolicyKey, policyKeyString, PRECEDENCE_ALLOW, PRECEDENCE_DEFAULT_ALLOW, PRECEDENCE_DENY, PRECEDENCE_REDIRECT } from '../../src/model/policy-map.js';
import { BackendError, writePlan } from '../../src/backend/backend.js';
import { MemoryBackend } from '../../src/backend/memory.js';
import { CapacityMode, entryRank, MapWrite, planWrites, WriteBatch } from '../../src/backend/write-plan.js';
import { op, toEvent } from '../engine/gen.js';
import { copyMaps, FlowChecker, Maps } from './flow-check.js';

const LONG = Boolean(process.env.DISTILL_LONG);
const RUNS = Number(process.env.DISTILL_RUNS ?? (LONG ? 500 : 25));
/** Replays a failure: fast-check prints the seed and path of a counterexample. */
const SEED = process.env.DISTILL_SEED === undefined ? {} : { seed: Number(process.env.DISTILL_SEED), ...(process.env.DISTILL_PATH ? { path: process.env.DISTILL_PATH } : {}) };
/** Long runs take minutes; the default per-test timeout is for `npm test`. */
const TIMEOUT = LONG ? 60 * 60_000 : undefined;

interface Totals {
  transactions: number;
  prefixes: number;
  flowChecks: number;
  hard: number;
  soft: number;
  boundarySoft: number;
  /** Flows x prefixes dropped that both states allow. */
  drops: number;
  /** Hard-rule violations of the order before the plan (per endpoint, upserts then deletes). */
  oldOrderHard: number;
  capacityExceeded: number;
  /** Transactions with a precedence corner (see `hasCorner`). */
  corners: number;
  /** Planned operations by kind: what the random transactions exercised. */
  ops: Record<string, number>;
  modes: Record<CapacityMode, number>;
}

function newTotals(): Totals {
  return { transactions: 0, prefixes: 0, flowChecks: 0, hard: 0, soft: 0, boundarySoft: 0, drops: 0, oldOrderHard: 0, capacityExceeded: 0, corners: 0, ops: {}, modes: { normal: 0, 'allows-first': 0, 'deny-all': 0 } };
}

function writesOf(deltas: readonly MapDelta[], old: Maps): MapWrite[] {
  const by = new Map<string, MapDelta[]>();
  for (const d of deltas) {
    let l = by.get(d.endpoint);
    if (!l) by.set(d.endpoint, (l = []));
    l.push(d);
  }
  return [...by].map(([endpoint, ds]) => ({ endpoint, deltas: ds, size: old.get(endpoint)?.size ?? 0 }));
}

/**
 * Plans a transaction from O to N, writes it one operation at a time on in-memory maps and
 * checks every prefix: hard-rule violations, soft-rule violations, the soft rule at the phase
 * boundary, capacity, and that the last prefix is N.
 */
function simulate(
  old: Maps,
  next: Maps,
  deltas: readonly MapDelta[],
  added: readonly string[],
  removed: readonly string[],
  endpointIds: ReadonlyMap<string, readonly number[]>,
  identities: readonly number[],
  capacity: number,
  totals: Totals,
): void {
  // Maps of removed endpoints go first, new maps are created empty (as `applyChangeSet` does).
  const start = copyMaps(old);
  for (const ep of removed) start.delete(ep);
  for (const ep of added) start.set(ep, new Map());
  const plan: WriteBatch[] = planWrites(writesOf(deltas, start), capacity, (ep) => [...(start.get(ep) ?? new Map<string, LookupResult>()).values()]);
  const checker = new FlowChecker(old, next, endpointIds, identities, start);
  totals.transactions++;
  if ([...new Set([...old.keys(), ...next.keys()])].some((ep) => hasCorner(old.get(ep) ?? new Map(), next.get(ep) ?? new Map()))) totals.corners++;
  totals.prefixes++;
  totals.flowChecks += checker.flows.length;
  totals.hard += checker.counts().hard;
  totals.soft += checker.counts().soft;
  const seenModes = new Set<string>();
  let phase = 'tighten';
  let boundaryChecked = false;
  // The soft rule where `writePlan` calls betweenPhases: before the first loosen batch, or after
  // the last batch when there is none.
  const boundary = (mode: string): void => {
    boundaryChecked = true;
    totals.boundarySoft += checker.counts().soft;
    if (checker.counts().soft > 0 && process.env.DEBUG_WRITE_ORDER) {
      process.stderr.write(`SOFT ${checker.counts().soft} at the phase boundary (${mode})\n`);
      for (const ep of new Set([...old.keys(), ...next.keys()])) process.stderr.write(`  ${ep}\n    O ${JSON.stringify([...(old.get(ep) ?? new Map()).values()].map((r) => [policyKeyString(r.key), r.entry.deny ? 'D' : r.entry.proxyPort ? 'R' : 'A', r.entry.precedence]))}\n    N ${JSON.stringify([...(next.get(ep) ?? new Map()).values()].map((r) => [policyKeyString(r.key), r.entry.deny ? 'D' : r.entry.proxyPort ? 'R' : 'A', r.entry.precedence]))}\n    I ${JSON.stringify([...(checker.state.get(ep) ?? new Map()).values()].map((r) => [policyKeyString(r.key), r.entry.deny ? 'D' : r.entry.proxyPort ? 'R' : 'A', r.entry.precedence]))}\n`);
    }
  };
  for (const b of plan) {
    if (!seenModes.has(b.endpoint)) {
      seenModes.add(b.endpoint);
      totals.modes[b.mode]++;
    }
    if (b.phase !== phase) {
      phase = b.phase;
      boundary(b.mode);
    }
    for (const d of b.ops) {
      const m = checker.state.get(b.endpoint);
      const ks = policyKeyString(d.key);
      if (d.op === 'delete') expect(m?.has(ks), `delete of absent ${ks} in ${b.endpoint}`).toBe(true);
      else expect(m?.get(ks)?.entry, `previous of ${ks} in ${b.endpoint}`).toEqual(d.previous);
      const kind = `${b.phase} ${d.op} ${d.previous ? `${rankName(d.previous)}->` : ''}${rankName(d.entry)}`;
      totals.ops[kind] = (totals.ops[kind] ?? 0) + 1;
      const c = checker.apply(b.endpoint, d);
      if ((checker.state.get(b.endpoint)?.size ?? 0) > capacity) totals.capacityExceeded++;
      totals.prefixes++;
      totals.flowChecks += checker.flows.length;
      if (c.hard > 0 && process.env.DEBUG_WRITE_ORDER) {
        process.stderr.write(`HARD ${c.hard} after ${d.op} ${policyKeyString(d.key)} ${JSON.stringify(d.entry)} in ${b.endpoint} (${b.phase}, ${b.mode})\n`);
        for (const ep of new Set([...old.keys(), ...next.keys()])) process.stderr.write(`  ${ep}\n    O ${JSON.stringify([...(old.get(ep) ?? new Map()).values()].map((r) => [policyKeyString(r.key), r.entry]))}\n    N ${JSON.stringify([...(next.get(ep) ?? new Map()).values()].map((r) => [policyKeyString(r.key), r.entry]))}\n`);
      }
      totals.hard += c.hard;
      totals.soft += c.soft;
      totals.drops += c.drops;
    }
  }
  if (!boundaryChecked) boundary('no loosen batch');
  const before = new FlowChecker(old, next, endpointIds, identities, start);
  for (const d of oldOrder(deltas)) totals.oldOrderHard += before.apply(d.endpoint, d).hard;
  for (const [ep, m] of next) {
    const got = checker.state.get(ep) as Map<string, LookupResult>;
    expect(got.size, `${ep}: size after the plan`).toBe(m.size);
    for (const [ks, r] of m) expect(entryEquals(got.get(ks)?.entry, r.entry), `${ep} ${ks} after the plan`).toBe(true);
  }
}

/** The order `applyChangeSet` used before the plan: endpoint by endpoint, overwrites, new keys, deletes. */
function oldOrder(deltas: readonly MapDelta[]): MapDelta[] {
  const eps = [...new Set(deltas.map((d) => d.endpoint))];
  const rank = (d: MapDelta): number => (d.op === 'delete' ? 2 : d.previous ? 0 : 1);
  return eps.flatMap((ep) => deltas.filter((d) => d.endpoint === ep).sort((a, b) => rank(a) - rank(b)));
}

const rankName = (e: PolicyEntry): string => ['allow', 'redirect', 'deny'][entryRank(e)] as string;


/** Runs random histories; `capacityOf` picks the plan's capacity for each transaction. */
function runHistories(totals: Totals, capacityOf: (old: Maps, next: Maps) => number): void {
  fc.assert(
    fc.property(fc.array(fc.array(op, { minLength: 1, maxLength: 6 }), { minLength: 5, maxLength: 30 }), (txns) => {
      const engine = new Engine();
      for (const ops of txns) {
        const old = endpointMaps(engine);
        const idsBefore = new Map(engine.endpoints().map((ep) => [ep, engine.identityOfPod(ep)]));
        let cs: ChangeSet;
        try {
          cs = engine.apply(ops.map(toEvent));
        } catch {
          continue;
        }
        const next = endpointMaps(engine);
        const endpointIds = new Map<string, number[]>();
        for (const ep of new Set([...old.keys(), ...next.keys()])) {
          endpointIds.set(ep, [...new Set([idsBefore.get(ep), engine.identityOfPod(ep)])].filter((i): i is number => i !== undefined));
        }
        const identities = [...new Set([...engine.identities(), ...[...endpointIds.values()].flat()])];
        const before = { hard: totals.hard, boundarySoft: totals.boundarySoft };
        // The plan relies on the engine's insertion rule (see write-plan.ts, the exact check).
        for (const m of [...old.values(), ...next.values()]) expect(underHigherAncestor(m), 'an entry under a same-trie key of higher precedence').toEqual([]);
        simulate(old, next, cs.deltas, cs.endpointsAdded, cs.endpointsRemoved, endpointIds, identities, capacityOf(old, next), totals);
        // Fail on the transaction, not at the end: fast-check then shrinks it and prints its seed.
        expect(totals.hard - before.hard, 'hard-rule violations in one transaction').toBe(0);
        expect(totals.boundarySoft - before.boundarySoft, 'boundary soft-rule violations in one transaction').toBe(0);
      }
    }),
    { numRuns: RUNS, ...SEED },
  );
}

const report: string[] = [];
afterAll(() => {
  if (report.length > 0) process.stderr.write(`${report.join('\n')}\n`);
});
const summary = (name: string, t: Totals): string =>
  `write order (${name}): ${t.transactions} transactions (${t.corners} with a precedence corner), ${t.prefixes} prefixes, ${t.flowChecks} flow checks; ` +
  `hard-rule violations ${t.hard} (old order: ${t.oldOrderHard}), soft-rule violations ${t.soft} (flow x prefix; at phase boundaries ${t.boundarySoft}); transient drops ${t.drops}; ` +
  `capacity exceeded ${t.capacityExceeded}; map plans ${JSON.stringify(t.modes)}; ops ${JSON.stringify(t.ops)}`;

describe('fail-closed write order, every prefix of random engine transactions', () => {
  it('default capacity: no prefix allows a flow that neither the old nor the new state allows', () => {
    const t = newTotals();
    runHistories(t, () => 16384);
    report.push(summary('capacity 16384', t));
    // A replayed path runs one history.
    if (process.env.DISTILL_PATH === undefined) expect(t.transactions).toBeGreaterThan(RUNS);
    expect(t.prefixes).toBeGreaterThan(0);
    expect(t.hard).toBe(0);
    expect(t.boundarySoft).toBe(0);
    expect(t.capacityExceeded).toBe(0);
  }, TIMEOUT);

  it('capacity as tight as the engine allows (the larger of old and new size): the same, through the fallbacks', () => {
    const t = newTotals();
    const largest = (m: Maps): number => Math.max(0, ...[...m.values()].map((s) => s.size));
    runHistories(t, (o, n) => Math.max(largest(o), largest(n)));
    report.push(summary('tight capacity', t));
    expect(t.hard).toBe(0);
    expect(t.boundarySoft).toBe(0);
    expect(t.capacityExceeded).toBe(0);
  }, TIMEOUT);
});

// Hand-written cases: two endpoints A and B with identities 1000 and 2000, peer X = 3000.
const A = 1000;
const B = 2000;
const X = 3000;
const ALLOW: PolicyEntry = { deny: false, proxyPort: 0, precedence: PRECEDENCE_ALLOW };
const DENY: PolicyEntry = { deny: true, proxyPort: 0, precedence: PRECEDENCE_DENY };
const DEFAULT_ALLOW: PolicyEntry = { deny: false, proxyPort: 0, precedence: PRECEDENCE_DEFAULT_ALLOW };
/** A Baseline rule's deny (tier level 39 799, below the NetworkPolicy tier's 40 000): 0x9B77FFFF. */
const BASELINE_DENY: PolicyEntry = { deny: true, proxyPort: 0, precedence: 39799 * 0x10000 + 0xffff };
const redirect = (port: number): PolicyEntry => ({ deny: false, proxyPort: port, precedence: PRECEDENCE_REDIRECT });
const key = (identity: number, direction: 'ingress' | 'egress', protocol = 0, port = 0, portPrefixLen = 0): PolicyKey => ({ identity, direction, protocol, port, portPrefixLen });
type Rows = [PolicyKey, PolicyEntry][];
const mapOf = (rows: Rows): Map<string, LookupResult> => new Map(rows.map(([k, e]) => [policyKeyString(k), { key: k, entry: e }]));

/** Hard-rule violations over all prefixes of the plan, and of the naive order (deltas as listed). */
function handCase(o: Record<string, Rows>, n: Record<string, Rows>, capacity = 16384): { planned: Totals; naive: number } {
  const old: Maps = new Map(Object.entries(o).map(([ep, r]) => [ep, mapOf(r)]));
  const next: Maps = new Map(Object.entries(n).map(([ep, r]) => [ep, mapOf(r)]));
  const deltas = [...old.keys()].flatMap((ep) => diffMaps(ep, old.get(ep) as Map<string, LookupResult>, next.get(ep) as Map<string, LookupResult>));
  const endpointIds = new Map([['a', [A]], ['b', [B]]]);
  const planned = newTotals();
  simulate(old, next, deltas, [], [], endpointIds, [A, B, X], capacity, planned);
  // The order before the plan, endpoint by endpoint: upserts then deletes; and deletes first.
  let naive = 0;
  for (const order of [deltas, [...deltas.filter((d) => d.op === 'delete'), ...deltas.filter((d) => d.op === 'upsert')]]) {
    const c = new FlowChecker(old, next, endpointIds, [A, B, X]);
    for (const ep of ['a', 'b']) for (const d of order) if (d.endpoint === ep) naive += c.apply(d.endpoint, d).hard;
  }
  return { planned, naive };
}

describe('fail-closed write order, hand-written cases', () => {
  const allowAll: Rows = [[key(0, 'egress'), ALLOW], [key(0, 'ingress'), ALLOW]];

  it('a deny moving from A egress to B ingress is added before it is removed', () => {
    const r = handCase(
      { a: [...allowAll, [key(B, 'egress', 6, 80, 16), DENY]], b: allowAll },
      { a: allowAll, b: [...allowAll, [key(A, 'ingress', 6, 80, 16), DENY]] },
    );
    expect(r.naive).toBeGreaterThan(0); // A's delete listed first: the hole the issue describes
    expect(r.planned.hard).toBe(0);
    expect(r.planned.boundarySoft).toBe(0);
  });

  it('a new deny beside an allow-all that is removed', () => {
    const r = handCase(
      { a: [[key(X, 'egress'), ALLOW]], b: allowAll },
      { a: [[key(X, 'egress', 6, 0, 0), ALLOW], [key(X, 'egress', 6, 22, 16), DENY], [key(X, 'egress', 17, 0, 0), ALLOW]], b: allowAll },
    );
    expect(r.planned.hard).toBe(0);
    expect(r.planned.boundarySoft).toBe(0);
  });

  it('a deny replaced by a narrower redirect over an allow-all: the redirect never exposes a plain allow', () => {
    const r = handCase(
      { a: [[key(X, 'ingress', 6, 0, 8), DENY], [key(X, 'ingress'), ALLOW]], b: allowAll },
      { a: [[key(X, 'ingress', 6, 80, 16), redirect(10000)], [key(X, 'ingress'), ALLOW]], b: allowAll },
    );
    expect(r.naive).toBeGreaterThan(0);
    expect(r.planned.hard).toBe(0);
    expect(r.planned.boundarySoft).toBe(0);
  });

  it('a redirect moving from identity X to identity 0 over an allow-all', () => {
    const r = handCase(
      { a: [[key(X, 'ingress', 6, 80, 16), redirect(10000)], [key(X, 'ingress'), ALLOW]], b: allowAll },
      { a: [[key(0, 'ingress', 6, 80, 16), redirect(10001)], [key(X, 'ingress'), ALLOW]], b: allowAll },
    );
    expect(r.naive).toBeGreaterThan(0);
    expect(r.planned.hard).toBe(0);
  });

  it('redirects on both sides of a flow: a new deny under an old redirect at A, an old deny under a new redirect at B', () => {
    const r = handCase(
      { a: [[key(B, 'egress', 6, 80, 16), redirect(10000)], [key(B, 'egress'), ALLOW]], b: [[key(A, 'ingress', 6, 0, 8), DENY], [key(A, 'ingress'), ALLOW]] },
      { a: [[key(B, 'egress', 6, 0, 8), DENY], [key(B, 'egress'), ALLOW]], b: [[key(A, 'ingress', 6, 80, 16), redirect(10001)], [key(A, 'ingress'), ALLOW]] },
    );
    expect(r.planned.hard).toBe(0);
    expect(r.planned.boundarySoft).toBe(0);
  });

  it('an L7 rule added and one removed under an allow-all: the redirects are written directly, no transient drop', () => {
    const r = handCase(
      { a: [[key(X, 'ingress'), ALLOW], [key(X, 'ingress', 6, 443, 16), redirect(10000)]], b: allowAll },
      { a: [[key(X, 'ingress'), ALLOW], [key(X, 'ingress', 6, 80, 16), redirect(10001)]], b: allowAll },
    );
    expect(r.planned.hard).toBe(0);
    expect(r.planned.drops).toBe(0);
    expect(r.planned.ops).toEqual({ 'tighten upsert redirect': 1, 'loosen delete redirect': 1 });
  });

  it('a new redirect for a peer with no entry but an identity-0 allow-all is written directly', () => {
    const r = handCase({ a: [[key(0, 'ingress'), ALLOW]], b: allowAll }, { a: [[key(0, 'ingress'), ALLOW], [key(X, 'ingress', 6, 80, 16), redirect(10000)]], b: allowAll });
    expect(r.planned.hard).toBe(0);
    expect(r.planned.drops).toBe(0);
    expect(r.planned.ops).toEqual({ 'tighten upsert redirect': 1 });
  });

  // The long run's one violation (bench/results/write-order-long-2026-11-29.txt), minimised: the
  // identity-0 redirect kept to the end of the loosen phase beat B's Baseline deny toward A.
  it('a deleted identity-0 redirect over the default allow, beside a Baseline deny it beats, while the peer opens', () => {
    const r = handCase(
      { a: [[key(0, 'egress'), DEFAULT_ALLOW]], b: [[key(0, 'egress'), DEFAULT_ALLOW], [key(0, 'egress', 17, 53, 16), redirect(10000)], [key(A, 'egress'), BASELINE_DENY]] },
      { a: [[key(0, 'egress'), DEFAULT_ALLOW], [key(0, 'ingress'), DEFAULT_ALLOW]], b: [[key(0, 'egress'), DEFAULT_ALLOW], [key(A, 'egress'), BASELINE_DENY]] },
    );
    expect(r.planned.hard).toBe(0);
    expect(r.planned.boundarySoft).toBe(0);
  });

  it('a new identity-0 redirect over the default allow, beside a Baseline deny it beats', () => {
    const r = handCase(
      { a: allowAll, b: [[key(0, 'egress'), DEFAULT_ALLOW], [key(A, 'egress'), BASELINE_DENY]] },
      { a: allowAll, b: [[key(0, 'egress'), DEFAULT_ALLOW], [key(0, 'egress', 17, 53, 16), redirect(10000)], [key(A, 'egress'), BASELINE_DENY]] },
    );
    expect(r.planned.hard).toBe(0);
    expect(r.planned.boundarySoft).toBe(0);
  });

  it('a redirect that beats no deny (the Baseline deny is on another protocol) is still written directly', () => {
    const r = handCase(
      { a: allowAll, b: [[key(0, 'egress'), DEFAULT_ALLOW], [key(0, 'egress', 17, 53, 16), redirect(10000)], [key(A, 'egress', 6, 0, 0), BASELINE_DENY]] },
      { a: allowAll, b: [[key(0, 'egress'), DEFAULT_ALLOW], [key(0, 'egress', 17, 5353, 16), redirect(10001)], [key(A, 'egress', 6, 0, 0), BASELINE_DENY]] },
    );
    expect(r.planned.hard).toBe(0);
    expect(r.planned.boundarySoft).toBe(0);
    expect(r.planned.drops).toBe(0);
    expect(r.planned.ops).toEqual({ 'tighten upsert redirect': 1, 'loosen delete redirect': 1 });
  });

  // Found by the long run after the redirect fix (seed 2002): an Admin-tier deny lowered below an
  // Admin allow of a peer's key, written in the tighten phase, let the allow win.
  it('a deny overwritten with a lower precedence than an allow of the other trie waits for the loosen phase', () => {
    const admin = (level: number, deny: boolean): PolicyEntry => ({ deny, proxyPort: 0, precedence: level * 0x10000 + (deny ? 0xffff : 0xff01) });
    const r = handCase(
      { a: [[key(0, 'egress', 6, 80, 16), admin(65000, true)], [key(B, 'egress'), admin(64000, false)]], b: allowAll },
      { a: [[key(0, 'egress', 6, 80, 16), admin(63000, true)], [key(B, 'egress'), admin(64000, false)]], b: [[key(0, 'egress'), ALLOW]] },
    );
    expect(r.planned.hard).toBe(0);
    expect(r.planned.boundarySoft).toBe(0);
  });

  it('a full map that must move its allows and denies: no room for the tighten phase, only drops', () => {
    // Capacity 4: A's map is full with 3 denies and an allow-all; the new state swaps the denies.
    const o: Rows = [[key(0, 'egress'), ALLOW], [key(X, 'egress', 6, 1, 16), DENY], [key(X, 'egress', 6, 2, 16), DENY], [key(X, 'egress', 6, 3, 16), DENY]];
    const n: Rows = [[key(0, 'egress'), ALLOW], [key(X, 'egress', 6, 4, 16), DENY], [key(X, 'egress', 6, 5, 16), DENY], [key(X, 'egress', 6, 6, 16), DENY]];
    const r = handCase({ a: o, b: allowAll }, { a: n, b: allowAll }, 4);
    expect(r.planned.modes['deny-all']).toBe(1);
    expect(r.planned.hard).toBe(0);
    expect(r.planned.capacityExceeded).toBe(0);
  });

  it('a full map with unchanged allows: they are deleted early and put back last', () => {
    const o: Rows = [[key(0, 'egress'), ALLOW], [key(X, 'egress', 6, 1, 16), ALLOW], [key(X, 'egress', 6, 2, 16), DENY], [key(X, 'egress', 6, 3, 16), DENY]];
    const n: Rows = [[key(0, 'egress'), ALLOW], [key(X, 'egress', 6, 1, 16), ALLOW], [key(X, 'egress', 6, 4, 16), DENY], [key(X, 'egress', 6, 5, 16), DENY]];
    const r = handCase({ a: o, b: allowAll }, { a: n, b: allowAll }, 4);
    expect(r.planned.modes['allows-first']).toBe(1);
    expect(r.planned.hard).toBe(0);
    expect(r.planned.boundarySoft).toBe(0);
    expect(r.planned.capacityExceeded).toBe(0);
  });
});

describe('a refusal part-way through a plan', () => {
  it('stops the plan there: done counts the operations that took effect in plan order, later batches are not written', () => {
    const b = new MemoryBackend({ capacity: 256 });
    for (const ep of ['a', 'b', 'c']) b.create(ep);
    const up = (ep: string, k: PolicyKey, entry: PolicyEntry): MapDelta => ({ endpoint: ep, op: 'upsert', key: k, entry });
    const writes: MapWrite[] = [
      { endpoint: 'a', deltas: [up('a', key(X, 'egress', 6, 22, 16), DENY), up('a', key(X, 'egress'), ALLOW)], size: 0 },
      // More than the map holds (the engine would refuse this; a kernel map shared with something else might).
      { endpoint: 'b', deltas: Array.from({ length: 300 }, (_, i) => up('b', key(X + i, 'ingress'), ALLOW)), size: 0 },
      { endpoint: 'c', deltas: [up('c', key(X, 'ingress'), ALLOW)], size: 0 },
    ];
    const plan = planWrites(writes, 256, () => []);
    expect(plan.map((p) => `${p.phase} ${p.endpoint}`)).toEqual(['tighten a', 'loosen a', 'loosen b', 'loosen c']);
    let err: unknown;
    try {
      writePlan(b, plan);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(BackendError);
    expect((err as BackendError).endpoint).toBe('b');
    expect((err as BackendError).done).toBe(1 + 1 + 256);
    expect((err as BackendError).message).toMatch(/loosen phase; 258 of 303 planned operations took effect/);
    expect(b.size('b')).toBe(256);
    expect(b.size('c')).toBe(0);
  });
});

/*
 * Random map states, drawn directly (not through the engine) from a pool of nested keys and of
 * entries of every tier, so the precedence corners engine histories rarely reach come often: a
 * key written or deleted under a same-trie key of another precedence, with an entry of the other
 * trie (identity 0 against the peer's) between the two. Both states obey the engine's insertion
 * rule (no entry under a broader-or-equal key of its own identity or of identity 0 with a higher
 * precedence), which the plan relies on. Two endpoints a (identity A) and b (identity B), peer X.
 */
const lvl = (level: number, byte: number): number => level * 0x10000 + byte;
const ENTRY_POOL: readonly PolicyEntry[] = [
  ALLOW,
  DENY,
  redirect(10000),
  { deny: false, proxyPort: 10001, precedence: PRECEDENCE_REDIRECT + 5 },
  DEFAULT_ALLOW,
  BASELINE_DENY,
  { deny: false, proxyPort: 0, precedence: lvl(39000, 0xff01) },
  ...[63000, 64000, 65000].flatMap((l) => [
    { deny: true, proxyPort: 0, precedence: lvl(l, 0xffff) },
    { deny: false, proxyPort: 0, precedence: lvl(l, 0xff01) },
  ]),
  // Pass band at 60 000: floor deny, a redirect copy, an allow copy, a Baseline deny copy.
  { deny: true, proxyPort: 0, precedence: lvl(60000, 0) },
  { deny: false, proxyPort: 10002, precedence: lvl(60000, 0xc402) },
  { deny: false, proxyPort: 0, precedence: lvl(60000, 0xc401) },
  { deny: true, proxyPort: 0, precedence: lvl(60000, 0x0c33) },
];
const PORT_KEYS: readonly [number, number, number][] = [[0, 0, 0], [6, 0, 0], [6, 64, 10], [6, 80, 12], [6, 80, 16], [6, 81, 16], [17, 0, 0], [17, 53, 16]];

interface CornerCounts {
  transactions: number;
  /** Transactions holding a write under a same-trie key of higher precedence (old or new) with an entry of the other trie between. */
  corners: number;
  hard: number;
  boundarySoft: number;
  /** Prefixes where a map ranks some packet below its phase's reference state. */
  phase: number;
  drops: number;
}

const mapRows = (ep: string): fc.Arbitrary<Rows> => {
  const peer = ep === 'a' ? B : A;
  const k = fc.tuple(fc.constantFrom(0, peer, X), fc.constantFrom<'ingress' | 'egress'>('ingress', 'egress'), fc.constantFrom(...PORT_KEYS));
  return fc.array(fc.tuple(k, fc.nat({ max: ENTRY_POOL.length - 1 })), { maxLength: 9 }).map((rs) => rs.map(([[id, dir, [proto, port, len]], e]) => [key(id, dir, proto, port, len), ENTRY_POOL[e] as PolicyEntry]));
};

/** The engine's insertion rule (map-state.ts `finalEntry`): drop entries a broader-or-equal key of their identity or of identity 0 outranks. */
function insertionRule(rows: Rows): Map<string, LookupResult> {
  const m = mapOf(rows);
  const outranked = (k: PolicyKey, e: PolicyEntry): boolean =>
    [...m.values()].some((r) => r.entry.precedence > e.precedence && r.key.direction === k.direction && (r.key.identity === k.identity || r.key.identity === 0) && coversKey(r.key, k) && (r.key.identity !== k.identity || policyKeyString(r.key) !== policyKeyString(k)));
  return new Map([...m].filter(([, r]) => !outranked(r.key, r.entry)));
}

/** Entries of a map under a broader same-trie key of higher precedence (the engine never writes one). */
function underHigherAncestor(m: ReadonlyMap<string, LookupResult>): string[] {
  const rows = [...m.values()];
  return rows.filter((r) => rows.some((u) => u !== r && u.key.identity === r.key.identity && u.key.direction === r.key.direction && coversKey(u.key, r.key) && u.entry.precedence > r.entry.precedence)).map((r) => policyKeyString(r.key));
}

function coversKey(outer: PolicyKey, inner: PolicyKey): boolean {
  if (outer.protocol === 0) return true;
  if (outer.protocol !== inner.protocol || outer.portPrefixLen > inner.portPrefixLen) return false;
  const shift = 16 - outer.portPrefixLen;
  return outer.portPrefixLen === 0 || outer.port >> shift === inner.port >> shift;
}

/** Whether a changed key sits under a same-trie key of higher precedence, with an entry of the other trie between (the corners). */
function hasCorner(old: Map<string, LookupResult>, next: Map<string, LookupResult>): boolean {
  const all = [...old.values(), ...next.values()];
  for (const ks of new Set([...old.keys(), ...next.keys()])) {
    const o = old.get(ks)?.entry;
    const n = next.get(ks)?.entry;
    if (o && n && entryEquals(o, n)) continue;
    const k = (old.get(ks) ?? next.get(ks))?.key as PolicyKey;
    const mine = Math.min(...[o, n].filter((e): e is PolicyEntry => e !== undefined).map((e) => e.precedence));
    for (const up of all) {
      if (up.key.identity !== k.identity || up.key.direction !== k.direction || policyKeyString(up.key) === ks || !coversKey(up.key, k) || up.entry.precedence <= mine) continue;
      const between = all.some((w) => (w.key.identity === 0) !== (k.identity === 0) && w.key.direction === k.direction && w.entry.precedence > mine && w.entry.precedence < up.entry.precedence && entryRank(w.entry) !== entryRank(up.entry));
      if (between) return true;
    }
  }
  return false;
}

/** One random transaction between two drawn states, checked flow by flow and map by map. */
function mapTransaction(oRows: Record<string, Rows>, nRows: Record<string, Rows>, t: CornerCounts): void {
  const old: Maps = new Map(Object.entries(oRows).map(([ep, r]) => [ep, insertionRule(r)]));
  const next: Maps = new Map(Object.entries(nRows).map(([ep, r]) => [ep, insertionRule(r)]));
  t.transactions++;
  if ([...old.keys()].some((ep) => hasCorner(old.get(ep) as Map<string, LookupResult>, next.get(ep) as Map<string, LookupResult>))) t.corners++;
  const deltas = [...old.keys()].flatMap((ep) => diffMaps(ep, old.get(ep) as Map<string, LookupResult>, next.get(ep) as Map<string, LookupResult>));
  const plan = planWrites(writesOf(deltas, old), 16384, (ep) => [...(old.get(ep) ?? new Map<string, LookupResult>()).values()]);
  const ids = new Map([['a', [A]], ['b', [B]]]);
  const flows = new FlowChecker(old, next, ids, [A, B, X]);
  const tighten = new FlowChecker(old, old, ids, [A, B, X]);
  let loosen: FlowChecker | undefined;
  for (const b of plan) {
    if (b.phase === 'loosen' && !loosen) {
      t.boundarySoft += flows.counts().soft;
      loosen = new FlowChecker(next, next, ids, [A, B, X], flows.state);
    }
    for (const d of b.ops) {
      const c = flows.apply(b.endpoint, d);
      t.hard += c.hard;
      t.drops += c.drops;
      t.phase += (loosen ?? tighten).apply(b.endpoint, d).hard;
    }
  }
  if (!loosen) t.boundarySoft += flows.counts().soft;
  for (const [ep, m] of next) for (const [ks, r] of m) expect(entryEquals(flows.state.get(ep)?.get(ks)?.entry, r.entry), `${ep} ${ks} after the plan`).toBe(true);
}

describe('fail-closed write order, random map states with tiers (the precedence corners)', () => {
  it('no prefix opens a flow, the boundary allows only what both states allow, every map keeps its phase bound', () => {
    const t: CornerCounts = { transactions: 0, corners: 0, hard: 0, boundarySoft: 0, phase: 0, drops: 0 };
    const state = fc.record({ a: mapRows('a'), b: mapRows('b') });
    const property = fc.property(state, state, (o, n) => {
      const before = { ...t };
      mapTransaction(o, n, t);
      // Also the transaction from N back to O, with the endpoints' batches in the other order.
      mapTransaction({ b: n.b, a: n.a }, { b: o.b, a: o.a }, t);
      expect(t.hard - before.hard, 'hard-rule violations').toBe(0);
      expect(t.boundarySoft - before.boundarySoft, 'soft-rule violations at the phase boundary').toBe(0);
      expect(t.phase - before.phase, 'a map below its phase bound').toBe(0);
    });
    const numRuns = Number(process.env.DISTILL_MAP_RUNS ?? (LONG ? 20_000 : 120));
    fc.assert(property, { numRuns, ...SEED });
    // A random seed can draw few corners (8 of 240 seen once; 28-46 usual): top up with more
    // random runs rather than let the coverage check below fail on an unlucky draw.
    for (let round = 0; round < 3 && t.corners <= t.transactions / 20 && process.env.DISTILL_SEED === undefined; round++) fc.assert(property, { numRuns });
    report.push(`write order (random map states): ${t.transactions} transactions, ${t.corners} with a precedence corner; hard ${t.hard}, boundary soft ${t.boundarySoft}, phase-bound breaks ${t.phase}, transient drops ${t.drops}`);
    expect(t.corners).toBeGreaterThan(t.transactions / 20);
  }, TIMEOUT);
});
