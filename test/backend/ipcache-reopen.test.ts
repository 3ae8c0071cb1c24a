import { randomBytes } from 'node:crypto';
import { mkdirSync, rmSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { bpfUnavailableReason } from '../../src/backend/bpf.js';
import { decodeIpcacheKey, encodeIpcacheKey, KernelIpcache } from '../../src/backend/ipcache.js';
import { parseCidr, parseIp } from '../../src/model/cidr.js';

const unavailable = bpfUnavailableReason();
if (unavailable && process.env.DISTILL_REQUIRE_BPF === '1') throw new Error(`DISTILL_REQUIRE_BPF=1 but ${unavailable}`);
if (unavailable) process.stderr.write(`SKIPPING kernel ipcache tests: ${unavailable}\n`);
const kernel = unavailable ? describe.skip : describe;

const PIN = `/sys/fs/bpf/distill-test-${randomBytes(6).toString('hex')}`;
afterAll(() => rmSync(PIN, { recursive: true, force: true }));

const WANTED = new Map([
  ['0.0.0.0/0', 9],
  ['::/0', 10],
  ['10.0.0.0/8', 300],
  ['10.1.2.3/32', 301],
  ['fd00::/64', 302],
  ['fd00::1:2/128', 303],
  ['192.168.1.0/24', 304],
]);

describe('ipcache key decoding', () => {
  it('inverts the encoding for both families', () => {
    const b = Buffer.alloc(20);
    for (const text of ['0.0.0.0/0', '10.244.1.0/24', '255.255.255.255/32', '::/0', '2001:db8::/32', 'fd00::1:2/128']) {
      const c = parseCidr(text);
      encodeIpcacheKey(c, b);
      expect(decodeIpcacheKey(c.family, b)).toEqual(c);
    }
  });
});

kernel('a reopened kernel ipcache (real kernel maps)', () => {
  it('reads back what an earlier writer pinned: an unchanged sync writes nothing, stale entries are deleted', () => {
    mkdirSync(PIN, { recursive: true });
    const first = KernelIpcache.fresh(PIN);
    try {
      expect(first.sync(WANTED)).toBe(WANTED.size);
    } finally {
      first.close();
    }
    const again = new KernelIpcache(PIN);
    try {
      expect(new Map(again.entries())).toEqual(WANTED);
      expect(again.sync(WANTED)).toBe(0);
      const next = new Map(WANTED);
      next.delete('10.1.2.3/32');
      next.delete('fd00::/64');
      next.set('10.0.0.0/8', 305);
      expect(again.sync(next)).toBe(3);
    } finally {
      again.close();
    }
    const third = new KernelIpcache(PIN);
    try {
      expect(new Map(third.entries())).toEqual(new Map([...WANTED].filter(([p]) => p !== '10.1.2.3/32' && p !== 'fd00::/64').map(([p, id]) => [p, p === '10.0.0.0/8' ? 305 : id])));
      expect(third.lookup(parseIp('10.1.2.3'))).toBe(305); // the /32 is gone: 10.0.0.0/8 covers it
    } finally {
      third.close();
    }
  });
});
