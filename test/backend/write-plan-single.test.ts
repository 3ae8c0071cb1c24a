import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { MapDelta } from '../../src/engine/events.js';
import { LookupResult, PolicyEntry, PolicyKey, policyKeyString, PRECEDENCE_ALLOW, PRECEDENCE_DEFAULT_ALLOW, PRECEDENCE_DENY, PRECEDENCE_REDIRECT, passCopyPrecedence } from '../../src/model/policy-map.js';
import { MapWrite, planGeneral, planWrites } from '../../src/backend/write-plan.js';

/*
 * A map with one operation takes a shortcut (`planSingle`): it must plan exactly what the general
 * path plans, whatever the operation (new key, overwrite, delete; allow, deny, redirect, Admin and
 * Baseline tiers, Pass copies), the map's size against its capacity, and the other entries.
 */
const SEED = process.env.DISTILL_SEED === undefined ? {} : { seed: Number(process.env.DISTILL_SEED), ...(process.env.DISTILL_PATH ? { path: process.env.DISTILL_PATH } : {}) };

const keyArb: fc.Arbitrary<PolicyKey> = fc.oneof(
  fc.record({ identity: fc.constantFrom(0, 1000), direction: fc.constantFrom('ingress' as const, 'egress' as const), protocol: fc.constant(0), port: fc.constant(0), portPrefixLen: fc.constant(0) }),
  fc.record({ identity: fc.constantFrom(0, 1000), direction: fc.constantFrom('ingress' as const, 'egress' as const), protocol: fc.constantFrom(6, 17), port: fc.constantFrom(0, 80, 8080), portPrefixLen: fc.constant(16) }),
  fc.record({ identity: fc.constantFrom(0, 1000), direction: fc.constant('ingress' as const), protocol: fc.constant(6), port: fc.constant(0), portPrefixLen: fc.constantFrom(0, 1, 8) }),
);

const precedences = [
  PRECEDENCE_ALLOW,
  PRECEDENCE_DENY,
  PRECEDENCE_DEFAULT_ALLOW,
  PRECEDENCE_REDIRECT,
  3 * 0x10000 + 0xffff, // Admin deny
  3 * 0x10000 + 0xff01, // Admin allow
  5 * 0x10000 + 0xfe00, // Admin redirect band
  0x0001_0000 + 0xff01, // Baseline-level allow
  0x0001_0000 + 0xffff, // Baseline-level deny
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

describe('write plan: one operation', () => {
  it('the shortcut plans what the general path plans', () => {
    const seen = { tighten: 0, loosen: 0, transient: 0, fallback: 0 };
    fc.assert(
      fc.property(deltaArb, fc.array(fc.record({ key: keyArb, entry: entryArb }), { maxLength: 6 }), fc.integer({ min: 0, max: 3 }), (d, others, room) => {
        const current = new Map<string, LookupResult>();
        for (const o of others) current.set(policyKeyString(o.key), o);
        const ks = policyKeyString(d.key);
        if (d.op === 'delete' || d.previous !== undefined) current.set(ks, { key: d.key, entry: d.op === 'delete' ? d.entry : (d.previous as PolicyEntry) });
        else current.delete(ks);
        const write: MapWrite = { endpoint: 'a', deltas: [d], size: current.size };
        // Capacity from one short of the size (the general path falls back) to a little room.
        const capacity = Math.max(1, current.size - 1 + room);
        const batches = planWrites([write], capacity, () => current.values());
        const general = planGeneral(write, capacity, () => current.values());
        const tighten = batches.find((b) => b.phase === 'tighten');
        const loosen = batches.find((b) => b.phase === 'loosen');
        expect(tighten?.ops ?? []).toEqual(general.tighten);
        expect(loosen?.ops ?? []).toEqual(general.loosen);
        for (const b of batches) expect(b.mode).toBe(general.mode);
        if (general.mode !== 'normal') seen.fallback++;
        else if (general.tighten.length + general.loosen.length > 1) seen.transient++;
        else {
          // One operation in one phase, and no redirect key coming or going (those the general
          // path judges on the map's entries): the shortcut took it (its batch is the write's array).
          const redirectKey = d.entry.proxyPort !== 0 && (d.op === 'delete' || d.previous === undefined);
          if (!redirectKey) expect((tighten ?? loosen)?.ops).toBe(write.deltas);
          if (general.tighten.length === 1) seen.tighten++;
          else seen.loosen++;
        }
      }),
      { numRuns: 3000, ...SEED },
    );
    // The generator reaches every outcome of the general path.
    expect(seen.tighten).toBeGreaterThan(0);
    expect(seen.loosen).toBeGreaterThan(0);
    expect(seen.transient).toBeGreaterThan(0);
    expect(seen.fallback).toBeGreaterThan(0);
  });
});
