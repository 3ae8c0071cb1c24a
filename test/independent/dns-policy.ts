/**
 * An independent reader of DNS-based policy (toFQDNs and DNS L7 rules), written from Cilium's
 * sources only, to hold distill's manifest reader, matcher and DNS cache to them. It must not
 * import src/policy, src/model, src/engine or src/naive: it reads the scenario YAML itself.
 *
 * Sources (cilium/cilium, read through the project's code index, 2026-11-30):
 * - pkg/fqdn/matchpattern/matchpattern.go (1.19: `isDNSWildcard`, `Sanitize`, `ToAnchoredRegexp`,
 *   `escapeRegexpCharacters`, `allowedDNSCharsREGroup = [-a-zA-Z0-9_]`, `dnsWildcardREGroup`):
 *   patterns become anchored regexps over lower-case FQDN-form names (trailing dot).
 * - pkg/fqdn/dnsproxy/proxy.go `ServeDNS` / `CheckAllowed`: a redirected query is allowed when a
 *   selector of the port's rules selects the server and one of its rules matches the name; else
 *   REFUSED (no answer, nothing learnt).
 * - pkg/policy/rule.go / l4.go `mergePortProto` + `appendL7WildcardRule`: a plain allow of the same
 *   peer and port beside DNS rules becomes `matchPattern: "*"`; `L7Rules.IsEmpty` (`dns: []`) is
 *   no L7 rule.
 * - daemon/cmd/fqdn.go `notifyOnDNSMsg`: `effectiveTTL = max(TTL, ToFQDNsMinTTL)`,
 *   `DNSHistory.Update(lookupTime, qname, IPs, effectiveTTL)`, then `UpdateGenerateDNS` (node-wide).
 * - pkg/fqdn/cache.go: `ExpirationTime = lookupTime + ttl`, `isExpiredBy` = `now.After(expiry)`
 *   (live at exactly learnt + TTL); a refresh keeps the later expiry; `cleanupOverLimitEntries`
 *   drops the entries expiring first over `perHostLimit` (ties: Go map order, so unknown here).
 * - Documentation/security/policy/language.rst "DNS based": IPs seen by any endpoint's proxy on the
 *   node are selected for every endpoint whose toFQDNs matches the name.
 */
import { parse } from 'yaml';

type Json = Record<string, unknown>;
type Pat = { kind: 'name' | 'pattern'; value: string };
interface Peer { kind: 'endpoints'; labels: Map<string, string>; namespace: string }
interface World { kind: 'world' }
interface Fqdn { kind: 'fqdn'; selectors: Pat[] }
interface Cidr { kind: 'cidr'; cidrs: string[] }
interface Rule { peer: Peer | World | Fqdn | Cidr; ports?: { port: number; protocol: string }[]; dns?: Pat[] }
interface Policy { namespace: string; subject: Map<string, string>; egress: Rule[]; egressDeny: Rule[]; ingress: Rule[] }
interface Pod { name: string; namespace: string; labels: Map<string, string>; ip?: string }
interface Entry { ep: string; name: string; ip: string; expires: number; maybe: boolean }

/** `allowed: 'unknown'` when the verdict hangs on Cilium's unordered over-limit eviction. */
interface IndependentVerdict { step: number; probe: number; from: string; to: string; allowed: boolean | 'unknown' }

const obj = (v: unknown): Json => (v !== null && typeof v === 'object' ? (v as Json) : {});
const arr = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
const str = (v: unknown): string => String(v);

/** Names as the proxy and the cache hold them: lower case, fully qualified (`dns.FQDN`). */
export function fqdn(name: string): string {
  const n = name.trim().toLowerCase();
  return n.endsWith('.') ? n : `${n}.`;
}

const DNS_CHARS = '[-a-zA-Z0-9_]';

function isDnsWildcard(p: string): boolean {
  const q = p.endsWith('.') ? p.slice(0, -1) : p;
  return q.length > 0 && /^\*+$/.test(q);
}

/** matchpattern.ToAnchoredRegexp(Sanitize(p)), transcribed. */
export function patternRegexp(pattern: string): RegExp {
  const p0 = pattern.trim().toLowerCase();
  if (isDnsWildcard(p0)) return new RegExp(`(^(${DNS_CHARS}+[.])+$)|(^[.]$)`);
  const p = fqdn(p0);
  let out = '';
  let start = 0;
  let lead = 0;
  while (lead < p.length && p[lead] === '*') lead++;
  if (lead >= 2 && lead < p.length && p[lead] === '.') {
    out += `(${DNS_CHARS}+([.]${DNS_CHARS}+){0,})[.]`;
    start = lead + 1;
  }
  for (let i = start; i < p.length; i++) {
    const c = p[i];
    if (c === '.') out += '[.]';
    else if (c === '*') {
      while (p[i + 1] === '*') i++;
      out += `${DNS_CHARS}*`;
    } else out += c;
  }
  return new RegExp(`^${out}$`);
}

function matches(pat: Pat, name: string): boolean {
  return pat.kind === 'name' ? fqdn(pat.value) === fqdn(name) : patternRegexp(pat.value).test(fqdn(name));
}

function readPats(v: unknown): Pat[] {
  return arr(v).map((x) => {
    const o = obj(x);
    if (o.matchName !== undefined) return { kind: 'name', value: str(o.matchName) };
    return { kind: 'pattern', value: str(o.matchPattern) };
  });
}

function readLabels(v: unknown): Map<string, string> {
  const m = new Map<string, string>();
  for (const [k, val] of Object.entries(obj(v))) m.set(k.replace(/^k8s:/, ''), str(val));
  return m;
}

function readRule(r: Json, ns: string): Rule {
  let peer: Rule['peer'];
  if (r.toFQDNs !== undefined) peer = { kind: 'fqdn', selectors: readPats(r.toFQDNs) };
  else if (r.toCIDR !== undefined) peer = { kind: 'cidr', cidrs: arr(r.toCIDR).map(str) };
  else if (r.toEntities !== undefined) {
    if (arr(r.toEntities).join() !== 'world') throw new Error('independent reader: only toEntities [world]');
    peer = { kind: 'world' };
  } else if (r.toEndpoints !== undefined || r.fromEndpoints !== undefined) {
    const labels = readLabels(obj(arr(r.toEndpoints ?? r.fromEndpoints)[0]).matchLabels);
    const nsLabel = 'io.kubernetes.pod.namespace';
    peer = { kind: 'endpoints', labels, namespace: labels.get(nsLabel) ?? ns };
    labels.delete(nsLabel);
  } else throw new Error('independent reader: unsupported peer');
  if (r.toPorts === undefined) return { peer };
  const tp = arr(r.toPorts);
  if (tp.length !== 1) throw new Error('independent reader: one toPorts entry per rule');
  const t = obj(tp[0]);
  const ports = arr(t.ports).map((p) => ({ port: Number(obj(p).port), protocol: str(obj(p).protocol ?? 'TCP').toUpperCase() }));
  const dns = t.rules === undefined ? undefined : readPats(obj(t.rules).dns);
  return { peer, ports, dns: dns && dns.length > 0 ? dns : undefined };
}

function readPolicy(v: unknown): Policy {
  const p = obj(v);
  if (p.kind !== 'CiliumNetworkPolicy') throw new Error('independent reader: CiliumNetworkPolicy only');
  const ns = str(obj(p.metadata).namespace);
  const spec = obj(p.spec);
  return {
    namespace: ns,
    subject: readLabels(obj(spec.endpointSelector).matchLabels),
    egress: arr(spec.egress).map((r) => readRule(obj(r), ns)),
    egressDeny: arr(spec.egressDeny).map((r) => readRule(obj(r), ns)),
    ingress: arr(spec.ingress).map((r) => readRule(obj(r), ns)),
  };
}

function ipv4(ip: string): number {
  return ip.split('.').reduce((n, b) => n * 256 + Number(b), 0);
}

/** IPv4 prefixes only (the generator writes no others). */
function inCidr(ip: string, cidr: string): boolean {
  const [base = '', len = '32'] = cidr.split('/');
  const size = 2 ** (32 - Number(len));
  return Math.floor(ipv4(ip) / size) === Math.floor(ipv4(base) / size);
}

function subset(want: Map<string, string>, have: Map<string, string>): boolean {
  for (const [k, v] of want) if (have.get(k) !== v) return false;
  return true;
}

/** The state the reader keeps: the scenario's world plus the node's DNS caches and clock. */
class DnsWorld {
  now = 0;
  readonly entries = new Map<string, Entry>();
  readonly tainted = new Set<string>();
  constructor(
    readonly pods: Map<string, Pod>,
    readonly externals: Map<string, string>,
    readonly policies: Policy[],
    readonly minTtl: number,
    readonly maxIps: number,
  ) {}

  ipOf(target: string): string | undefined {
    return this.pods.get(target)?.ip ?? this.externals.get(target);
  }

  /** Some live entry (any endpoint) whose name a selector takes holds `ip`: 'maybe' if only evictable ones. */
  fqdnSelects(sel: Pat[], ip: string): boolean | 'maybe' {
    let res: boolean | 'maybe' = false;
    for (const e of this.entries.values()) {
      if (e.ip !== ip || this.now > e.expires || !sel.some((s) => matches(s, e.name))) continue;
      if (!e.maybe) return true;
      res = 'maybe';
    }
    return res;
  }

  peerSelects(rule: Rule, target: string): boolean | 'maybe' {
    const pod = this.pods.get(target);
    const pr = rule.peer;
    if (pr.kind === 'endpoints') return pod !== undefined && pod.namespace === pr.namespace && subset(pr.labels, pod.labels);
    if (pod !== undefined) return false; // world and learnt IPs are outside the cluster
    const ip = this.externals.get(target);
    if (ip === undefined) return false;
    if (pr.kind === 'cidr') return pr.cidrs.some((c) => inCidr(ip, c));
    return pr.kind === 'world' ? true : this.fqdnSelects(pr.selectors, ip);
  }

  /** Egress and the target pod's ingress (no L7 on ingress here): both must allow. */
  decide(from: string, target: string, port: number, protocol: string, name?: string): { allowed: boolean | 'maybe'; redirected: boolean } {
    const e = this.egress(from, target, port, protocol, name);
    const pod = this.pods.get(target);
    if (e.allowed === false || pod === undefined) return e;
    const mine = this.policies.filter((p) => p.namespace === pod.namespace && subset(p.subject, pod.labels) && p.ingress.length > 0);
    if (mine.length === 0) return e;
    const ok = mine.flatMap((p) => p.ingress).some((r) =>
      (r.ports === undefined || r.ports.some((p) => p.port === port && (p.protocol === 'ANY' || p.protocol === protocol))) &&
      this.peerSelects(r, from) === true);
    return ok ? e : { allowed: false, redirected: e.redirected };
  }

  /** Egress of `from` to `target` on port/protocol, then the DNS proxy's verdict on `name` if redirected. */
  private egress(from: string, target: string, port: number, protocol: string, name?: string): { allowed: boolean | 'maybe'; redirected: boolean } {
    const pod = this.pods.get(from);
    if (pod === undefined) throw new Error(`independent reader: no pod ${from}`);
    const mine = this.policies.filter((p) => p.namespace === pod.namespace && subset(p.subject, pod.labels));
    const portOk = (r: Rule): boolean => r.ports === undefined || r.ports.some((p) => p.port === port && (p.protocol === 'ANY' || p.protocol === protocol));
    // Deny wins over every allow and over the redirect (the proxy never sees the query).
    const denied = mine.flatMap((p) => p.egressDeny).filter(portOk).map((r) => this.peerSelects(r, target));
    if (denied.includes(true)) return { allowed: false, redirected: false };
    if (denied.includes('maybe')) return { allowed: 'maybe', redirected: false };
    const rules = mine.flatMap((p) => p.egress);
    if (mine.length === 0) return { allowed: true, redirected: false };
    let l4: boolean | 'maybe' = false;
    const applicable: Rule[] = [];
    for (const r of rules) {
      if (!portOk(r)) continue;
      const s = this.peerSelects(r, target);
      if (s === false) continue;
      if (s === true) {
        l4 = true;
        applicable.push(r);
      } else if (l4 === false) l4 = 'maybe';
    }
    const redirected = applicable.some((r) => r.dns !== undefined);
    if (!redirected || name === undefined || l4 !== true) return { allowed: l4, redirected };
    // A plain allow of the same peer and port merges as the wildcard DNS rule (appendL7WildcardRule).
    const ok = applicable.some((r) => r.dns === undefined || r.dns.some((d) => matches(d, name)));
    return { allowed: ok, redirected };
  }

  /** notifyOnDNSMsg: learnt only from a redirected, allowed query (UDP to the server). */
  answer(ep: string, name: string, ips: string[], ttl: number, server: string, port: number): void {
    const d = this.decide(ep, server, port, 'UDP', name);
    if (d.allowed !== true || !d.redirected) return;
    const qn = fqdn(name);
    const expires = this.now + Math.max(ttl, this.minTtl);
    const key = `${ep}|${qn}`;
    for (const ip of ips) {
      const k = `${key}|${ip}`;
      const old = this.entries.get(k);
      this.entries.set(k, { ep, name: qn, ip, expires: Math.max(expires, old?.expires ?? -Infinity), maybe: this.tainted.has(key) });
    }
    this.evictOverLimit(key);
  }

  private evictOverLimit(key: string): void {
    const mine = [...this.entries.entries()].filter(([k]) => k.startsWith(`${key}|`));
    const over = mine.length - this.maxIps;
    if (over <= 0) return;
    mine.sort((a, b) => a[1].expires - b[1].expires);
    const expiry = mine.map(([, e]) => e.expires);
    const cut = expiry[over - 1];
    // Go's sort.Slice over map order: entries tied with the last evicted one may go or stay.
    const tie = expiry[over] === cut;
    if (tie) this.tainted.add(key);
    for (const [i, [k, e]] of mine.entries()) {
      if (cut === undefined) break;
      if (tie ? e.expires < cut : i < over) this.entries.delete(k);
      else if (this.tainted.has(key)) e.maybe = true;
    }
  }
}

function readWorld(doc: Json): DnsWorld {
  const pods = new Map<string, Pod>();
  for (const p of arr(doc.pods)) {
    const o = obj(p);
    const name = str(o.name);
    pods.set(name, { name, namespace: name.slice(0, name.indexOf('/')), labels: readLabels(o.labels), ip: o.ip === undefined ? undefined : str(o.ip) });
  }
  const externals = new Map<string, string>(arr(doc.externals).map((e) => [str(obj(e).name), str(obj(e).ip)]));
  const proxy = obj(doc.dnsProxy);
  return new DnsWorld(pods, externals, arr(doc.policies).map(readPolicy), Number(proxy.minTtl ?? 0), Number(proxy.maxIpsPerHostname ?? 1000));
}

function applyChange(w: DnsWorld, c: Json): void {
  if (c.advanceTime !== undefined) {
    w.now += Number(c.advanceTime);
    return;
  }
  const r = obj(c.dnsResponse);
  if (c.dnsResponse === undefined || r.server === undefined) throw new Error('independent reader: dnsResponse with server, or advanceTime');
  w.answer(str(r.pod), str(r.name), arr(r.ips).map(str), Number(r.ttl), str(r.server), Number(r.port ?? 53));
}

/** The verdict of every probe of a scenario (explicit `from` and `to` only). */
export function evaluateDnsScenario(text: string): IndependentVerdict[] {
  const doc = obj(parse(text));
  const w = readWorld(doc);
  const out: IndependentVerdict[] = [];
  arr(doc.steps).forEach((s, step) => {
    for (const c of arr(obj(s).changes)) applyChange(w, obj(c));
    arr(obj(s).probes).forEach((p, probe) => {
      const o = obj(p);
      const from = str(o.from);
      const to = str(o.to);
      const dns = o.dns === undefined ? undefined : str(obj(o.dns).name);
      const d = w.decide(from, to, Number(o.port), str(o.protocol ?? 'TCP').toUpperCase(), dns);
      out.push({ step, probe, from, to, allowed: d.allowed === 'maybe' ? 'unknown' : d.allowed });
    });
  });
  return out;
}
