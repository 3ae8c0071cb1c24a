import ipaddr from 'ipaddr.js';
import { goParseAddr } from './netip.js';

/** An address family. */
export type IpFamily = 'ipv4' | 'ipv6';

/** A normalised prefix: the network address (host bits cleared) and its length. */
export interface Cidr {
  readonly family: IpFamily;
  /** Address as an unsigned integer. */
  readonly network: bigint;
  readonly prefixLength: number;
  /** Canonical text, e.g. `10.0.0.0/8`. */
  readonly text: string;
}

/** A parsed IPv4 or IPv6 address (`parseIp`): its family, numeric value and canonical text. */
export interface IpAddress {
  readonly family: IpFamily;
  readonly value: bigint;
  readonly text: string;
}

export function bitsOf(family: IpFamily): number {
  return family === 'ipv4' ? 32 : 128;
}

function fromBigInt(v: bigint, family: IpFamily): string {
  const n = bitsOf(family) / 8;
  const bytes: number[] = [];
  for (let i = n - 1; i >= 0; i--) bytes.push(Number((v >> BigInt(i * 8)) & 0xffn));
  const addr = ipaddr.fromByteArray(bytes);
  return addr.kind() === 'ipv6' ? (addr as ipaddr.IPv6).toRFC5952String() : addr.toString();
}

/** The network of length `prefixLength` holding address or network `value`. */
export function prefixNetwork(family: IpFamily, value: bigint, prefixLength: number): bigint {
  return value & mask(family, prefixLength);
}

function mask(family: IpFamily, prefixLength: number): bigint {
  const bits = BigInt(bitsOf(family));
  const all = (1n << bits) - 1n;
  return all ^ ((1n << (bits - BigInt(prefixLength))) - 1n);
}

/**
 * Addresses are read with Go's netip rules (goParseAddr), as Cilium and the Kubernetes API read them.
 * IPv6 zone indexes (`fe80::1%eth0`) are refused: a zone names a link on one host, and a policy map
 * keyed by address cannot hold it.
 */
const IPV4_RE = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

export function isValidIp(text: string): boolean {
  // The common case, a dotted quad, without the general parser (this runs for every pod event).
  return IPV4_RE.test(text) || goParseAddr(text) !== undefined;
}

/** Parses an IP address; throws Error with a readable message if invalid. */
export function parseIp(text: string): IpAddress {
  const addr = goParseAddr(text);
  if (addr === undefined) throw new Error(`"${text}" is not a valid IP address`);
  return { family: addr.family, value: addr.value, text: fromBigInt(addr.value, addr.family) };
}

/**
 * An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) as the IPv4 address it maps, any other address as it
 * is: how Cilium's DNS proxy reads the addresses of an answer (pkg/fqdn/dnsproxy `ExtractMsgDetails`
 * takes A and AAAA records through netipx `FromStdIP`, which "implicitly unmaps IPv6-mapped IPv4
 * addresses"), so an AAAA record `::ffff:192.0.2.1` teaches the IPv4 address 192.0.2.1.
 */
export function unmapIp(ip: IpAddress): IpAddress {
  if (ip.family !== 'ipv6' || ip.value >> 32n !== 0xffffn) return ip;
  const value = ip.value & 0xffffffffn;
  return { family: 'ipv4', value, text: fromBigInt(value, 'ipv4') };
}

/**
 * Parses a CIDR. A bare address is taken as a host prefix (/32 or /128), as Cilium's
 * `toCIDR` does. Host bits are cleared, as Kubernetes does for ipBlock matching.
 */
export function parseCidr(text: string): Cidr {
  let addrText = text;
  let len: number | undefined;
  const slash = text.indexOf('/');
  if (slash >= 0) {
    addrText = text.slice(0, slash);
    const lenText = text.slice(slash + 1);
    if (!/^\d{1,3}$/.test(lenText)) throw new Error(`"${text}" is not a valid CIDR`);
    len = Number(lenText);
  }
  if (!isValidIp(addrText)) throw new Error(`"${text}" is not a valid CIDR`);
  const ip = parseIp(addrText);
  const prefixLength = len ?? bitsOf(ip.family);
  if (prefixLength > bitsOf(ip.family)) throw new Error(`"${text}" has a prefix length above ${bitsOf(ip.family)}`);
  const network = ip.value & mask(ip.family, prefixLength);
  return { family: ip.family, network, prefixLength, text: `${fromBigInt(network, ip.family)}/${prefixLength}` };
}

/** The host prefix of an address (/32 or /128): the ipcache key of a pod IP. */
export function hostCidr(ip: IpAddress): Cidr {
  const prefixLength = ip.family === 'ipv4' ? 32 : 128;
  return { family: ip.family, network: ip.value, prefixLength, text: `${ip.text}/${prefixLength}` };
}

export function cidrContainsIp(c: Cidr, ip: IpAddress): boolean {
  return c.family === ip.family && (ip.value & mask(c.family, c.prefixLength)) === c.network;
}

/** True when `inner` lies within `outer` (equal counts). */
export function cidrContainsCidr(outer: Cidr, inner: Cidr): boolean {
  return (
    outer.family === inner.family &&
    inner.prefixLength >= outer.prefixLength &&
    (inner.network & mask(outer.family, outer.prefixLength)) === outer.network
  );
}

/**
 * Prefixes, asked whether one of them contains a given prefix, in time proportional to the number
 * of distinct prefix lengths (at most 33 or 129), not to the number of prefixes: a CIDR peer's
 * exceptions are checked against every CIDR identity, and one policy may list tens of thousands
 * (attack finding 1305: 60,000 `except` entries took minutes of CPU, quadratic).
 */
export class PrefixSet {
  /** Per family: [prefix length, its mask, the networks of that length], shortest first. */
  private readonly byFamily = new Map<IpFamily, [number, bigint, Set<bigint>][]>();

  constructor(prefixes: readonly Cidr[]) {
    for (const c of prefixes) {
      let lengths = this.byFamily.get(c.family);
      if (lengths === undefined) this.byFamily.set(c.family, (lengths = []));
      let entry = lengths.find((l) => l[0] === c.prefixLength);
      if (entry === undefined) lengths.push((entry = [c.prefixLength, mask(c.family, c.prefixLength), new Set()]));
      entry[2].add(c.network);
    }
    for (const lengths of this.byFamily.values()) lengths.sort((a, b) => a[0] - b[0]);
  }

  /** True when some prefix of the set contains `c` (cidrContainsCidr). */
  containsCidr(c: Cidr): boolean {
    for (const [length, m, networks] of this.byFamily.get(c.family) ?? []) {
      if (length > c.prefixLength) return false;
      if (networks.has(c.network & m)) return true;
    }
    return false;
  }
}

/** The n-th host address of a prefix (for allocating pod IPs). */
export function nthAddress(c: Cidr, n: bigint): IpAddress {
  const value = c.network + n;
  return { family: c.family, value, text: fromBigInt(value, c.family) };
}
