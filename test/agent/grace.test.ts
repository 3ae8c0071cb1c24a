import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterAll, describe, expect, it } from 'vitest';
import { Agent, AgentTimers } from '../../src/agent/agent.js';
import { MemoryBackend } from '../../src/backend/memory.js';

/**
 * `Agent` on a recorded watch stream with a fake clock and fake timers: a pod being deleted
 * gracefully stays an endpoint (its map, its peers' entries) until its deletionTimestamp; the one
 * timer the agent keeps fires then and the pod goes in one transaction, like a DELETED event.
 */
const T0 = Date.parse('2026-11-29T10:00:00Z');
const work = mkdtempSync(join(tmpdir(), 'distill-grace-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

type Obj = Record<string, unknown>;
const pod = (name: string, ip: string, rv: number, deleteAt?: number): Obj => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name, namespace: 'shop', resourceVersion: String(rv), labels: { app: name }, ...(deleteAt !== undefined ? { deletionTimestamp: new Date(deleteAt).toISOString(), deletionGracePeriodSeconds: 30 } : {}) },
  spec: { nodeName: 'node-a', containers: [{ name: 'c', image: 'i', ports: [{ containerPort: 80 }] }] },
  status: { phase: 'Running', podIP: ip, podIPs: [{ ip }] },
});
const stream = (items: { type: string; object: Obj }[]): string => {
  const file = join(work, `s${Math.random().toString(36).slice(2)}.json`);
  writeFileSync(file, items.map((i) => JSON.stringify(i, null, 2)).join('\n'));
  return file;
};

/** Timers that only fire when the test says so. */
class FakeTimers implements AgentTimers {
  readonly pending = new Map<number, { fn: () => void; ms: number }>();
  private next = 1;
  cleared = 0;
  setTimeout(fn: () => void, ms: number): unknown {
    this.pending.set(this.next, { fn, ms });
    return this.next++;
  }
  clearTimeout(handle: unknown): void {
    if (this.pending.delete(handle as number)) this.cleared++;
  }
  fire(): void {
    expect(this.pending.size).toBe(1);
    const [handle, t] = [...this.pending][0]!;
    this.pending.delete(handle);
    t.fn();
  }
}

const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('agent: deletion grace period', () => {
  it('removes a terminating pod when its deletionTimestamp passes, in one transaction', async () => {
    let now = T0;
    const timers = new FakeTimers();
    const backend = new MemoryBackend();
    const policy = { apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name: 'p', namespace: 'shop', resourceVersion: '5' }, spec: { endpointSelector: { matchLabels: { app: 'web' } }, ingress: [{ fromEndpoints: [{ matchLabels: { app: 'db' } }] }] } };
    const file = stream([
      { type: 'ADDED', object: { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop', resourceVersion: '1' } } },
      { type: 'ADDED', object: pod('web', '10.0.0.2', 2) },
      { type: 'ADDED', object: pod('db', '10.0.0.3', 3) },
      { type: 'ADDED', object: policy },
      { type: 'MODIFIED', object: pod('db', '10.0.0.3', 6, T0 + 30_000) },
    ]);
    const agent = new Agent({ node: 'node-a', watch: [file], backend, logger: pino({ level: 'silent' }), registry: new Registry(), exitAtEof: true, now: () => now, timers });
    await agent.run();
    expect(backend.endpoints().sort()).toEqual(['shop/db', 'shop/web']);
    const dbIdentity = agent.engine.identityOfPod('shop/db');
    expect(backend.dump('shop/web').some((r) => r.key.identity === dbIdentity)).toBe(true);
    expect([...timers.pending.values()].map((t) => t.ms)).toEqual([30_000]);
    const before = { ...agent.summary };

    now = T0 + 30_000;
    timers.fire();
    await turn();
    expect(backend.endpoints()).toEqual(['shop/web']);
    expect(agent.engine.identityOfPod('shop/db')).toBeUndefined();
    expect(backend.dump('shop/web').some((r) => r.key.identity === dbIdentity)).toBe(false);
    expect(agent.summary.transactions - before.transactions).toBe(1);
    expect(agent.summary.events - before.events).toBe(1);
    expect(timers.pending.size).toBe(0);
    await agent.stop();
  });

  it('keeps one timer for the earliest deadline, re-arms it, and clears it on stop', async () => {
    let now = T0;
    const timers = new FakeTimers();
    const backend = new MemoryBackend();
    const file = stream([
      { type: 'ADDED', object: { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop', resourceVersion: '1' } } },
      { type: 'ADDED', object: pod('a', '10.0.0.2', 2, T0 + 60_000) },
      { type: 'ADDED', object: pod('b', '10.0.0.3', 3, T0 + 10_000) },
      { type: 'ADDED', object: pod('c', '10.0.0.4', 4) },
    ]);
    const agent = new Agent({ node: 'node-a', watch: [file], backend, logger: pino({ level: 'silent' }), registry: new Registry(), exitAtEof: true, now: () => now, timers });
    await agent.run();
    expect([...timers.pending.values()].map((t) => t.ms)).toEqual([10_000]);
    // Fired early (a clock that drifted): nothing is due, the same deadline is re-armed.
    now = T0 + 4_000;
    timers.fire();
    await turn();
    expect(backend.endpoints().sort()).toEqual(['shop/a', 'shop/b', 'shop/c']);
    expect([...timers.pending.values()].map((t) => t.ms)).toEqual([6_000]);
    now = T0 + 10_000;
    timers.fire();
    await turn();
    expect(backend.endpoints().sort()).toEqual(['shop/a', 'shop/c']);
    expect([...timers.pending.values()].map((t) => t.ms)).toEqual([50_000]);
    await agent.stop();
    expect(timers.pending.size).toBe(0);
    expect(timers.cleared).toBe(1);
  });
});
