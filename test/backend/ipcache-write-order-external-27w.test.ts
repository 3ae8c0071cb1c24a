import { randomBytes } from 'node:crypto';
import { mkdirSync, rmSync } from 'node:fs';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { bpfUnavailableReason } from '../../src/backend/bpf.js';
import { KernelIpcache } from '../../src/backend/ipcache.js';
import { kernelIpcacheContent } from '../../src/backend/ipcache-content.js';
import { Engine } from '../../src/engine/engine.js';
import type { ChangeSet, EngineEvent } from '../../src/engine/events.js';
import { namespaceWithDefaults } from '../../src/model/cluster.js';
import { podIdentityLabels, securityLabels } from '../../src/model/identity.js';
import { needsIdentitySplits, op, Op, toEvent } from '../engine/gen.js';
import { Order, SteppedNode, Totals } from './ipcache-stepped-node.js';

/*
 * Review 27w, finding 2328 (docs/attack-findings-27v.md left it open): the stepped write-order check of
 * ipcache-write-order.test.ts, over an engine whose identities come from outside (`identitySource: 'external'`,
 * the agent with --identities crd|etcd), fed CiliumIdentity events (upsertIdentity/deleteIdentity) and
 * CiliumEndpoint events (upsertEndpoint/deleteEndpoint) among gen.ts's pods, namespaces and policies.
 * A pod's address then moves between pending (reserved init), 255 (the fail-closed number), a number its
 * labels' identity gives and a number its endpoint names, and numbers are created and deleted in the same
 * transactions as the maps that select them. Every operation of every transaction is written one at a time
 * (the ipcache between the phases, as applyChangeSet does); after each, no flow ranks below both the old and the
 * new state. As in the local test, writing the ipcache after or before the maps must be caught (the check can fail).
 */
const LONG = Boolean(process.env.DISTILL_LONG);
const RUNS = LONG ? 300 : 25;
const TIMEOUT = LONG ? 60 * 60_000 : 180_000;

/** Cluster identity numbers the histories create, delete and name in endpoints. */
const IDS = [300, 301, 302, 303];
/** Endpoint numbers: the pool, plus reserved and never-created ones (each must map to the fail-closed 255 or be refused). */
const ENDPOINT_IDS = [...IDS, 1, 2, 255, 999, 70000];
const NAMESPACES = ['n0', 'n1', 'n2'];
const POD_NAMES = ['p0', 'p1', 'p2', 'p3'];

type ExtOp =
  | { readonly k: 'gen'; readonly op: Op }
  /** A number for the labels a pod has now (`stale`: labels it may not have). */
  | { readonly k: 'id'; readonly id: number; readonly ns: string; readonly name: string; readonly stale: Record<string, string> | null }
  | { readonly k: 'delId'; readonly id: number }
  /** A pod upserted and a number for its labels in the same batch (the usual order of a new pod). */
  | { readonly k: 'podId'; readonly op: Op; readonly id: number }
  | { readonly k: 'cep'; readonly ns: string; readonly name: string; readonly id: number }
  | { readonly k: 'delCep'; readonly ns: string; readonly name: string };

const nsName = fc.constantFrom(...NAMESPACES);
const podName = fc.constantFrom(...POD_NAMES);
const extOp: fc.Arbitrary<ExtOp> = fc.oneof(
  { weight: 6, arbitrary: op.filter((o) => !needsIdentitySplits(o)).map((o) => ({ k: 'gen' as const, op: o })) },
  {
    weight: 4,
    arbitrary: fc.record({
      k: fc.constant('id' as const),
      id: fc.constantFrom(...IDS),
      ns: nsName,
      name: podName,
      stale: fc.option(fc.record({ app: fc.constantFrom('web', 'db', 'api'), tier: fc.constantFrom('front', 'back') }, { requiredKeys: [] }), { freq: 4 }),
    }),
  },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('delId' as const), id: fc.constantFrom(...IDS) }) },
  { weight: 6, arbitrary: fc.record({ k: fc.constant('podId' as const), op: op.filter((o) => o.k === 'pod'), id: fc.constantFrom(...IDS) }) },
  { weight: 4, arbitrary: fc.record({ k: fc.constant('cep' as const), ns: nsName, name: podName, id: fc.constantFrom(...ENDPOINT_IDS) }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('delCep' as const), ns: nsName, name: podName }) },
);

/** What the conversion needs of the cluster: namespaces' and pods' labels as the accepted events left them. */
interface Seen {
  readonly ns: Map<string, Record<string, string>>;
  readonly pods: Map<string, Record<string, string>>;
  readonly ids: Set<number>;
}

function podIp(ns: string, name: string): EngineEvent & { type: 'upsertPod' } {
  const e = toEvent({ k: 'pod', ns, name, labels: {}, ports: 0, local: true });
  if (e.type !== 'upsertPod') throw new Error('toEvent: a pod op gave no pod');
  return e;
}

/** The engine events of `o`, read against (and updating) what the batch has seen so far (none: a delete of no number). */
function toExtEvents(o: ExtOp, seen: Seen): EngineEvent[] {
  if (o.k === 'podId' && o.op.k === 'pod') return [toExtEvent({ k: 'gen', op: o.op }, seen), toExtEvent({ k: 'id', id: o.id, ns: o.op.ns, name: o.op.name, stale: null }, seen)].flatMap((e) => e ?? []);
  const e = toExtEvent(o, seen);
  return e === null ? [] : [e];
}

function toExtEvent(o: ExtOp, seen: Seen): EngineEvent | null {
  switch (o.k) {
    case 'podId':
      throw new Error('podId: see toExtEvents');
    case 'gen': {
      const g = o.op;
      if (g.k === 'ns') seen.ns.set(g.name, g.labels);
      if (g.k === 'pod') seen.pods.set(`${g.ns}/${g.name}`, g.labels);
      if (g.k === 'delPod') seen.pods.delete(`${g.ns}/${g.name}`);
      return toEvent(g);
    }
    case 'id': {
      const labels = o.stale ?? seen.pods.get(`${o.ns}/${o.name}`) ?? {};
      const pod = { ...podIp(o.ns, o.name).pod, labels };
      seen.ids.add(o.id);
      return { type: 'upsertIdentity', id: o.id, labels: securityLabels(podIdentityLabels(pod, namespaceWithDefaults(o.ns, seen.ns.get(o.ns) ?? {}).labels)) };
    }
    case 'delId':
      // A delete of a number that does not exist refuses the batch: left out, so the batch's other events count.
      return seen.ids.delete(o.id) ? { type: 'deleteIdentity', id: o.id } : null;
    case 'cep':
      return { type: 'upsertEndpoint', namespace: o.ns, name: o.name, identity: o.id, ips: podIp(o.ns, o.name).pod.ips ?? [podIp(o.ns, o.name).pod.ip] };
    case 'delCep':
      return { type: 'deleteEndpoint', namespace: o.ns, name: o.name };
  }
}

const unavailable = bpfUnavailableReason();
if (unavailable && process.env.DISTILL_REQUIRE_BPF === '1') throw new Error(`DISTILL_REQUIRE_BPF=1 but ${unavailable}`);
if (unavailable) process.stderr.write(`SKIPPING the kernel ipcache write-order test: ${unavailable}\n`);
const kernel = unavailable ? describe.skip : describe;
const PIN = `/sys/fs/bpf/distill-test-27w-${randomBytes(6).toString('hex')}`;
afterAll(() => rmSync(PIN, { recursive: true, force: true }));

interface ExtTotals extends Totals {
  /** Transactions with an identity or endpoint event that moved some address in the ipcache. */
  externalMoves: number;
  /** Of those, transactions with a CiliumEndpoint event. */
  endpointMoves: number;
  /** Kernel runs: addresses the kernel's lookup resolved otherwise than the model's longest-prefix walk. */
  kernelDisagreements: number;
}

function runHistories(order: Order, params: fc.Parameters<[ExtOp[][]]>, inKernel = false): ExtTotals {
  const totals: ExtTotals = { transactions: 0, identityChanges: 0, steps: 0, violations: 0, externalMoves: 0, endpointMoves: 0, kernelDisagreements: 0 };
  fc.assert(
    fc.property(fc.array(fc.array(extOp, { minLength: 1, maxLength: 5 }), { minLength: 5, maxLength: 20 }), (txns) => {
      const engine = new Engine({ identitySource: 'external' });
      const ipcache = inKernel ? KernelIpcache.fresh(PIN) : undefined;
      try {
        run(engine, new SteppedNode(totals, ipcache), txns);
        if (ipcache) {
          // Read back from the kernel by a second opener: what the maps hold is the engine's ipcache.
          const again = new KernelIpcache(PIN);
          try {
            expect(new Map(again.entries())).toEqual(kernelIpcacheContent(engine));
          } finally {
            again.close();
          }
        }
      } finally {
        ipcache?.close();
      }
    }),
    params,
  );
  return totals;

  function run(engine: Engine, node: SteppedNode, txns: ExtOp[][]): void {
    let seen: Seen = { ns: new Map(NAMESPACES.map((n) => [n, {}])), pods: new Map(), ids: new Set() };
    // The namespaces first, so pods, endpoints and policies in them are taken.
    node.transaction(engine, engine.apply(NAMESPACES.map((name) => ({ type: 'upsertNamespace', name, labels: {} }))), new Set(), order);
    for (const ops of txns) {
      const before = new Set(engine.endpoints());
      const next: Seen = { ns: new Map(seen.ns), pods: new Map(seen.pods), ids: new Set(seen.ids) };
      let cs: ChangeSet;
      try {
        cs = engine.apply(ops.flatMap((o) => toExtEvents(o, next)));
      } catch {
        continue;
      }
      seen = next;
      totals.transactions++;
      const moved = cs.ipcache.filter((d) => d.op === 'upsert' && d.previous !== undefined).length;
      totals.identityChanges += moved;
      if (moved > 0 && ops.some((o) => o.k !== 'gen')) totals.externalMoves++;
      if (moved > 0 && ops.some((o) => o.k === 'cep' || o.k === 'delCep')) totals.endpointMoves++;
      node.transaction(engine, cs, before, order);
      expect(node.ipcache).toEqual(kernelIpcacheContent(engine));
    }
    totals.kernelDisagreements += node.kernelDisagreements;
  }
}

const report: string[] = [];
afterAll(() => {
  if (report.length > 0) process.stderr.write(`${report.join('\n')}\n`);
});
const line = (order: Order, t: ExtTotals): string =>
  `ipcache write order, external identities (${order}): ${t.transactions} transactions, ${t.identityChanges} ipcache identity changes (${t.externalMoves} transactions with identity or endpoint events moving some, ${t.endpointMoves} with endpoint events), ${t.steps} intermediate states, ${t.violations} flows opened${t.example ? ` (e.g. ${t.example})` : ''}`;

describe('review 27w (2328): fail-closed write order with external identities and CiliumEndpoint events', () => {
  it('the ipcache written between the phases: no flow is opened that both the old and the new state close', () => {
    const t = runHistories('between phases', { numRuns: RUNS });
    report.push(line('between phases', t));
    expect(t.externalMoves).toBeGreaterThan(0);
    expect(t.endpointMoves).toBeGreaterThan(0);
    expect(t.violations).toBe(0);
  }, TIMEOUT);

  it('the same check catches the ipcache written after the maps (fixed seed)', () => {
    const t = runHistories('after the maps', { numRuns: RUNS, seed: 20261202 });
    report.push(line('after the maps', t));
    expect(t.violations).toBeGreaterThan(0);
  }, TIMEOUT);

  it('and before the maps (fixed seed)', () => {
    const t = runHistories('before the maps', { numRuns: RUNS, seed: 20261202 });
    report.push(line('before the maps', t));
    expect(t.violations).toBeGreaterThan(0);
  }, TIMEOUT);
});

kernel('review 27w (2328): the same histories through a real kernel ipcache (bpf LPM tries, each write one step)', () => {
  it('the ipcache written between the phases: no flow opened, every address as the model resolves it, the maps read back as the engine says', () => {
    mkdirSync(PIN, { recursive: true });
    const t = runHistories('between phases', { numRuns: RUNS, seed: 20261203 }, true);
    report.push(`kernel ${line('between phases', t)}, ${t.kernelDisagreements} kernel lookups unlike the model`);
    expect(t.endpointMoves).toBeGreaterThan(0);
    expect(t.kernelDisagreements).toBe(0);
    expect(t.violations).toBe(0);
  }, TIMEOUT);

  it('and catches the ipcache written after the maps (fixed seed)', () => {
    mkdirSync(PIN, { recursive: true });
    const t = runHistories('after the maps', { numRuns: RUNS, seed: 20261202 }, true);
    report.push(`kernel ${line('after the maps', t)}`);
    expect(t.violations).toBeGreaterThan(0);
  }, TIMEOUT);
});
