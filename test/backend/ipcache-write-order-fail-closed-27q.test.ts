import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { kernelIpcacheContent } from '../../src/backend/ipcache-content.js';
import { Engine } from '../../src/engine/engine.js';
import type { ChangeSet, EngineEvent } from '../../src/engine/events.js';
import { UNALLOCATED_POD_IDENTITY } from '../../src/model/identity.js';
import { op, Op, toEvent } from '../engine/gen.js';
import { Order, SteppedNode, Totals } from './ipcache-stepped-node.js';

/*
 * Round 27q: pods held fail-closed (`Pod.failClosed`, the agent's reading of a pod the engine refuses or whose update
 * it cannot read) in the stepped write-order check of test/backend/ipcache-write-order.test.ts. gen.ts's random
 * transactions, each pod upsert held fail-closed or not at random, so pods move between their identity and the
 * unallocated number (and the deny of that number comes and goes in every map) both ways, locally and remotely. Each
 * operation is written one at a time, the ipcache between the phases as applyChangeSet does; no intermediate state may
 * rank a flow below both the old and the new state.
 */
const LONG = Boolean(process.env.DISTILL_LONG);
const RUNS = LONG ? 300 : 30;
const TIMEOUT = LONG ? 60 * 60_000 : 180_000;

const event = ([o, closed]: [Op, boolean]): EngineEvent => {
  const e = toEvent(o);
  return e.type === 'upsertPod' && closed ? { ...e, pod: { ...e.pod, failClosed: true } } : e;
};

function runHistories(order: Order, params: fc.Parameters<[[Op, boolean][][]]>): Totals & { toUnallocated: number; fromUnallocated: number } {
  const totals = { transactions: 0, identityChanges: 0, steps: 0, violations: 0, toUnallocated: 0, fromUnallocated: 0 };
  fc.assert(
    fc.property(fc.array(fc.array(fc.tuple(op, fc.boolean()), { minLength: 1, maxLength: 5 }), { minLength: 5, maxLength: 20 }), (txns) => {
      const engine = new Engine();
      const node = new SteppedNode(totals);
      for (const ops of txns) {
        const before = new Set(engine.endpoints());
        let cs: ChangeSet;
        try {
          cs = engine.apply(ops.map(event));
        } catch {
          continue;
        }
        totals.transactions++;
        const moved = cs.ipcache.filter((d) => d.op === 'upsert' && d.previous !== undefined);
        totals.identityChanges += moved.length;
        totals.toUnallocated += moved.filter((d) => d.identity === UNALLOCATED_POD_IDENTITY).length;
        totals.fromUnallocated += moved.filter((d) => d.previous === UNALLOCATED_POD_IDENTITY).length;
        node.transaction(engine, cs, before, order);
        expect(node.ipcache).toEqual(kernelIpcacheContent(engine));
      }
    }),
    params,
  );
  return totals;
}

const report: string[] = [];
afterAll(() => {
  if (report.length > 0) process.stderr.write(`${report.join('\n')}\n`);
});

describe('27q: fail-closed pods in the stepped write order', () => {
  it('the ipcache written between the phases: no flow is opened that both the old and the new state close', () => {
    const t = runHistories('between phases', { numRuns: RUNS });
    report.push(`fail-closed pods, between phases: ${t.transactions} transactions, ${t.toUnallocated} moves to 255, ${t.fromUnallocated} from 255, ${t.steps} states, ${t.violations} opened${t.example ? ` (e.g. ${t.example})` : ''}`);
    expect(t.toUnallocated).toBeGreaterThan(0);
    expect(t.fromUnallocated).toBeGreaterThan(0);
    expect(t.violations).toBe(0);
  }, TIMEOUT);

  it('the same check catches the ipcache written after the maps (fixed seed)', () => {
    const t = runHistories('after the maps', { numRuns: RUNS, seed: 20261202 });
    report.push(`fail-closed pods, after the maps: ${t.violations} opened`);
    expect(t.violations).toBeGreaterThan(0);
  }, TIMEOUT);
});
