import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { BpfBackend, bpfUnavailableReason } from '../../src/backend/bpf.js';
import { backendLookup } from '../../src/backend/lookup.js';
import type { MapDelta } from '../../src/engine/events.js';
import { PolicyKey, PRECEDENCE_ALLOW } from '../../src/model/policy-map.js';

/**
 * Attack finding 2342 on real kernel maps. amazon-linux-2023 issue 1129 reports kernel 6.18 on some
 * hosts refusing BPF_MAP_UPDATE_BATCH into a BPF_F_NO_PREALLOC LPM trie with ENOMEM at the second
 * element of every batch (the bpf_mem_alloc cache is refilled between syscalls, not within one),
 * while single updates succeed. The kernel here may not do that, so the refusal is emulated over the
 * real syscall: a batch of more than one upsert is cut to its first element, which the kernel
 * writes, and answered ENOMEM with a count of 1, as the kernel's generic_map_update_batch reports.
 * Before the fix the backend stopped at the second element and every retry did the same: no write of
 * more than one upsert ever completed. Skips where bpf() is not permitted (as bpf.test.ts).
 */
let emulate = false;
let refusedBatches = 0;
vi.mock('../../src/backend/bpf-syscall.js', async (importOriginal) => {
  const m = await importOriginal<typeof import('../../src/backend/bpf-syscall.js')>();
  return {
    ...m,
    bpf: (cmd: number, attr: InstanceType<typeof m.NativeBuffer>) => {
      if (!emulate || cmd !== m.BPF_CMD.MAP_UPDATE_BATCH || attr.buf.readUInt32LE(32) < 2) return m.bpf(cmd, attr);
      attr.buf.writeUInt32LE(1, 32);
      const r = m.bpf(cmd, attr);
      if (r.ret < 0) return r;
      refusedBatches++;
      return { ret: -1, errno: m.ERRNO.ENOMEM };
    },
  };
});

const unavailable = bpfUnavailableReason();
if (unavailable && process.env.DISTILL_REQUIRE_BPF === '1') throw new Error(`DISTILL_REQUIRE_BPF=1 but ${unavailable}`);
const kernel = unavailable ? describe.skip : describe;
const PIN_ROOT = `/sys/fs/bpf/distill-test-27g-enomem-${process.pid}`;
afterAll(() => {
  emulate = false;
  if (!unavailable) rmSync(PIN_ROOT, { recursive: true, force: true });
});

const EP = 'shop/web';
const key = (identity: number): PolicyKey => ({ identity, direction: 'ingress', protocol: 6, port: 80, portPrefixLen: 16 });

kernel('27g: a batch update refused with ENOMEM after its first element (finding 2342)', () => {
  it('is finished one element at a time, in order, and the maps hold every entry', () => {
    const b = new BpfBackend({ pinDir: join(PIN_ROOT, 'a'), capacity: 256 });
    try {
      b.create(EP);
      const deltas: MapDelta[] = Array.from({ length: 40 }, (_, i) => ({ endpoint: EP, op: 'upsert', key: key(1000 + i), entry: { deny: false, proxyPort: 0, precedence: PRECEDENCE_ALLOW } }));
      emulate = true;
      refusedBatches = 0;
      const stats = b.apply(EP, deltas);
      emulate = false;
      expect(refusedBatches).toBeGreaterThan(0);
      expect(stats.upserts).toBe(40);
      expect(b.size(EP)).toBe(40);
      for (let i = 0; i < 40; i++) expect(backendLookup(b, EP, 1000 + i, 'ingress', 6, 80)?.entry.deny).toBe(false);
    } finally {
      emulate = false;
      b.close();
    }
  });
});
