import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.js';
import { ChangeSet, EngineError, EngineEvent, EngineFailedError } from '../../src/engine/events.js';
import { initialEvents } from '../../src/harness/cluster-sync.js';
import { policyKeyString } from '../../src/model/policy-map.js';
import { labelSetKey } from '../../src/model/labels.js';
import { ClusterState } from '../../src/model/cluster.js';
import { INITIAL_CLUSTER, normalizedMaps, op, Op, toEventSharedAddress, trackLocality, modelAfter } from './gen.js';
import { fcReplay, fcRuns } from '../fc-knobs.js';

const LONG = Boolean(process.env.DISTILL_LONG);

class InjectedFault extends Error {}

/**
 * Everything observable, exactly: map entries with their real identity numbers and proxy ports,
 * L7 rows, redirects, identities with labels, the ipcache (who owns an IP two pods claim), sizes and counters.
 */
function exactState(engine: Engine): string {
  const endpoints = engine.endpoints().map((ep) => ({
    ep,
    map: [...engine.mapState(ep).values()].map((r) => `${policyKeyString(r.key)} ${JSON.stringify(r.entry)}`).sort(),
    l7: engine.l7Table(ep).map((r) => JSON.stringify(r)).sort(),
    redirects: engine.redirects(ep),
    enforced: [engine.enforcedBy(ep, 'ingress').length, engine.enforcedBy(ep, 'egress').length],
  }));
  const ids = engine.identities().map((id) => `${id} ${labelSetKey(engine.identityLabels(id) ?? [])}`);
  return JSON.stringify({ endpoints, ids, ipcache: engine.ipcache(), sizes: engine.sizes(), stats: engine.stats() });
}

/** A hook that throws at its n-th call (counting from 1), or never when `at` is 0. */
function faultAt(state: { at: number; calls: number; fired: string | null; error: () => Error }): (point: string) => void {
  return (point) => {
    if (point.startsWith('rebuild:')) return;
    state.calls++;
    if (state.at > 0 && state.calls === state.at) {
      state.fired = point;
      throw state.error();
    }
  };
}

const transaction = fc.array(op, { minLength: 1, maxLength: 3 });
let injected = 0;
const points = new Map<string, number>();

describe('an exception anywhere inside a transaction changes nothing', () => {
  it('faults injected at random points: the engine is exactly as before, and the next transactions equal a fresh engine', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(transaction, fc.integer({ min: 0, max: 30 }), fc.boolean()), { minLength: 4, maxLength: 25 }), (txns) => {
        const hook = { at: 0, calls: 0, fired: null as string | null, error: (): Error => new InjectedFault('injected') };
        const engine = new Engine({ faultHook: faultAt(hook) });
        let state: ClusterState = INITIAL_CLUSTER;
        const local = new Map<string, boolean>();
        for (const [ops, at, typeError] of txns as [Op[], number, boolean][]) {
          const events: EngineEvent[] = ops.map(toEventSharedAddress);
          const next = modelAfter(state, events);
          const before = exactState(engine);
          hook.calls = 0;
          hook.at = at;
          hook.fired = null;
          hook.error = () => (typeError ? new TypeError('injected TypeError') : new InjectedFault('injected'));
          let cs: ChangeSet | null = null;
          try {
            cs = engine.apply(events);
          } catch (e) {
            if (next === null && e instanceof EngineError) {
              expect(exactState(engine)).toBe(before);
              continue;
            }
            expect(hook.fired, `unexpected ${String(e)}`).not.toBeNull();
            expect(e).toBeInstanceOf(typeError ? TypeError : InjectedFault);
            injected++;
            const point = String(hook.fired);
            points.set(point, (points.get(point) ?? 0) + 1);
            // Byte for byte the state before the transaction.
            expect(exactState(engine)).toBe(before);
          }
          hook.at = 0;
          if (next === null) continue;
          // A refused transaction is then applied without a fault; either way the result must be
          // the one a fresh engine computes.
          if (cs === null) cs = engine.apply(events);
          state = next;
          for (const e of events) trackLocality(local, state, e);
          const fresh = new Engine();
          fresh.apply(initialEvents(state, (p) => local.get(`${p.namespace}/${p.name}`) ?? false));
          expect(normalizedMaps(engine)).toEqual(normalizedMaps(fresh));
        }
      }),
      { numRuns: fcRuns(LONG ? 1000 : 120), ...fcReplay() },
    );
    expect(injected).toBeGreaterThan(200);
    for (const p of ['event', 'acquireIdentity', 'contribute', 'settle', 'emit', 'attachEndpoint', 'attachUnit']) expect(points.get(p) ?? 0, `faults at ${p}`).toBeGreaterThan(0);
  }, LONG ? 3_600_000 : 120_000);

  it('deltas after a recovered fault are relative to the state before it', () => {
    const hook = { at: 0, calls: 0, fired: null as string | null, error: (): Error => new TypeError('boom') };
    const engine = new Engine({ faultHook: faultAt(hook) });
    const ns: EngineEvent = { type: 'upsertNamespace', name: 'x', labels: {} };
    engine.apply([ns]);
    const pod = (name: string, ip: string, labels: Record<string, string>): EngineEvent => ({
      type: 'upsertPod',
      local: true,
      pod: { namespace: 'x', name, labels, ip: { family: 'ipv4', value: BigInt(ip.split('.').reduce((a, b) => a * 256 + Number(b), 0)), text: ip }, serviceAccount: 'default', ports: [] },
    });
    const first = engine.apply([pod('a', '10.0.0.1', { app: 'a' })]);
    expect(first.endpointsAdded).toEqual(['x/a']);
    hook.calls = 0;
    hook.at = 2;
    expect(() => engine.apply([pod('b', '10.0.0.2', { app: 'b' })])).toThrow(TypeError);
    expect(engine.endpoints()).toEqual(['x/a']);
    hook.at = 0;
    const again = engine.apply([pod('b', '10.0.0.2', { app: 'b' })]);
    expect(again.endpointsAdded).toEqual(['x/b']);
    expect(again.deltas.every((d) => d.endpoint === 'x/b')).toBe(true);
  });

  it('an engine that cannot rebuild itself refuses all further work', () => {
    let failRebuild = false;
    let armed = false;
    const engine = new Engine({
      faultHook: (point) => {
        if (point.startsWith('rebuild:') ? failRebuild : armed) throw new Error(`fault at ${point}`);
      },
    });
    engine.apply([{ type: 'upsertNamespace', name: 'x', labels: {} }]);
    armed = true;
    failRebuild = true;
    expect(() => engine.apply([{ type: 'upsertNamespace', name: 'y', labels: {} }])).toThrow(/fault at event/);
    armed = false;
    failRebuild = false;
    expect(() => engine.apply([{ type: 'upsertNamespace', name: 'y', labels: {} }])).toThrow(EngineFailedError);
  });
});

afterAll(() => {
  process.stdout.write(`fault injection: ${injected} faults injected; by point: ${JSON.stringify(Object.fromEntries(points))}\n`);
});
