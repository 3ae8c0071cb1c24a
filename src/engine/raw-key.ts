import type { IdentityId } from '../model/identity.js';
import type { PolicyKey } from '../model/policy-map.js';
import type { Direction } from '../model/rules.js';

/*
 * Raw keys are numbers: the raw layer is probed for every contribution and, per changed key, for
 * each of its broader port prefixes, and a key string would be built, flattened and hashed each
 * time. (protocol, port prefix) is one integer below 2^25: the protocol above the prefix's bits
 * under a leading 1 (len 0 → 1, len 16 → 2^16 + port); identity and direction above it (exact
 * below 2^53 for identities below 2^27).
 */
const P25 = 2 ** 25;
/** A raw key is `idDir * RAW_ID_DIR` plus its (protocol, port prefix) code: its idDir is `Math.floor(rk / RAW_ID_DIR)`. */
export const RAW_ID_DIR = P25;
const P17 = 2 ** 17;
// The helpers below run tens of thousands of times in a cold start, mostly unoptimised, where
// every call costs: none calls another. The direction's bit is 0 for ingress, 1 for egress; the
// prefix code of (port, len) within a protocol is `(1 << len) + (port >>> (16 - len))`.
/** Identity and direction as one small integer. */
export const idDir = (identity: IdentityId, d: Direction): number => identity * 2 + (d === 'ingress' ? 0 : 1);
/** The raw key of (identity and direction, protocol, port prefix). */
export const rawKeyAt = (idd: number, protocol: number, port: number, len: number): number => idd * P25 + protocol * P17 + (1 << len) + (port >>> (16 - len));

export function rawKey(k: PolicyKey): number {
  return rawKeyAt(idDir(k.identity, k.direction), k.protocol, k.port, k.portPrefixLen);
}

/** (direction, protocol) as one integer. */
export const dirProto = (d: Direction, protocol: number): number => (d === 'ingress' ? 0 : 256) + protocol;
/** A key without its identity: its (direction, protocol) above its prefix code. */
export const portKeyOf = (k: PolicyKey): number => ((k.direction === 'ingress' ? 0 : 256) + k.protocol) * P17 + (1 << k.portPrefixLen) + (k.port >>> (16 - k.portPrefixLen));

/** Does `outer` cover every packet `inner` covers (ignoring identity)? */
export function covers(outer: PolicyKey, inner: PolicyKey): boolean {
  if (outer.direction !== inner.direction) return false;
  if (outer.protocol === 0) return true;
  if (outer.protocol !== inner.protocol || inner.portPrefixLen < outer.portPrefixLen) return false;
  // maskPort(inner.port, len) === maskPort(outer.port, len), inline (ports are below 2^16).
  const shift = 16 - outer.portPrefixLen;
  return outer.portPrefixLen === 0 || inner.port >> shift === outer.port >> shift;
}

/** The intersection of two keys (nested or disjoint), or undefined. */
export function meet(a: PolicyKey, b: PolicyKey): PolicyKey | undefined {
  if (a.identity !== 0 && b.identity !== 0 && a.identity !== b.identity) return undefined;
  const inner = covers(a, b) ? b : covers(b, a) ? a : undefined;
  if (!inner) return undefined;
  const identity = a.identity !== 0 ? a.identity : b.identity;
  return inner.identity === identity ? inner : { ...inner, identity };
}
