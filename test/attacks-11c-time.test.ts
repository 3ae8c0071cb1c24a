import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterAll, describe, expect, it } from 'vitest';
import { Agent, AgentTimers } from '../src/agent/agent.js';
import { MemoryBackend } from '../src/backend/memory.js';
import { ClusterMirror } from '../src/k8s/mirror.js';
import { WatchStreamParser } from '../src/k8s/watch.js';

/** Attack round 11c: the agent's clocks and timers (docs/attack-findings-11c.md). */
type Obj = Record<string, unknown>;
const T0 = Date.parse('2026-11-30T10:00:00Z');
const HOUR = 3_600_000;
const work = mkdtempSync(join(tmpdir(), 'distill-11c-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const ns = { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop', resourceVersion: '1' } };
const pod = (name: string, ip: string, rv: number, deleteAt?: number): Obj => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name, namespace: 'shop', resourceVersion: String(rv), labels: { app: name }, ...(deleteAt !== undefined ? { deletionTimestamp: new Date(deleteAt).toISOString(), deletionGracePeriodSeconds: 30 } : {}) },
  spec: { nodeName: 'node-a', containers: [{ name: 'c', image: 'i' }] },
  status: { phase: 'Running', podIP: ip, podIPs: [{ ip }] },
});
const stream = (items: { type: string; object: Obj }[]): string => {
  const file = join(work, `s${Math.random().toString(36).slice(2)}.json`);
  writeFileSync(file, items.map((i) => JSON.stringify(i)).join('\n'));
  return file;
};

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
  fire(): void {
    expect(this.pending.size).toBe(1);
    const [handle, t] = [...this.pending][0]!;
    this.pending.delete(handle);
    t.fn();
  }
}
const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('340: an NTP step back does not keep a deleted pod (its IP) past its grace period', () => {
  it('mirror: the deadline comes after the grace period in real time, not when the wall clock catches up', () => {
    let wall = T0;
    let mono = 5_000;
    const mirror = new ClusterMirror({ nodeName: 'node-a', now: () => wall, elapsed: () => mono });
    const parser = new WatchStreamParser('t');
    const step = (...objs: [string, Obj][]): string[] => {
      for (const item of parser.push(objs.map(([type, object]) => JSON.stringify({ type, object })).join('\n'))) mirror.observe(item, 't');
      const batch = mirror.flush();
      batch.commit();
      return batch.events.map((e) => e.type);
    };
    expect(step(['ADDED', ns], ['ADDED', pod('web', '10.0.0.2', 2, T0 + 30_000)])).toEqual(['upsertNamespace', 'upsertPod']);
    wall = T0 + 10_000 - HOUR;
    mono += 10_000;
    expect(step()).toEqual([]);
    expect(mirror.clock()).toBe(T0 + 10_000);
    wall += 20_000;
    mono += 20_000;
    expect(step()).toEqual(['deletePod']);
  });

  it('mirror: a step forward is followed (the deletion comes earlier, never later)', () => {
    let wall = T0;
    const mirror = new ClusterMirror({ nodeName: 'node-a', now: () => wall, elapsed: () => 0 });
    mirror.observe({ type: 'ADDED', object: ns }, 't');
    mirror.observe({ type: 'ADDED', object: pod('web', '10.0.0.2', 2, T0 + 30_000) }, 't');
    mirror.flush().commit();
    wall = T0 + HOUR;
    expect(mirror.flush().events.map((e) => e.type)).toEqual(['deletePod']);
  });

  it('agent: the timer armed before the step removes the pod when it fires; re-armed delays use the mirror clock', async () => {
    let wall = T0;
    let mono = 0;
    const timers = new FakeTimers();
    const backend = new MemoryBackend();
    const file = stream([
      { type: 'ADDED', object: ns },
      { type: 'ADDED', object: pod('a', '10.0.0.2', 2, T0 + 30_000) },
      { type: 'ADDED', object: pod('b', '10.0.0.3', 3, T0 + 90_000) },
    ]);
    const agent = new Agent({ node: 'node-a', watch: [file], backend, logger: pino({ level: 'silent' }), registry: new Registry(), exitAtEof: true, now: () => wall, elapsed: () => mono, timers });
    await agent.run();
    expect(backend.endpoints().sort()).toEqual(['shop/a', 'shop/b']);
    expect([...timers.pending.values()].map((t) => t.ms)).toEqual([30_000]);
    // 10 s in, NTP steps the node's clock back an hour; the timer fires 20 s later.
    wall = T0 + 10_000 - HOUR;
    mono = 10_000;
    agent.flush();
    wall += 20_000;
    mono += 20_000;
    timers.fire();
    await turn();
    expect(backend.endpoints()).toEqual(['shop/b']);
    // b is due 60 s later in real time, not an hour and 60 s.
    expect([...timers.pending.values()].map((t) => t.ms)).toEqual([60_000]);
    await agent.stop();
  });

  it('mirror: a deadline that passes in the tick a relist arrives in: the relist does not keep the pod', () => {
    let wall = T0;
    const mirror = new ClusterMirror({ nodeName: 'node-a', now: () => wall, elapsed: () => 0 });
    mirror.observe({ type: 'ADDED', object: ns }, 't');
    mirror.observe({ type: 'ADDED', object: pod('web', '10.0.0.2', 2, T0 + 30_000) }, 't');
    mirror.flush().commit();
    wall = T0 + 30_001;
    const list = { apiVersion: 'v1', kind: 'PodList', metadata: { resourceVersion: '9' }, items: [pod('web', '10.0.0.2', 2, T0 + 30_000)] };
    for (const item of new WatchStreamParser('t').push(JSON.stringify(list))) mirror.observe(item, 't');
    const batch = mirror.flush();
    expect(batch.events.map((e) => e.type)).toEqual(['deletePod']);
    batch.commit();
    expect(mirror.nextDeadline()).toBeUndefined();
  });
});
