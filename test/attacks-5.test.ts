import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { applyChangeSet } from '../src/backend/backend.js';
import { BpfBackend, bpfUnavailableReason, pinName } from '../src/backend/bpf.js';
import { bpf, BPF_CMD, BPF_F_NO_PREALLOC, BPF_MAP_TYPE_LPM_TRIE, closeFd, NativeBuffer } from '../src/backend/bpf-syscall.js';
import { ipcachePinPath, ipcacheWriteOrder, KernelIpcache } from '../src/backend/ipcache.js';
import { backendLookup } from '../src/backend/lookup.js';
import { MemoryBackend } from '../src/backend/memory.js';
import { kernelIpcacheContent, kernelIpcacheDeltas, TRANSITION_IDENTITY } from '../src/backend/ipcache-content.js';
import { Engine } from '../src/engine/engine.js';
import { reconcile } from '../src/node/restart.js';
import type { EngineEvent, IpcacheDelta } from '../src/engine/events.js';
import { cidrContainsIp, parseCidr, parseIp } from '../src/model/cidr.js';
import { ClusterMirror } from '../src/k8s/mirror.js';
import { WatchStreamParser } from '../src/k8s/watch.js';
import { parseManifest } from '../src/policy/manifest.js';

/*
 * Round 5 attacks (docs/attack-findings-5.md): failures and write orders that leave the kernel
 * state more open than both the old and the new policy.
 */

const unavailable = bpfUnavailableReason();
if (unavailable && process.env.DISTILL_REQUIRE_BPF === '1') throw new Error(`DISTILL_REQUIRE_BPF=1 but ${unavailable}`);
const kernel = unavailable ? describe.skip : describe;
const PIN = `/sys/fs/bpf/distill-test-${randomBytes(6).toString('hex')}`;
afterAll(() => {
  rmSync(PIN, { recursive: true, force: true });
  rmSync(`${PIN}-long`, { recursive: true, force: true });
});

/** Pins an empty IPv4 ipcache trie with room for `maxEntries` prefixes where KernelIpcache reopens it. */
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

const SERVER_POLICY = parseManifest(
  {
    apiVersion: 'cilium.io/v2',
    kind: 'CiliumNetworkPolicy',
    metadata: { name: 'server', namespace: 'ns' },
    spec: { endpointSelector: { matchLabels: { app: 'server' } }, ingress: [{ fromEntities: ['world'] }] },
  },
  'server.yaml',
);
const DENY_CIDR = parseManifest(
  {
    apiVersion: 'cilium.io/v2',
    kind: 'CiliumNetworkPolicy',
    metadata: { name: 'deny-range', namespace: 'ns' },
    spec: { endpointSelector: { matchLabels: { app: 'server' } }, ingressDeny: [{ fromCIDR: ['10.0.0.8/29'] }] },
  },
  'deny-range.yaml',
);
const pod = (name: string, app: string, ip: string, local: boolean): EngineEvent => ({
  type: 'upsertPod',
  pod: { namespace: 'ns', name, labels: { app }, ip: parseIp(ip), serviceAccount: 'default', ports: [] },
  local,
});

kernel('kernel ipcache: a write that fails part-way (real kernel maps)', () => {
  it('leaves every address at its old or its new identity, never at world through a deleted /32', () => {
    mkdirSync(PIN, { recursive: true });
    // Room for the /0 and two pods: the transaction's third new prefix does not fit.
    pinTinyIpcache4(PIN, 3);
    const ipcache = new KernelIpcache(PIN);
    const maps = new MemoryBackend();
    try {
      const engine = new Engine();
      const first = engine.apply([{ type: 'upsertNamespace', name: 'ns', labels: {} }, pod('server', 'server', '10.0.1.1', true), pod('p', 'client', '10.0.0.10', false), { type: 'upsertPolicy', policy: SERVER_POLICY }]);
      applyChangeSet(maps, first, () => ipcache.sync(kernelIpcacheContent(engine)));
      const allowedFrom = (ip: string): boolean => {
        const v = backendLookup(maps, 'ns/server', ipcache.lookup(parseIp(ip)) ?? 2, 'ingress', 6, 80);
        return v !== undefined && !v.entry.deny;
      };
      const oldIdentity = engine.identityOfIp(parseIp('10.0.0.10'));
      expect(allowedFrom('10.0.0.10'), 'the pod at 10.0.0.10 is denied (only world is allowed)').toBe(false);
      // P goes, Q comes at 10.0.0.11, and a deny for 10.0.0.8/29 makes that range a CIDR identity.
      const cs = engine.apply([{ type: 'deletePod', namespace: 'ns', name: 'p' }, pod('q', 'client', '10.0.0.11', false), { type: 'upsertPolicy', policy: DENY_CIDR }]);
      const newIdentity = engine.identityOfIp(parseIp('10.0.0.10'));
      expect(newIdentity).not.toBe(oldIdentity);
      expect(cs.ipcache.map((d) => `${d.op} ${d.prefix}`)).toEqual(['delete 10.0.0.10/32', 'upsert 10.0.0.11/32', 'upsert 10.0.0.8/29']);
      expect(() => applyChangeSet(maps, cs, () => ipcache.apply(kernelIpcacheDeltas(cs.ipcache)))).toThrow(/MAP_UPDATE_ELEM/);
      expect([oldIdentity, newIdentity]).toContain(ipcache.lookup(parseIp('10.0.0.10')));
      expect(allowedFrom('10.0.0.10'), 'old state: denied (a pod); new state: denied (the CIDR deny)').toBe(false);
    } finally {
      ipcache.close();
      maps.close();
      rmSync(PIN, { recursive: true, force: true });
    }
    expect(existsSync(PIN)).toBe(false);
  });
});

/** The identity of `ip` in an ipcache (prefix text → identity): longest prefix, else world (2). */
function lpm(cache: ReadonlyMap<string, number>, ip: string): number {
  const addr = parseIp(ip);
  let best: { len: number; id: number } | undefined;
  for (const [prefix, id] of cache) {
    const c = parseCidr(prefix);
    if (cidrContainsIp(c, addr) && (!best || c.prefixLength > best.len)) best = { len: c.prefixLength, id };
  }
  return best?.id ?? 2;
}

const PREFIXES = ['10.0.0.0/24', '10.0.0.0/28', '10.0.0.8/29', '10.0.0.8/30', '10.0.0.10/31', '10.0.0.10/32', '10.0.0.11/32', '10.0.0.9/32', '10.0.0.0/32'];
const ADDRESSES = Array.from({ length: 16 }, (_, i) => `10.0.0.${i}`);
const cacheOf = fc.dictionary(fc.constantFrom(...PREFIXES), fc.integer({ min: 256, max: 260 }), { maxKeys: PREFIXES.length });

describe('ipcacheWriteOrder', () => {
  // Since finding 1120: with two or more deltas an address may also be at the transition identity, and no
  // prefix of the sequence has one address at its new identity while another (that changes) is at its old one.
  it('every prefix of the write sequence gives each address its old, its new or the transition identity, never old and new mixed', () => {
    fc.assert(
      fc.property(cacheOf, cacheOf, fc.boolean(), (oldObj, newObj, reversed) => {
        const old = new Map(Object.entries(oldObj));
        const next = new Map(Object.entries(newObj));
        const deltas: IpcacheDelta[] = [];
        for (const [prefix, id] of next) if (old.get(prefix) !== id) deltas.push({ op: 'upsert', prefix, identity: id, ...(old.has(prefix) ? { previous: old.get(prefix) } : {}) });
        for (const [prefix, id] of old) if (!next.has(prefix)) deltas.push({ op: 'delete', prefix, identity: id });
        if (reversed) deltas.reverse();
        const cache = new Map(old);
        for (const d of ipcacheWriteOrder(deltas)) {
          if (d.op === 'upsert') cache.set(d.prefix, d.identity);
          else cache.delete(d.prefix);
          for (const ip of ADDRESSES) expect([lpm(old, ip), lpm(next, ip), TRANSITION_IDENTITY]).toContain(lpm(cache, ip));
          const moving = ADDRESSES.filter((ip) => lpm(old, ip) !== lpm(next, ip));
          const atOld = moving.filter((ip) => lpm(cache, ip) === lpm(old, ip));
          const atNew = moving.filter((ip) => lpm(cache, ip) === lpm(next, ip));
          expect(atOld.length > 0 && atNew.length > 0, `old: ${atOld.join(' ')}; new: ${atNew.join(' ')}`).toBe(false);
          // One delta moves its addresses at once: no barrier.
          if (deltas.length === 1) expect(ADDRESSES.filter((ip) => lpm(cache, ip) === TRANSITION_IDENTITY)).toEqual([]);
        }
        expect(cache).toEqual(next);
      }),
      { numRuns: 300 },
    );
  });

  // fix1120b: with a guard (the local endpoints' addresses), only guarded addresses need the barrier; the
  // others go from their old to their new identity as before, with one write per delta when nothing guarded moves.
  it('with a guard: every address old, new or transition; guarded moving addresses never old and new mixed', () => {
    fc.assert(
      fc.property(cacheOf, cacheOf, fc.subarray(ADDRESSES), (oldObj, newObj, guarded) => {
        const old = new Map(Object.entries(oldObj));
        const next = new Map(Object.entries(newObj));
        const deltas: IpcacheDelta[] = [];
        for (const [prefix, id] of next) if (old.get(prefix) !== id) deltas.push({ op: 'upsert', prefix, identity: id, ...(old.has(prefix) ? { previous: old.get(prefix) } : {}) });
        for (const [prefix, id] of old) if (!next.has(prefix)) deltas.push({ op: 'delete', prefix, identity: id });
        const cache = new Map(old);
        const writes = ipcacheWriteOrder(deltas, { addresses: new Set(guarded.map((ip) => `${ip}/32`)), held: old });
        const was = new Map(ADDRESSES.map((ip) => [ip, lpm(old, ip)]));
        const will = new Map(ADDRESSES.map((ip) => [ip, lpm(next, ip)]));
        const moving = guarded.filter((ip) => was.get(ip) !== will.get(ip));
        // What the guard takes for moving: an address whose own /32 changes, or that no /32 of the old ipcache
        // shields from a broader delta covering it (a superset of `moving`).
        const exposed = guarded.filter((ip) => deltas.some((d) => d.prefix === `${ip}/32` || (!old.has(`${ip}/32`) && cidrContainsIp(parseCidr(d.prefix), parseIp(ip)))));
        expect(moving.filter((ip) => !exposed.includes(ip))).toEqual([]);
        if (exposed.length < 2) expect(writes).toHaveLength(deltas.length);
        for (const d of writes) {
          if (d.op === 'upsert') cache.set(d.prefix, d.identity);
          else cache.delete(d.prefix);
          const now = new Map(ADDRESSES.map((ip) => [ip, lpm(cache, ip)]));
          for (const ip of ADDRESSES) expect([was.get(ip), will.get(ip), TRANSITION_IDENTITY]).toContain(now.get(ip));
          const atOld = moving.filter((ip) => now.get(ip) === was.get(ip));
          const atNew = moving.filter((ip) => now.get(ip) === will.get(ip));
          expect(atOld.length > 0 && atNew.length > 0, `old: ${atOld.join(' ')}; new: ${atNew.join(' ')}`).toBe(false);
        }
        expect(cache).toEqual(next);
      }),
      { numRuns: 300 },
    );
  }, 120_000);
});

/** A CiliumNetworkPolicy as the API server returns it. */
function cnpObject(name: string, rv: number, spec: Record<string, unknown>): Record<string, unknown> {
  return { apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name, namespace: 'ns', uid: `uid-${name}`, resourceVersion: String(rv), generation: 1 }, spec };
}

describe('agent mirror: a relist that is kubectl\'s empty List', () => {
  const allow = cnpObject('allow-client', 10, { endpointSelector: { matchLabels: { app: 'server' } }, ingress: [{ fromEndpoints: [{ matchLabels: { app: 'client' } }] }] });
  const gone = { type: 'ERROR', object: { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: 'too old resource version: 10 (25)', reason: 'Expired', code: 410 } };
  // `kubectl get cnp -A -o json` when no policy is left (kubectl wraps every list in a v1 List).
  const emptyList = { apiVersion: 'v1', kind: 'List', metadata: { resourceVersion: '' }, items: [] };

  it('deletes what the stream held: a policy deleted during the watch gap after a 410 does not stay', () => {
    const mirror = new ClusterMirror({ nodeName: 'node-a' });
    const parser = new WatchStreamParser('cnp.json');
    const stream = [{ type: 'ADDED', object: allow }, gone, emptyList].map((o) => JSON.stringify(o)).join('\n');
    const items = parser.push(stream);
    parser.end();
    mirror.observe(items[0]!, 'cnp.json');
    const first = mirror.flush();
    expect(first.events.map((e) => e.type)).toEqual(['upsertPolicy']);
    first.commit();
    for (const item of items.slice(1)) mirror.observe(item, 'cnp.json');
    const second = mirror.flush();
    expect(second.events.map((e) => e.type), 'the relist lists no policy: the allow goes').toEqual(['deletePolicy']);
    second.commit();
    // Another stream's empty List names none of this stream's kinds.
    mirror.observe({ type: 'ADDED', object: { ...allow, metadata: { ...(allow.metadata as object), resourceVersion: '30' } } }, 'cnp.json');
    const third = mirror.flush();
    expect(third.events.map((e) => e.type)).toEqual(['upsertPolicy']);
    third.commit();
    mirror.observe(parser.push(JSON.stringify(emptyList))[0]!, 'pods.json');
    expect(mirror.flush().events).toEqual([]);
  });
});

describe('agent: Node addresses read as Cilium\'s ParseNode reads them (pkg/k8s/node.go)', () => {
  type Obj = Record<string, unknown>;
  const nodeObj = (name: string, rv: number, addresses: [string, string][]): Obj => ({
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name, uid: `uid-${name}`, resourceVersion: String(rv) },
    status: { addresses: addresses.map(([type, address]) => ({ type, address })) },
  });
  const podObj = (name: string, rv: number, app: string, nodeName: string, ip: string): Obj => ({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: 'shop', resourceVersion: String(rv), labels: { app } },
    spec: { nodeName, containers: [{ name: 'c', image: 'i' }] },
    status: { phase: 'Running', podIP: ip, podIPs: [{ ip }] },
  });
  const cnp = (spec: Obj): Obj => ({ apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name: 'web', namespace: 'shop', resourceVersion: '5' }, spec });

  /** The objects through a mirror into an engine: does shop/web admit `ip` on 80/TCP? */
  function admits(objects: readonly Obj[], ip: string): boolean {
    const mirror = new ClusterMirror({ nodeName: 'node-a' });
    const engine = new Engine();
    for (const object of objects) mirror.observe({ type: 'ADDED', object }, 'stream');
    const batch = mirror.flush();
    engine.apply(batch.events as EngineEvent[]);
    batch.commit();
    const hit = engine.lookup('shop/web', engine.identityOfIp(parseIp(ip)), 'ingress', 6, 80);
    return hit !== undefined && !hit.entry.deny;
  }
  const base: readonly Obj[] = [{ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop', resourceVersion: '1' } }, podObj('web', 2, 'web', 'node-a', '10.244.0.5')];

  it('an empty ExternalIP does not make the node\'s InternalIP world', () => {
    const fromWorld = cnp({ endpointSelector: { matchLabels: { app: 'web' } }, ingress: [{ fromEntities: ['world'] }] });
    const nodeB = nodeObj('node-b', 11, [['InternalIP', '192.0.2.11'], ['ExternalIP', '']]);
    expect(admits([...base, fromWorld, nodeB], '192.0.2.11'), 'remote-node is not world').toBe(false);
    expect(admits([...base, fromWorld, nodeB], '198.51.100.1')).toBe(true);
  });

  it('a CiliumNode\'s CiliumInternalIP (cilium_host: node-to-pod traffic) is remote-node, not world; merged with the Node', () => {
    const fromWorld = cnp({ endpointSelector: { matchLabels: { app: 'web' } }, ingress: [{ fromEntities: ['world'] }] });
    const ciliumNodeB: Obj = {
      apiVersion: 'cilium.io/v2',
      kind: 'CiliumNode',
      metadata: { name: 'node-b', resourceVersion: '12' },
      spec: { addresses: [{ type: 'InternalIP', ip: '192.0.2.11' }, { type: 'CiliumInternalIP', ip: '10.244.1.1' }], health: { ipv4: '10.244.1.2' } },
    };
    const nodeB = nodeObj('node-b', 11, [['InternalIP', '192.0.2.11'], ['ExternalIP', '203.0.113.11']]);
    expect(admits([...base, fromWorld, ciliumNodeB], '10.244.1.1'), 'cilium_host of node-b').toBe(false);
    expect(admits([...base, fromWorld, nodeB, ciliumNodeB], '10.244.1.1')).toBe(false);
    expect(admits([...base, fromWorld, nodeB, ciliumNodeB], '203.0.113.11'), 'the Node\'s ExternalIP stays').toBe(false);
    const mirror = new ClusterMirror({ nodeName: 'node-a' });
    for (const object of [nodeB, ciliumNodeB]) mirror.observe({ type: 'ADDED', object }, 'nodes');
    const batch = mirror.flush();
    expect(batch.events.map((e) => (e.type === 'upsertNode' ? `${e.name} ${e.ips.map((a) => a.text).join(',')}` : e.type))).toEqual(['node-b 192.0.2.11,203.0.113.11,10.244.1.1']);
    batch.commit();
    mirror.observe({ type: 'DELETED', object: { ...nodeB, metadata: { name: 'node-b', resourceVersion: '13' } } }, 'nodes');
    const after = mirror.flush();
    expect(after.events.map((e) => (e.type === 'upsertNode' ? `${e.name} ${e.ips.map((a) => a.text).join(',')}` : e.type)), 'the CiliumNode keeps its addresses').toEqual(['node-b 192.0.2.11,10.244.1.1']);
    after.commit();
    mirror.observe({ type: 'DELETED', object: { ...ciliumNodeB, metadata: { name: 'node-b', resourceVersion: '14' } } }, 'cnodes');
    expect(mirror.flush().events.map((e) => e.type)).toEqual(['deleteNode']);
  });

  it('a second InternalIP of the same family (a pod\'s address) does not give the pod remote-node', () => {
    const fromNodes = cnp({ endpointSelector: { matchLabels: { app: 'web' } }, ingress: [{ fromEntities: ['remote-node'] }] });
    const evil = podObj('evil', 3, 'evil', 'node-b', '10.244.1.7');
    const nodeB = nodeObj('node-b', 11, [['InternalIP', '192.0.2.11'], ['InternalIP', '10.244.1.7']]);
    expect(admits([...base, evil, fromNodes, nodeB], '192.0.2.11')).toBe(true);
    expect(admits([...base, evil, fromNodes, nodeB], '10.244.1.7'), 'the pod keeps its identity').toBe(false);
  });
});

kernel('bpf backend: a pod name longer than a bpffs file name (real kernel maps)', () => {
  it('is pinned (cut into directories), so the transaction that brings it and every later one are written', () => {
    const dir = `${PIN}-long`;
    // 253 characters, the longest pod name Kubernetes takes (a DNS subdomain); each '.' is escaped as "_2e".
    const longName = `${'a.'.repeat(126)}a`;
    const engine = new Engine();
    const backend = new BpfBackend({ pinDir: dir });
    try {
      applyChangeSet(backend, engine.apply([{ type: 'upsertNamespace', name: 'ns', labels: {} }, pod('server', 'server', '10.0.1.1', true), pod('p', 'client', '10.0.0.10', false), { type: 'upsertPolicy', policy: SERVER_POLICY }]));
      const denyAll = parseManifest(
        { apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name: 'deny-world', namespace: 'ns' }, spec: { endpointSelector: { matchLabels: { app: 'server' } }, ingressDeny: [{ fromEntities: ['world'] }] } },
        'deny-world.yaml',
      );
      const cs = engine.apply([pod(longName, 'client', '10.0.0.20', true), { type: 'upsertPolicy', policy: denyAll }]);
      applyChangeSet(backend, cs);
      const world = backendLookup(backend, 'ns/server', 2, 'ingress', 6, 80);
      expect(world?.entry.deny, 'the new deny is in the server\'s kernel map').toBe(true);
      expect(backend.endpoints()).toEqual([`ns/${longName}`, 'ns/server'].sort());
      expect(backend.dump(`ns/${longName}`).length).toBeGreaterThan(0);
    } finally {
      backend.close();
    }
    // A restart reads both maps back: nothing to write; removing the long one leaves no directory behind.
    const again = new BpfBackend({ pinDir: dir });
    try {
      expect(reconcile(engine, again)).toMatchObject({ created: 0, removed: 0, upserts: 0, deletes: 0 });
      again.remove(`ns/${longName}`);
      expect(readdirSync(dir).filter((n) => n.startsWith('pol_'))).toEqual([pinName('ns/server')]);
    } finally {
      again.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
