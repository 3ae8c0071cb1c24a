import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterAll, describe, expect, it } from 'vitest';
import { Agent } from '../src/agent/agent.js';
import { MemoryBackend } from '../src/backend/memory.js';
import { ClusterMirror } from '../src/k8s/mirror.js';
import { WatchStreamParser } from '../src/k8s/watch.js';
import type { EngineEvent } from '../src/engine/events.js';

type Obj = Record<string, unknown>;
const ns = (name: string, rv: number): Obj => ({ apiVersion: 'v1', kind: 'Namespace', metadata: { name, resourceVersion: String(rv), labels: { 'kubernetes.io/metadata.name': name } } });
const pod = (name: string, rv: number): Obj => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name, namespace: 'shop', resourceVersion: String(rv), labels: { app: 'web' } },
  spec: { nodeName: 'node-b', containers: [{ name: 'c', image: 'i' }] },
  status: { phase: 'Running', podIP: `10.1.${(rv >> 8) & 255}.${rv & 255}` },
});
const ev = (type: string, object: Obj): string => JSON.stringify({ type, object });

function harness(maxTombstones?: number) {
  const mirror = new ClusterMirror({ nodeName: 'node-a', ...(maxTombstones === undefined ? {} : { maxTombstones }) });
  const parser = new WatchStreamParser('pods');
  const step = (...lines: string[]): EngineEvent[] => {
    for (const item of parser.push(lines.join('\n'))) mirror.observe(item, 'pods');
    const batch = mirror.flush();
    batch.commit();
    return batch.events as EngineEvent[];
  };
  return { mirror, step };
}

describe('200. deleted objects are not kept forever', () => {
  it('20,000 pods created and deleted (unique names, as a ReplicaSet names them) leave at most maxTombstones states', () => {
    const h = harness(1000);
    h.step(ev('ADDED', ns('shop', 1)));
    let rv = 2;
    for (let i = 0; i < 20_000; i++) {
      h.step(ev('ADDED', pod(`web-${i}`, rv++)));
      h.step(ev('DELETED', pod(`web-${i}`, rv++)));
    }
    // The namespace, plus at most 1,000 deleted pods (before: 20,001, one per pod ever deleted).
    expect(h.mirror.size).toBe(1001);
    // The default bound holds too.
    const d = harness();
    d.step(ev('ADDED', ns('shop', 1)));
    for (let i = 0; i < 12_000; i++) d.step(ev('ADDED', pod(`p-${i}`, 2 * i + 2)), ev('DELETED', pod(`p-${i}`, 2 * i + 3)));
    expect(d.mirror.size).toBe(10_001);
  });
  it('a recently deleted object still drops a replayed older event; a live object is never forgotten', () => {
    const h = harness(2);
    expect(h.step(ev('ADDED', ns('shop', 1)), ev('ADDED', pod('live', 2)), ev('ADDED', pod('a', 3))).map((e) => e.type)).toContain('upsertPod');
    h.step(ev('DELETED', pod('a', 4)), ev('ADDED', pod('b', 5)), ev('DELETED', pod('b', 6)));
    expect(h.step(ev('MODIFIED', pod('a', 3)))).toEqual([]);
    expect(h.mirror.counts.stale).toBe(1);
    for (let i = 0; i < 50; i++) h.step(ev('ADDED', pod(`x-${i}`, 100 + 2 * i)), ev('DELETED', pod(`x-${i}`, 101 + 2 * i)));
    expect(h.mirror.size).toBe(4);
    // 'live' still drops its own older event.
    expect(h.step(ev('MODIFIED', pod('live', 2)))).toEqual([]);
    expect(h.mirror.counts.stale).toBe(2);
  });
  it('a relist deletes what it no longer lists and bounds those states as well', () => {
    const h = harness(10);
    h.step(ev('ADDED', ns('shop', 1)), ...Array.from({ length: 100 }, (_, i) => ev('ADDED', pod(`r-${i}`, 2 + i))));
    const list = JSON.stringify({ apiVersion: 'v1', kind: 'PodList', metadata: { resourceVersion: '500' }, items: [pod('r-0', 2)] });
    const deletes = h.step(list).filter((e) => e.type === 'deletePod');
    expect(deletes.length).toBe(99);
    expect(h.mirror.size).toBe(1 + 1 + 10);
  });
});

describe('201. a value spread over many chunks', () => {
  it('is read whole, and the size bound counts the value, not the stream', () => {
    const big = JSON.stringify({ type: 'ADDED', object: ns('a'.repeat(300_000), 1) });
    const p = new WatchStreamParser('s', big.length);
    const items = [];
    for (let round = 0; round < 3; round++) for (let i = 0; i < big.length; i += 1000) items.push(...p.push(big.slice(i, i + 1000)));
    p.end();
    expect(items.map((it) => (it.type === 'LIST' ? '' : (it.object.metadata as Obj).name))).toEqual(Array(3).fill('a'.repeat(300_000)));
    const small = new WatchStreamParser('s', big.length / 2);
    expect(() => {
      for (let i = 0; i < big.length; i += 1000) small.push(big.slice(i, i + 1000));
    }).toThrow(`s#1: one JSON value is over ${big.length / 2} bytes`);
  });
});

describe('202. a flood of unreadable objects', () => {
  const dir = mkdtempSync(join(tmpdir(), 'distill-9f-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const hostile = 'x\n{"level":60,"msg":"forged"}\u001b[31m\r"\\';
  const bad = (i: number): Obj => ({
    apiVersion: 'cilium.io/v2',
    kind: 'CiliumNetworkPolicy',
    metadata: { name: `${hostile}${i}`, namespace: 'a', resourceVersion: String(i + 1) },
    spec: { endpointSelector: { matchLabels: { a: 'b' } }, ingress: [{}] },
  });
  async function run(n: number, clock: () => number): Promise<string[]> {
    const file = join(dir, `bad-${n}.json`);
    writeFileSync(file, Array.from({ length: n }, (_, i) => ev('ADDED', bad(i))).join('\n'));
    let out = '';
    const sink = new Writable({ write: (c: Buffer | string, _e, cb) => ((out += c.toString()), cb()) });
    const agent = new Agent({ node: 'node-a', watch: [file], backend: new MemoryBackend(), logger: pino({ level: 'info' }, sink), registry: new Registry(), exitAtEof: true, now: clock });
    await agent.run();
    return out.split('\n').filter((l) => l !== '');
  }
  it('logs a bounded number of lines (10 at once, then one per 500 ms, telling how many it dropped), each one JSON object', async () => {
    const lines = await run(2000, () => 1_000_000);
    const parsed = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    const skipped = parsed.filter((p) => p.msg === 'object skipped: it cannot be read');
    // Before: 2,000 lines, one per bad object.
    expect(skipped.length).toBe(10);
    // Hostile names stay inside their field: no line was forged, no raw escape reached the log.
    expect(parsed.every((p) => p.msg !== 'forged')).toBe(true);
    expect(lines.join('\n')).not.toContain('\u001b');
    expect(String(skipped[0]!.key)).toContain(hostile);
  });
  it('lets a line through after the interval, with the count of what it dropped', async () => {
    let t = 0;
    const lines = await run(100, () => (t += 50));
    const skipped = lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((p) => p.msg === 'object skipped: it cannot be read');
    expect(skipped.length).toBeLessThan(100);
    expect(skipped.length).toBeGreaterThan(10);
    const told = skipped.reduce((n, p) => n + (typeof p.suppressed === 'number' ? p.suppressed : 0), 0);
    expect(told + skipped.length).toBeLessThanOrEqual(100);
    expect(told).toBeGreaterThan(0);
  });
});
