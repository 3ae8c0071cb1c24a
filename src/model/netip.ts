/**
 * Go's `netip.ParseAddr` (src/net/netip/netip.go `parseIPv4Fields`, `parseIPv6`), the address reader of
 * Cilium (`CIDR.sanitize`, `CIDRRule.sanitize`: netip.ParsePrefix), of Go's net.ParseIP/ParseCIDR since
 * Go 1.22 (the API server's `format: cidr`/`ipv4`/`ipv6` checks) and of the apiserver CEL `cidr()`/`ip()`.
 * Ported rule by rule so that every text form distill reads is read as those readers do (attack finding
 * 650): no leading zero in an IPv4 octet, also inside an IPv6 text (`::01.2.3.4`); 1 to 4 hex digits a
 * group; one `::`, standing for at least one zero group; an embedded IPv4 only as the last 32 bits.
 * Zones (`%eth0`) are refused here: netip keeps them, but no prefix (ParsePrefix) or policy map key holds one.
 * Returns the family and the value, or undefined when Go would return an error.
 */
export function goParseAddr(s: string): { family: 'ipv4' | 'ipv6'; value: bigint } | undefined {
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (c === '.') {
      const v = parseIPv4Fields(s);
      return v === undefined ? undefined : { family: 'ipv4', value: v };
    }
    if (c === ':') {
      const v = parseIPv6(s);
      return v === undefined ? undefined : { family: 'ipv6', value: v };
    }
    if (c === '%') return undefined;
  }
  return undefined;
}

/** The four octets of a dotted quad (netip `parseIPv4Fields`), as a 32-bit value. */
function parseIPv4Fields(s: string): bigint | undefined {
  let value = 0n;
  let val = 0;
  let pos = 0;
  let digits = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0x30 && c <= 0x39) {
      if (digits === 1 && val === 0) return undefined; // "IPv4 field has octet with leading zero"
      val = val * 10 + (c - 0x30);
      digits++;
      if (val > 255) return undefined;
    } else if (c === 0x2e) {
      if (i === 0 || i === s.length - 1 || s.charCodeAt(i - 1) === 0x2e) return undefined;
      if (pos === 3) return undefined; // "IPv4 address too long"
      value = (value << 8n) | BigInt(val);
      pos++;
      val = 0;
      digits = 0;
    } else {
      return undefined;
    }
  }
  if (pos < 3) return undefined;
  return (value << 8n) | BigInt(val);
}

function hexDigit(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x61 + 10;
  if (c >= 0x41 && c <= 0x46) return c - 0x41 + 10;
  return -1;
}

/** netip `parseIPv6` without zones: the 16 bytes as a 128-bit value. */
function parseIPv6(input: string): bigint | undefined {
  if (input.includes('%')) return undefined;
  let s = input;
  const ip = new Array<number>(16).fill(0);
  let ellipsis = -1;
  if (s.length >= 2 && s[0] === ':' && s[1] === ':') {
    ellipsis = 0;
    s = s.slice(2);
    if (s.length === 0) return 0n;
  }
  let i = 0;
  while (i < 16) {
    let off = 0;
    let acc = 0;
    for (; off < s.length; off++) {
      const d = hexDigit(s.charCodeAt(off));
      if (d < 0) break;
      acc = acc * 16 + d;
      if (off > 3) return undefined; // "each group must have 4 or less digits"
    }
    if (off === 0) return undefined;
    if (off < s.length && s[off] === '.') {
      if (ellipsis < 0 && i !== 12) return undefined; // "embedded IPv4 address must replace the final 2 fields"
      if (i + 4 > 16) return undefined;
      const v4 = parseIPv4Fields(s);
      if (v4 === undefined) return undefined;
      for (let k = 0; k < 4; k++) ip[i + k] = Number((v4 >> BigInt(24 - 8 * k)) & 0xffn);
      s = '';
      i += 4;
      break;
    }
    ip[i] = acc >> 8;
    ip[i + 1] = acc & 0xff;
    i += 2;
    s = s.slice(off);
    if (s.length === 0) break;
    if (s[0] !== ':' || s.length === 1) return undefined;
    s = s.slice(1);
    if (s[0] === ':') {
      if (ellipsis >= 0) return undefined; // "multiple :: in address"
      ellipsis = i;
      s = s.slice(1);
      if (s.length === 0) break;
    }
  }
  if (s.length !== 0) return undefined; // "trailing garbage after address"
  if (i < 16) {
    if (ellipsis < 0) return undefined; // "address string too short"
    const n = 16 - i;
    for (let j = i - 1; j >= ellipsis; j--) ip[j + n] = ip[j] ?? 0;
    for (let j = ellipsis; j < ellipsis + n; j++) ip[j] = 0;
  } else if (ellipsis >= 0) {
    return undefined; // "the :: must expand to at least one field of zeros"
  }
  let v = 0n;
  for (const b of ip) v = (v << 8n) | BigInt(b);
  return v;
}
