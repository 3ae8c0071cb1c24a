/**
 * Address containment for the independent readers (imports nothing from src/).
 * RFC 4291 2.2 text forms; family-strict as Go's netip.Prefix.Contains, which Cilium's ipcache and CIDR
 * selectors use: "An IPv4 address will not match an IPv6 prefix. An IPv4-mapped IPv6 address will not match
 * an IPv4 prefix."
 */
function ipv4(ip: string): number {
  const p = ip.split('.').map(Number);
  if (p.length !== 4 || p.some((x) => !Number.isInteger(x) || x < 0 || x > 255)) throw new Error(`not an IPv4 address: ${ip}`);
  return ((p[0]! << 24) | (p[1]! << 16) | (p[2]! << 8) | p[3]!) >>> 0;
}

/** RFC 4291 2.2 text form (`::`, a dotted IPv4 tail) as a 128-bit number. */
function ipv6(ip: string): bigint {
  const [head = '', tail] = ip.split('::');
  const groups = (part: string): string[] => (part === '' ? [] : part.split(':').flatMap((g) => (g.includes('.') ? [(ipv4(g) >>> 16).toString(16), (ipv4(g) & 0xffff).toString(16)] : [g])));
  const h = groups(head);
  const t = tail === undefined ? [] : groups(tail);
  const all = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  if (all.length !== 8 || all.some((g) => !/^[0-9a-f]{1,4}$/i.test(g))) throw new Error(`not an IPv6 address: ${ip}`);
  return all.reduce((acc, g) => (acc << 16n) | BigInt(parseInt(g, 16)), 0n);
}

export function inCidr(ip: string, cidr: string): boolean {
  const [base = '', len] = cidr.split('/');
  const bits = Number(len);
  if (ip.includes(':') !== base.includes(':')) return false;
  if (!ip.includes(':')) {
    if (bits === 0) return true;
    const mask = (~0 << (32 - bits)) >>> 0;
    return ((ipv4(ip) & mask) >>> 0) === ((ipv4(base) & mask) >>> 0);
  }
  const shift = BigInt(128 - bits);
  return ipv6(ip) >> shift === ipv6(base) >> shift;
}

/** An IPv6 address in ::ffff:0:0/96 (Go netip `Is4In6`). */
export function isV4Mapped(ip: string): boolean {
  return ip.includes(':') && ipv6(ip) >> 32n === 0xffffn;
}

/** The same address in any of its text forms (`fd00:0::b` is `fd00::b`); families never equal. */
export function sameIp(a: string, b: string): boolean {
  if (a.includes(':') !== b.includes(':')) return false;
  return a.includes(':') ? ipv6(a) === ipv6(b) : ipv4(a) === ipv4(b);
}
