import { isValidIp, parseIp } from '../model/cidr.js';
import { DnsCacheOptions, fqdnSyntaxError, MAX_DNS_TTL } from '../model/fqdn.js';
import { IdentityId, LOCAL_IDENTITY_FLAG } from '../model/identity.js';
import { Label, LabelSet, makeLabelSet } from '../model/labels.js';
import { DnsCache } from './dns-cache.js';
import { ipOfKey } from './ip-key.js';
import { MAX_DNS_CLOCK } from './validate.js';

/** A node-local identity as the file keeps it (FQDN and CIDR identities), to get the same number back. */
export interface PersistedIdentity {
  readonly id: IdentityId;
  readonly labels: LabelSet;
}

/**
 * The DNS cache file (docs/fqdn-engine.md, "TTL expiry and restart"): JSON Lines, a header
 * `{"distillDnsCache": 1, "now": <s>, "options": {"minTtl", "maxIpsPerHostname"}}`, then one
 * `{"identity": <id>, "labels": [[source, key, value], …]}` per node-local identity the engine
 * held, then one `{"endpoint", "name", "ip", "learntAt", "expiresAt"}` per stored answer.
 */
export function formatDnsCache(cache: DnsCache, identities: Iterable<PersistedIdentity> = []): string {
  const lines = [JSON.stringify({ distillDnsCache: 1, now: cache.now, options: { minTtl: cache.options.minTtl, maxIpsPerHostname: cache.options.maxIpsPerHostname } })];
  for (const { id, labels } of identities) lines.push(JSON.stringify({ identity: id, labels: labels.map((l) => [l.source, l.key, l.value]) }));
  for (const [key, a] of cache.keyedEntries()) {
    const ip = typeof key === 'string' ? key : ipOfKey(key).text;
    lines.push(JSON.stringify({ endpoint: a.group.endpoint, name: a.group.name, ip, learntAt: a.learntAt, expiresAt: a.expiresAt }));
  }
  return `${lines.join('\n')}\n`;
}

/** A DNS cache file (Engine.restoreDnsCache) that cannot be read: its line and field are named. */
export class DnsCacheFileError extends Error {
  override readonly name = 'DnsCacheFileError';
}

/**
 * Reads a DNS cache file into a cache with the engine's options (its own clock: the file's `now`).
 * Answers that expired by then are dropped; a malformed line throws naming `source:line` and field.
 */
export function parseDnsCache(text: string, source: string, options: DnsCacheOptions): { cache: DnsCache; identities: PersistedIdentity[] } {
  const lines = text.split('\n');
  const fail = (line: number, detail: string): never => {
    throw new DnsCacheFileError(`${source}:${line} ${detail}`);
  };
  const json = (line: number): Record<string, unknown> => {
    try {
      const v: unknown = JSON.parse(lines[line - 1] as string);
      if (typeof v === 'object' && v !== null && !Array.isArray(v)) return v as Record<string, unknown>;
    } catch {
      // reported below
    }
    return fail(line, 'is not a JSON object');
  };
  const seconds = (line: number, o: Record<string, unknown>, field: string): number => {
    const v = o[field];
    return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 ? v : fail(line, `${field} must be a non-negative integer number of seconds`);
  };
  const head = json(1);
  if (head.distillDnsCache !== 1) fail(1, 'distillDnsCache: not a distill DNS cache file (version 1)');
  const cache = new DnsCache(options, false);
  cache.now = seconds(1, head, 'now');
  // As a batch's steps and answers (validate.ts checkClock): past it no step is accepted, and a restored answer would never expire.
  if (cache.now > MAX_DNS_CLOCK) fail(1, `now ${cache.now} passes 2^52 seconds`);
  const identities: PersistedIdentity[] = [];
  const ids = new Set<IdentityId>();
  for (let n = 2; n <= lines.length; n++) {
    if ((lines[n - 1] as string).trim() === '') continue;
    const o = json(n);
    if ('identity' in o) {
      const ident = persistedIdentity(o, (detail) => fail(n, detail));
      if (ids.has(ident.id)) fail(n, `identity ${ident.id} is listed twice`);
      ids.add(ident.id);
      identities.push(ident);
      continue;
    }
    const endpoint = typeof o.endpoint === 'string' && /^[^/]+\/[^/]+$/.test(o.endpoint) ? o.endpoint : fail(n, 'endpoint must be "namespace/name"');
    const name = typeof o.name === 'string' && fqdnSyntaxError('matchName', o.name) === undefined ? o.name : fail(n, 'name must be a DNS name');
    const ip = typeof o.ip === 'string' && isValidIp(o.ip) ? parseIp(o.ip) : fail(n, 'ip must be an IP address');
    const learntAt = seconds(n, o, 'learntAt');
    const expiresAt = seconds(n, o, 'expiresAt');
    if (learntAt > cache.now) fail(n, `learntAt ${learntAt} is after the file's now ${cache.now}`);
    if (expiresAt > MAX_DNS_CLOCK) fail(n, `expiresAt ${expiresAt} passes 2^52 seconds`);
    // No answer lives longer: a TTL is 32 bits, and minTtl is at most 2^31 s (checkEngineOptions).
    if (expiresAt - learntAt > MAX_DNS_TTL) fail(n, `expiresAt ${expiresAt} is more than ${MAX_DNS_TTL} s (the longest DNS TTL) after learntAt ${learntAt}`);
    if (expiresAt >= cache.now) cache.restore({ endpoint, name, ip, learntAt, expiresAt }, () => undefined);
  }
  cache.evictOverLimit(() => undefined);
  return { cache, identities };
}

function persistedIdentity(o: Record<string, unknown>, fail: (detail: string) => never): PersistedIdentity {
  const id = o.identity;
  if (typeof id !== 'number' || !Number.isInteger(id) || id <= LOCAL_IDENTITY_FLAG || id >= 2 * LOCAL_IDENTITY_FLAG) fail(`identity must be a node-local identity number (${LOCAL_IDENTITY_FLAG + 1}–${2 * LOCAL_IDENTITY_FLAG - 1})`);
  if (!Array.isArray(o.labels) || o.labels.length === 0) return fail('labels must be a non-empty list of [source, key, value]');
  const labels: Label[] = o.labels.map((l: unknown, i: number) => {
    if (!Array.isArray(l) || l.length !== 3 || !l.every((x) => typeof x === 'string')) return fail(`labels[${i}] must be [source, key, value] strings`);
    const [source, key, value] = l as [string, string, string];
    return { source, key, value };
  });
  return { id: id as IdentityId, labels: makeLabelSet(labels) };
}
