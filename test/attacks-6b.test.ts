import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterAll, describe, expect, it } from 'vitest';
import { Agent } from '../src/agent/agent.js';
import { applyChangeSet, BackendError, MapBackend, WriteStats } from '../src/backend/backend.js';
import { BpfBackend, bpfUnavailableReason } from '../src/backend/bpf.js';
import { bpf, BPF_CMD, BPF_F_NO_PREALLOC, BPF_MAP_TYPE_LPM_TRIE, closeFd, NativeBuffer } from '../src/backend/bpf-syscall.js';
import { ipcachePinPath } from '../src/backend/ipcache.js';
import { backendLookup } from '../src/backend/lookup.js';
import { MemoryBackend } from '../src/backend/memory.js';
import { Engine } from '../src/engine/engine.js';
import type { EngineEvent, MapDelta } from '../src/engine/events.js';
import { ClusterMirror } from '../src/k8s/mirror.js';
import { WatchStreamParser } from '../src/k8s/watch.js';
import { parseIp } from '../src/model/cidr.js';
import { parseManifest } from '../src/policy/manifest.js';
import { reconcile } from '../src/node/restart.js';

/*
 * Round 6b attacks (docs/attack-findings-6b.md): relists of mixed-kind streams, an agent whose
 * maps lag the policy, and deltas written to a pinned map replaced at open.
 */

const unavailable = bpfUnavailableReason();
if (unavailable && process.env.DISTILL_REQUIRE_BPF === '1') throw new Error(`DISTILL_REQUIRE_BPF=1 but ${unavailable}`);
const kernel = unavailable ? describe.skip : describe;
const PIN = `/sys/fs/bpf/distill-test-6b-${randomBytes(6).toString('hex')}`;
const work = mkdtempSync(join(tmpdir(), 'distill-att6b-'));
afterAll(() => {
  rmSync(PIN, { recursive: true, force: true });
  rmSync(work, { recursive: true, force: true });
});

type Obj = Record<string, unknown>;
const ns: Obj = { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'ns', resourceVersion: '1', labels: {} } };
const podObj = (name: string, app: string, ip: string, rv: number): Obj => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name, namespace: 'ns', uid: `uid-${name}`, resourceVersion: String(rv), labels: { app } },
  spec: { nodeName: 'node-a', containers: [{ name: 'c', image: 'i' }] },
  status: { phase: 'Running', podIP: ip, podIPs: [{ ip }] },
});
const cnpObj = (name: string, rv: number, spec: Obj): Obj => ({ apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name, namespace: 'ns', uid: `uid-${name}`, resourceVersion: String(rv) }, spec });
const ALLOW_WORLD_80 = cnpObj('allow', 3, { endpointSelector: { matchLabels: { app: 'server' } }, ingress: [{ fromEntities: ['world'], toPorts: [{ ports: [{ port: '80', protocol: 'TCP' }] }] }] });
const WORLD = 2;

describe('50. agent mirror: a plain List relists every kind its stream carried', () => {
  it('a relist of `kubectl get pods,cnp -o json` that lists pods but no policy deletes the policy', () => {
    const warnings: unknown[] = [];
    const mirror = new ClusterMirror({ nodeName: 'node-a', warn: (msg, fields) => warnings.push({ msg, ...fields }) });
    const parser = new WatchStreamParser('mixed.json');
    const server = podObj('server', 'server', '10.0.0.1', 2);
    const items = parser.push([ns, server, ALLOW_WORLD_80].map((object) => JSON.stringify({ type: 'ADDED', object })).join('\n'));
    for (const item of items) mirror.observe(item, 'mixed.json');
    const first = mirror.flush();
    expect(first.events.map((e) => e.type)).toContain('upsertPolicy');
    first.commit();
    // A 410 Gone, then the relist: the policy was deleted in the gap; pods are still there.
    const relist = { apiVersion: 'v1', kind: 'List', metadata: { resourceVersion: '' }, items: [ns, server] };
    for (const item of parser.push(JSON.stringify(relist))) mirror.observe(item, 'mixed.json');
    const second = mirror.flush();
    expect(second.events.map((e) => e.type), 'the relist lists no policy: the allow goes').toEqual(['deletePolicy']);
    // Per-kind lists concatenated onto one stream would read the same way: the deletion is said aloud.
    expect(warnings).toEqual([expect.objectContaining({ source: 'mixed.json', kinds: ['CiliumNetworkPolicy'] })]);
    second.commit();
    // A typed list speaks for its kind only: a PodList on the same stream keeps the namespace.
    for (const item of parser.push(JSON.stringify({ apiVersion: 'v1', kind: 'PodList', metadata: {}, items: [] }))) mirror.observe(item, 'mixed.json');
    expect(mirror.flush().events.map((e) => e.type)).toEqual(['deletePod']);
  });
});

/** A memory backend whose writes throw (ENOSPC) while `failing`. */
class FlakyBackend {
  readonly maps = new MemoryBackend();
  failing = false;
  readonly backend: MapBackend = Object.assign(Object.create(this.maps) as MapBackend, {
    apply: (endpoint: string, deltas: readonly MapDelta[]): WriteStats => {
      if (this.failing) throw new BackendError(`policy map of ${endpoint}: injected failure`, endpoint, 0, 28);
      return this.maps.apply(endpoint, deltas);
    },
  });
}

describe('51. agent: maps behind the policy after failed writes', () => {
  it('/healthz answers 503 while the maps lag the engine, ok again once a retry brought them to it', async () => {
    const flaky = new FlakyBackend();
    const handles: (() => void)[] = [];
    const timers = { setTimeout: (fn: () => void) => handles.push(fn), clearTimeout: () => {} };
    const file = join(work, 'healthz.json');
    writeFileSync(file, [ns, podObj('server', 'server', '10.0.0.1', 2), ALLOW_WORLD_80].map((object) => JSON.stringify({ type: 'ADDED', object })).join('\n'));
    let addr = '';
    const agent = new Agent({ node: 'node-a', watch: [file], backend: flaky.backend, logger: pino({ level: 'silent' }), registry: new Registry(), exitAtEof: true, timers, metricsAddr: '127.0.0.1:0', onListening: (a) => (addr = a) });
    try {
      await agent.run();
      const health = async (): Promise<[number, string]> => {
        const r = await fetch(`http://${addr}/healthz`);
        return [r.status, await r.text()];
      };
      expect(await health()).toEqual([200, 'ok\n']);
      flaky.failing = true;
      agent.mirror.observe({ type: 'ADDED', object: cnpObj('deny', 5, { endpointSelector: { matchLabels: { app: 'server' } }, ingressDeny: [{ fromEntities: ['world'] }] }) }, file);
      agent.flush();
      expect(agent.summary.writeFailures).toBe(2);
      const [status, text] = await health();
      expect(status, 'the new deny is not in the maps: not ready').toBe(503);
      expect(text).toMatch(/maps behind the policy after a failed write \(reconcile: policy map of ns\/server: injected failure.*\); retrying/);
      flaky.failing = false;
      handles.shift()!();
      expect(await health()).toEqual([200, 'ok\n']);
    } finally {
      await agent.stop();
    }
  });
});

/** Pins an empty IPv4 ipcache trie with room for `maxEntries` prefixes where KernelIpcache opens it. */
function pinTinyIpcache4(dir: string, maxEntries: number): void {
  const attr = new NativeBuffer(128);
  const path = new NativeBuffer(4096);
  try {
    const a = attr.buf;
    a.fill(0);
    a.writeUInt32LE(BPF_MAP_TYPE_LPM_TRIE, 0);
    a.writeUInt32LE(8, 4);
    a.writeUInt32LE(4, 8);
    a.writeUInt32LE(maxEntries, 12);
    a.writeUInt32LE(BPF_F_NO_PREALLOC, 16);
    const r = bpf(BPF_CMD.MAP_CREATE, attr);
    if (r.ret < 0) throw new Error(`MAP_CREATE: errno ${r.errno}`);
    Buffer.from(`${ipcachePinPath(dir, 'ipv4')}\0`).copy(path.buf);
    a.fill(0);
    a.writeBigUInt64LE(path.address, 0);
    a.writeUInt32LE(r.ret, 8);
    const p = bpf(BPF_CMD.OBJ_PIN, attr);
    closeFd(r.ret);
    if (p.ret < 0) throw new Error(`OBJ_PIN: errno ${p.errno}`);
  } finally {
    attr.free();
    path.free();
  }
}

kernel('51. distill agent --exit-at-eof on kernel maps it cannot write', () => {
  it('exits 74 naming the failure, not 0, when the ipcache is full (ENOSPC) at the end', () => {
    const pinRoot = join(PIN, 'cli');
    mkdirSync(join(pinRoot, 'agent'), { recursive: true });
    pinTinyIpcache4(join(pinRoot, 'agent'), 1);
    const file = join(work, 'full.json');
    writeFileSync(file, [ns, podObj('server', 'server', '10.0.0.1', 2), podObj('client', 'client', '10.0.0.2', 3), ALLOW_WORLD_80].map((object) => JSON.stringify({ type: 'ADDED', object })).join('\n'));
    const r = spawnSync('node', ['dist/cli/main.js', 'agent', '--node', 'node-a', '--watch', file, '--backend', 'bpf', '--pin-dir', pinRoot, '--exit-at-eof'], { encoding: 'utf8', env: { ...process.env, DISTILL_LOG_LEVEL: 'silent' } });
    expect(r.stderr).toMatch(/the maps are behind the policy: writing them failed \(reconcile: .*errno 28/);
    expect(r.status).toBe(74);
    rmSync(pinRoot, { recursive: true, force: true });
  });
});

kernel('52. bpf backend: deltas on a pinned map replaced at open', () => {
  const policy = (name: string, spec: Obj): ReturnType<typeof parseManifest> => parseManifest({ ...cnpObj(name, 1, spec), metadata: { name, namespace: 'ns' } }, `${name}.yaml`);
  const events: EngineEvent[] = [
    { type: 'upsertNamespace', name: 'ns', labels: {} },
    { type: 'upsertPod', pod: { namespace: 'ns', name: 'server', labels: { app: 'server' }, ip: parseIp('10.0.0.1'), serviceAccount: 'default', ports: [] }, local: true },
    { type: 'upsertPolicy', policy: policy('deny-world', { endpointSelector: { matchLabels: { app: 'server' } }, ingressDeny: [{ fromEntities: ['world'] }] }) },
  ];

  /** The engine's second policy goes to a map an older writer left with more entries than the new capacity. */
  const replacedCase = (name: string, second: Obj, check: (cs: ReturnType<Engine['apply']>) => void): void => {
    const dir = join(PIN, name);
    const engine = new Engine();
    const old = new BpfBackend({ pinDir: dir, capacity: 1024 });
    try {
      applyChangeSet(old, engine.apply(events));
      // The old writer's map holds more than the new capacity: it cannot be copied into the replacement.
      old.apply('ns/server', Array.from({ length: 300 }, (_, i) => ({ endpoint: 'ns/server', op: 'upsert', key: { identity: 100000 + i, direction: 'egress', protocol: 6, port: 9, portPrefixLen: 16 }, entry: { deny: true, proxyPort: 0, precedence: 0 } })));
    } finally {
      old.close();
    }
    const cs = engine.apply([{ type: 'upsertPolicy', policy: policy(name, { endpointSelector: { matchLabels: { app: 'server' } }, ingress: [second] }) }]);
    check(cs);
    const b = new BpfBackend({ pinDir: dir, capacity: 256 });
    try {
      expect(() => applyChangeSet(b, cs)).toThrow(/was replaced when opened and lost its entries/);
      const v = backendLookup(b, 'ns/server', WORLD, 'ingress', 6, 80);
      expect(v === undefined || v.entry.deny, 'world on 80: the engine denies it, the map must not admit it').toBe(true);
      reconcile(engine, b);
      expect(backendLookup(b, 'ns/server', WORLD, 'ingress', 6, 80)?.entry.deny).toBe(true);
    } finally {
      b.close();
      rmSync(dir, { recursive: true, force: true });
    }
  };

  it('are refused until the map was read (as reconcile reads it): an allow alone would admit what the lost deny denied', () => {
    replacedCase('allow-all-80', { fromEntities: ['all'], toPorts: [{ ports: [{ port: '80', protocol: 'TCP' }] }] }, (cs) => expect(cs.deltas.length).toBeGreaterThan(0));
  });

  it('are refused also when planning the write read the map (an L7 redirect makes applyChangeSet dump it first)', () => {
    const http = { fromEntities: ['all'], toPorts: [{ ports: [{ port: '80', protocol: 'TCP' }], rules: { http: [{ method: 'GET' }] } }] };
    replacedCase('l7-all-80', http, (cs) => expect(cs.deltas.some((d) => d.op === 'upsert' && !d.entry.deny && d.entry.proxyPort !== 0)).toBe(true));
  });
});

