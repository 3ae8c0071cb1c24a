import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeKey, decodeValue, encodeKey, encodeValue, KEY_SIZE, VALUE_SIZE } from '../../src/backend/encoding.js';
import { MemoryBackend, packValue, unpackValue } from '../../src/backend/memory.js';
import { BackendError, writePlan } from '../../src/backend/backend.js';
import { planWrites } from '../../src/backend/write-plan.js';
import type { PolicyEntry, PolicyKey } from '../../src/model/policy-map.js';

const key = fc
  .record({
    identity: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 0xffffffff })),
    direction: fc.constantFrom('ingress' as const, 'egress' as const),
    protocol: fc.constantFrom(0, 1, 6, 17, 58, 132),
    portPrefixLen: fc.integer({ min: 0, max: 16 }),
    port: fc.integer({ min: 0, max: 65535 }),
  })
  .map((k): PolicyKey => {
    if (k.protocol === 0) return { ...k, port: 0, portPrefixLen: 0 };
    const shift = 16 - k.portPrefixLen;
    return { ...k, port: k.portPrefixLen === 0 ? 0 : (k.port >> shift) << shift };
  });
const entry = fc.oneof(
  fc.constant({ deny: true, proxyPort: 0, precedence: 255 }),
  fc.constant({ deny: false, proxyPort: 0, precedence: 1 }),
  fc.integer({ min: 1, max: 65535 }).map((p) => ({ deny: false, proxyPort: p, precedence: 2 })),
);

describe('kernel encoding', () => {
  it('keys and values round-trip through their 12-byte layouts', () => {
    fc.assert(
      fc.property(key, entry, (k, e) => {
        const kb = encodeKey(k);
        const vb = encodeValue(e, k);
        expect(kb.length).toBe(KEY_SIZE);
        expect(vb.length).toBe(VALUE_SIZE);
        expect(decodeKey(kb)).toEqual(k);
        expect(decodeValue(vb)).toEqual({ entry: e, l4PrefixBits: k.protocol === 0 ? 0 : 8 + k.portPrefixLen });
      }),
    );
  });

  it('lays out bytes as documented', () => {
    const k: PolicyKey = { identity: 0x01020304, direction: 'egress', protocol: 6, port: 64, portPrefixLen: 10 };
    expect(encodeKey(k).toString('hex')).toBe('3a000000' + '04030201' + '01' + '06' + '0040');
    expect(encodeValue({ deny: false, proxyPort: 10001, precedence: 2 }, k).toString('hex')).toBe('2711' + '90' + '00' + '02000000' + '00000000');
    expect(encodeValue({ deny: true, proxyPort: 0, precedence: 255 }, { ...k, protocol: 0, port: 0, portPrefixLen: 0 }).toString('hex')).toBe('0000' + '01' + '00' + 'ff000000' + '00000000');
  });
});

describe('memory backend', () => {
  const k = (identity: number): PolicyKey => ({ identity, direction: 'ingress', protocol: 6, port: 80, portPrefixLen: 16 });
  const allow = { deny: false, proxyPort: 0, precedence: 1 };
  it('holds one entry per distinct kernel key, dumps in key-byte order and deletes by key (table keys built from the fields)', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(key, entry, fc.boolean()), { maxLength: 40 }), (ops) => {
        const b = new MemoryBackend({ capacity: 256 });
        b.create('ep');
        const model = new Map<string, { key: PolicyKey; entry: PolicyEntry }>();
        for (const [k, e, del] of ops) {
          const hex = encodeKey(k).toString('hex');
          if (del && model.has(hex)) {
            b.apply('ep', [{ endpoint: 'ep', op: 'delete', key: k, entry: e }]);
            model.delete(hex);
          } else {
            b.apply('ep', [{ endpoint: 'ep', op: 'upsert', key: k, entry: e }]);
            model.set(hex, { key: k, entry: e });
          }
        }
        const want = [...model].sort(([a], [b2]) => (a < b2 ? -1 : a > b2 ? 1 : 0)).map(([, r]) => r);
        expect(b.size('ep')).toBe(model.size);
        expect(b.dump('ep')).toEqual(want);
        // Every held key is found by a lookup of its own packet (this entry or a longer match).
        for (const { key: k } of want) expect(b.lookup('ep', k.identity, k.direction, k.protocol, k.port)).toBeDefined();
      }),
    );
  });

  it('refuses to grow past its capacity and reports how far it got', () => {
    const b = new MemoryBackend({ capacity: 256 });
    b.create('ep');
    b.apply('ep', Array.from({ length: 256 }, (_, i) => ({ endpoint: 'ep', op: 'upsert' as const, key: k(i + 1), entry: allow })));
    let err: unknown;
    try {
      b.apply('ep', [{ endpoint: 'ep', op: 'upsert', key: k(1000), entry: allow }]);
    } catch (x) {
      err = x;
    }
    expect(err).toBeInstanceOf(BackendError);
    expect((err as BackendError).done).toBe(0);
    expect(b.dump('ep')).toHaveLength(256);
    // Planned with deletes in the same write, room is made first (the allow delete tightens).
    const deltas = [
      { endpoint: 'ep', op: 'upsert' as const, key: k(1000), entry: allow },
      { endpoint: 'ep', op: 'delete' as const, key: k(1), entry: allow },
    ];
    writePlan(b, planWrites([{ endpoint: 'ep', deltas, size: b.size('ep') }], b.capacity, (ep) => b.dump(ep)));
    expect(b.dump('ep').map((r) => r.key.identity)).toContain(1000);
  });
  it('the LPM lookup returns the longest matching prefix for the identity', () => {
    const b = new MemoryBackend({ capacity: 256 });
    b.create('ep');
    b.apply('ep', [
      { endpoint: 'ep', op: 'upsert', key: { identity: 5, direction: 'ingress', protocol: 0, port: 0, portPrefixLen: 0 }, entry: allow },
      { endpoint: 'ep', op: 'upsert', key: { identity: 5, direction: 'ingress', protocol: 6, port: 64, portPrefixLen: 10 }, entry: { deny: true, proxyPort: 0, precedence: 255 } },
    ]);
    expect(b.lookup('ep', 5, 'ingress', 6, 80)?.entry.deny).toBe(true);
    expect(b.lookup('ep', 5, 'ingress', 6, 8080)?.l4PrefixBits).toBe(0);
    expect(b.lookup('ep', 6, 'ingress', 6, 80)).toBeUndefined();
  });

  it('holds a value as one number that reads back as the bytes encodeValue writes, out-of-range fields included', () => {
    const anyEntry = fc.record({
      deny: fc.boolean(),
      proxyPort: fc.oneof(fc.integer({ min: 0, max: 65535 }), fc.integer({ min: -70000, max: 200000 })),
      precedence: fc.oneof(fc.integer({ min: 0, max: 0xffffffff }), fc.integer({ min: -0x80000000, max: 0x1ffffffff })),
    });
    fc.assert(
      fc.property(key, anyEntry, (k, e) => {
        const v = packValue(e);
        expect(Number.isSafeInteger(v)).toBe(true);
        expect(unpackValue(v, k)).toEqual(decodeValue(encodeValue(e, k)));
        const b = new MemoryBackend({ capacity: 256 });
        b.create('ep');
        b.apply('ep', [{ endpoint: 'ep', op: 'upsert', key: k, entry: e }]);
        expect(b.dump('ep')).toEqual([{ key: k, entry: decodeValue(encodeValue(e, k)).entry }]);
        expect(b.lookup('ep', k.identity, k.direction, k.protocol, k.port)).toEqual(decodeValue(encodeValue(e, k)));
      }),
    );
  });
});
