import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterAll, describe, expect, it } from 'vitest';
import { Agent, AgentTimers } from '../../src/agent/agent.js';
import { BackendError, MapBackend, WriteStats } from '../../src/backend/backend.js';
import { backendLookup } from '../../src/backend/lookup.js';
import { MemoryBackend } from '../../src/backend/memory.js';
import type { MapDelta } from '../../src/engine/events.js';

/**
 * `Agent` on a backend whose writes fail until told otherwise: a failing write and the reconcile
 * after it are logged and counted, the agent keeps running (before: the reconcile's error left
 * the event loop callback and the process exited), retries with a growing delay, and the maps
 * are never looser than the old policy meanwhile. Once writes succeed, a retry brings them to the engine's.
 */
const work = mkdtempSync(join(tmpdir(), 'distill-agent-wfail-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

type Obj = Record<string, unknown>;
const pod = (name: string, app: string, ip: string, rv: number): Obj => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name, namespace: 'ns', resourceVersion: String(rv), labels: { app } },
  spec: { nodeName: 'node-a', containers: [{ name: 'c', image: 'i' }] },
  status: { phase: 'Running', podIP: ip, podIPs: [{ ip }] },
});
const policy = (name: string, rv: number, rule: Obj): Obj => ({
  apiVersion: 'cilium.io/v2',
  kind: 'CiliumNetworkPolicy',
  metadata: { name, namespace: 'ns', resourceVersion: String(rv) },
  spec: { endpointSelector: { matchLabels: { app: 'a' } }, ...rule },
});
const ALLOW_80 = policy('allow', 3, { ingress: [{ fromEntities: ['all'], toPorts: [{ ports: [{ port: '80', protocol: 'TCP' }] }] }] });
const DENY_ALL = policy('deny', 5, { ingressDeny: [{ fromEntities: ['all'] }] });

/** A memory backend whose writes throw (ENOSPC) while `failing`; every write is checked against `watch`. */
class FlakyBackend {
  readonly maps = new MemoryBackend();
  failing = false;
  writes = 0;
  readonly backend: MapBackend = Object.assign(Object.create(this.maps) as MapBackend, {
    apply: (endpoint: string, deltas: readonly MapDelta[]): WriteStats => {
      if (this.failing) throw new BackendError(`policy map of ${endpoint}: injected failure`, endpoint, 0, 28);
      this.writes++;
      return this.maps.apply(endpoint, deltas);
    },
  });
}

class FakeTimers implements AgentTimers {
  readonly pending = new Map<number, { fn: () => void; ms: number }>();
  private next = 1;
  setTimeout(fn: () => void, ms: number): unknown {
    this.pending.set(this.next, { fn, ms });
    return this.next++;
  }
  clearTimeout(handle: unknown): void {
    this.pending.delete(handle as number);
  }
  fire(): number[] {
    const due = [...this.pending.values()];
    this.pending.clear();
    for (const t of due) t.fn();
    return due.map((t) => t.ms);
  }
}

const stream = (items: Obj[]): string => {
  const file = join(work, `s${Math.random().toString(36).slice(2)}.json`);
  writeFileSync(file, items.map((object) => JSON.stringify({ type: 'ADDED', object })).join('\n'));
  return file;
};

describe('agent: a map write that keeps failing', () => {
  it('is logged, counted and retried with backoff; the agent keeps running and the maps never loosen', async () => {
    const flaky = new FlakyBackend();
    const timers = new FakeTimers();
    const lines: string[] = [];
    const logger = pino({ level: 'info' }, { write: (s: string) => void lines.push(s) });
    const registry = new Registry();
    const ns: Obj = { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'ns', resourceVersion: '1', labels: {} } };
    const watch = [stream([ns, pod('a', 'a', '10.0.0.1', 2), ALLOW_80])];
    const agent = new Agent({ node: 'node-a', watch, backend: flaky.backend, logger, registry, exitAtEof: true, timers });
    await agent.run();
    const world = 2;
    const admits = (): boolean => {
      const v = backendLookup(flaky.maps, 'ns/a', world, 'ingress', 6, 80);
      return v !== undefined && !v.entry.deny;
    };
    expect(admits()).toBe(true);

    // A new deny whose write fails, and the reconcile after it too.
    flaky.failing = true;
    agent.mirror.observe({ type: 'ADDED', object: DENY_ALL }, watch[0]!);
    expect(() => agent.flush()).not.toThrow();
    expect(agent.summary.writeFailures).toBe(2);
    expect(lines.some((l) => l.includes('reconciling the maps with the engine failed'))).toBe(true);
    expect(await registry.getSingleMetricAsString('distill_map_write_failures_total')).toMatch(/stage="reconcile"} 1/);
    // Retries back off; each fails again without throwing out of the timer.
    const delays: number[] = [];
    for (let i = 0; i < 4; i++) delays.push(...timers.fire());
    expect(delays).toEqual([1000, 2000, 4000, 8000]);
    expect(agent.summary.writeFailures).toBe(6);
    expect(admits(), 'the maps keep the old policy: never looser than old and new').toBe(true);

    // A transaction while the maps lag the engine is one more retry (a reconcile), not a delta write.
    agent.mirror.observe({ type: 'ADDED', object: pod('b', 'b', '10.0.0.2', 6) }, watch[0]!);
    expect(() => agent.flush()).not.toThrow();
    expect(agent.summary.writeFailures).toBe(7);

    // Writes work again: the next retry brings the maps to the engine's, and the backoff stops.
    flaky.failing = false;
    timers.fire();
    expect(admits(), 'the deny is in force').toBe(false);
    expect(flaky.maps.endpoints()).toEqual(['ns/a', 'ns/b']);
    expect(timers.pending.size).toBe(0);
    expect(agent.summary.writeFailures).toBe(7);
    await agent.stop();
  });
});
