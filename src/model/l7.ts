import { RE2JS, RE2JSSyntaxException } from 're2js';
import { isDnsWildcard, multiLabelPrefixLength } from './fqdn.js';
import { absoluteTarget, normalizedHttpPath } from './l7-path.js';
import type { DnsRule, HttpRule, KafkaRule, L7Rules } from './rules.js';

/**
 * L7 request matching as Cilium's proxies do it (groundwork for L7 verdicts, issue 6):
 * a request is allowed when at least one rule of the list matches; an empty list allows all;
 * every field a rule sets must match.
 */

/** An HTTP request as the proxy sees it (`engine.l7Verdict`, `engine.l7AllowedBy`). */
export interface HttpRequest {
  readonly method: string;
  /** The request target as sent (`:path`, query string included). */
  readonly path: string;
  readonly host?: string;
  /** Header names are case-insensitive. */
  readonly headers?: Readonly<Record<string, string>>;
}

/** A Kafka request as the proxy sees it. */
export interface KafkaRequest {
  /** Kafka API key name, lower case: `produce`, `fetch`, `metadata`, ... */
  readonly apiKey: string;
  readonly apiVersion?: number;
  readonly clientID?: string;
  readonly topic?: string;
}

/** A DNS query as the DNS proxy sees it: the queried name. */
export interface DnsQuery {
  readonly name: string;
}

/** One request to a redirected port, of one of the parsers distill models (HTTP, Kafka, DNS). */
export type L7Request = { readonly http: HttpRequest } | { readonly kafka: KafkaRequest } | { readonly dns: DnsQuery };

/**
 * Compiled patterns by source text, shared by every rule that spells the same pattern. Bounded
 * because a long churn trace can create and delete any number of distinct patterns.
 */
const patternCache = new Map<string, RE2JS>();
const PATTERN_CACHE_MAX = 4096;

function compilePattern(pattern: string): RE2JS {
  let re = patternCache.get(pattern);
  if (re === undefined) {
    re = RE2JS.compile(pattern);
    if (patternCache.size >= PATTERN_CACHE_MAX) patternCache.clear();
    patternCache.set(pattern, re);
  }
  return re;
}

/**
 * Why RE2 refuses a pattern, or undefined if it compiles. Cilium's proxy (Envoy) compiles these
 * fields with RE2, so look-around and back-references are refused and `(?i)`, `\pL`, `[[:alpha:]]` accepted.
 */
export function re2SyntaxError(pattern: string): string | undefined {
  try {
    compilePattern(pattern);
    return undefined;
  } catch (e) {
    if (!(e instanceof RE2JSSyntaxException)) return (e as Error).message;
    const at = e.getPattern() ?? '';
    return `${e.getDescription()}: \`${at}\`${re2Hint(at)}`;
  }
}

/** RE2's messages for these name the text but not the missing feature. */
function re2Hint(at: string): string {
  if (at.startsWith('(?=') || at.startsWith('(?!')) return ' (RE2 has no look-ahead)';
  if (at.startsWith('(?<=') || at.startsWith('(?<!')) return ' (RE2 has no look-behind)';
  if (/^\\([1-9]|k)/.test(at)) return ' (RE2 has no back-references)';
  return '';
}

/** An HTTP rule's regexes, compiled once per rule object (merged policies reuse parsed rules). */
interface CompiledHttpRule {
  readonly method: RE2JS | undefined;
  readonly path: RE2JS | undefined;
  readonly host: RE2JS | undefined;
}
const httpCompiled = new WeakMap<HttpRule, CompiledHttpRule>();

function compiledHttp(rule: HttpRule): CompiledHttpRule {
  let c = httpCompiled.get(rule);
  if (c === undefined) {
    const opt = (p: string | undefined): RE2JS | undefined => (p === undefined || p === '' ? undefined : compilePattern(p));
    httpCompiled.set(rule, (c = { method: opt(rule.method), path: opt(rule.path), host: opt(rule.host) }));
  }
  return c;
}

/**
 * Envoy matches these fields with RE2 over the whole value (`RE2::FullMatch`): the same as the
 * anchored `^(?:pattern)$`, in time linear in the value's length. An unset field matches anything.
 */
function fullMatch(re: RE2JS | undefined, value: string): boolean {
  return re === undefined || re.matches(value);
}

/**
 * A header's value as Envoy matches it (HeaderUtility::matchHeaders, getAllOfHeaderAsString):
 * every value of that name, in order, joined with ','. Names differing in case only are the
 * same header sent more than once.
 */
function header(req: HttpRequest, name: string): string | undefined {
  const lower = asciiToLower(name);
  // Envoy keeps HTTP/1's Host as `:authority` and looks `host` up there (HeaderMapImpl's static
  // lookup table: "map a legacy host header to :authority"); the other pseudo-headers are the request line.
  if (lower === 'host' || lower === ':authority') return authority(req);
  if (lower === ':method') return req.method;
  if (lower === ':path') return requestPath(req);
  return sentHeader(req, lower);
}

/** The values the request lists under `lower` (any case), joined with ','; undefined if none. */
function sentHeader(req: HttpRequest, lower: string): string | undefined {
  const values = Object.entries(req.headers ?? {}).filter(([k]) => asciiToLower(k) === lower);
  return values.length === 0 ? undefined : values.map(([, v]) => v).join(',');
}

/** The request's `:authority`: its `host`, or else the Host header(s) it lists. */
function authority(req: HttpRequest): string | undefined {
  const target = absoluteTarget(req.path);
  if (target !== undefined) return target === null ? undefined : target.authority;
  return req.host ?? sentHeader(req, 'host');
}

/**
 * Adds a header line's name and value to a request's headers (a null-prototype record): a name
 * listed again keeps both values, joined with ',' as the proxy matches them (`header`).
 */
export function addHeader(headers: Record<string, string>, name: string, value: string): void {
  headers[name] = Object.hasOwn(headers, name) ? `${headers[name]},${value}` : value;
}

/**
 * A `headers` entry as Cilium hands it to Envoy (pkg/envoy/server.go getHTTPRule): split at the
 * first space, "Name: value" (or "Name value") needs that exact value, the name's trailing ':'
 * removed; an entry without a space needs a header of exactly that name. So "X-Token:yes" asks
 * for a header named "X-Token:yes", which no request has.
 */
function headerRequirementHolds(req: HttpRequest, spec: string): boolean {
  const space = spec.indexOf(' ');
  if (space < 0) return header(req, spec) !== undefined;
  return header(req, spec.slice(0, space).replace(/:+$/, '')) === spec.slice(space + 1);
}

/** A request's normalized path, computed once however many rules judge it. */
const normalizedPaths = new WeakMap<HttpRequest, string | null>();
function requestPath(req: HttpRequest): string | undefined {
  let p = normalizedPaths.get(req);
  if (p === undefined) {
    const target = absoluteTarget(req.path);
    const sent = target === undefined ? req.path : target?.path;
    normalizedPaths.set(req, (p = sent === undefined ? null : normalizedHttpPath(sent) ?? null));
  }
  return p ?? undefined;
}

export function httpRuleMatches(rule: HttpRule, req: HttpRequest): boolean {
  const re = compiledHttp(rule);
  // The proxy matches the normalized path; a path it cannot normalize it rejects (l7-path.ts).
  const path = requestPath(req);
  if (path === undefined || !fullMatch(re.method, req.method) || !fullMatch(re.path, path)) return false;
  // Envoy matches the :authority header as sent, case included.
  if (!fullMatch(re.host, authority(req) ?? '')) return false;
  for (const h of rule.headers ?? []) if (!headerRequirementHolds(req, h)) return false;
  for (const m of rule.headerMatches ?? []) {
    // With a mismatch action the proxy logs or rewrites the header instead of denying.
    if (m.mismatch !== undefined) continue;
    // An empty value asks for presence only (pkg/envoy getHTTPRule: `value != ""` else PresentMatch).
    const v = header(req, m.name);
    if (v === undefined || (m.value !== undefined && m.value !== '' && v !== m.value)) return false;
  }
  return true;
}

/**
 * Lower-cases ASCII letters only, as Envoy's `LowerCaseString` (header names) and Cilium's ASCII
 * name checks do: JavaScript's `toLowerCase` would fold U+212A KELVIN SIGN into `k` (findings 761, 763).
 */
export function asciiToLower(s: string): string {
  return s.replace(/[A-Z]+/g, (m) => m.toLowerCase());
}

/**
 * Go's strings.ToLower, which maps each code point by its simple lowercase: U+0130 (İ) is `i`,
 * where JavaScript's full mapping gives `i` + U+0307 (finding 762). Both fold U+212A to `k`.
 */
export function goToLower(s: string): string {
  return s.replace(/\u0130/g, 'i').toLowerCase();
}

/** Kafka API key names, as Cilium's kafka rules spell them; the index is the key's number. */
export const KAFKA_API_KEYS: readonly string[] = [
  'produce', 'fetch', 'offsets', 'metadata', 'leaderandisr', 'stopreplica', 'updatemetadata', 'controlledshutdown',
  'offsetcommit', 'offsetfetch', 'findcoordinator', 'joingroup', 'heartbeat', 'leavegroup', 'syncgroup',
  'describegroups', 'listgroups', 'saslhandshake', 'apiversions', 'createtopics', 'deletetopics', 'deleterecords',
  'initproducerid', 'offsetforleaderepoch', 'addpartitionstotxn', 'addoffsetstotxn', 'endtxn', 'writetxnmarkers',
  'txnoffsetcommit', 'describeacls', 'createacls', 'deleteacls', 'describeconfigs', 'alterconfigs',
];

/**
 * API keys whose requests carry topics, so a rule's `topic` binds them (Cilium's Kafka parser,
 * cilium/proxy proxylib/kafka/kafkalib policy.go `isTopicAPIKey`; 34, 35 and 37 have no name here).
 */
const KAFKA_TOPIC_KEYS: readonly string[] = [
  'produce', 'fetch', 'offsets', 'metadata', 'leaderandisr', 'stopreplica', 'updatemetadata', 'offsetcommit', 'offsetfetch',
  'createtopics', 'deletetopics', 'deleterecords', 'offsetforleaderepoch', 'addpartitionstotxn', 'writetxnmarkers', 'txnoffsetcommit',
];
/**
 * Of those, the requests the parser decodes (kafkalib request.go `setTopics`). The others reach the
 * rule with no topics, and a rule with a topic matches a request only when it finds its topic in it.
 */
const KAFKA_DECODED_TOPIC_KEYS: readonly string[] = ['produce', 'fetch', 'offsets', 'metadata', 'offsetcommit', 'offsetfetch'];

/** The API keys a Kafka role stands for (Cilium's produce/consume roles). */
const KAFKA_ROLE_KEYS: Readonly<Record<'produce' | 'consume', readonly string[]>> = {
  produce: ['produce', 'metadata', 'apiversions'],
  consume: ['fetch', 'offsets', 'metadata', 'offsetcommit', 'offsetfetch', 'findcoordinator', 'joingroup', 'heartbeat', 'leavegroup', 'syncgroup', 'apiversions'],
};

export function kafkaRuleMatches(rule: KafkaRule, req: KafkaRequest): boolean {
  const key = goToLower(req.apiKey);
  if (rule.role !== undefined && !KAFKA_ROLE_KEYS[rule.role].includes(key)) return false;
  if (rule.apiKey !== undefined && rule.apiKey !== '' && goToLower(rule.apiKey) !== key) return false;
  if (rule.apiVersion !== undefined && rule.apiVersion !== '' && Number(rule.apiVersion) !== req.apiVersion) return false;
  // The parser reads no client ID from a version-0 request (cilium/proxy pkg/kafka/request.go
  // `extractClientID`: "0 version has no client ID"), so a rule naming one never matches it.
  if (rule.clientID !== undefined && rule.clientID !== '' && (req.apiVersion === 0 || rule.clientID !== req.clientID)) return false;
  // As Cilium's Kafka parser (kafkalib `Rule.Matches`): group and API-version calls pass on key,
  // version and client ID alone; a topic-carrying request needs the rule's topic among its topics,
  // so one naming no topic (a metadata request for all topics) or one not decoded fails the rule.
  if (rule.topic === undefined || rule.topic === '' || !KAFKA_TOPIC_KEYS.includes(key)) return true;
  return KAFKA_DECODED_TOPIC_KEYS.includes(key) && req.topic === rule.topic;
}

/**
 * DNS names compare case-insensitively (ASCII only: the proxy sees a name in miekg/dns's
 * presentation form, where every byte outside printable ASCII is a `\DDD` escape, so `K`, U+212A,
 * never folds to `k`) and without the trailing root dot.
 */
function normalizeName(name: string): string {
  const lower = asciiToLower(name);
  return lower.endsWith('.') && lower !== '.' ? lower.slice(0, -1) : lower;
}

/**
 * `matchPattern`: a lone `*` matches every name (the root `.` included); otherwise `*` matches
 * zero or more DNS characters within one label (never a `.`), as Cilium's matchpattern does, and
 * a leading `**.` matches one or more labels.
 */
export function dnsRuleMatches(rule: DnsRule, q: DnsQuery): boolean {
  const name = normalizeName(q.name);
  // Both fields may be set (a PortRuleDNS is not an FQDNSelector): either one matching is enough.
  if (rule.matchName !== undefined && normalizeName(rule.matchName) === name) return true;
  if (rule.matchPattern === undefined) return false;
  let re = dnsCompiled.get(rule);
  if (re === undefined) dnsCompiled.set(rule, (re = compileMatchPattern(rule.matchPattern)));
  return re === 'all' || re.matches(name);
}

const dnsCompiled = new WeakMap<DnsRule, RE2JS | 'all'>();

/** RE2 keeps `*a*a*a*b`-style patterns linear (a backtracking engine takes polynomial time on them). */
function compileMatchPattern(matchPattern: string): RE2JS | 'all' {
  let pattern = normalizeName(matchPattern);
  if (isDnsWildcard(pattern)) return 'all';
  // Cilium 1.19: a leading `**.` stands for one or more whole labels (`**.cilium.io` matches
  // `a.cilium.io` and `b.a.cilium.io`); anywhere else `**` is the same as `*`.
  const prefix = multiLabelPrefixLength(pattern);
  const multiLabel = prefix > 0;
  if (multiLabel) pattern = pattern.slice(prefix);
  const re = pattern
    .split('*')
    .map((part) => (part === '' ? '' : RE2JS.quote(part)))
    .join('[-a-z0-9_]*');
  return compilePattern(multiLabel ? `(?:[-a-z0-9_]+\\.)+${re}` : re);
}

/** The proxy's verdict for one request under one port's L7 rules of the matching parser. */
export function l7Allows(rules: L7Rules, req: L7Request): boolean {
  if (rules.parser === 'http' && 'http' in req) return rules.http.length === 0 || rules.http.some((r) => httpRuleMatches(r, req.http));
  if (rules.parser === 'kafka' && 'kafka' in req) return rules.kafka.length === 0 || rules.kafka.some((r) => kafkaRuleMatches(r, req.kafka));
  if (rules.parser === 'dns' && 'dns' in req) return rules.dns.length === 0 || rules.dns.some((r) => dnsRuleMatches(r, req.dns));
  // A request the port's parser cannot read is not this protocol: the proxy rejects it.
  return false;
}

/** The L7 parser of a redirected port: `http`, `kafka` or `dns`. */
export type L7Parser = L7Rules['parser'];
/**
 * Cilium's default listener priority per parser (pkg/policy/l4.go): between redirects for the same
 * traffic, the lower number wins.
 */
export const LISTENER_PRIORITY: Readonly<Record<L7Parser, number>> = { http: 101, kafka: 106, dns: 121 };

/**
 * What a proxy is told for one peer on one redirected port: allow every request (some allow rule
 * without L7 rules covers the peer and port), or the union of the L7 rules of the rules that do.
 */
export type L7Policy = { readonly allowAll: true } | { readonly allowAll: false; readonly rules: L7Rules };

export const ALLOW_ALL_L7: L7Policy = { allowAll: true };

/** The union of several rule lists of one parser, deduplicated and in a canonical order. */
export function mergeL7Rules(parser: L7Parser, lists: readonly L7Rules[]): L7Policy {
  const seen = new Map<string, unknown>();
  for (const l of lists) {
    if (l.parser !== parser) continue;
    const items: readonly unknown[] = l.parser === 'http' ? l.http : l.parser === 'kafka' ? l.kafka : l.dns;
    // An empty list allows every request, as does an empty rule (`http: [{}]`).
    if (items.length === 0) return ALLOW_ALL_L7;
    for (const item of items) {
      const key = canonicalJsonCached(item as object);
      // An empty HTTP or Kafka rule matches every request (a DNS rule needs a name or pattern).
      if (key === '{}' && parser !== 'dns') return ALLOW_ALL_L7;
      seen.set(key, item);
    }
  }
  const keys = [...seen.keys()].sort();
  const items = keys.map((k) => seen.get(k));
  const rules: L7Rules =
    parser === 'http' ? { parser, http: items as HttpRule[] } : parser === 'kafka' ? { parser, kafka: items as KafkaRule[] } : { parser, dns: items as DnsRule[] };
  // canonicalJson(rules), from the item keys already computed ("<parser>" sorts before "parser").
  canonicalCache.set(rules, `{"${parser}":[${keys.join(',')}],"parser":"${parser}"}`);
  return { allowAll: false, rules };
}

/**
 * A DNS policy that allows a name only if every one of `policies` does (undefined: none), for a port whose proxy may
 * hold any one of several filters' rules (attack finding 3160). A list of rules cannot say "and", so it keeps each
 * `matchName` every policy allows and each `matchPattern` every other policy lists too (or matches all with `*`):
 * never wider than any of them, narrower than their exact meet only where two different patterns overlap.
 */
export function meetDnsPolicies(policies: readonly L7Policy[]): L7Policy | undefined {
  const lists = policies.flatMap((p) => (p.allowAll || p.rules.parser !== 'dns' ? [] : [p.rules.dns]));
  if (lists.length === 0) return ALLOW_ALL_L7;
  const patternIn = (l: readonly DnsRule[], pattern: string): boolean => l.some((r) => r.matchPattern !== undefined && (isDnsWildcard(normalizeName(r.matchPattern)) || normalizeName(r.matchPattern) === normalizeName(pattern)));
  const kept: DnsRule[] = [];
  for (const l of lists) {
    for (const r of l) {
      if (r.matchName !== undefined && lists.every((o) => o.some((x) => dnsRuleMatches(x, { name: r.matchName as string })))) kept.push({ matchName: r.matchName });
      if (r.matchPattern !== undefined && lists.every((o) => patternIn(o, r.matchPattern as string))) kept.push({ matchPattern: r.matchPattern });
    }
  }
  return kept.length === 0 ? undefined : mergeL7Rules('dns', [{ parser: 'dns', dns: kept }]);
}

/** JSON with object keys sorted, so equal rules give equal strings. */
export function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  if (typeof v === 'object' && v !== null) {
    const o = v as Record<string, unknown>;
    const keys = Object.keys(o).filter((k) => o[k] !== undefined).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`).join(',')}}`;
  }
  return JSON.stringify(v);
}

/** The parser a request needs: a proxy of another parser cannot read it and fails it. */
function requestParser(req: L7Request): L7Parser {
  return 'http' in req ? 'http' : 'kafka' in req ? 'kafka' : 'dns';
}

/**
 * Does a `parser` proxy take `req` to its rules at all? Not a request of another protocol, nor an
 * HTTP request Envoy answers itself before any filter (a target it refuses to normalize: 400/404,
 * l7-path.ts), whatever the rules, allow-all (`http: [{}]`) and plain allows included.
 */
export function proxyReads(parser: L7Parser, req: L7Request): boolean {
  if (requestParser(req) !== parser) return false;
  return !('http' in req) || requestPath(req.http) !== undefined;
}

export function l7PolicyAllows(policy: L7Policy, req: L7Request): boolean {
  return policy.allowAll || l7Allows(policy.rules, req);
}

/** Rules and policies are immutable once parsed or merged: their canonical text is cached. */
const canonicalCache = new WeakMap<object, string>();
function canonicalJsonCached(v: object): string {
  let k = canonicalCache.get(v);
  if (k === undefined) canonicalCache.set(v, (k = canonicalJson(v)));
  return k;
}

export function l7PolicyKey(policy: L7Policy): string {
  return policy.allowAll ? '*' : canonicalJsonCached(policy.rules);
}
