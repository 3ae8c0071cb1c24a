/**
 * The `:path` Cilium's HTTP policy filter sees. Cilium starts Envoy with `--http-normalize-path`
 * (default true, pkg/envoy cell.go), which sets the connection manager's `normalize_path`,
 * `merge_slashes` and `path_with_escaped_slashes_action: UNESCAPE_AND_REDIRECT`
 * (pkg/envoy/xds_server.go getHttpFilterChainProto). Envoy applies them before any HTTP filter
 * (ConnectionManagerUtility::maybeNormalizePath): `%2F`/`%5C` unescaped, then RFC 3986
 * canonicalization (Chromium's CanonicalizePath), then runs of `/` merged, on the part before
 * `?` only. A request whose slashes were unescaped is answered with a redirect to the new path:
 * it is that follow-up request the filter judges, so the normalized path is what rules match.
 */

/** How Chromium's path canonicalizer treats a byte: copy, escape, unescape when escaped, or fail. */
const enum Kind {
  Pass,
  Escape,
  Unescape,
  Invalid,
}

function kindOf(b: number): Kind {
  if (b === 0) return Kind.Invalid;
  if (b < 0x20 || b >= 0x7f) return Kind.Escape;
  const c = String.fromCharCode(b);
  if (/[A-Za-z0-9\-_~]/.test(c)) return Kind.Unescape;
  // kPathCharLookup: space " # % < > ? \ ^ ` { | } are escaped ('%' and '\' are handled before).
  return ' "#%<>?\\^`{|}'.includes(c) ? Kind.Escape : Kind.Pass;
}

const HEX = /^[0-9A-Fa-f]{2}$/;

function escaped(b: number): string {
  return `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
}

/** The length of a dot at `i` (`.` or `%2e`), 0 if none (Chromium's IsDot). */
function dotAt(s: string, i: number): number {
  if (s[i] === '.') return 1;
  return s.slice(i, i + 3).toLowerCase() === '%2e' ? 3 : 0;
}

const isSlash = (c: string | undefined): boolean => c === '/' || c === '\\';

/** Drops the last segment of `out` (which ends in '/'), never above the first slash. */
function backUp(out: string[]): void {
  out.pop();
  while (out.length > 1 && out[out.length - 1] !== '/') out.pop();
  if (out.length === 0) out.push('/');
}

/**
 * Chromium's DoPath over the path as bytes (UTF-8 as sent). Undefined when it fails (a NUL, raw
 * or escaped: Envoy rejects the request) or meets a `%` that starts no escape: Chromium copies
 * those and then rewrites nested escapes (`%%30`), which distill does not model, so it refuses the
 * request (more closed than the proxy).
 */
function canonicalize(path: string): string | undefined {
  const s = Array.from(new TextEncoder().encode(path), (b) => (b < 0x80 ? String.fromCharCode(b) : escaped(b))).join('');
  const out: string[] = isSlash(s[0]) ? [] : ['/'];
  for (let i = 0; i < s.length; i++) {
    const c = s[i] as string;
    const dot = dotAt(s, i);
    if (dot > 0) {
      i += dot - 1;
      if (out[out.length - 1] !== '/') {
        out.push('.');
        continue;
      }
      const after = i + 1;
      if (after === s.length) continue;
      if (isSlash(s[after])) {
        i = after;
        continue;
      }
      const second = dotAt(s, after);
      if (second > 0 && (after + second === s.length || isSlash(s[after + second]))) {
        backUp(out);
        i = after + second - (after + second === s.length ? 1 : 0);
        continue;
      }
      out.push('.');
      continue;
    }
    if (c === '\\') out.push('/');
    else if (c === '%') {
      const hex = s.slice(i + 1, i + 3);
      if (!HEX.test(hex)) return undefined;
      const b = parseInt(hex, 16);
      const kind = kindOf(b);
      if (kind === Kind.Invalid) return undefined;
      out.push(kind === Kind.Unescape ? String.fromCharCode(b) : `%${hex}`);
      i += 2;
    } else {
      const kind = kindOf(c.charCodeAt(0));
      if (kind === Kind.Invalid) return undefined;
      out.push(kind === Kind.Escape ? escaped(c.charCodeAt(0)) : c);
    }
  }
  return out.join('');
}

/** The `:path` after Envoy's normalization as Cilium configures it, or undefined if Envoy rejects it. */
export function normalizedHttpPath(target: string): string | undefined {
  // Envoy answers 404 to a target that is empty or does not start with '/' before normalizing
  // (ConnectionManagerImpl::ActiveStream::decodeHeaders, downstream_rq_non_relative_path), and
  // rejects one with a '#' (maybeNormalizePath: runtime guard http_reject_path_with_fragment, default on).
  if (!target.startsWith('/') || target.includes('#')) return undefined;
  const q = target.indexOf('?');
  const path = q < 0 ? target : target.slice(0, q);
  const query = q < 0 ? '' : target.slice(q);
  const unescaped = path.replace(/%2f/gi, '/').replace(/%5c/gi, '\\');
  const canonical = canonicalize(unescaped);
  if (canonical === undefined) return undefined;
  return canonical.replace(/\/{2,}/g, '/') + query;
}

/**
 * An HTTP/1 absolute-form request target (`GET http://shop/admin`, RFC 9112 §3.2.2) as Envoy's
 * codec reads it before any filter (http1 codec_impl.cc `ServerConnectionImpl::handlePath`, with
 * `allow_absolute_url`, on by default): the Host header is replaced by the target's host and port
 * (RFC 9110 §7.2), and `:path` is the rest, `/` when empty (utility.cc `Url::initialize`).
 * Undefined for an origin-form target (it starts with `/`); null for one the codec answers with
 * 400: a scheme other than http/https, no host, or user info, which distill refuses rather than
 * model (more closed).
 */
export function absoluteTarget(target: string): { readonly authority: string; readonly path: string } | null | undefined {
  if (target.startsWith('/') || target === '*') return undefined;
  const m = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/([^/?#]*)(.*)$/s.exec(target);
  if (m === null) return undefined;
  const [, scheme = '', authority = '', rest = ''] = m;
  const lower = scheme.toLowerCase();
  if ((lower !== 'http' && lower !== 'https') || authority === '' || authority.includes('@')) return null;
  return { authority, path: rest === '' ? '/' : rest };
}
