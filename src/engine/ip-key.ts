import { IpAddress, parseIp } from '../model/cidr.js';

/**
 * A learnt IP as a Map key that costs no object: an IPv4 address is its 32 bits as a signed
 * int32 (a small integer in V8, stored inline in a Map's table), an IPv6 address its canonical
 * text. The FQDN stage and the DNS cache key millions of IPs this way.
 */
export type IpKey = number | string;

export function ipKey(ip: IpAddress): IpKey {
  return ip.family === 'ipv4' ? Number(ip.value) | 0 : ip.text;
}

/**
 * The key of an address's canonical text (`IpAddress.text`: a dotted quad without leading zeros,
 * or IPv6 text, returned as is); undefined when it is neither. Allocates nothing for IPv4.
 */
export function ipKeyOfText(text: string): IpKey | undefined {
  if (text.includes(':')) return text;
  let v = 0;
  let part = 0;
  let digits = 0;
  let dots = 0;
  for (let i = 0; i <= text.length; i++) {
    const c = i < text.length ? text.charCodeAt(i) : 46;
    if (c === 46) {
      if (digits === 0 || part > 255 || ++dots > 4) return undefined;
      v = v * 256 + part;
      part = 0;
      digits = 0;
    } else if (c >= 48 && c <= 57) {
      if (digits > 0 && part === 0) return undefined;
      part = part * 10 + (c - 48);
      if (++digits > 3) return undefined;
    } else return undefined;
  }
  return dots === 4 ? v | 0 : undefined;
}

/** The address of a key (a new object each call: keep it only as long as needed). */
export function ipOfKey(key: IpKey): IpAddress {
  if (typeof key === 'string') return parseIp(key);
  return { family: 'ipv4', value: BigInt(key >>> 0), text: ipTextOfKey(key) };
}

/** The canonical text of a key (`ipKeyOfText`'s inverse on canonical addresses). */
export function ipTextOfKey(key: IpKey): string {
  if (typeof key === 'string') return key;
  const v = key >>> 0;
  return `${v >>> 24}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`;
}

const SHARDS = 64;

/**
 * A Map of learnt IPs split in 64 by the key's low bits: each part rehashes on its own, so
 * growing to millions of IPs never stops a transaction to copy one table of millions of entries
 * (one part holds 1/64 of them), and no part nears V8's limit of 2^24 entries per Map.
 */
export class IpMap<V> {
  private readonly shards: Map<IpKey, V>[] = Array.from({ length: SHARDS }, () => new Map<IpKey, V>());
  private count = 0;

  private shard(key: IpKey): Map<IpKey, V> {
    const h = typeof key === 'number' ? key : key.charCodeAt(key.length - 1) * 31 + key.charCodeAt(key.length >> 1);
    return this.shards[h & (SHARDS - 1)] as Map<IpKey, V>;
  }

  get size(): number {
    return this.count;
  }

  get(key: IpKey): V | undefined {
    return this.shard(key).get(key);
  }

  has(key: IpKey): boolean {
    return this.shard(key).has(key);
  }

  set(key: IpKey, value: V): void {
    const s = this.shard(key);
    const before = s.size;
    s.set(key, value);
    this.count += s.size - before;
  }

  delete(key: IpKey): void {
    if (this.shard(key).delete(key)) this.count--;
  }

  *keys(): IterableIterator<IpKey> {
    for (const s of this.shards) yield* s.keys();
  }

  *entries(): IterableIterator<[IpKey, V]> {
    for (const s of this.shards) yield* s.entries();
  }
}
