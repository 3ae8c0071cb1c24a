import { MAX_PORT } from '../model/ports.js';
import { Reader } from './reader.js';

/*
 * Port numbers as Cilium reads them: Go's strconv.ParseUint(s, 0, 16).
 */

/**
 * A port string that is not a service name, as Cilium reads it: `strconv.ParseUint(port, 0, 16)`
 * (PortProtocol.sanitize, pkg/policy/api/rule_validation.go; createL4Filter, pkg/policy/l4.go).
 * Base 0: a leading 0 means octal ("010" is 8, "08" is refused), 0x/0o/0b prefixes, and `_`
 * between digits ("8_0" is 80). The CRD's port pattern is anchored at the start only for numbers,
 * so any string that starts with a digit reaches this parser.
 */
export function goPortNumber(r: Reader, raw: string, path: string): number {
  const n = goParseUint16(raw);
  if (n === 'syntax') r.fail(path, `"${raw}" is not a port number: Cilium reads a leading 0 as octal, and "_" only between digits (strconv.ParseUint base 0); nor is it a valid port name`);
  if (n === 'range') r.fail(path, isOverlongName(raw) ? `"${raw}" is no port name (IANA_SVC_NAME: at most 15 characters), and as a number (strconv.ParseUint) it is above ${MAX_PORT}` : `${raw} is above ${MAX_PORT}`);
  return n;
}

/** Letters outside a base prefix: a name too long to be one, which Go's parser stops on at the first digit past the range. */
function isOverlongName(s: string): boolean {
  return /[a-z]/i.test(s.replace(/^0[box]/i, '')) && s.length > 15;
}

/** Go's strconv.ParseUint(s, 0, 16): a number, or which error Go returns. */
function goParseUint16(s: string): number | 'syntax' | 'range' {
  if (s === '') return 'syntax';
  let base = 10;
  let digits = s;
  if (s[0] === '0') {
    const p = s.length >= 3 ? (s[1] as string).toLowerCase() : '';
    base = p === 'b' ? 2 : p === 'o' ? 8 : p === 'x' ? 16 : 8;
    digits = p === 'b' || p === 'o' || p === 'x' ? s.slice(2) : s.slice(1);
  }
  let n = 0;
  let underscores = false;
  for (const c of digits) {
    if (c === '_') {
      underscores = true;
      continue;
    }
    const d = parseInt(c, 36);
    if (Number.isNaN(d) || d >= base) return 'syntax';
    n = n * base + d;
    if (n > MAX_PORT) return 'range';
  }
  if (underscores && !goUnderscoreOk(s)) return 'syntax';
  return n;
}

/** Go's strconv.underscoreOK: `_` only between digits, or right after a base prefix. */
function goUnderscoreOk(s: string): boolean {
  let saw = '^';
  let i = 0;
  const hex = s.length >= 2 && s[0] === '0' && (s[1] as string).toLowerCase() === 'x';
  if (s.length >= 2 && s[0] === '0' && 'box'.includes((s[1] as string).toLowerCase())) {
    i = 2;
    saw = '0';
  }
  for (; i < s.length; i++) {
    const c = s[i] as string;
    if ((c >= '0' && c <= '9') || (hex && /^[a-fA-F]$/.test(c))) saw = '0';
    else if (c === '_') {
      if (saw !== '0') return false;
      saw = '_';
    } else {
      if (saw === '_') return false;
      saw = '!';
    }
  }
  return saw !== '_';
}
