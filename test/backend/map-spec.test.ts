import { existsSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BackendError } from '../../src/backend/backend.js';
import { BpfBackend, bpfUnavailableReason, pinName } from '../../src/backend/bpf.js';
import { bpf, BPF_CMD, BPF_F_NO_PREALLOC, BPF_MAP_TYPE_LPM_TRIE, closeFd, mapInfo, NativeBuffer } from '../../src/backend/bpf-syscall.js';
import { ipcachePinPath, KernelIpcache } from '../../src/backend/ipcache.js';
import type { MapDelta } from '../../src/engine/events.js';
import type { PolicyEntry, PolicyKey } from '../../src/model/policy-map.js';
import { openPinned } from './pinned-fd.js';

/**
 * A policy map pinned with another spec (an older or foreign writer's max_entries, key or value
 * size) is checked at open (BPF_OBJ_GET_INFO_BY_FD) and replaced as Cilium's OpenOrCreateMap
 * replaces it. Before: it was reopened as is, and the kernel refused new keys part-way (ENOSPC), so
 * the new policy was never applied; a map of another key size was misread.
 */
const unavailable = bpfUnavailableReason();
const kernel = unavailable ? describe.skip : describe;
const PIN_ROOT = `/sys/fs/bpf/distill-test-spec-${process.pid}`;
let dirs = 0;
const pinDir = (): string => join(PIN_ROOT, String(dirs++));
afterAll(() => {
  if (!unavailable) rmSync(PIN_ROOT, { recursive: true, force: true });
});

const EP = 'ns/a';
const key = (identity: number, port: number): PolicyKey => ({ identity, direction: 'ingress', protocol: 6, port, portPrefixLen: 16 });
const ALLOW: PolicyEntry = { deny: false, proxyPort: 0, precedence: 0 };
const upserts = (n: number, from: number, deny: boolean): MapDelta[] => Array.from({ length: n }, (_, i) => ({ endpoint: EP, op: 'upsert', key: key(1000 + from + i, 80), entry: { ...ALLOW, deny } }));

/** A raw LPM trie pinned at `path` with the given key size (bytes). */
function pinRaw(path: string, keySize: number, valueSize: number): void {
  const attr = new NativeBuffer(128);
  const p = new NativeBuffer(4096);
  try {
    attr.buf.writeUInt32LE(BPF_MAP_TYPE_LPM_TRIE, 0);
    attr.buf.writeUInt32LE(keySize, 4);
    attr.buf.writeUInt32LE(valueSize, 8);
    attr.buf.writeUInt32LE(256, 12);
    attr.buf.writeUInt32LE(BPF_F_NO_PREALLOC, 16);
    const r = bpf(BPF_CMD.MAP_CREATE, attr);
    expect(r.ret).toBeGreaterThanOrEqual(0);
    mkdirSync(dirname(path), { recursive: true });
    Buffer.from(`${path}\0`).copy(p.buf);
    attr.buf.fill(0);
    attr.buf.writeBigUInt64LE(p.address, 0);
    attr.buf.writeUInt32LE(r.ret, 8);
    expect(bpf(BPF_CMD.OBJ_PIN, attr).ret).toBe(0);
    closeFd(r.ret);
  } finally {
    attr.free();
    p.free();
  }
}

function pinnedMaxEntries(path: string): number {
  const fd = openPinned(path);
  const info = mapInfo(fd);
  closeFd(fd);
  if (!('maxEntries' in info)) throw new Error(`info errno ${info.errno}`);
  return info.maxEntries;
}

kernel('bpf backend: a pinned map of another spec', () => {
  it('of a smaller max_entries is replaced by one of the backend\'s capacity, keeping its entries, so a larger policy fits', () => {
    const dir = pinDir();
    const small = new BpfBackend({ pinDir: dir, capacity: 256 });
    small.create(EP);
    small.apply(EP, upserts(200, 0, true));
    small.close();
    const b = new BpfBackend({ pinDir: dir, capacity: 1024 });
    try {
      expect(b.size(EP)).toBe(200);
      expect(pinnedMaxEntries(join(dir, pinName(EP)))).toBe(1024);
      expect(b.dump(EP).every((r) => r.entry.deny)).toBe(true);
      expect(() => b.apply(EP, upserts(300, 200, false))).not.toThrow();
      expect(b.size(EP)).toBe(500);
      expect(readdirSync(dir).filter((n) => n.startsWith('tmp_')), 'no temporary pin left').toEqual([]);
    } finally {
      b.close();
    }
    // A reader with another capacity reads it as it is.
    const reader = new BpfBackend({ pinDir: dir, capacity: 256, readOnly: true });
    expect(reader.size(EP)).toBe(500);
    reader.close();
  });

  it('of another key size is refused read-only and replaced by an empty map (admits nothing) read-write', () => {
    const dir = pinDir();
    mkdirSync(dir, { recursive: true });
    const path = join(dir, pinName(EP));
    pinRaw(path, 8, 12);
    const reader = new BpfBackend({ pinDir: dir, readOnly: true });
    expect(() => reader.dump(EP)).toThrow(BackendError);
    expect(() => reader.dump(EP)).toThrow(/keySize 8 \(expected/);
    reader.close();
    const b = new BpfBackend({ pinDir: dir, capacity: 256 });
    try {
      expect(b.dump(EP)).toEqual([]);
      expect(b.lookup(EP, 1000, 'ingress', 6, 80)).toBeUndefined();
      // A plain read does not make deltas safe: only a read for a diff (reconcile's) does.
      expect(() => b.apply(EP, upserts(3, 0, false))).toThrow(/replaced when opened/);
      expect(b.dump(EP, 'diff')).toEqual([]);
      b.apply(EP, upserts(3, 0, false));
      expect(b.size(EP)).toBe(3);
      expect(existsSync(path)).toBe(true);
      expect(pinnedMaxEntries(path)).toBe(256);
    } finally {
      b.close();
    }
  });

  it('an ipcache of another key size is refused (an empty replacement would make every address world)', () => {
    const dir = pinDir();
    mkdirSync(dir, { recursive: true });
    pinRaw(ipcachePinPath(dir, 'ipv4'), 12, 4);
    expect(() => new KernelIpcache(dir)).toThrow(/keySize 12 \(expected 8\)/);
  });
});
