import { goToLower, KAFKA_API_KEYS, re2SyntaxError } from '../model/l7.js';
import type { DnsRule, HttpHeaderMatch, HttpRule, KafkaRule } from '../model/rules.js';
import { fqdnSyntaxError } from '../model/fqdn.js';
import { absent, at, join, Reader } from './reader.js';

/*
 * The L7 rules of a Cilium port rule: HTTP, Kafka and DNS, checked as Cilium's sanitizers and the
 * CRD check them.
 */

/** Cilium's proxy compiles these with RE2: validate with the same syntax the matcher uses. */
function checkRegex(r: Reader, s: string, path: string): void {
  const error = re2SyntaxError(s);
  if (error !== undefined) r.fail(path, `invalid RE2 regular expression: ${error}`);
}

/**
 * Cilium's PortRuleHTTP.Sanitize compiles path and method only, and the CRD's `idn-hostname`
 * format on `host` is one the API server ignores: Cilium takes a policy whose host is no regex
 * (`*.example.com`) and leaves it to the proxy. Refusing it as invalid would make the agent skip
 * the whole policy; "not supported" makes it drop this allow rule only (src/policy/stand-in.ts).
 */
function checkUnsanitizedRegex(r: Reader, s: string, path: string): void {
  const error = re2SyntaxError(s);
  if (error !== undefined) r.unsupported(path, `invalid RE2 regular expression: ${error}; Cilium accepts it and leaves it to its proxy, which is not supported by distill`);
}

/** `headers` entries are not sanitized by Cilium either ("Headers are not sanitized"). */
function unsanitizedHeader(r: Reader, v: unknown, path: string): string {
  const h = r.string(v, path);
  if (h === '') r.unsupported(path, 'an empty header name: Cilium accepts it and leaves it to its proxy, which is not supported by distill');
  return h;
}

export function parseHttpRule(r: Reader, v: unknown, path: string): HttpRule {
  const o = r.object(v, path, ['method', 'path', 'host', 'headers', 'headerMatches']);
  const out: { -readonly [K in keyof HttpRule]: HttpRule[K] } = {};
  for (const f of ['method', 'path', 'host'] as const) {
    const s = r.optString(o[f], join(path, f));
    if (s !== undefined) {
      if (f === 'host') checkUnsanitizedRegex(r, s, join(path, f));
      else checkRegex(r, s, join(path, f));
      out[f] = s;
    }
  }
  const headers = r.optArray(o.headers, join(path, 'headers'));
  if (headers) out.headers = headers.map((h, i) => unsanitizedHeader(r, h, at(join(path, 'headers'), i)));
  const hm = r.optArray(o.headerMatches, join(path, 'headerMatches'));
  if (hm) {
    out.headerMatches = hm.map((h, i): HttpHeaderMatch => {
      const hpath = at(join(path, 'headerMatches'), i);
      const ho = r.object(h, hpath, ['name', 'value', 'mismatch', 'secret']);
      if (!absent(ho.secret)) r.unsupported(join(hpath, 'secret'), 'is not supported by distill');
      const name = r.nonEmptyString(ho.name, join(hpath, 'name'));
      const value = r.optString(ho.value, join(hpath, 'value'));
      const mismatch = absent(ho.mismatch) ? undefined : r.oneOf(ho.mismatch, join(hpath, 'mismatch'), ['LOG', 'ADD', 'DELETE', 'REPLACE'] as const);
      return { name, ...(value !== undefined ? { value } : {}), ...(mismatch ? { mismatch } : {}) };
    });
  }
  return out;
}

export function parseKafkaRule(r: Reader, v: unknown, path: string): KafkaRule {
  const o = r.object(v, path, ['role', 'apiKey', 'apiVersion', 'clientID', 'topic']);
  const out: { -readonly [K in keyof KafkaRule]: KafkaRule[K] } = {};
  if (!absent(o.role)) out.role = r.oneOf(o.role, join(path, 'role'), ['produce', 'consume'] as const);
  for (const f of ['apiKey', 'apiVersion', 'clientID', 'topic'] as const) {
    const s = r.optString(o[f], join(path, f));
    if (s !== undefined) out[f] = s;
  }
  // Cilium: `len(kr.APIKey) > 0 && len(kr.Role) > 0`; an empty apiKey is no apiKey.
  if (out.role !== undefined && out.apiKey !== undefined && out.apiKey !== '') r.fail(path, 'role and apiKey are mutually exclusive');
  if (out.apiKey !== undefined && out.apiKey !== '' && !KAFKA_API_KEYS.includes(goToLower(out.apiKey))) r.fail(join(path, 'apiKey'), `"${out.apiKey}" is not a Kafka API key name`);
  // Cilium (kafka.PortRule.Sanitize): strconv.ParseInt(v, 10, 16) within 0..32767, so "+5" and "-0" are versions.
  const version = out.apiVersion !== undefined && /^[+-]?\d+$/.test(out.apiVersion) ? Number(out.apiVersion) : Number.NaN;
  if (out.apiVersion !== undefined && out.apiVersion !== '' && !(version >= 0 && version <= 32767)) r.fail(join(path, 'apiVersion'), `"${out.apiVersion}" is not an API version number (0 to 32767)`);
  // TopicValidChar, `^[a-zA-Z0-9\\._\\-]+$` in a Go raw string, lets a backslash through too. Sanitize checks
  // only `len(kr.Topic) > 0` and the CRD has no minLength: an empty topic is no topic (attack finding 1661).
  if (out.topic !== undefined && out.topic !== '' && (out.topic.length > 255 || !/^[a-zA-Z0-9._\\-]+$/.test(out.topic))) {
    r.fail(join(path, 'topic'), `"${out.topic}" is not a valid Kafka topic name`);
  }
  return out;
}

/**
 * A DNS rule sets exactly one of matchName and matchPattern, each checked with the CRD's pattern
 * and length as toFQDNs fields are. The agent's code would take both ("mutually exclusive in an
 * FQDNSelector (but not in a PortRuleDNS)", pkg/policy/api/fqdn.go; GeneratePattern ORs them), but
 * the API server never stores such a rule: PortRuleDNS is FQDNSelector, whose fields carry
 * `+kubebuilder:validation:OneOf`, so the CRD gives `rules.dns[]` items the same
 * `oneOf: [{required: [matchName]}, {required: [matchPattern]}]` as toFQDNs items.
 */
export function parseDnsRule(r: Reader, v: unknown, path: string): DnsRule {
  const o = r.object(v, path, ['matchName', 'matchPattern']);
  const matchName = r.optString(o.matchName, join(path, 'matchName'));
  const matchPattern = r.optString(o.matchPattern, join(path, 'matchPattern'));
  // An empty string is refused, as the API server refuses it: the CRD pattern needs one
  // character (TestFQDNNameRegex lists "" as bad), though the agent would read it as absent.
  for (const [field, value] of [['matchName', matchName], ['matchPattern', matchPattern]] as const) {
    const error = value === undefined ? undefined : fqdnSyntaxError(field, value);
    if (error !== undefined) r.fail(join(path, field), error);
  }
  if ((matchName === undefined) === (matchPattern === undefined)) r.fail(path, 'exactly one of matchName or matchPattern is required');
  return { ...(matchName !== undefined ? { matchName } : {}), ...(matchPattern !== undefined ? { matchPattern } : {}) };
}
