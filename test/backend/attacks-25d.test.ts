import { mkdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BpfBackend, bpfUnavailableReason, pinName } from '../../src/backend/bpf.js';
import { bpf, BPF_CMD, BPF_F_NO_PREALLOC, BPF_MAP_TYPE_LPM_TRIE, closeFd, ERRNO, NativeBuffer } from '../../src/backend/bpf-syscall.js';

/**
 * Attack round 25d on real kernel maps (docs/attack-findings-25d.md): a pinned policy map of
 * another layout (key or value size, or type), which the backend replaces at open, while a
 * loaded program (here: an fd the test holds, as a program holds its map) keeps reading it.
 */
const unavailable = bpfUnavailableReason();
const kernel = unavailable ? describe.skip : describe;
const PIN_ROOT = `/sys/fs/bpf/distill-test-dp25-${process.pid}`;
let dirs = 0;
afterAll(() => {
  if (!unavailable) rmSync(PIN_ROOT, { recursive: true, force: true });
});

const EP = 'ns/a';
const BPF_MAP_TYPE_HASH = 1;
const BPF_MAP_TYPE_ARRAY = 2;

/** A map of the given layout pinned at `path`, holding `entries` (key, value bytes); returns an fd the caller holds. */
function pinHeld(path: string, type: number, keySize: number, valueSize: number, entries: readonly [Buffer, Buffer][]): number {
  const attr = new NativeBuffer(128);
  const p = new NativeBuffer(4096);
  const k = new NativeBuffer(keySize);
  const v = new NativeBuffer(valueSize);
  try {
    attr.buf.writeUInt32LE(type, 0);
    attr.buf.writeUInt32LE(keySize, 4);
    attr.buf.writeUInt32LE(valueSize, 8);
    attr.buf.writeUInt32LE(64, 12);
    attr.buf.writeUInt32LE(type === BPF_MAP_TYPE_ARRAY ? 0 : BPF_F_NO_PREALLOC, 16);
    const fd = bpf(BPF_CMD.MAP_CREATE, attr).ret;
    expect(fd).toBeGreaterThanOrEqual(0);
    for (const [key, value] of entries) {
      key.copy(k.buf);
      value.copy(v.buf);
      attr.buf.fill(0);
      attr.buf.writeUInt32LE(fd, 0);
      attr.buf.writeBigUInt64LE(k.address, 8);
      attr.buf.writeBigUInt64LE(v.address, 16);
      expect(bpf(BPF_CMD.MAP_UPDATE_ELEM, attr).ret).toBe(0);
    }
    Buffer.from(`${path}\0`).copy(p.buf);
    attr.buf.fill(0);
    attr.buf.writeBigUInt64LE(p.address, 0);
    attr.buf.writeUInt32LE(fd, 8);
    expect(bpf(BPF_CMD.OBJ_PIN, attr).ret).toBe(0);
    return fd;
  } finally {
    for (const b of [attr, p, k, v]) b.free();
  }
}

/** How many keys the map behind `fd` holds (BPF_MAP_GET_NEXT_KEY, the map's own key size). */
function keyCount(fd: number, keySize: number): number {
  const attr = new NativeBuffer(128);
  const cur = new NativeBuffer(keySize);
  const next = new NativeBuffer(keySize);
  try {
    for (let n = 0; ; n++) {
      attr.buf.fill(0);
      attr.buf.writeUInt32LE(fd, 0);
      attr.buf.writeBigUInt64LE(n === 0 ? 0n : cur.address, 8);
      attr.buf.writeBigUInt64LE(next.address, 16);
      const r = bpf(BPF_CMD.MAP_GET_NEXT_KEY, attr);
      if (r.ret < 0) {
        expect(r.errno).toBe(ERRNO.ENOENT);
        return n;
      }
      next.buf.copy(cur.buf);
    }
  } finally {
    for (const b of [attr, cur, next]) b.free();
  }
}

/** An LPM key of `size` bytes: the prefix length, then the data. */
const lpmKey = (size: number, prefixLength: number, fill: number): Buffer => {
  const b = Buffer.alloc(size, fill);
  b.writeUInt32LE(prefixLength, 0);
  return b;
};

function freshDir(): string {
  const dir = join(PIN_ROOT, String(dirs++));
  mkdirSync(dir, { recursive: true });
  return dir;
}

kernel('attack round 25d: a replaced policy map of another layout', () => {
  const layouts = [
    { what: 'an LPM trie of a wider key (16 bytes) and value (16 bytes)', type: BPF_MAP_TYPE_LPM_TRIE, keySize: 16, valueSize: 16, entries: [lpmKey(16, 0, 0), lpmKey(16, 32, 1), lpmKey(16, 96, 2)].map((k) => [k, Buffer.alloc(16, 0)] as [Buffer, Buffer]) },
    { what: 'a hash map of the same key and value size', type: BPF_MAP_TYPE_HASH, keySize: 12, valueSize: 12, entries: [1, 2, 3].map((i) => [Buffer.alloc(12, i), Buffer.alloc(12, 0)] as [Buffer, Buffer]) },
  ];
  for (const l of layouts) {
    it(`1901. ${l.what}, replaced at open, is emptied for the program still holding it (an empty policy map admits nothing)`, () => {
      const dir = freshDir();
      const path = join(dir, pinName(EP));
      const held = pinHeld(path, l.type, l.keySize, l.valueSize, l.entries);
      try {
        expect(keyCount(held, l.keySize)).toBe(l.entries.length);
        const b = new BpfBackend({ pinDir: dir, capacity: 256 });
        try {
          expect(b.dump(EP, 'diff')).toEqual([]);
        } finally {
          b.close();
        }
        expect(keyCount(held, l.keySize), 'keys left in the replaced map').toBe(0);
      } finally {
        closeFd(held);
      }
    });
  }

  it('1901. a map that cannot be emptied (an array) is refused, and its pin stays on it', () => {
    const dir = freshDir();
    const path = join(dir, pinName(EP));
    const held = pinHeld(path, BPF_MAP_TYPE_ARRAY, 4, 12, [[Buffer.from([1, 0, 0, 0]), Buffer.alloc(12, 7)]]);
    try {
      const ino = statSync(path).ino;
      const b = new BpfBackend({ pinDir: dir, capacity: 256 });
      try {
        expect(() => b.dump(EP, 'diff')).toThrow(/cannot be emptied/);
      } finally {
        b.close();
      }
      expect(statSync(path).ino, 'the pin still names the old map').toBe(ino);
    } finally {
      closeFd(held);
    }
  });
});
