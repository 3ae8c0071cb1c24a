import { l4PrefixBits, PolicyEntry, PolicyKey } from '../model/policy-map.js';
import type { Direction } from '../model/rules.js';

/**
 * The kernel layout of the per-endpoint policy map, Cilium-style (see docs/semantics.md):
 *
 * key (12 bytes, BPF LPM trie key):
 *   0  u32  LPM prefix length in bits over the data below (host order, as the kernel wants it)
 *   4  u32  peer identity (host order; 0 = any). Always fully matched
 *   8  u8   direction: 0 ingress, 1 egress. Always fully matched
 *   9  u8   protocol (0 = any: then the prefix stops before it)
 *  10  be16 destination port (ICMP: type); `portPrefixLen` leading bits are matched
 *
 * value (12 bytes):
 *   0  be16 proxy port (0 = no redirect)
 *   2  u8   bit 0: deny; bits 1-2: reserved; bits 3-7: prefix length of protocol + port in the
 *           key (0, or 8 + portPrefixLen), so a lookup knows how specific its match was
 *   3  u8   auth type (0: none)
 *   4  u32  precedence (host order)
 *   8  u32  cookie (host order; 0)
 */
export const KEY_SIZE = 12;
export const VALUE_SIZE = 12;
const IDENTITY_AND_DIRECTION_BITS = 40;

// Byte stores rather than Buffer.write*: this runs once per entry written to the kernel.
function u32le(out: Uint8Array, o: number, v: number): void {
  out[o] = v & 0xff;
  out[o + 1] = (v >>> 8) & 0xff;
  out[o + 2] = (v >>> 16) & 0xff;
  out[o + 3] = (v >>> 24) & 0xff;
}

export function encodeKey(k: PolicyKey, out: Buffer = Buffer.alloc(KEY_SIZE), offset = 0): Buffer {
  u32le(out, offset, IDENTITY_AND_DIRECTION_BITS + l4PrefixBits(k));
  u32le(out, offset + 4, k.identity >>> 0);
  out[offset + 8] = k.direction === 'egress' ? 1 : 0;
  out[offset + 9] = k.protocol;
  out[offset + 10] = k.port >>> 8;
  out[offset + 11] = k.port & 0xff;
  return out;
}

/** A lookup key for one packet: every bit significant, the trie returns the longest match. */
export function encodePacketKey(identity: number, direction: Direction, protocol: number, port: number, out: Buffer = Buffer.alloc(KEY_SIZE)): Buffer {
  return encodeKey({ identity, direction, protocol, port, portPrefixLen: 16 }, out);
}

export function decodeKey(buf: Buffer, offset = 0): PolicyKey {
  const prefix = buf.readUInt32LE(offset);
  const identity = buf.readUInt32LE(offset + 4);
  const direction: Direction = buf.readUInt8(offset + 8) === 1 ? 'egress' : 'ingress';
  if (prefix <= IDENTITY_AND_DIRECTION_BITS) return { identity, direction, protocol: 0, port: 0, portPrefixLen: 0 };
  return { identity, direction, protocol: buf.readUInt8(offset + 9), port: buf.readUInt16BE(offset + 10), portPrefixLen: prefix - IDENTITY_AND_DIRECTION_BITS - 8 };
}

export function encodeValue(e: PolicyEntry, key: PolicyKey, out: Buffer = Buffer.alloc(VALUE_SIZE), offset = 0): Buffer {
  out[offset] = e.proxyPort >>> 8;
  out[offset + 1] = e.proxyPort & 0xff;
  out[offset + 2] = (e.deny ? 1 : 0) | (l4PrefixBits(key) << 3);
  out[offset + 3] = 0;
  u32le(out, offset + 4, e.precedence >>> 0);
  u32le(out, offset + 8, 0);
  return out;
}

export interface DecodedValue {
  readonly entry: PolicyEntry;
  /** Protocol + port prefix bits of the key this value was stored under. */
  readonly l4PrefixBits: number;
}

export function decodeValue(buf: Buffer, offset = 0): DecodedValue {
  const flags = buf.readUInt8(offset + 2);
  return {
    entry: { deny: (flags & 1) === 1, proxyPort: buf.readUInt16BE(offset), precedence: buf.readUInt32LE(offset + 4) },
    l4PrefixBits: flags >> 3,
  };
}

