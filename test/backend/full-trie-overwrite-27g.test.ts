import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BackendError, MapBackend, writePlan } from '../../src/backend/backend.js';
import { BpfBackend, bpfUnavailableReason, pinName } from '../../src/backend/bpf.js';
import { bpf, BPF_CMD, closeFd, ERRNO, lpmFullTrieOverwrite, mapInfo, NativeBuffer } from '../../src/backend/bpf-syscall.js';
import { backendLookup } from '../../src/backend/lookup.js';
import { planWrites } from '../../src/backend/write-plan.js';
import type { MapDelta } from '../../src/engine/events.js';
import { PolicyEntry, PolicyKey, PRECEDENCE_ALLOW, PRECEDENCE_DENY } from '../../src/model/policy-map.js';

/**
 * Attack finding 2340 on real kernel maps. Before Linux 532d6b36b2bf ("bpf: Handle in-place update
 * for full LPM trie correctly", v6.13; kernel/bpf/lpm_trie.c `trie_update_elem` checked
 * `n_entries == max_entries` before looking the key up) a full LPM trie refused every update,
 * an overwrite of a key it holds too, with ENOSPC. The write plan keeps a map within `capacity`
 * and counts an overwrite as needing no room, so a map created with max_entries = capacity refused a
 * tighten phase's allow-to-deny overwrite (and the deny-all fallback's first overwrite) whenever it
 * held `capacity` entries, in every retry: the revoked allow stayed in force and nothing converged.
 * This machine's kernel may have the fix, so the old behaviour is emulated over the real maps: a
 * write is refused with ENOSPC while the pinned map holds max_entries elements, as the kernel read
 * from the map's own bpf_map_info. Skips where bpf() is not permitted (as bpf.test.ts).
 */
const unavailable = bpfUnavailableReason();
if (unavailable && process.env.DISTILL_REQUIRE_BPF === '1') throw new Error(`DISTILL_REQUIRE_BPF=1 but ${unavailable}`);
const kernel = unavailable ? describe.skip : describe;
const PIN_ROOT = `/sys/fs/bpf/distill-test-27g-${process.pid}`;
afterAll(() => {
  if (!unavailable) rmSync(PIN_ROOT, { recursive: true, force: true });
});

const CAPACITY = 256;
const EP = 'shop/web';

/** max_entries of the map pinned for `endpoint`, from the kernel. */
function pinnedMaxEntries(pinDir: string, endpoint: string): number {
  const attr = new NativeBuffer(128);
  const path = new NativeBuffer(4096);
  try {
    Buffer.from(`${join(pinDir, pinName(endpoint))}\0`).copy(path.buf);
    attr.buf.writeBigUInt64LE(path.address, 0);
    const r = bpf(BPF_CMD.OBJ_GET, attr);
    if (r.ret < 0) throw new Error(`OBJ_GET errno ${r.errno}`);
    try {
      const info = mapInfo(r.ret);
      if (!('maxEntries' in info)) throw new Error(`info errno ${info.errno}`);
      return info.maxEntries;
    } finally {
      closeFd(r.ret);
    }
  } finally {
    attr.free();
    path.free();
  }
}

/** `inner` on a kernel without 532d6b36b2bf: every upsert into a map holding max_entries elements is refused (ENOSPC). */
function preFixKernel(inner: BpfBackend): MapBackend & { refused: number } {
  const out = Object.assign(Object.create(inner) as MapBackend, {
    refused: 0,
    apply: (endpoint: string, deltas: readonly MapDelta[]) => {
      const total = { upserts: 0, deletes: 0, syscalls: 0 };
      const max = pinnedMaxEntries(inner.pinDir, endpoint);
      deltas.forEach((d, done) => {
        if (d.op === 'upsert' && inner.size(endpoint) >= max) {
          out.refused++;
          throw new BackendError(`policy map of ${endpoint}: upsert refused by a full trie`, endpoint, done, ERRNO.ENOSPC);
        }
        const s = inner.apply(endpoint, [d]);
        total.upserts += s.upserts;
        total.deletes += s.deletes;
        total.syscalls += s.syscalls;
      });
      return total;
    },
  });
  return out;
}

const key = (identity: number): PolicyKey => ({ identity, direction: 'ingress', protocol: 6, port: 80, portPrefixLen: 16 });
const allow: PolicyEntry = { deny: false, proxyPort: 0, precedence: PRECEDENCE_ALLOW };
const deny: PolicyEntry = { deny: true, proxyPort: 0, precedence: PRECEDENCE_DENY };

/** One transaction through the write plan, as `applyChangeSet` writes it. */
function transact(backend: MapBackend, deltas: MapDelta[]): void {
  writePlan(backend, planWrites([{ endpoint: EP, deltas, size: backend.size(EP) }], backend.capacity, (ep) => backend.dump(ep)));
}

const verdict = (backend: MapBackend, identity: number): string => {
  const hit = backendLookup(backend, EP, identity, 'ingress', 6, 80);
  return hit === undefined || hit.entry.deny ? 'deny' : 'allow';
};

kernel('27g: a full policy map on a kernel whose full LPM trie refuses overwrites (finding 2340)', () => {
  it('the probe answers, and a needs-room kernel gets one element of headroom per map', () => {
    expect(['in-place', 'needs-room']).toContain(lpmFullTrieOverwrite());
    for (const [mode, extra] of [
      ['needs-room', 1],
      ['in-place', 0],
    ] as const) {
      const dir = join(PIN_ROOT, `spec-${mode}`);
      const b = new BpfBackend({ pinDir: dir, capacity: CAPACITY, fullTrieOverwrite: mode });
      try {
        b.create(EP);
        expect(pinnedMaxEntries(dir, EP)).toBe(CAPACITY + extra);
        b.close();
        // Reopened by the same kernel the map keeps its spec: not replaced, its entries read.
        const again = new BpfBackend({ pinDir: dir, capacity: CAPACITY, fullTrieOverwrite: mode });
        try {
          expect(again.size(EP)).toBe(0);
          expect(pinnedMaxEntries(dir, EP)).toBe(CAPACITY + extra);
        } finally {
          again.close();
        }
      } finally {
        b.close();
      }
    }
  });

  it('an allow turned deny in a map at capacity is written, not refused in every retry', () => {
    const inner = new BpfBackend({ pinDir: join(PIN_ROOT, 'tighten'), capacity: CAPACITY, fullTrieOverwrite: 'needs-room' });
    try {
      const b = preFixKernel(inner);
      b.create(EP);
      transact(
        b,
        Array.from({ length: CAPACITY }, (_, i) => ({ endpoint: EP, op: 'upsert' as const, key: key(1000 + i), entry: allow })),
      );
      expect(b.size(EP)).toBe(CAPACITY);
      expect(verdict(b, 1000)).toBe('allow');
      // The new policy denies 1000 what the old allowed: a tighten-phase overwrite at full size.
      const revoke: MapDelta[] = [{ endpoint: EP, op: 'upsert', key: key(1000), entry: deny, previous: allow }];
      for (let attempt = 0; attempt < 3 && verdict(b, 1000) === 'allow'; attempt++) {
        try {
          transact(b, revoke);
        } catch {
          // a retry, as the agent's next transaction (a reconcile) plans the same write
        }
      }
      expect(b.refused).toBe(0);
      expect(verdict(b, 1000)).toBe('deny');
      expect(b.size(EP)).toBe(CAPACITY);
    } finally {
      inner.close();
    }
  });

  it("the deny-all fallback's overwrites at capacity are written", () => {
    const inner = new BpfBackend({ pinDir: join(PIN_ROOT, 'deny-all'), capacity: CAPACITY, fullTrieOverwrite: 'needs-room' });
    try {
      const b = preFixKernel(inner);
      b.create(EP);
      const old = Array.from({ length: CAPACITY }, (_, i) => key(1000 + i));
      const next = Array.from({ length: CAPACITY }, (_, i) => key(5000 + i));
      transact(
        b,
        old.map((k) => ({ endpoint: EP, op: 'upsert' as const, key: k, entry: deny })),
      );
      // Every deny moves to another key: the tighten phase would hold both sets, so the plan is deny-all.
      const plan = planWrites(
        [{ endpoint: EP, deltas: [...next.map((k) => ({ endpoint: EP, op: 'upsert' as const, key: k, entry: deny })), ...old.map((k) => ({ endpoint: EP, op: 'delete' as const, key: k, entry: deny }))], size: b.size(EP) }],
        b.capacity,
        (ep) => b.dump(ep),
      );
      expect(plan[0]?.mode).toBe('deny-all');
      expect(() => writePlan(b, plan)).not.toThrow();
      expect(b.refused).toBe(0);
      expect(b.size(EP)).toBe(CAPACITY);
      expect(verdict(b, 1000)).toBe('deny');
      expect(verdict(b, 5000)).toBe('deny');
    } finally {
      inner.close();
    }
  });
});
