import { isValidIp, parseIp } from '../model/cidr.js';
import { DnsCacheOptions, fqdnSyntaxError } from '../model/fqdn.js';
import { DnsCache } from './dns-cache.js';

/**
 * The DNS cache file (docs/fqdn-engine.md, "TTL expiry and restart"): JSON Lines, a header
 * `{"distillDnsCache": 1, "now": <s>, "options": {"minTtl", "maxIpsPerHostname"}}`, then one
 * `{"endpoint", "name", "ip", "learntAt", "expiresAt"}` per stored answer.
 */
export function formatDnsCache(cache: DnsCache): string {
  const lines = [JSON.stringify({ distillDnsCache: 1, now: cache.now, options: { minTtl: cache.options.minTtl, maxIpsPerHostname: cache.options.maxIpsPerHostname } })];
  for (const e of cache.entries()) lines.push(JSON.stringify({ endpoint: e.endpoint, name: e.name, ip: e.ip.text, learntAt: e.learntAt, expiresAt: e.expiresAt }));
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
export function parseDnsCache(text: string, source: string, options: DnsCacheOptions): DnsCache {
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
  const cache = new DnsCache(options);
  cache.now = seconds(1, head, 'now');
  for (let n = 2; n <= lines.length; n++) {
    if ((lines[n - 1] as string).trim() === '') continue;
    const o = json(n);
    const endpoint = typeof o.endpoint === 'string' && /^[^/]+\/[^/]+$/.test(o.endpoint) ? o.endpoint : fail(n, 'endpoint must be "namespace/name"');
    const name = typeof o.name === 'string' && fqdnSyntaxError('matchName', o.name) === undefined ? o.name : fail(n, 'name must be a DNS name');
    const ip = typeof o.ip === 'string' && isValidIp(o.ip) ? parseIp(o.ip) : fail(n, 'ip must be an IP address');
    const learntAt = seconds(n, o, 'learntAt');
    const expiresAt = seconds(n, o, 'expiresAt');
    if (learntAt > cache.now) fail(n, `learntAt ${learntAt} is after the file's now ${cache.now}`);
    if (expiresAt > cache.now) cache.restore({ endpoint, name, ip, learntAt, expiresAt }, () => undefined);
  }
  return cache;
}
