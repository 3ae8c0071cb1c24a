import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import * as syscall from '../../src/backend/bpf-syscall.js';
import { BpfBackend, bpfUnavailableReason, pinName } from '../../src/backend/bpf.js';
import { encodeKey, encodePacketKey, encodeValue, KEY_SIZE } from '../../src/backend/encoding.js';

/**
 * review25b on 1901 (BpfBackend.empty): a replaced policy map of another value size is emptied key by key,
 * "shortest prefix first, so every lookup meets its old entry or none". A program reading the map does two lookups
 * (bpf/datapath.c: the peer's identity and identity 0, `pick` by precedence; Cilium 1.16+ bpf/lib/policy.h does the
 * same), so deleting a short identity-specific deny before a longer wildcard allow admits, between the two deletes,
 * what the old map denied and the new (empty) map denies. The observer is real: after each real MAP_DELETE_ELEM the
 * test looks the packet up in the held map with the kernel (the wrapper passes every call through unchanged).
 */
let afterDelete: (() => void) | undefined;
vi.mock('../../src/backend/bpf-syscall.js', async (importOriginal) => {
  const m = await importOriginal<typeof import('../../src/backend/bpf-syscall.js')>();
  return {
    ...m,
    bpf: (cmd: number, attr: InstanceType<typeof m.NativeBuffer>) => {
      const r = m.bpf(cmd, attr);
      if (cmd === m.BPF_CMD.MAP_DELETE_ELEM && r.ret === 0) afterDelete?.();
      return r;
    },
  };
});

const { BPF_CMD, BPF_F_NO_PREALLOC, BPF_MAP_TYPE_LPM_TRIE, closeFd, NativeBuffer } = syscall;
const unavailable = bpfUnavailableReason();
const kernel = unavailable ? describe.skip : describe;
const PIN_ROOT = `/sys/fs/bpf/distill-test-foreign-layout-${process.pid}`;
afterAll(() => {
  if (!unavailable) rmSync(PIN_ROOT, { recursive: true, force: true });
});
const EP = 'ns/a';
const VALUE_SIZE_OLD = 24;

function call(cmd: number, fill: (a: Buffer) => void): number {
  const attr = new NativeBuffer(128);
  try {
    fill(attr.buf);
    return syscall.bpf(cmd, attr).ret;
  } finally {
    attr.free();
  }
}

/** An LPM trie of distill's key and a 24-byte value (distill's 12 bytes, then 12 more), pinned at `path`; the caller holds the fd. */
function pinOldLayout(path: string, entries: readonly [Buffer, Buffer][]): number {
  const fd = call(BPF_CMD.MAP_CREATE, (a) => {
    a.writeUInt32LE(BPF_MAP_TYPE_LPM_TRIE, 0);
    a.writeUInt32LE(KEY_SIZE, 4);
    a.writeUInt32LE(VALUE_SIZE_OLD, 8);
    a.writeUInt32LE(64, 12);
    a.writeUInt32LE(BPF_F_NO_PREALLOC, 16);
  });
  expect(fd).toBeGreaterThanOrEqual(0);
  const k = new NativeBuffer(KEY_SIZE);
  const v = new NativeBuffer(VALUE_SIZE_OLD);
  const p = new NativeBuffer(4096);
  try {
    for (const [key, value] of entries) {
      key.copy(k.buf);
      v.buf.fill(0);
      value.copy(v.buf);
      expect(call(BPF_CMD.MAP_UPDATE_ELEM, (a) => (a.writeUInt32LE(fd, 0), a.writeBigUInt64LE(k.address, 8), a.writeBigUInt64LE(v.address, 16)))).toBe(0);
    }
    Buffer.from(`${path}\0`).copy(p.buf);
    expect(call(BPF_CMD.OBJ_PIN, (a) => (a.writeBigUInt64LE(p.address, 0), a.writeUInt32LE(fd, 8)))).toBe(0);
    return fd;
  } finally {
    for (const b of [k, v, p]) b.free();
  }
}

/** bpf/datapath.c's verdict for one packet over the map behind `fd`: lookups of the peer and of identity 0, then `pick`. */
function verdict(fd: number, peer: number, proto: number, port: number): 'allow' | 'deny' {
  const k = new NativeBuffer(KEY_SIZE);
  const v = new NativeBuffer(VALUE_SIZE_OLD);
  try {
    const lookup = (id: number): { deny: boolean; l4: number; precedence: number } | undefined => {
      encodePacketKey(id, 'ingress', proto, port).copy(k.buf);
      if (call(BPF_CMD.MAP_LOOKUP_ELEM, (a) => (a.writeUInt32LE(fd, 0), a.writeBigUInt64LE(k.address, 8), a.writeBigUInt64LE(v.address, 16))) !== 0) return undefined;
      return { deny: (v.buf[2]! & 1) === 1, l4: v.buf[2]! >> 3, precedence: v.buf.readUInt32LE(4) };
    };
    const s = lookup(peer);
    const w = lookup(0);
    const win = !s ? w : !w ? s : s.precedence !== w.precedence ? (s.precedence > w.precedence ? s : w) : s.l4 !== w.l4 ? (s.l4 > w.l4 ? s : w) : s;
    return win === undefined || win.deny ? 'deny' : 'allow';
  } finally {
    k.free();
    v.free();
  }
}

kernel('review25b: emptying a replaced map of another layout', () => {
  it('no moment between the deletes admits a packet the old map denied (two-lookup datapath)', () => {
    const dir = join(PIN_ROOT, 'a');
    mkdirSync(dir, { recursive: true });
    const denyAll303 = { identity: 303, direction: 'ingress' as const, protocol: 0, port: 0, portPrefixLen: 0 };
    const allowAnyTcp80 = { identity: 0, direction: 'ingress' as const, protocol: 6, port: 80, portPrefixLen: 16 };
    const held = pinOldLayout(join(dir, pinName(EP)), [
      [encodeKey(denyAll303), encodeValue({ deny: true, proxyPort: 0, precedence: 10 }, denyAll303)],
      [encodeKey(allowAnyTcp80), encodeValue({ deny: false, proxyPort: 0, precedence: 1 }, allowAnyTcp80)],
    ]);
    const seen: string[] = [];
    try {
      expect(verdict(held, 303, 6, 80), 'the old map').toBe('deny');
      afterDelete = () => seen.push(verdict(held, 303, 6, 80));
      const b = new BpfBackend({ pinDir: dir, capacity: 256 });
      try {
        expect(b.dump(EP, 'diff')).toEqual([]);
      } finally {
        afterDelete = undefined;
        b.close();
      }
      expect(verdict(held, 303, 6, 80), 'the emptied map').toBe('deny');
      // 303 to TCP/80 after each delete: the old map and the new (empty) one both deny it.
      expect(seen).toEqual(seen.map(() => 'deny'));
    } finally {
      afterDelete = undefined;
      closeFd(held);
    }
  });
});
