import { Cidr, cidrContainsIp, IpAddress, unmapIp } from '../model/cidr.js';
import { DEFAULT_DNS_CACHE_OPTIONS, DnsCacheEntry, DnsCacheOptions, ipsOverLimit, normalizeFqdn } from '../model/fqdn.js';
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
 * In the cache, an answer is live exactly while `now <= expiresAt` (Cilium pkg/fqdn/cache.go
 * `isExpiredBy`: `pointInTime.After(entry.ExpirationTime)`); expired ones are removed.
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
 * `advanceDnsClock` / `withoutPodAnswers` (src/model/fqdn.ts, what the oracle reads), with a timing
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
  /** The live IPs by prefix (IPv4) and as a set (IPv6): which learnt IPs a CIDR holds. */
  private readonly liveV4 = new V4Prefixes();
  private readonly liveV6 = new Set<string>();

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

  /**
   * Calls `onIp` with every live IP inside `cidr`; returns how many IPs it looked at: for IPv4
   * those inside plus none (a prefix of /24 or shorter) or only those of the same /24 (longer),
   * for IPv6 every live IPv6 address.
   */
  liveWithin(cidr: Cidr, onIp: (ip: IpKey) => void): number {
    if (cidr.family === 'ipv4') return this.liveV4.within(Number(cidr.network), cidr.prefixLength, onIp);
    for (const key of this.liveV6) if (cidrContainsIp(cidr, ipOfKey(key))) onIp(key);
    return this.liveV6.size;
  }

  /** Records an answer the proxy learnt (`recordDnsAnswer`); `undo` gets the inverse operation. */
  record(endpoint: string, rawName: string, ips: readonly IpAddress[], ttl: number, changed: IpsChanged, undo?: UndoSink): void {
    const g = this.group(endpoint, normalizeFqdn(rawName));
    const b: Batch = { group: g, learntAt: this.now, expiresAt: this.now + Math.max(ttl, this.options.minTtl), ips: [], queued: false };
    const displaced: (Batch | undefined)[] = [];
    for (const ip of ips) {
      const key = ipKey(unmapIp(ip));
      const old = g.ips.get(key);
      if (old && old.expiresAt >= b.expiresAt) continue;
      if (old) this.detach(key, old, old.expiresAt >= this.now, changed);
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
        if (g.ips.get(key) === b) this.detach(key, b, b.expiresAt >= this.now, ignore);
        const old = displaced[i];
        if (old) this.attach(key, old, ignore);
      }
    });
  }

  /** Over `maxIpsPerHostname`: the entries that expire first (then the oldest, then by IP text) go. */
  private evict(g: Group, changed: IpsChanged): [IpKey, Batch][] {
    const over = ipsOverLimit(g.ips.size, this.options);
    if (over <= 0) return [];
    const text = (k: IpKey): string => (typeof k === 'string' ? k : ipOfKey(k).text);
    const order = [...g.ips].sort(([ka, a], [kb, b]) => a.expiresAt - b.expiresAt || a.learntAt - b.learntAt || (text(ka) < text(kb) ? -1 : 1));
    const out = order.slice(0, over);
    for (const [key, b] of out) this.detach(key, b, b.expiresAt >= this.now, changed);
    return out;
  }

  /** Moves the clock (`advanceDnsClock`): every answer with expiresAt < the new time goes. */
  advance(seconds: number, changed: IpsChanged, undo?: UndoSink): void {
    const before = this.now;
    this.now += seconds;
    const due = [...this.wheel.keys()].filter((t) => t < this.now).sort((a, b) => a - b);
    const removed: [IpKey, Batch][] = [];
    for (const t of due) {
      const slot = this.wheel.get(t) ?? [];
      this.wheel.delete(t);
      for (const b of slot) {
        b.queued = false;
        for (const key of b.ips) {
          if (b.group.ips.get(key) !== b) continue;
          this.detach(key, b, b.expiresAt >= before, changed);
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

  /** The endpoints that hold answers. */
  endpoints(): string[] {
    return [...this.answers.keys()];
  }

  /** Drops an endpoint's answers (the pod is gone). */
  forgetEndpoint(endpoint: string, changed: IpsChanged, undo?: UndoSink): void {
    // Every non-local pod upsert asks (twice): without answers, no hash of a key built by concatenation.
    if (this.answers.size === 0) return;
    const byName = this.answers.get(endpoint);
    if (!byName) return;
    const removed: [IpKey, Batch][] = [];
    for (const g of [...byName.values()]) {
      for (const [key, b] of [...g.ips]) {
        this.detach(key, b, b.expiresAt >= this.now, changed);
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
    const key = ipKey(unmapIp(e.ip));
    const old = g.ips.get(key);
    if (old) this.detach(key, old, old.expiresAt >= this.now, changed);
    let b = this.lastRestored;
    if (!b || b.group !== g || b.learntAt !== e.learntAt || b.expiresAt !== e.expiresAt) {
      b = this.lastRestored = { group: g, learntAt: e.learntAt, expiresAt: e.expiresAt, ips: [], queued: false };
    }
    b.ips.push(key);
    this.attach(key, b, changed);
  }

  private lastRestored: Batch | undefined;

  /**
   * After a restore: every (endpoint, name) over this cache's `maxIpsPerHostname` loses the
   * entries that expire first, as a new answer would evict them. The file may come from a run
   * with a higher limit (Cilium re-inserts restored entries with `updateWithEntry`, which marks
   * such names over the limit in force, and trims them at its next GC).
   */
  evictOverLimit(changed: IpsChanged): void {
    for (const byName of [...this.answers.values()]) {
      for (const g of [...byName.values()]) {
        this.evict(g, changed);
        if (g.ips.size === 0) this.dropIfEmpty(g);
      }
    }
  }

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
    if (b.expiresAt >= this.now) this.count(key, g.name, +1, changed);
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
        if (typeof key === 'number') this.liveV4.add(key >>> 0);
        else this.liveV6.add(key);
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
      if (typeof key === 'number') this.liveV4.remove(key >>> 0);
      else this.liveV6.delete(key);
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

/** Eight 32-bit words: which low bytes of one /24 are live. */
type Bits = number[];

function popcount(bits: Bits): number {
  let n = 0;
  for (let w of bits) {
    for (; w !== 0; w &= w - 1) n++;
  }
  return n;
}

/**
 * Live IPv4 addresses by prefix, to find those inside a CIDR in time proportional to them: Maps by
 * the first, second and third byte, then per /24 the low byte of its one address, or a 256-bit
 * bitmap once it has two (a few bytes per address when dense, no object per address when sparse).
 * Addresses are unsigned 32-bit numbers here; `within` reports IpKeys (signed).
 */
class V4Prefixes {
  private readonly top = new Map<number, Map<number, Map<number, number | Bits>>>();

  add(u: number): void {
    let m1 = this.top.get(u >>> 24);
    if (!m1) this.top.set(u >>> 24, (m1 = new Map()));
    let m2 = m1.get((u >>> 16) & 255);
    if (!m2) m1.set((u >>> 16) & 255, (m2 = new Map()));
    const b2 = (u >>> 8) & 255;
    const lo = u & 255;
    const leaf = m2.get(b2);
    if (leaf === undefined) m2.set(b2, lo);
    else if (typeof leaf === 'number') {
      if (leaf === lo) return;
      const bits: Bits = [0, 0, 0, 0, 0, 0, 0, 0];
      bits[leaf >>> 5] = (bits[leaf >>> 5] as number) | (1 << (leaf & 31));
      bits[lo >>> 5] = (bits[lo >>> 5] as number) | (1 << (lo & 31));
      m2.set(b2, bits);
    } else leaf[lo >>> 5] = (leaf[lo >>> 5] as number) | (1 << (lo & 31));
  }

  remove(u: number): void {
    const m1 = this.top.get(u >>> 24);
    const m2 = m1?.get((u >>> 16) & 255);
    const b2 = (u >>> 8) & 255;
    const lo = u & 255;
    const leaf = m2?.get(b2);
    if (!m1 || !m2 || leaf === undefined) return;
    if (typeof leaf === 'number') {
      if (leaf !== lo) return;
      m2.delete(b2);
    } else {
      leaf[lo >>> 5] = (leaf[lo >>> 5] as number) & ~(1 << (lo & 31));
      // Back to one address: its low byte again.
      if (popcount(leaf) === 1) m2.set(b2, leaf.findIndex((w) => w !== 0) * 32 + (31 - Math.clz32(leaf.find((w) => w !== 0) as number)));
      return;
    }
    if (m2.size > 0) return;
    m1.delete((u >>> 16) & 255);
    if (m1.size === 0) this.top.delete(u >>> 24);
  }

  /** Calls `onIp` with every address inside network/len; returns how many addresses it looked at. */
  within(network: number, len: number, onIp: (ip: IpKey) => void): number {
    let seen = 0;
    const byte = (i: number): number => (network >>> (24 - 8 * i)) & 255;
    // At byte i: every child (the prefix ends before it), the children whose high bits the prefix
    // fixes (it ends inside it: at most 128 probes, or the children if fewer), or one child.
    const level = <T>(m: Map<number, T>, i: number, each: (v: T, prefix: number) => void, prefix: number): void => {
      const free = Math.min(8, Math.max(0, 8 * (i + 1) - len));
      if (free === 8) {
        for (const [b, v] of m) each(v, prefix * 256 + b);
        return;
      }
      const from = byte(i) & ~((1 << free) - 1);
      if (m.size < 1 << free) {
        for (const [b, v] of m) if (b >= from && b < from + (1 << free)) each(v, prefix * 256 + b);
        return;
      }
      for (let b = from; b < from + (1 << free); b++) {
        const v = m.get(b);
        if (v !== undefined) each(v, prefix * 256 + b);
      }
    };
    // Inside a /24: the low bytes from `first` for `span` addresses (all 256 for /24 and shorter).
    const span = len <= 24 ? 256 : 2 ** (32 - len);
    const first = len <= 24 ? 0 : network & 255 & ~(span - 1);
    level(this.top, 0, (m1, p0) => level(m1, 1, (m2, p1) => level(m2, 2, (leaf, p2) => {
      const base = p2 * 256;
      if (typeof leaf === 'number') {
        if (leaf >= first && leaf < first + span) {
          seen++;
          onIp((base + leaf) | 0);
        }
        return;
      }
      for (let wi = first >>> 5; wi <= (first + span - 1) >>> 5; wi++) {
        for (let w = leaf[wi] as number; w !== 0; w &= w - 1) {
          const lo = wi * 32 + 31 - Math.clz32(w & -w);
          if (lo < first || lo >= first + span) continue;
          seen++;
          onIp((base + lo) | 0);
        }
      }
    }, p1), p0), 0);
    return seen;
  }
}
