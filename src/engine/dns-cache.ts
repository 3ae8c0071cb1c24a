import type { IpAddress } from '../model/cidr.js';
import { DEFAULT_DNS_CACHE_OPTIONS, DnsCacheEntry, DnsCacheOptions, normalizeFqdn } from '../model/fqdn.js';
import { IpKey, ipKey, IpMap, ipOfKey } from './ip-key.js';

/** What one endpoint learnt for one name: IP → the answer it came from. */
interface Group {
  readonly endpoint: string;
  readonly name: string;
  readonly ips: Map<IpKey, Batch>;
}

/**
 * The IPs one answer taught a group, at one time: one object per answer, not per IP. An IP a
 * later answer refreshed (or eviction removed) no longer maps to it.
 * In the cache, an answer is live exactly while `expiresAt > now` (expired ones are removed).
 */
interface Batch {
  readonly group: Group;
  readonly learntAt: number;
  readonly expiresAt: number;
  readonly ips: IpKey[];
  /** In its wheel slot (it stays there, holding IPs or not, until the slot drains). */
  queued: boolean;
}

/** Called with each IP whose set of live names changed. */
export type IpsChanged = (ip: IpKey) => void;
type UndoSink = (fn: () => void) => void;
const ignore: IpsChanged = () => undefined;

/**
 * The live names of an IP: the name itself when one endpoint holds one name (the common case,
 * no object), else name → how many endpoints hold it live.
 */
export type LiveNames = string | ReadonlyMap<string, number>;

/**
 * The node's DNS cache, incrementally: the same semantics as `recordDnsAnswer` /
 * `advanceDnsClock` / `forgetEndpoint` (src/model/fqdn.ts, what the oracle reads), with a timing
 * wheel of answers for expiry and, per IP, its live names. Memory per learnt IP is one entry in
 * its group's Map and one in the live index, keyed by a number for IPv4 (no object per IP).
 * Every mutation reports the IPs whose live names changed, and can be undone.
 * `liveIndex: false` (the engine's committed copy) keeps no per-IP index: it only records.
 */
export class DnsCache {
  now = 0;
  /** endpoint → name → group. */
  private readonly answers = new Map<string, Map<string, Group>>();
  /**
   * expiresAt → answers due then. An answer whose IPs all went elsewhere stays until its slot
   * drains (skipped then): slots are append-only arrays, cheap to grow, and never searched.
   */
  private readonly wheel = new Map<number, Batch[]>();
  /** IP → its live names. */
  private readonly live = new IpMap<LiveNames>();

  constructor(
    readonly options: DnsCacheOptions = DEFAULT_DNS_CACHE_OPTIONS,
    private readonly liveIndex = true,
  ) {}

  /** The live names of an IP. */
  liveNames(ip: IpKey): LiveNames | undefined {
    return this.live.get(ip);
  }

  /** Every IP with a live name. */
  liveIps(): Iterable<IpKey> {
    return this.live.keys();
  }

  get liveIpCount(): number {
    return this.live.size;
  }

  /** Records an answer the proxy learnt (`recordDnsAnswer`); `undo` gets the inverse operation. */
  record(endpoint: string, rawName: string, ips: readonly IpAddress[], ttl: number, changed: IpsChanged, undo?: UndoSink): void {
    const g = this.group(endpoint, normalizeFqdn(rawName));
    const b: Batch = { group: g, learntAt: this.now, expiresAt: this.now + Math.max(ttl, this.options.minTtl), ips: [], queued: false };
    const displaced: (Batch | undefined)[] = [];
    for (const ip of ips) {
      const key = ipKey(ip);
      const old = g.ips.get(key);
      if (old && old.expiresAt >= b.expiresAt) continue;
      if (old) this.detach(key, old, old.expiresAt > this.now, changed);
      b.ips.push(key);
      displaced.push(old);
      this.attach(key, b, changed);
    }
    const evicted = this.evict(g, changed);
    if (g.ips.size === 0) this.dropIfEmpty(g);
    undo?.(() => {
      for (let i = evicted.length - 1; i >= 0; i--) {
        const [key, e] = evicted[i] as [IpKey, Batch];
        this.attach(key, e, ignore);
      }
      for (let i = b.ips.length - 1; i >= 0; i--) {
        const key = b.ips[i] as IpKey;
        if (g.ips.get(key) === b) this.detach(key, b, b.expiresAt > this.now, ignore);
        const old = displaced[i];
        if (old) this.attach(key, old, ignore);
      }
    });
  }

  /** Over `maxIpsPerHostname`: the entries that expire first (then the oldest, then by IP text) go. */
  private evict(g: Group, changed: IpsChanged): [IpKey, Batch][] {
    const over = g.ips.size - this.options.maxIpsPerHostname;
    if (over <= 0) return [];
    const text = (k: IpKey): string => (typeof k === 'string' ? k : ipOfKey(k).text);
    const order = [...g.ips].sort(([ka, a], [kb, b]) => a.expiresAt - b.expiresAt || a.learntAt - b.learntAt || (text(ka) < text(kb) ? -1 : 1));
    const out = order.slice(0, over);
    for (const [key, b] of out) this.detach(key, b, b.expiresAt > this.now, changed);
    return out;
  }

  /** Moves the clock (`advanceDnsClock`): every answer with expiresAt ≤ the new time goes. */
  advance(seconds: number, changed: IpsChanged, undo?: UndoSink): void {
    const before = this.now;
    this.now += seconds;
    const due = [...this.wheel.keys()].filter((t) => t <= this.now).sort((a, b) => a - b);
    const removed: [IpKey, Batch][] = [];
    for (const t of due) {
      const slot = this.wheel.get(t) ?? [];
      this.wheel.delete(t);
      for (const b of slot) {
        b.queued = false;
        for (const key of b.ips) {
          if (b.group.ips.get(key) !== b) continue;
          this.detach(key, b, b.expiresAt > before, changed);
          removed.push([key, b]);
        }
      }
    }
    if (!undo) return;
    undo(() => {
      for (let i = removed.length - 1; i >= 0; i--) {
        const [key, b] = removed[i] as [IpKey, Batch];
        this.attach(key, b, ignore);
      }
    });
    // Pushed last so it runs first: re-attached answers are counted live against the old clock.
    undo(() => {
      this.now = before;
    });
  }

  /** Drops an endpoint's answers (the pod is gone). */
  forgetEndpoint(endpoint: string, changed: IpsChanged, undo?: UndoSink): void {
    const byName = this.answers.get(endpoint);
    if (!byName) return;
    const removed: [IpKey, Batch][] = [];
    for (const g of [...byName.values()]) {
      for (const [key, b] of [...g.ips]) {
        this.detach(key, b, b.expiresAt > this.now, changed);
        removed.push([key, b]);
      }
    }
    undo?.(() => {
      for (let i = removed.length - 1; i >= 0; i--) {
        const [key, b] = removed[i] as [IpKey, Batch];
        this.attach(key, b, ignore);
      }
    });
  }

  /** Drops the answers of every endpoint in a namespace (keys `namespace/name`). */
  forgetNamespace(ns: string, changed: IpsChanged, undo?: UndoSink): void {
    for (const endpoint of [...this.answers.keys()]) if (endpoint.startsWith(`${ns}/`)) this.forgetEndpoint(endpoint, changed, undo);
  }

  /** Every stored answer (the persisted form and the oracle's `DnsCacheState.entries`). */
  *entries(): Iterable<DnsCacheEntry> {
    for (const [key, b] of this.keyedEntries()) yield { endpoint: b.group.endpoint, name: b.group.name, ip: ipOfKey(key), learntAt: b.learntAt, expiresAt: b.expiresAt };
  }

  /** Every stored answer as (IP key, answer): no object per entry. */
  *keyedEntries(): Iterable<[IpKey, { readonly group: { readonly endpoint: string; readonly name: string }; readonly learntAt: number; readonly expiresAt: number }]> {
    for (const byName of this.answers.values()) for (const g of byName.values()) yield* g.ips;
  }

  /** A deep copy with a live index (the engine's stage, rebuilt from the committed model's cache). */
  clone(): DnsCache {
    const c = new DnsCache(this.options, true);
    c.now = this.now;
    const copies = new Map<Batch, Batch>();
    for (const byName of this.answers.values()) {
      for (const g of byName.values()) {
        const cg = c.group(g.endpoint, g.name);
        for (const [key, b] of g.ips) {
          let cb = copies.get(b);
          if (!cb) copies.set(b, (cb = { group: cg, learntAt: b.learntAt, expiresAt: b.expiresAt, ips: [], queued: false }));
          cb.ips.push(key);
          c.attach(key, cb, ignore);
        }
      }
    }
    return c;
  }

  /**
   * Loads an entry as it was (restored from a file); the caller checks it is not in the past.
   * Consecutive entries of one answer (same endpoint, name and times) share one record.
   */
  restore(e: DnsCacheEntry, changed: IpsChanged): void {
    const g = this.group(e.endpoint, normalizeFqdn(e.name));
    const key = ipKey(e.ip);
    const old = g.ips.get(key);
    if (old) this.detach(key, old, old.expiresAt > this.now, changed);
    let b = this.lastRestored;
    if (!b || b.group !== g || b.learntAt !== e.learntAt || b.expiresAt !== e.expiresAt) {
      b = this.lastRestored = { group: g, learntAt: e.learntAt, expiresAt: e.expiresAt, ips: [], queued: false };
    }
    b.ips.push(key);
    this.attach(key, b, changed);
  }

  private lastRestored: Batch | undefined;

  private group(endpoint: string, name: string): Group {
    let byName = this.answers.get(endpoint);
    if (!byName) this.answers.set(endpoint, (byName = new Map()));
    let g = byName.get(name);
    if (!g) byName.set(name, (g = { endpoint, name, ips: new Map() }));
    return g;
  }

  /** Puts a group back in the index if it was dropped (undo of its last removal). */
  private ensureListed(g: Group): void {
    let byName = this.answers.get(g.endpoint);
    if (!byName) this.answers.set(g.endpoint, (byName = new Map()));
    if (byName.get(g.name) !== g) byName.set(g.name, g);
  }

  private dropIfEmpty(g: Group): void {
    const byName = this.answers.get(g.endpoint);
    if (!byName || byName.get(g.name) !== g) return;
    byName.delete(g.name);
    if (byName.size === 0) this.answers.delete(g.endpoint);
  }

  private attach(key: IpKey, b: Batch, changed: IpsChanged): void {
    const g = b.group;
    if (g.ips.size === 0) this.ensureListed(g);
    g.ips.set(key, b);
    if (!b.queued) {
      b.queued = true;
      let slot = this.wheel.get(b.expiresAt);
      if (!slot) this.wheel.set(b.expiresAt, (slot = []));
      slot.push(b);
    }
    if (b.expiresAt > this.now) this.count(key, g.name, +1, changed);
  }

  private detach(key: IpKey, b: Batch, live: boolean, changed: IpsChanged): void {
    const g = b.group;
    g.ips.delete(key);
    if (g.ips.size === 0) this.dropIfEmpty(g);
    if (live) this.count(key, g.name, -1, changed);
  }

  private count(key: IpKey, name: string, sign: 1 | -1, changed: IpsChanged): void {
    if (!this.liveIndex) return;
    const v = this.live.get(key);
    if (sign > 0) {
      if (v === undefined) {
        this.live.set(key, name);
        changed(key);
      } else if (typeof v === 'string') {
        this.live.set(key, v === name ? new Map([[name, 2]]) : new Map([[v, 1], [name, 1]]));
        if (v !== name) changed(key);
      } else {
        const m = v as Map<string, number>;
        const n = m.get(name) ?? 0;
        m.set(name, n + 1);
        if (n === 0) changed(key);
      }
      return;
    }
    if (typeof v === 'string') {
      this.live.delete(key);
      changed(key);
      return;
    }
    const m = v as Map<string, number>;
    const n = (m.get(name) ?? 0) - 1;
    if (n > 0) m.set(name, n);
    else {
      m.delete(name);
      changed(key);
    }
    if (m.size === 1) {
      const [only, c] = m.entries().next().value as [string, number];
      if (c === 1) this.live.set(key, only);
    }
  }
}
