import { afterAll, describe, expect, it } from 'vitest';
import { bpfUnavailableReason } from '../../src/backend/bpf.js';
import { bpf, BPF_CMD, BPF_F_NO_PREALLOC, BPF_MAP_TYPE_LPM_TRIE, closeFd, ERRNO, NativeBuffer } from '../../src/backend/bpf-syscall.js';
import { BpfCall, MapWalker } from '../../src/backend/map-walk.js';

/** Real (unpinned) kernel maps, read whole by the one walker the bpf backend, the ipcache and the conntrack scrub share. */
const unavailable = bpfUnavailableReason();
if (unavailable && process.env.DISTILL_REQUIRE_BPF === '1') throw new Error(`DISTILL_REQUIRE_BPF=1 but ${unavailable}`);
const kernel = unavailable ? describe.skip : describe;

const BPF_MAP_TYPE_HASH = 1;
const KEY = 8;
const VALUE = 4;
const fds: number[] = [];
afterAll(() => fds.forEach(closeFd));

/** A map of `type` holding `n` elements: key (prefix length 64 for a trie, then i), value i * 7. */
function mapWith(type: number, n: number): number {
  const attr = new NativeBuffer(128);
  const key = new NativeBuffer(KEY);
  const value = new NativeBuffer(VALUE);
  try {
    attr.buf.writeUInt32LE(type, 0);
    attr.buf.writeUInt32LE(KEY, 4);
    attr.buf.writeUInt32LE(VALUE, 8);
    attr.buf.writeUInt32LE(n + 1, 12);
    attr.buf.writeUInt32LE(type === BPF_MAP_TYPE_LPM_TRIE ? BPF_F_NO_PREALLOC : 0, 16);
    const c = bpf(BPF_CMD.MAP_CREATE, attr);
    if (c.ret < 0) throw new Error(`MAP_CREATE errno ${c.errno}`);
    fds.push(c.ret);
    for (let i = 0; i < n; i++) {
      key.buf.writeUInt32LE(type === BPF_MAP_TYPE_LPM_TRIE ? 32 : i ^ 0x5a5a, 0);
      key.buf.writeUInt32BE(i, 4);
      value.buf.writeUInt32LE(i * 7, 0);
      attr.buf.fill(0);
      attr.buf.writeUInt32LE(c.ret, 0);
      attr.buf.writeBigUInt64LE(key.address, 8);
      attr.buf.writeBigUInt64LE(value.address, 16);
      const u = bpf(BPF_CMD.MAP_UPDATE_ELEM, attr);
      if (u.ret < 0) throw new Error(`MAP_UPDATE_ELEM errno ${u.errno}`);
    }
    return c.ret;
  } finally {
    for (const b of [attr, key, value]) b.free();
  }
}

/** The real syscall, counted per command; `noBatch` answers BPF_MAP_LOOKUP_BATCH as a kernel without it does. */
function counting(noBatch: boolean): { call: BpfCall; calls: Map<number, number> } {
  const calls = new Map<number, number>();
  const call: BpfCall = (cmd, attr) => {
    calls.set(cmd, (calls.get(cmd) ?? 0) + 1);
    return noBatch && cmd === BPF_CMD.MAP_LOOKUP_BATCH ? { ret: -1, errno: ERRNO.EINVAL } : bpf(cmd, attr);
  };
  return { call, calls };
}

const sorted = (pairs: [Buffer, Buffer][]): string[] => pairs.map(([k, v]) => `${k.toString('hex')}:${v.toString('hex')}`).sort();

kernel('MapWalker', () => {
  for (const [name, type] of [['hash', BPF_MAP_TYPE_HASH], ['LPM trie', BPF_MAP_TYPE_LPM_TRIE]] as const) {
    it(`reads every element of a ${name} past one batch, by batches and key by key alike`, () => {
      const n = 2500;
      const fd = mapWith(type, n);
      const batched = counting(false);
      const byKey = counting(true);
      const a = new MapWalker(KEY, VALUE, batched.call);
      const b = new MapWalker(KEY, VALUE, byKey.call);
      try {
        const got = a.entries(fd, name);
        expect(got).toHaveLength(n);
        expect(new Set(got.map(([, v]) => v.readUInt32LE(0)))).toEqual(new Set(Array.from({ length: n }, (_, i) => i * 7)));
        expect(sorted(b.entries(fd, name))).toEqual(sorted(got));
        expect(b.keysOf(fd, name).map((k) => k.toString('hex')).sort()).toEqual(got.map(([k]) => k.toString('hex')).sort());
        // Without batch lookups: one GET_NEXT_KEY per element and one past the last, one lookup per element.
        expect(byKey.calls.get(BPF_CMD.MAP_GET_NEXT_KEY)).toBe(2 * (n + 1));
        expect(byKey.calls.get(BPF_CMD.MAP_LOOKUP_ELEM)).toBe(n);
        // With them (where the kernel has them for the map type), a call per 1,024 elements.
        if (!batched.calls.has(BPF_CMD.MAP_GET_NEXT_KEY)) expect(batched.calls.get(BPF_CMD.MAP_LOOKUP_BATCH)).toBeLessThanOrEqual(Math.ceil(n / 1024) + 1);
      } finally {
        a.free();
        b.free();
      }
    });
  }

  it('reads an empty map as empty, and names the map in an error', () => {
    const fd = mapWith(BPF_MAP_TYPE_HASH, 0);
    const w = new MapWalker(KEY, VALUE);
    try {
      expect(w.entries(fd, 'empty')).toEqual([]);
      expect(w.keysOf(fd, 'empty')).toEqual([]);
      expect(() => w.entries(1 << 20, 'no such map')).toThrow(/no such map/);
    } finally {
      w.free();
    }
  });
});
