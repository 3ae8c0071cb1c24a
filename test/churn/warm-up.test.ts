import { describe, expect, it, vi } from 'vitest';
import { applyChangeSet } from '../../src/backend/backend.js';
import { MemoryBackend } from '../../src/backend/memory.js';
import { generateTrace } from '../../src/churn/profiles.js';
import { replay } from '../../src/churn/replay.js';
import { parseTrace } from '../../src/churn/trace.js';
import { warmUpEngine } from '../../src/churn/warm-up.js';
import { Engine } from '../../src/engine/engine.js';
import type { EngineEvent } from '../../src/engine/events.js';
import { comparableIpcache, comparableMaps } from '../../src/harness/cluster-sync.js';

/**
 * The start-up warm-up (perf22tail, docs/architecture.md "The warm-up"): scratch engines run the
 * churn paths once and are dropped. It must leave no trace in the caller's engine, in engines made
 * after it, in a backend or in a replay's results, and never throw.
 */
const trace = () => parseTrace(generateTrace({ profile: 'small', seed: 3, churnEvents: 40 }), 'small', { manifests: false });

function events(): { initial: EngineEvent[]; churn: EngineEvent[] } {
  const initial: EngineEvent[] = [];
  const churn: EngineEvent[] = [];
  let inChurn = false;
  for (const item of trace().items) {
    if (item.kind === 'phase') inChurn = item.name !== 'initial';
    else (inChurn ? churn : initial).push(item.event);
  }
  return { initial, churn };
}

/** Everything the engine shows a caller: maps, ipcache (identity numbers included), stats. */
const snapshot = (e: Engine) => ({ maps: comparableMaps(e), ipcache: comparableIpcache(e), ipcacheEntries: e.ipcache().map((x) => `${x.prefix}=${x.identity}`).sort(), stats: e.stats() });

function run(engine: Engine, backend: MemoryBackend, list: readonly EngineEvent[], each: boolean): void {
  if (!each) applyChangeSet(backend, engine.apply(list));
  else for (const ev of list) applyChangeSet(backend, engine.apply([ev]));
}

const dump = (b: MemoryBackend) => b.endpoints().sort().map((ep) => [ep, b.dump(ep)]);

describe('warmUpEngine', () => {
  it('runs every workload through (the refused transactions it means to), without an error, with either policy shape', () => {
    for (const policies of ['trace', 'manifest'] as const) {
      const w = warmUpEngine({ policies });
      expect(w.error).toBeUndefined();
      expect(w.events).toBeGreaterThan(400);
      expect(w.refused).toBe(2);
      expect(w.ms).toBeGreaterThan(0);
    }
  });

  it('leaves the caller\'s engine and backend as they were, and the next transaction computes what it would have', () => {
    const { initial, churn } = events();
    const mk = () => {
      const engine = new Engine();
      const backend = new MemoryBackend();
      run(engine, backend, initial, false);
      run(engine, backend, churn.slice(0, 20), true);
      return { engine, backend };
    };
    const plain = mk();
    const warmed = mk();
    const before = snapshot(warmed.engine);
    const backendBefore = dump(warmed.backend);
    expect(warmUpEngine().error).toBeUndefined();
    expect(snapshot(warmed.engine)).toEqual(before);
    expect(dump(warmed.backend)).toEqual(backendBefore);
    // The rest of the churn: the same change sets, maps and identity numbers as without the warm-up.
    for (const ev of churn.slice(20)) expect(warmed.engine.apply([ev])).toEqual(plain.engine.apply([ev]));
    expect(snapshot(warmed.engine)).toEqual(snapshot(plain.engine));
  });

  it('an engine made after it numbers identities and computes as one made before it', () => {
    const { initial, churn } = events();
    const before = new Engine();
    expect(warmUpEngine().error).toBeUndefined();
    const after = new Engine();
    for (const e of [before, after]) {
      e.apply(initial);
      for (const ev of churn) e.apply([ev]);
    }
    expect(snapshot(after)).toEqual(snapshot(before));
  });

  it('writes every scratch change set to a backend: maps changed by one operation and by several (perf32tail, 3460)', () => {
    // The churn's rare map-changing events otherwise run the write plan's paths for the first time
    // (`planSingle` never ran before the cilium-ci replay's first delta relabel).
    const spy = vi.spyOn(MemoryBackend.prototype, 'apply');
    try {
      const w = warmUpEngine();
      expect(w.error).toBeUndefined();
      const sizes = spy.mock.calls.map(([, ops]) => ops.length);
      expect(sizes.filter((n) => n === 1).length).toBeGreaterThan(20);
      expect(sizes.filter((n) => n > 1).length).toBeGreaterThan(20);
      expect(w.writes).toBe(sizes.reduce((a, n) => a + n, 0));
    } finally {
      spy.mockRestore();
    }
  });

  it('a workload that cannot run is reported, not thrown', () => {
    const w = warmUpEngine({ workload: [{ profile: 'no-such-profile', churn: 1 }] });
    expect(w.error).toMatch(/unknown profile "no-such-profile"/);
    expect(w.events).toBe(0);
  });
});

describe('replay with the warm-up', () => {
  it('reports warmUpMs as its own phase; every result but the times is the same as without it', () => {
    const strip = ({ eventsPerSec: _e, peakHeapBytes: _p, latencyUs, coldStart, warmUpMs: _w, ...rest }: ReturnType<typeof replay>) => ({
      ...rest,
      latency: Object.fromEntries(Object.entries(latencyUs).map(([t, l]) => [t, l.count])),
      coldStart: { events: coldStart.events, deltas: coldStart.deltas },
    });
    const phases: string[] = [];
    const withWarmUp = replay(trace(), { mode: 'incremental', backend: new MemoryBackend(), warmUp: true, verifyEvery: 10, onProgress: (_d, _t, phase) => phases.push(phase) });
    const without = replay(trace(), { mode: 'incremental', backend: new MemoryBackend(), verifyEvery: 10 });
    expect(withWarmUp.warmUpMs).toBeGreaterThan(0);
    expect('warmUpMs' in without).toBe(false);
    expect(strip(withWarmUp)).toEqual(strip(without));
    expect([...new Set(phases)]).toEqual(['cold start', 'warm-up', 'churn']);
    expect(phases.indexOf('warm-up')).toBeGreaterThan(phases.lastIndexOf('cold start'));
  });
});
