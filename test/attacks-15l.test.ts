import { mkdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { applyChangeSet } from '../src/backend/backend.js';
import { BpfBackend, bpfUnavailableReason, pinName } from '../src/backend/bpf.js';
import { bpf, BPF_CMD, BPF_F_NO_PREALLOC, BPF_MAP_TYPE_LPM_TRIE, closeFd, NativeBuffer } from '../src/backend/bpf-syscall.js';
import { encodeKey, encodeValue, KEY_SIZE, VALUE_SIZE } from '../src/backend/encoding.js';
import { backendLookup } from '../src/backend/lookup.js';
import { Engine } from '../src/engine/engine.js';
import type { EngineEvent } from '../src/engine/events.js';
import { parseIp } from '../src/model/cidr.js';
import { parseManifestFile } from '../src/policy/manifest.js';
import { reconcile } from '../src/node/restart.js';
import { KernelIpcache } from '../src/backend/ipcache.js';

/**
 * Round 15l: the running agent over pinned maps another writer touched. See docs/attack-findings-15l.md.
 */
const unavailable = bpfUnavailableReason();
const kernel = unavailable ? describe.skip : describe;
const PIN_ROOT = `/sys/fs/bpf/distill-att15-live-${process.pid}`;
let dirs = 0;
const pinDir = (): string => join(PIN_ROOT, String(dirs++));
beforeAll(() => {
  if (!unavailable) rmSync(PIN_ROOT, { recursive: true, force: true });
});
afterAll(() => {
  if (!unavailable) rmSync(PIN_ROOT, { recursive: true, force: true });
});

const pod = (name: string, labels: Record<string, string>, ip: string, local: boolean): EngineEvent => ({
  type: 'upsertPod',
  local,
  pod: { namespace: 'prod', name, labels, ip: parseIp(ip), serviceAccount: 'default', ports: [] },
});
const policy: EngineEvent = {
  type: 'upsertPolicy',
  policy: parseManifestFile(
    `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: web, namespace: prod}
spec:
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: client}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
`,
    'web.yaml',
  )[0]!,
};
const EVENTS = [pod('web', { app: 'web' }, '10.250.0.1', true), pod('client', { app: 'client' }, '10.250.0.2', false), policy];
const WEB = 'prod/web';

/** What a foreign writer (bpftool map update, a buggy second agent) does: one raw element into the pinned map. */
function writeRaw(path: string, key: Buffer, value: Buffer): void {
  const attr = new NativeBuffer(128);
  const p = new NativeBuffer(4096);
  const k = new NativeBuffer(KEY_SIZE);
  const v = new NativeBuffer(VALUE_SIZE);
  try {
    Buffer.from(`${path}\0`).copy(p.buf);
    attr.buf.writeBigUInt64LE(p.address, 0);
    const fd = bpf(BPF_CMD.OBJ_GET, attr).ret;
    expect(fd).toBeGreaterThanOrEqual(0);
    key.copy(k.buf);
    value.copy(v.buf);
    attr.buf.fill(0);
    attr.buf.writeUInt32LE(fd, 0);
    attr.buf.writeBigUInt64LE(k.address, 8);
    attr.buf.writeBigUInt64LE(v.address, 16);
    const r = bpf(BPF_CMD.MAP_UPDATE_ELEM, attr);
    closeFd(fd);
    expect(r.ret).toBe(0);
  } finally {
    for (const b of [attr, p, k, v]) b.free();
  }
}

/** An engine in force on a fresh pin dir, with the client's identity. */
function setup(): { engine: Engine; backend: BpfBackend; client: number; path: string; allow: Buffer } {
  const backend = new BpfBackend({ pinDir: pinDir(), capacity: 256 });
  const engine = new Engine({ mapCapacity: 256 });
  applyChangeSet(backend, engine.apply(EVENTS));
  const client = engine.identityOfIp(parseIp('10.250.0.2'));
  const hit = backendLookup(backend, WEB, client, 'ingress', 6, 80);
  expect(hit?.entry.deny).toBe(false);
  expect(backendLookup(backend, WEB, client, 'ingress', 6, 443), 'the policy allows client only on 80').toBeUndefined();
  const key = { identity: client, direction: 'ingress' as const, protocol: 6, port: 80, portPrefixLen: 16 };
  return { engine, backend, client, path: join(backend.pinDir, pinName(WEB)), allow: encodeValue(hit!.entry, key) };
}

/** A key as raw bytes: prefix length, identity, direction byte, protocol, port. */
function rawKey(prefix: number, identity: number, dir: number, proto: number, port: number): Buffer {
  const b = Buffer.alloc(KEY_SIZE);
  b.writeUInt32LE(prefix, 0);
  b.writeUInt32LE(identity, 4);
  b[8] = dir;
  b[9] = proto;
  b.writeUInt16BE(port, 10);
  return b;
}

kernel('670. a full reconcile undoes what another writer put in a real kernel map, whatever its key', () => {
  it('a foreign allow under a key of prefix length 0 (every identity, both directions) is removed, and the reconcile succeeds', () => {
    const { engine, backend, client, path, allow } = setup();
    try {
      writeRaw(path, rawKey(0, 0, 0, 0, 0), allow);
      expect(backendLookup(backend, WEB, client, 'ingress', 6, 443)?.entry.deny, 'the foreign entry opens client:443').toBe(false);
      const inode = statSync(path).ino;
      expect(() => reconcile(engine, backend)).not.toThrow();
      // An endpoint program already loaded holds this map, not its pin: a replacement would leave it the foreign allow.
      expect(statSync(path).ino, 'cleaned in place').toBe(inode);
      expect(backendLookup(backend, WEB, client, 'ingress', 6, 443), 'the foreign allow is gone').toBeUndefined();
      expect(backendLookup(backend, WEB, 2, 'ingress', 17, 53), 'nor for any other peer (world)').toBeUndefined();
      expect(backendLookup(backend, WEB, client, 'ingress', 6, 80)?.entry.deny, 'the policy stays in force').toBe(false);
    } finally {
      backend.close();
    }
  });

  it('a foreign allow of prefix length 40 with protocol bytes past the prefix is removed (passes on the base too: the kernel ignores bits past the prefix; a guard)', () => {
    const { engine, backend, client, path, allow } = setup();
    try {
      writeRaw(path, rawKey(40, client, 0, 6, 443), allow);
      expect(backendLookup(backend, WEB, client, 'ingress', 17, 53)?.entry.deny).toBe(false);
      expect(() => reconcile(engine, backend)).not.toThrow();
      expect(backendLookup(backend, WEB, client, 'ingress', 17, 53)).toBeUndefined();
      expect(backendLookup(backend, WEB, client, 'ingress', 6, 80)?.entry.deny).toBe(false);
    } finally {
      backend.close();
    }
  });

  it('a canonical key with a forged value (protocol+port prefix bits, auth, cookie) is rewritten', () => {
    const { engine, backend, path, client, allow } = setup();
    try {
      const key = encodeKey({ identity: client, direction: 'ingress', protocol: 6, port: 80, portPrefixLen: 16 });
      const forged = Buffer.from(allow);
      forged[2] = (forged[2] as number) & 7; // l4 prefix bits 0: the datapath's pickWinner reads it as less specific
      forged.writeUInt32LE(0xdead, 8);
      writeRaw(path, key, forged);
      expect(() => reconcile(engine, backend)).not.toThrow();
      const now = backend.dump(WEB);
      expect(now.length).toBe(engine.mapState(WEB).size);
      expect(backendLookup(backend, WEB, client, 'ingress', 6, 80)?.l4PrefixBits, 'the value as distill writes it').toBe(24);
    } finally {
      backend.close();
    }
  });

  it('a foreign entry with a direction byte the datapath never uses does not make the reconcile delete a real entry', () => {
    const { engine, backend, client, path, allow } = setup();
    try {
      // Decoded as ingress: the same key as the policy's own allow, which the diff then took as present.
      writeRaw(path, rawKey(64, client, 2, 6, 80), allow);
      expect(() => reconcile(engine, backend)).not.toThrow();
      expect(backendLookup(backend, WEB, client, 'ingress', 6, 80)?.entry.deny).toBe(false);
      expect(backend.dump(WEB).length).toBe(engine.mapState(WEB).size);
    } finally {
      backend.close();
    }
  });
});

kernel('671. the full reconcile brings the kernel ipcache to the engine\'s even where another writer changed it after open', () => {
  it('a foreign 0.0.0.0/0 giving every external address a pod identity is deleted by the next sync', () => {
    const dir = pinDir();
    mkdirSync(dir, { recursive: true });
    const ours = KernelIpcache.fresh(dir);
    const foreign = new KernelIpcache(dir);
    try {
      const wanted = new Map([['10.250.0.2/32', 300]]);
      ours.sync(wanted);
      foreign.apply([{ op: 'upsert', prefix: '0.0.0.0/0', identity: 300 }]);
      foreign.apply([{ op: 'upsert', prefix: '10.250.0.2/32', identity: 301 }]);
      expect(ours.lookup(parseIp('192.0.2.1')), 'world now reads as the pod identity').toBe(300);
      ours.sync(wanted);
      expect(ours.lookup(parseIp('192.0.2.1')), 'world again').toBeUndefined();
      expect(ours.lookup(parseIp('10.250.0.2')), 'the pod its own identity again').toBe(300);
    } finally {
      foreign.close();
      ours.close();
    }
  });
});

kernel('672. a pinned map of another max_entries is copied into its replacement only when every element is one distill writes', () => {
  it('an element with a direction byte the datapath never matches is not copied as an ingress allow before the first reconcile', () => {
    const dir = pinDir();
    mkdirSync(dir, { recursive: true });
    const path = join(dir, pinName(WEB));
    const attr = new NativeBuffer(128);
    const p = new NativeBuffer(4096);
    try {
      attr.buf.writeUInt32LE(BPF_MAP_TYPE_LPM_TRIE, 0);
      attr.buf.writeUInt32LE(KEY_SIZE, 4);
      attr.buf.writeUInt32LE(VALUE_SIZE, 8);
      attr.buf.writeUInt32LE(512, 12); // another version's capacity: replaced at open
      attr.buf.writeUInt32LE(BPF_F_NO_PREALLOC, 16);
      const fd = bpf(BPF_CMD.MAP_CREATE, attr).ret;
      expect(fd).toBeGreaterThanOrEqual(0);
      Buffer.from(`${path}\0`).copy(p.buf);
      attr.buf.fill(0);
      attr.buf.writeBigUInt64LE(p.address, 0);
      attr.buf.writeUInt32LE(fd, 8);
      expect(bpf(BPF_CMD.OBJ_PIN, attr).ret).toBe(0);
      closeFd(fd);
    } finally {
      attr.free();
      p.free();
    }
    const key = { identity: 300, direction: 'ingress' as const, protocol: 6, port: 80, portPrefixLen: 16 };
    const allow = encodeValue({ deny: false, proxyPort: 0, precedence: 1 }, key);
    writeRaw(path, rawKey(64, 300, 2, 6, 80), allow); // never matched: the datapath looks up with direction 0 or 1
    const backend = new BpfBackend({ pinDir: dir, capacity: 256 });
    try {
      expect(backendLookup(backend, WEB, 300, 'ingress', 6, 80), 'nothing allows identity 300 before the first reconcile').toBeUndefined();
      expect(() => backend.apply(WEB, [{ endpoint: WEB, op: 'upsert', key, entry: { deny: true, proxyPort: 0, precedence: 1 } }]), 'deltas wait for a diff').toThrow(/reconcile it first/);
    } finally {
      backend.close();
    }
  });
});
