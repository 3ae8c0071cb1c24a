import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { bpfUnavailableReason } from '../../src/backend/bpf.js';
import { bpf, BPF_CMD, BPF_F_NO_PREALLOC, BPF_MAP_TYPE_LPM_TRIE, closeFd, NativeBuffer } from '../../src/backend/bpf-syscall.js';
import { ipcachePinPath, KernelIpcache } from '../../src/backend/ipcache.js';
import { parseIp } from '../../src/model/cidr.js';

/**
 * Attack finding 2341 on real kernel maps: an ipcache pinned under the pin dir by another program
 * with BPF_F_WRONLY_PROG in its map_flags (include/uapi/linux/bpf.h: programs may not read it) was
 * opened and filled as distill's, though no datapath program can be verified against it; it is
 * refused at open now, naming the flag. BPF_F_RDONLY_PROG (programs only read the ipcache) stays
 * accepted, and BPF_F_RDONLY / BPF_F_WRONLY given at creation do not stay on the map (they are
 * the creating fd's: kernel/bpf/syscall.c `bpf_map_flags_retain_permanent`), so such a pin is
 * opened read-write and written. Skips where bpf() is not permitted (as bpf.test.ts).
 */
const unavailable = bpfUnavailableReason();
if (unavailable && process.env.DISTILL_REQUIRE_BPF === '1') throw new Error(`DISTILL_REQUIRE_BPF=1 but ${unavailable}`);
const kernel = unavailable ? describe.skip : describe;
const PIN_ROOT = `/sys/fs/bpf/distill-test-27g-flags-${process.pid}`;
afterAll(() => {
  if (!unavailable) rmSync(PIN_ROOT, { recursive: true, force: true });
});

const BPF_F_RDONLY = 1 << 3;
const BPF_F_WRONLY = 1 << 4;
const BPF_F_RDONLY_PROG = 1 << 7;
const BPF_F_WRONLY_PROG = 1 << 8;

/** Pins an empty IPv4 ipcache trie with `flags` (besides BPF_F_NO_PREALLOC) where KernelIpcache opens it. */
function pinIpcache4(dir: string, flags: number): void {
  const attr = new NativeBuffer(128);
  const path = new NativeBuffer(4096);
  try {
    const a = attr.buf;
    a.writeUInt32LE(BPF_MAP_TYPE_LPM_TRIE, 0);
    a.writeUInt32LE(8, 4);
    a.writeUInt32LE(4, 8);
    a.writeUInt32LE(1024, 12);
    a.writeUInt32LE(BPF_F_NO_PREALLOC | flags, 16);
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

kernel('27g: a pinned ipcache whose access flags refuse distill or the datapath (finding 2341)', () => {
  it('refuses one with BPF_F_WRONLY_PROG at open, naming it', () => {
    const dir = join(PIN_ROOT, 'wronly-prog');
    mkdirSync(dir, { recursive: true });
    pinIpcache4(dir, BPF_F_WRONLY_PROG);
    let opened: KernelIpcache | undefined;
    try {
      expect(() => (opened = new KernelIpcache(dir))).toThrow(/not a distill ipcache: flags 0x101 \(BPF_F_WRONLY_PROG/);
    } finally {
      opened?.close();
    }
  });

  for (const [name, flags] of [
    ['BPF_F_RDONLY_PROG', BPF_F_RDONLY_PROG],
    ['BPF_F_RDONLY', BPF_F_RDONLY],
    ['BPF_F_WRONLY', BPF_F_WRONLY],
  ] as const) {
    it(`keeps and writes one created with ${name}`, () => {
      const dir = join(PIN_ROOT, name);
      mkdirSync(dir, { recursive: true });
      pinIpcache4(dir, flags);
      const ipc = new KernelIpcache(dir);
      try {
        expect(ipc.sync(new Map([['10.0.0.0/8', 300]]))).toBe(1);
        expect(ipc.lookup(parseIp('10.0.0.1'))).toBe(300);
      } finally {
        ipc.close();
      }
    });
  }
});
