/**
 * An independent reader of CiliumNetworkPolicy L7 HTTP rules (`toPorts[].rules.http`), written from Cilium's
 * and Envoy's sources and NOT from distill's: it imports nothing from src/. cilium-np.ts applies it to the
 * port rules that admit a flow; test/independent/cilium-l7.property.test.ts holds distill to it.
 *
 * Sources:
 * - cilium pkg/policy/api/http.go `PortRuleHTTP`: Path, Method, Host are "an extended POSIX regex" matched
 *   against the whole value (Envoy `safe_regex` RE2, full match); Host against the Host header / `:authority`
 *   as sent; `Headers` is a list of "Name" (present) or "Name: value" (exact) strings; `HeaderMatches` with a
 *   `Mismatch` action (LOG, ADD, DELETE, REPLACE) does not deny. Empty fields match everything.
 * - cilium Documentation/security/policy/language.rst "Layer 7 Examples": the rules of a port OR; a rule
 *   allowing the same peer and port without L7 rules makes "the layer 7 portions of the latter rule have no
 *   effect"; a request must pass every proxy on its way (egress of the client, ingress of the server).
 * - cilium pkg/envoy/xds_server.go (listener config): `normalize_path: true`, `merge_slashes: true`,
 *   `path_with_escaped_slashes_action: UNESCAPE_AND_REDIRECT`; Envoy
 *   source/common/http/conn_manager_utility.cc `maybeNormalizePath` (escaped slashes, then `canonicalPath`,
 *   then `mergeSlashes`), path_utility.cc (chromium-url canonicalization: `\` is `/`, unreserved escapes
 *   decoded, dot segments removed as RFC 3986 5.2.4; the query is left alone).
 * - Envoy source/common/http/header_utility.cc `getAllOfHeaderAsString`: a header sent twice is matched on
 *   its values joined with ",".
 */
interface Yaml { [k: string]: unknown }
const obj = (v: unknown): Yaml => (v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Yaml) : {});
const list = (v: unknown): unknown[] | undefined => (Array.isArray(v) ? v : undefined);
const str = (v: unknown): string => (v === undefined || v === null ? '' : String(v));

export interface HttpRequest {
  readonly method: string;
  readonly path: string;
  readonly host: string | undefined;
  readonly headers: readonly (readonly [string, string])[];
}

/** The probe's `http:` field (docs/scenarios.md: method GET, path `/` by default; headers a map or "N: v" list). */
export function readRequest(v: unknown): HttpRequest {
  const o = obj(v);
  const raw = o.headers;
  const headers: [string, string][] = Array.isArray(raw)
    ? raw.map((h) => { const s = str(h); const i = s.indexOf(':'); return [s.slice(0, i).trim(), s.slice(i + 1).trim()] as [string, string]; })
    : Object.entries(obj(raw)).map(([k, x]) => [k, str(x)] as [string, string]);
  return { method: o.method === undefined ? 'GET' : str(o.method), path: o.path === undefined ? '/' : str(o.path), host: o.host === undefined ? undefined : str(o.host), headers };
}

const UNRESERVED = /[A-Za-z0-9\-._~]/;

/** RFC 3986 5.2.4 remove_dot_segments over a path starting with `/`. */
function removeDots(path: string): string {
  const out: string[] = [];
  const segs = path.split('/').slice(1);
  segs.forEach((s, i) => {
    const last = i === segs.length - 1;
    if (s === '.' || s === '..') {
      if (s === '..' && out.length > 0) out.pop();
      if (last) out.push('');
    } else out.push(s);
  });
  return `/${out.join('/')}`;
}

/** The path Cilium's Envoy routes on (see the header); undefined = Envoy rejects the request itself. */
function normalizePath(target: string): string | undefined {
  if (!target.startsWith('/') || target.includes('#')) return undefined;
  const q = target.indexOf('?');
  let p = q < 0 ? target : target.slice(0, q);
  const query = q < 0 ? '' : target.slice(q);
  p = p.replace(/%2f/gi, '/').replace(/%5c/gi, '\\').replace(/\\/g, '/');
  p = p.replace(/%([0-9A-Fa-f]{2})/g, (m, h: string) => { const c = String.fromCharCode(parseInt(h, 16)); return UNRESERVED.test(c) ? c : m.toUpperCase(); });
  p = removeDots(p).replace(/\/{2,}/g, '/');
  return p + query;
}

function full(re: unknown, value: string): boolean {
  return re === undefined || re === null || re === '' || new RegExp(`^(?:${str(re)})$`).test(value);
}

function headerValue(req: HttpRequest, name: string): string | undefined {
  const vals = req.headers.filter(([k]) => k.toLowerCase() === name.toLowerCase()).map(([, v]) => v);
  return vals.length === 0 ? undefined : vals.join(',');
}

function authority(req: HttpRequest): string {
  return req.host ?? headerValue(req, 'host') ?? '';
}

function headerRule(h: string, req: HttpRequest): boolean {
  const i = h.indexOf(':', h.startsWith(':') ? 1 : 0);
  const name = (i < 0 ? h : h.slice(0, i)).trim();
  const lower = name.toLowerCase();
  const got = lower === 'host' || lower === ':authority' ? authority(req) || undefined : headerValue(req, name);
  return i < 0 ? got !== undefined : got === h.slice(i + 1).trim();
}

/** One `PortRuleHTTP` (http.go): every set field must match. */
export function httpRuleMatches(rule: Yaml, req: HttpRequest): boolean {
  const path = normalizePath(req.path);
  if (path === undefined) return false;
  if (!full(rule.method, req.method) || !full(rule.path, path) || !full(rule.host, authority(req))) return false;
  if (!(list(rule.headers) ?? []).every((h) => headerRule(str(h), req))) return false;
  return (list(rule.headerMatches) ?? []).map(obj).every((m) => m.mismatch !== undefined || headerRule(m.value === undefined || m.value === '' ? str(m.name) : `${str(m.name)}: ${str(m.value)}`, req));
}
