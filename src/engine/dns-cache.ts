import type { IpAddress } from '../model/cidr.js';
import { DEFAULT_DNS_CACHE_OPTIONS, DnsCacheEntry, DnsCacheOptions, normalizeFqdn } from '../model/fqdn.js';

/** One learnt (endpoint, name, IP). `live`: counted in `namesByIp` (expiresAt was after the clock). */
interface Answer {
  readonly endpoint: string;
  readonly name: string;
  readonly ip: IpAddress;
  readonly learntAt: number;
  readonly expiresAt: number;
  live: boolean;
}

/** What changed for the IPs of one operation: the IPs whose set of live names changed. */
export type IpsChanged = (ip: IpAddress) => void;

/**
 * The node's DNS cache, incrementally: the same semantics as `recordDnsAnswer` /
 * `advanceDnsClock` / `forgetEndpoint` (src/model/fqdn.ts, what the oracle reads), with a timing
 * wheel for expiry and, per IP, its live names. Plain data: the engine's stage and its committed
 * model each hold one, fed the same learnt answers, so a rebuild after an internal error clones
 * the committed one. Every mutation reports the IPs whose live names changed, and can be undone.
 */
export class DnsCache {
  now = 0;
  /** endpoint → name → IP text → answer. */
  private readonly answers = new Map<string, Map<string, Map<string, Answer>>>();
  /** expiresAt → answers due then (an answer refreshed later is skipped when its old slot drains). */
  private readonly wheel = new Map<number, Set<Answer>>();
  /** IP text → live name → how many endpoints hold it live. */
  private readonly namesByIp = new Map<string, Map<string, number>>();
  private readonly ipsByText = new Map<string, IpAddress>();

  constructor(readonly options: DnsCacheOptions = DEFAULT_DNS_CACHE_OPTIONS) {}

  /** The live names of an IP. */
  namesOf(ipText: string): ReadonlyMap<string, number> | undefined {
    return this.namesByIp.get(ipText);
  }

  /** Every IP with a live name. */
  liveIps(): Iterable<IpAddress> {
    return [...this.namesByIp.keys()].map((t) => this.ipsByText.get(t) as IpAddress);
  }

  get liveIpCount(): number {
    return this.namesByIp.size;
  }

  /** Records an answer the proxy learnt (`recordDnsAnswer`); `undo` gets the inverse operations. */
  record(endpoint: string, rawName: string, ips: readonly IpAddress[], ttl: number, changed: IpsChanged, undo?: (fn: () => void) => void): void {
    const name = normalizeFqdn(rawName);
    const expiresAt = this.now + Math.max(ttl, this.options.minTtl);
    let byName = this.answers.get(endpoint);
    if (!byName) this.answers.set(endpoint, (byName = new Map()));
    let mine = byName.get(name);
    if (!mine) byName.set(name, (mine = new Map()));
    for (const ip of ips) {
      const old = mine.get(ip.text);
      if (old && old.expiresAt >= expiresAt) continue;
      if (old) this.remove(old, changed, undo);
      this.insert({ endpoint, name, ip, learntAt: this.now, expiresAt, live: false }, changed, undo);
    }
    const over = mine.size - this.options.maxIpsPerHostname;
    if (over > 0) {
      const order = [...mine.values()].sort((a, b) => a.expiresAt - b.expiresAt || a.learntAt - b.learntAt || (a.ip.text < b.ip.text ? -1 : 1));
      for (const a of order.slice(0, over)) this.remove(a, changed, undo);
    }
  }

  /** Moves the clock (`advanceDnsClock`): every answer with expiresAt ≤ the new time goes. */
  advance(seconds: number, changed: IpsChanged, undo?: (fn: () => void) => void): void {
    const before = this.now;
    this.now += seconds;
    const due = [...this.wheel.keys()].filter((t) => t <= this.now).sort((a, b) => a - b);
    for (const t of due) for (const a of [...(this.wheel.get(t) ?? [])]) this.remove(a, changed, undo);
    // Pushed last so it runs first: re-inserted answers are counted live against the old clock.
    undo?.(() => {
      this.now = before;
    });
  }

  /** Drops an endpoint's answers (the pod is gone). */
  forgetEndpoint(endpoint: string, changed: IpsChanged, undo?: (fn: () => void) => void): void {
    const byName = this.answers.get(endpoint);
    if (!byName) return;
    for (const mine of [...byName.values()]) for (const a of [...mine.values()]) this.remove(a, changed, undo);
  }

  /** Drops the answers of every endpoint in a namespace (keys `namespace/name`). */
  forgetNamespace(ns: string, changed: IpsChanged, undo?: (fn: () => void) => void): void {
    for (const endpoint of [...this.answers.keys()]) if (endpoint.startsWith(`${ns}/`)) this.forgetEndpoint(endpoint, changed, undo);
  }

  /** Every stored answer (the persisted form and the oracle's `DnsCacheState.entries`). */
  *entries(): Iterable<DnsCacheEntry> {
    for (const byName of this.answers.values()) {
      for (const mine of byName.values()) for (const a of mine.values()) yield { endpoint: a.endpoint, name: a.name, ip: a.ip, learntAt: a.learntAt, expiresAt: a.expiresAt };
    }
  }

  /** A deep copy (the engine's stage rebuilt from the committed model's cache). */
  clone(): DnsCache {
    const c = new DnsCache(this.options);
    c.now = this.now;
    for (const e of this.entries()) c.insert({ ...e, live: false }, () => undefined);
    return c;
  }

  /** Loads an entry as it was (restored from a file); the caller checks it is not in the past. */
  restore(e: DnsCacheEntry, changed: IpsChanged): void {
    this.insert({ ...e, name: normalizeFqdn(e.name), live: false }, changed);
  }

  private insert(a: Answer, changed: IpsChanged, undo?: (fn: () => void) => void): void {
    let byName = this.answers.get(a.endpoint);
    if (!byName) this.answers.set(a.endpoint, (byName = new Map()));
    let mine = byName.get(a.name);
    if (!mine) byName.set(a.name, (mine = new Map()));
    mine.set(a.ip.text, a);
    let slot = this.wheel.get(a.expiresAt);
    if (!slot) this.wheel.set(a.expiresAt, (slot = new Set()));
    slot.add(a);
    if (a.expiresAt > this.now) {
      a.live = true;
      this.count(a, +1, changed);
    }
    undo?.(() => this.remove(a, () => undefined));
  }

  private remove(a: Answer, changed: IpsChanged, undo?: (fn: () => void) => void): void {
    const byName = this.answers.get(a.endpoint);
    const mine = byName?.get(a.name);
    if (!byName || mine?.get(a.ip.text) !== a) return;
    mine.delete(a.ip.text);
    if (mine.size === 0) byName.delete(a.name);
    if (byName.size === 0) this.answers.delete(a.endpoint);
    const slot = this.wheel.get(a.expiresAt);
    slot?.delete(a);
    if (slot?.size === 0) this.wheel.delete(a.expiresAt);
    if (a.live) {
      a.live = false;
      this.count(a, -1, changed);
    }
    undo?.(() => this.insert(a, () => undefined));
  }

  private count(a: Answer, sign: 1 | -1, changed: IpsChanged): void {
    let names = this.namesByIp.get(a.ip.text);
    if (!names) {
      this.namesByIp.set(a.ip.text, (names = new Map()));
      this.ipsByText.set(a.ip.text, a.ip);
    }
    const n = (names.get(a.name) ?? 0) + sign;
    const wasNew = n === 1 && sign > 0;
    if (n > 0) names.set(a.name, n);
    else names.delete(a.name);
    if (names.size === 0) {
      this.namesByIp.delete(a.ip.text);
      this.ipsByText.delete(a.ip.text);
    }
    if (wasNew || n === 0) changed(a.ip);
  }
}
