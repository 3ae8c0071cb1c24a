import type { IdentityId } from '../model/identity.js';
import { maskPort, PolicyKey } from '../model/policy-map.js';
import type { Direction } from '../model/rules.js';

/*
 * Raw keys are numbers: the raw layer is probed for every contribution and, per changed key, for
 * each of its broader port prefixes, and a key string would be built, flattened and hashed each
 * time. (protocol, port prefix) is one integer below 2^25: the protocol above the prefix's bits
 * under a leading 1 (len 0 → 1, len 16 → 2^16 + port); identity and direction above it (exact
 * below 2^53 for identities below 2^27).
 */
const P25 = 2 ** 25;
const P17 = 2 ** 17;
const dirBit = (d: Direction): number => (d === 'ingress' ? 0 : 1);
/** Identity and direction as one small integer. */
export const idDir = (identity: IdentityId, d: Direction): number => identity * 2 + dirBit(d);
/** The prefix code of (port, len) within a protocol. */
const prefixCode = (port: number, len: number): number => (1 << len) + (port >>> (16 - len));
/** The raw key of (identity and direction, protocol, port prefix). */
export const rawKeyAt = (idd: number, protocol: number, port: number, len: number): number => idd * P25 + protocol * P17 + prefixCode(port, len);

export function rawKey(k: PolicyKey): number {
  return rawKeyAt(idDir(k.identity, k.direction), k.protocol, k.port, k.portPrefixLen);
}

/** (direction, protocol) as one integer. */
export const dirProto = (d: Direction, protocol: number): number => dirBit(d) * 256 + protocol;
/** A key without its identity. */
export const portKeyOf = (k: PolicyKey): number => dirProto(k.direction, k.protocol) * P17 + prefixCode(k.port, k.portPrefixLen);

/** Does `outer` cover every packet `inner` covers (ignoring identity)? */
export function covers(outer: PolicyKey, inner: PolicyKey): boolean {
  if (outer.direction !== inner.direction) return false;
  if (outer.protocol === 0) return true;
  if (outer.protocol !== inner.protocol || inner.portPrefixLen < outer.portPrefixLen) return false;
  return maskPort(inner.port, outer.portPrefixLen) === maskPort(outer.port, outer.portPrefixLen);
}

/** The intersection of two keys (nested or disjoint), or undefined. */
export function meet(a: PolicyKey, b: PolicyKey): PolicyKey | undefined {
  if (a.identity !== 0 && b.identity !== 0 && a.identity !== b.identity) return undefined;
  const inner = covers(a, b) ? b : covers(b, a) ? a : undefined;
  if (!inner) return undefined;
  const identity = a.identity !== 0 ? a.identity : b.identity;
  return inner.identity === identity ? inner : { ...inner, identity };
}
