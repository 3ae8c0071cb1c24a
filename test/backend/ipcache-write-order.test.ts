import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { kernelIpcacheContent } from '../../src/backend/ipcache-content.js';
import { Engine } from '../../src/engine/engine.js';
import type { ChangeSet } from '../../src/engine/events.js';
import { op, Op, toEvent } from '../engine/gen.js';
import { Order, SteppedNode, Totals } from './ipcache-stepped-node.js';

/*
 * The fail-closed write order with the ipcache in it: random engine transactions (pods created,
 * relabelled and deleted, so identities change; policies; namespaces) are written through
 * `applyChangeSet` one operation at a time, the ipcache deltas at its phase boundary, and after
 * every operation each flow is decided as the datapath does: the peer's address through the
 * ipcache (longest prefix, else world) to an identity, then the endpoint's policy map. A flow's
 * rank: allow 0 < redirect 1 < deny 2; between two local pods, the higher of the source's egress
 * and the destination's ingress. No intermediate state may rank a flow below both the old and the
 * new state (allow what both deny, or skip a proxy both impose).
 */
const LONG = Boolean(process.env.DISTILL_LONG);
const RUNS = LONG ? 300 : 20;
const TIMEOUT = LONG ? 60 * 60_000 : 120_000;

function runHistories(order: Order, params: fc.Parameters<[Op[][]]>): Totals {
  const totals: Totals = { transactions: 0, identityChanges: 0, steps: 0, violations: 0 };
  fc.assert(
    fc.property(fc.array(fc.array(op, { minLength: 1, maxLength: 5 }), { minLength: 5, maxLength: 20 }), (txns) => {
      const engine = new Engine();
      const node = new SteppedNode(totals);
      for (const ops of txns) {
        const before = new Set(engine.endpoints());
        let cs: ChangeSet;
        try {
          cs = engine.apply(ops.map(toEvent));
        } catch {
          continue;
        }
        totals.transactions++;
        totals.identityChanges += cs.ipcache.filter((d) => d.op === 'upsert' && d.previous !== undefined).length;
        node.transaction(engine, cs, before, order);
        // The deltas, written at the /0 as the kernel takes them, leave the ipcache the agent reconciles to.
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
const line = (order: Order, t: Totals): string =>
  `ipcache write order (${order}): ${t.transactions} transactions, ${t.identityChanges} ipcache identity changes, ${t.steps} intermediate states, ${t.violations} flows opened${t.example ? ` (e.g. ${t.example})` : ''}`;

describe('fail-closed write order with the ipcache, every intermediate state of random transactions', () => {
  it('the ipcache written between the phases: no flow is opened that both the old and the new state close', () => {
    const t = runHistories('between phases', { numRuns: RUNS });
    report.push(line('between phases', t));
    expect(t.identityChanges).toBeGreaterThan(0);
    expect(t.violations).toBe(0);
  }, TIMEOUT);

  // Finding 1120 through the plain write path (no killed writer): both pods relabelled in one transaction.
  // Each side's policy denies the other under one state only; written one /32 at a time, the first pod to
  // move (new identity) met the other's old one, a pair whose maps (old a / new a egress, old b / new b
  // ingress: each tightened for both states) allowed it. Symmetric, so either write order opens one flow.
  it('1120: two local pods taking new identities in one transaction open no flow between their ipcache writes', () => {
    const totals: Totals = { transactions: 0, identityChanges: 0, steps: 0, violations: 0 };
    const node = new SteppedNode(totals);
    const engine = new Engine();
    const pod = (name: string, role: string) => toEvent({ k: 'pod', ns: 'n0', name, labels: { role }, ports: 0, local: true });
    const cnp = (name: string, subject: string, rule: Record<string, unknown>, dir: 'ingress' | 'egress') =>
      toEvent({ k: 'policy', manifest: { apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name, namespace: 'n0' }, spec: { endpointSelector: { matchLabels: { role: subject } }, ...rule, enableDefaultDeny: { [dir]: false } } } });
    const setup = [
      toEvent({ k: 'ns', name: 'n0', labels: {} }),
      pod('p0', 'x'),
      pod('p1', 'y'),
      // Old state: each pod's ingress denies the other; new state: each pod's egress denies the other.
      cnp('y-in', 'y', { ingressDeny: [{ fromEndpoints: [{ matchLabels: { role: 'x' } }] }] }, 'ingress'),
      cnp('x-in', 'x', { ingressDeny: [{ fromEndpoints: [{ matchLabels: { role: 'y' } }] }] }, 'ingress'),
      cnp('x2-out', 'x2', { egressDeny: [{ toEndpoints: [{ matchLabels: { role: 'y2' } }] }] }, 'egress'),
      cnp('y2-out', 'y2', { egressDeny: [{ toEndpoints: [{ matchLabels: { role: 'x2' } }] }] }, 'egress'),
    ];
    node.transaction(engine, engine.apply(setup), new Set(), 'between phases');
    const before = new Set(engine.endpoints());
    const cs = engine.apply([pod('p0', 'x2'), pod('p1', 'y2')]);
    expect(cs.ipcache.filter((d) => d.op === 'upsert' && d.previous !== undefined).map((d) => d.prefix).sort()).toEqual(['10.244.0.2/32', '10.244.0.3/32']);
    node.transaction(engine, cs, before, 'between phases');
    expect(totals.example).toBeUndefined();
    expect(totals.violations).toBe(0);
    expect(node.ipcache).toEqual(kernelIpcacheContent(engine));
  });

  it('the same check catches the ipcache written after the maps (fixed seed)', () => {
    const t = runHistories('after the maps', { numRuns: RUNS, seed: 20261129 });
    report.push(line('after the maps', t));
    expect(t.violations).toBeGreaterThan(0);
  }, TIMEOUT);

  it('and before the maps (fixed seed)', () => {
    const t = runHistories('before the maps', { numRuns: RUNS, seed: 20261129 });
    report.push(line('before the maps', t));
    expect(t.violations).toBeGreaterThan(0);
  }, TIMEOUT);
});
