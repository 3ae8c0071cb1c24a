import { rmSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { BpfBackend, bpfUnavailableReason, pinName } from '../../src/backend/bpf.js';
import type { MapDelta } from '../../src/engine/events.js';

/*
 * Long pin names are cut into directories (bpf.ts pinName). Two pod names of one namespace where
 * one's escaped name is exactly a directory of the other's must both pin: before, the first one's
 * pin file stood where the second one needed a directory (or the reverse), and the second map
 * could not be created, which refused the node's transactions.
 */
const unavailable = bpfUnavailableReason();
const kernel = unavailable ? describe.skip : describe;
const PIN = `/sys/fs/bpf/distill-test-pincut-${process.pid}`;
afterAll(() => {
  if (!unavailable) rmSync(PIN, { recursive: true, force: true });
});

// 'pol_' + 'ns_2f' + 246 'a' = 255 characters: one whole file name.
const A = `ns/${'a'.repeat(246)}`;
const B = `${A}b`;
const allow = (endpoint: string): MapDelta => ({ endpoint, op: 'upsert', key: { identity: 1000, direction: 'ingress', protocol: 6, port: 80, portPrefixLen: 16 }, entry: { deny: false, proxyPort: 0, precedence: 0 } });

describe('pin names', () => {
  it('no pin name is a directory of another', () => {
    expect(pinName(A).length).toBe(255);
    const dirsOfB = pinName(B).split('/').slice(0, -1);
    expect(dirsOfB).not.toContain(pinName(A));
  });
});

kernel('bpf backend: a cut pin name next to a whole one (real kernel maps)', () => {
  for (const order of [
    [A, B],
    [B, A],
  ]) {
    it(`both maps pin, created ${order[0] === A ? 'short' : 'long'} first`, () => {
      const dir = `${PIN}/${order[0] === A ? 'ab' : 'ba'}`;
      const backend = new BpfBackend({ pinDir: dir });
      try {
        for (const ep of order) {
          backend.create(ep);
          backend.apply(ep, [allow(ep)]);
        }
        expect(backend.endpoints()).toEqual([A, B].sort());
        for (const ep of order) expect(backend.dump(ep)).toHaveLength(1);
        for (const ep of order) backend.remove(ep);
        expect(backend.endpoints()).toEqual([]);
      } finally {
        backend.close();
      }
    });
  }
});
