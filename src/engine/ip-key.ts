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

/** The key of an address's canonical text (`IpAddress.text`); undefined when it is not one. */
export function ipKeyOfText(text: string): IpKey | undefined {
  if (text.includes(':')) return text;
  const parts = text.split('.');
  if (parts.length !== 4) return undefined;
  let v = 0;
  for (const p of parts) {
    const n = Number(p);
    if (!Number.isInteger(n) || n < 0 || n > 255) return undefined;
    v = v * 256 + n;
  }
  return v | 0;
}

/** The address of a key (a new object each call: keep it only as long as needed). */
export function ipOfKey(key: IpKey): IpAddress {
  if (typeof key === 'string') return parseIp(key);
  const v = key >>> 0;
  return { family: 'ipv4', value: BigInt(v), text: `${v >>> 24}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}` };
}
