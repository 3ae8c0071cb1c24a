import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BpfBackend, bpfUnavailableReason, pinName } from '../../src/backend/bpf.js';
import { BPF_CMD, bpf, closeFd, NativeBuffer } from '../../src/backend/bpf-syscall.js';
import { decodeValue, encodePacketKey, KEY_SIZE, VALUE_SIZE } from '../../src/backend/encoding.js';
import { Engine } from '../../src/engine/engine.js';
import { reconcile } from '../../src/node/restart.js';
import { openPinned } from './pinned-fd.js';

/**
 * Attack finding 2481 (docs/attack-findings-28f.md): a policy map pinned under an older layout's path (66f8b574 cut
 * names longer than NAME_MAX every 255 bytes, without the '+' that ec2983a4 added) was listed by `endpoints()` under
 * a name whose `pinName` is another path, so reconcile's `remove` found nothing there: the map was neither disarmed
 * nor unlinked, and a program still loaded with it kept every allow it held, whatever the policy became.
 */
const unavailable = bpfUnavailableReason();
const kernel = unavailable ? describe.skip : describe;
const PIN_DIR = `/sys/fs/bpf/distill-test-f28-stray-${process.pid}`;
afterAll(() => {
  if (!unavailable) rmSync(PIN_DIR, { recursive: true, force: true });
});

/** Whether the map behind `fd` lets identity 1234 in on TCP/80 (one lookup: the test's only entry is the wildcard). */
function admits(fd: number): boolean {
  const attr = new NativeBuffer(128);
  const k = new NativeBuffer(KEY_SIZE);
  const v = new NativeBuffer(VALUE_SIZE);
  try {
    encodePacketKey(0, 'ingress', 6, 80).copy(k.buf);
    attr.buf.writeUInt32LE(fd, 0);
    attr.buf.writeBigUInt64LE(k.address, 8);
    attr.buf.writeBigUInt64LE(v.address, 16);
    return bpf(BPF_CMD.MAP_LOOKUP_ELEM, attr).ret === 0 && !decodeValue(v.buf).entry.deny;
  } finally {
    for (const b of [attr, k, v]) b.free();
  }
}

kernel('2481: a policy map pinned under an older layout is disarmed and unlinked by the next reconcile', () => {
  it('the old-layout pin of a 253-character pod name', () => {
    mkdirSync(PIN_DIR, { recursive: true });
    const ep = `x/${'a'.repeat(253)}`;
    const first = new BpfBackend({ pinDir: PIN_DIR });
    first.create(ep);
    first.apply(ep, [{ endpoint: ep, op: 'upsert', key: { identity: 0, direction: 'ingress', protocol: 0, port: 0, portPrefixLen: 0 }, entry: { deny: false, proxyPort: 0, precedence: 1 } }]);
    first.close();
    // The same map where 66f8b574 pinned it: cut every 255 bytes, no '+'.
    const flat = pinName(ep).replace('+/', '');
    const old = `${flat.slice(0, 255)}/${flat.slice(255)}`;
    mkdirSync(join(PIN_DIR, dirname(old)));
    renameSync(join(PIN_DIR, pinName(ep)), join(PIN_DIR, old));
    rmSync(join(PIN_DIR, dirname(pinName(ep))), { recursive: true });
    const program = openPinned(join(PIN_DIR, old));
    try {
      expect(admits(program)).toBe(true);
      // A restart whose state has no such endpoint (every endpoint the pins name is stale).
      const backend = new BpfBackend({ pinDir: PIN_DIR });
      try {
        const stats = reconcile(new Engine({ mapCapacity: backend.capacity }), backend);
        expect(stats.removed).toBe(1);
        expect({ admits: admits(program), pinned: existsSync(join(PIN_DIR, old)), dir: existsSync(join(PIN_DIR, dirname(old))), listed: backend.endpoints() }).toEqual({ admits: false, pinned: false, dir: false, listed: [] });
      } finally {
        backend.close();
      }
    } finally {
      closeFd(program);
    }
  });
});
