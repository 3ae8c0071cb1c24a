import type { IdentityId } from '../model/identity.js';
import { isBelowAdmin, isPassFloor, LookupResult, maskPort, passCopyPrecedence, PolicyEntry, PolicyKey, policyKeyString, precedenceLevel, PRECEDENCE_LOWEST } from '../model/policy-map.js';
import type { Direction } from '../model/rules.js';
import type { TierOrigin } from '../model/tiers.js';
import { type Contribution, derivedContribution, type NamedEgress, RESOLVES_NOTHING } from './contribution.js';
import { L7Change, L7Tables } from './l7-tables.js';
import { entryEquals } from './map-deltas.js';
import { flatten, Group, Held, hold, isPassCopy, markPassCopy } from './map-tiers.js';
import { flat } from '../model/intern.js';
import { covers, dirProto, idDir, meet, portKeyOf, RAW_ID_DIR, rawKey, rawKeyAt } from './raw-key.js';
import type { PortKey } from './rule-units.js';
import { SmallCounts } from './small-counts.js';
import type { EngineStats } from './stats.js';

/** Higher precedence wins; between redirects of equal precedence, the lower proxy port. */
function better(a: PolicyEntry, b: PolicyEntry): boolean {
  if (a.precedence !== b.precedence) return a.precedence > b.precedence;
  return a.proxyPort < b.proxyPort;
}

/** All the rules' wishes for one key (each contribution with how many times it is made), and their merge. */
interface RawEntry {
  readonly key: PolicyKey;
  /** `rawKey(key)`. */
  readonly rk: number;
  /** `idDir`, `dirProto` and `portKeyOf` of its key, for the indexes (computed once, at creation). */
  readonly idd: number;
  readonly dp: number;
  readonly pkc: number;
  readonly contribs: SmallCounts<Contribution>;
  merged: PolicyEntry;
}

/** An open Pass band: a key and the Admin Pass levels (with their floor counts) holding a floor there. */
interface Band {
  readonly key: PolicyKey;
  readonly levels: Map<number, number>;
}

/** One changed entry of a settled map state. */
export interface EntryChange {
  readonly keyString: string;
  readonly key: PolicyKey;
  readonly before: PolicyEntry | undefined;
  readonly after: PolicyEntry | undefined;
}

/** What one `settle()` changed. */
export interface SettleResult {
  /** Kernel-layer entries, before and after. */
  readonly entries: readonly EntryChange[];
  /** L7 table rows, before and after. */
  readonly l7: readonly L7Change[];
  /** Whether a redirect was added or removed (the endpoints' proxy ports follow). */
  readonly redirectsChanged: boolean;
}

const NO_L7_CHANGES: readonly L7Change[] = [];
const NOTHING_CHANGED: SettleResult = { entries: [], l7: NO_L7_CHANGES, redirectsChanged: false };

function addTo<K, V>(m: Map<K, Set<V>>, k: K, v: V): void {
  let s = m.get(k);
  if (!s) m.set(k, (s = new Set()));
  s.add(v);
}

function removeFrom<K, V>(m: Map<K, Set<V>>, k: K, v: V): void {
  const s = m.get(k);
  if (!s) return;
  s.delete(v);
  if (s.size === 0) m.delete(k);
}

/**
 * One policy map's content, kept in two layers:
 * - raw: every key some rule contributes, with a refcount per contribution (a rule unit, or one
 *   of its L7 clauses; each always contributes the same entry), merged by precedence;
 * - entries: what goes into the kernel map, the raw entries minus those the datapath can never
 *   select (Cilium's insertion rules): an entry covered by a broader-or-equal key of the same
 *   identity or of identity 0 with higher precedence, and an identity-specific entry equal to the
 *   identity-0 entry of the same key.
 * `entries` changes only in `settle()`, so until then it is the state before the transaction.
 */
export class MapState {
  /** By `rawKey`. */
  private readonly raw = new Map<number, RawEntry>();
  /** The kernel layer, written only by `settleEntries`; others read it as `entries`. */
  private readonly kernel = new Map<string, LookupResult>();
  readonly entries: ReadonlyMap<string, LookupResult> = this.kernel;
  /** Raw entries by `idDir`. */
  private readonly byIdentityDir = new Map<number, Set<RawEntry>>();
  /** Raw entries by `dirProto`. */
  private readonly byDirProto = new Map<number, Set<RawEntry>>();
  private readonly protocolsByDir = new Map<string, Set<number>>();
  private readonly byPortKey = new Map<number, Set<number>>();
  private readonly highByIdentityDir = new Map<number, number>();
  /**
   * Identity 0's raw keys whose merged entry is no deny, per direction (index: identity 0's idDir,
   * 0 ingress, 1 egress): while none, no kernel entry admits a number no selector names (`admitsEvery`).
   */
  private readonly wildAllows = [0, 0];
  /** Open Pass bands by raw key (docs/tiers-encoding.md §3): each Admin Pass level holding a floor there. */
  private readonly bands = new Map<number, Band>();
  private readonly bandsByDir = new Map<Direction, Set<Band>>();
  /** The copy of each lower-tier contribution in each band level it is copied into, with its use count. */
  private readonly copies = new Map<Contribution, Map<number, { readonly copy: Contribution; uses: number }>>();
  /** Tier contributions by (priority, direction, tier) (see `tierChange`). */
  private readonly groups = new Map<number, Group>();
  /** Raw keys changed since the last settle, with their merged entry before the first change. */
  private readonly dirty = new Map<number, { key: PolicyKey; before: PolicyEntry | undefined }>();

  /** The L7 layer: redirects and their rows, read from the raw layer. */
  readonly l7: L7Tables;

  constructor(
    private readonly stats: EngineStats,
    namedEgress: NamedEgress = RESOLVES_NOTHING,
  ) {
    this.l7 = new L7Tables({ at: (rk) => this.raw.get(rk)?.contribs.keys(), entriesOf: (dp) => this.byDirProto.get(dp) }, stats, namedEgress);
  }

  get isDirty(): boolean {
    return this.dirty.size > 0 || this.l7.isDirty;
  }

  get rawSize(): number {
    return this.raw.size;
  }

  /**
   * Whether some kernel entry of direction `d` may admit every peer number (an identity-0 key that is
   * no deny, on some port): a superset of the settled entries' (a kernel entry is a raw key's merged
   * entry or none), read from the raw layer, so it holds mid-transaction. Where it is false, a number
   * no selector names matches identity 0's denies or nothing, and is dropped (finding 2132).
   */
  admitsEvery(d: Direction): boolean {
    return (this.wildAllows[d === 'ingress' ? 0 : 1] as number) > 0;
  }

  /** `wildAllows` for a raw key of identity 0 (idDir `idd`, 0 or 1: callers check) when its merged entry `e` comes (+1) or goes (-1). */
  private countWild(idd: number, e: PolicyEntry, delta: 1 | -1): void {
    if (!e.deny) this.wildAllows[idd] = (this.wildAllows[idd] as number) + delta;
  }

  add(key: PolicyKey, c: Contribution): void {
    const t = c.origin?.tier;
    if (t && !isPassCopy(c)) this.tierChange(key, c, t, +1);
    else this.direct(key, c, +1);
  }

  remove(key: PolicyKey, c: Contribution): void {
    const t = c.origin?.tier;
    if (t && !isPassCopy(c)) this.tierChange(key, c, t, -1);
    else this.direct(key, c, -1);
  }

  /**
   * `add` (sign +1) or `remove` (-1) of `c` at each of `keys` for the peer `identity`, in order. A
   * key object is built only for a raw key that is new: a rule unit calls this for every peer.
   */
  change(identity: IdentityId, direction: Direction, keys: readonly PortKey[], c: Contribution, sign: 1 | -1): void {
    const idd = idDir(identity, direction);
    // A plain contribution has no tier and no Pass effect unless a band is open: its raw keys only.
    const plain = c.plain === true && this.bands.size === 0;
    if (!plain) {
      const t = c.origin?.tier;
      if (t && !isPassCopy(c)) {
        for (const pk of keys) this.tierChange({ identity, direction, protocol: pk.protocol, port: pk.port, portPrefixLen: pk.portPrefixLen }, c, t, sign);
        return;
      }
    }
    for (let i = 0; i < keys.length; i++) {
      const pk = keys[i] as PortKey;
      const rk = rawKeyAt(idd, pk.protocol, pk.port, pk.portPrefixLen);
      const r = sign > 0 ? this.addRawAt(rk, c, null, identity, direction, pk) : this.removeRawAt(rk, c, identity, direction, pk);
      if (!plain) this.passEffects(r.key, c, sign);
    }
  }

  /** A contribution into (out of) the raw layer, with its Pass-band effects. */
  private direct(key: PolicyKey, c: Contribution, sign: 1 | -1): void {
    if (sign > 0) this.addRaw(key, c);
    else this.removeRaw(key, c);
    this.passEffects(key, c, sign);
  }

  // ------------------------------------------------------------ same-priority groups

  /**
   * ClusterNetworkPolicy contributions are counted per (tier, priority, direction) and policy.
   * While one policy makes them they go into the raw layer as they are; while two or more do (a
   * same-priority group), they are held apart (taken out of the raw layer by a scan when the group
   * forms) and the group is flattened (`flatten`, docs/tiers-encoding.md §3): each cell gets the
   * group's decision at a level that grows with its specificity, so the most specific cell decides.
   * Recomputed whole on each change: groups are rare and `validate` warns.
   */
  private tierChange(key: PolicyKey, c: Contribution, t: TierOrigin, sign: 1 | -1): void {
    const gk = (t.priority * 2 + (key.direction === 'ingress' ? 0 : 1)) * 2 + (t.tier === 'Admin' ? 0 : 1);
    let g = this.groups.get(gk);
    if (!g) this.groups.set(gk, (g = { tier: t.tier, priority: t.priority, direction: key.direction, held: null, policies: new Map(), cells: [] }));
    const before = g.policies.size;
    const n = (g.policies.get(t.policy) ?? 0) + sign;
    if (n > 0) g.policies.set(t.policy, n);
    else g.policies.delete(t.policy);
    const after = g.policies.size;
    if (after === 0) this.groups.delete(gk);
    if (before <= 1 && after <= 1) return this.direct(key, c, sign);
    // The group is or becomes flat: its contributions leave the raw layer, then come back as cells or as they are.
    if (before > 1) for (const cell of g.cells) this.direct(cell.key, cell.c, -1);
    const held = g.held ?? this.withdrawGroup(g);
    hold(held, key, c, sign);
    if (after > 1) {
      g.held = held;
      g.cells = flatten(held);
      for (const cell of g.cells) this.direct(cell.key, cell.c, +1);
    } else {
      g.held = null;
      g.cells = [];
      for (const x of held.values()) for (const [hc, count] of x.contribs) for (let i = 0; i < count; i++) this.direct(x.key, hc, +1);
    }
  }

  /** Takes a group's contributions, held as they are while one policy held them, out of the raw layer. */
  private withdrawGroup(g: Group): Held {
    const held: Held = new Map();
    for (const r of this.raw.values()) {
      if (r.key.direction !== g.direction) continue;
      for (const [c, count] of r.contribs) {
        const t = c.origin?.tier;
        if (t?.tier === g.tier && t.priority === g.priority && !isPassCopy(c)) for (let i = 0; i < count; i++) hold(held, r.key, c, +1);
      }
    }
    for (const x of held.values()) for (const [c, count] of x.contribs) for (let i = 0; i < count; i++) this.direct(x.key, c, -1);
    return held;
  }

  private addRaw(key: PolicyKey, c: Contribution): void {
    this.addRawAt(rawKey(key), c, key, key.identity, key.direction, key);
  }

  /** Adds `c` at raw key `ks`: `key` when the caller has it, else built from identity, direction and `pk` if the raw key is new. */
  private addRawAt(ks: number, c: Contribution, key: PolicyKey | null, identity: IdentityId, direction: Direction, pk: PortKey): RawEntry {
    this.stats.mapEntriesVisited++;
    const entry = c.entry;
    let r = this.raw.get(ks);
    if (!r) {
      const k = key ?? { identity, direction, protocol: pk.protocol, port: pk.port, portPrefixLen: pk.portPrefixLen };
      this.markDirty(ks, k, undefined);
      // Holding `c` once from the start: a new key asks nothing of its counts (three calls fewer a key).
      r = { key: k, rk: ks, idd: Math.floor(ks / RAW_ID_DIR), dp: dirProto(direction, pk.protocol), pkc: portKeyOf(k), contribs: new SmallCounts<Contribution>(c), merged: entry };
      this.raw.set(ks, r);
      this.index(r);
      if (entry.precedence > PRECEDENCE_LOWEST) this.countHigh(r.idd, +1);
      if (r.idd < 2) this.countWild(r.idd, entry, +1);
      this.l7.touch(ks, k, entry);
      this.l7.countDnsFilters(k, c, 1);
      return r;
    }
    this.l7.touch(ks, r.key, entry);
    this.l7.countDnsFilters(r.key, c, 1);
    const count = r.contribs.get(c);
    if (count !== undefined) {
      r.contribs.set(c, count + 1);
      return r;
    }
    r.contribs.set(c, 1);
    if (r.contribs.size > 1 && better(entry, r.merged)) {
      this.markDirty(ks, r.key, r.merged);
      if (r.merged.precedence <= PRECEDENCE_LOWEST && entry.precedence > PRECEDENCE_LOWEST) this.countHigh(r.idd, +1);
      if (r.idd < 2) {
        this.countWild(r.idd, r.merged, -1);
        this.countWild(r.idd, entry, +1);
      }
      r.merged = entry;
    }
    return r;
  }

  private removeRaw(key: PolicyKey, c: Contribution): void {
    this.removeRawAt(rawKey(key), c, key.identity, key.direction, key);
  }

  /** Removes `c` at raw key `ks`; returns the raw entry it was held in (possibly no longer in the raw layer). */
  private removeRawAt(ks: number, c: Contribution, identity: IdentityId, direction: Direction, pk: PortKey): RawEntry {
    this.stats.mapEntriesVisited++;
    const r = this.raw.get(ks);
    const count = r?.contribs.get(c);
    if (!r || count === undefined) {
      const key: PolicyKey = { identity, direction, protocol: pk.protocol, port: pk.port, portPrefixLen: pk.portPrefixLen };
      throw new Error(`map state: removing a contribution that was never added (${policyKeyString(key)} from ${c.label})`);
    }
    const key = r.key;
    this.l7.touch(ks, key, c.entry);
    this.l7.countDnsFilters(key, c, -1);
    if (count > 1) {
      r.contribs.set(c, count - 1);
      return r;
    }
    r.contribs.delete(c);
    this.markDirty(ks, key, r.merged);
    if (r.contribs.size === 0) {
      this.raw.delete(ks);
      this.unindex(r);
      if (r.merged.precedence > PRECEDENCE_LOWEST) this.countHigh(r.idd, -1);
      if (r.idd < 2) this.countWild(r.idd, r.merged, -1);
      return r;
    }
    let merged: PolicyEntry | undefined;
    for (const x of r.contribs.keys()) if (merged === undefined || better(x.entry, merged)) merged = x.entry;
    if (r.merged.precedence > PRECEDENCE_LOWEST && (merged as PolicyEntry).precedence <= PRECEDENCE_LOWEST) this.countHigh(r.idd, -1);
    if (r.idd < 2) {
      this.countWild(r.idd, r.merged, -1);
      this.countWild(r.idd, merged as PolicyEntry, +1);
    }
    r.merged = merged as PolicyEntry;
    return r;
  }

  // ------------------------------------------------------------ Pass bands

  /**
   * An Admin Pass floor at `key` opens (or closes) its band; a lower-tier contribution is copied
   * into (or out of) every open band its key meets. Invariant: each copy is held, at the
   * intersection key, once per (lower-tier contribution held at a key meeting the band, band open).
   */
  private passEffects(key: PolicyKey, c: Contribution, sign: 1 | -1): void {
    const p = c.entry.precedence;
    if (isPassFloor(p)) this.passBand(key, precedenceLevel(p), sign);
    else if (this.bands.size > 0 && isBelowAdmin(p)) {
      for (const band of this.bandsMeeting(key)) for (const level of band.levels.keys()) this.copy(band.key, key, c, level, sign);
    }
  }

  private passBand(key: PolicyKey, level: number, sign: 1 | -1): void {
    const ks = rawKey(key);
    let band = this.bands.get(ks);
    if (!band) {
      band = { key, levels: new Map() };
      this.bands.set(ks, band);
      addTo(this.bandsByDir, key.direction, band);
    }
    const n = (band.levels.get(level) ?? 0) + sign;
    if (n > 0) band.levels.set(level, n);
    else band.levels.delete(level);
    if (band.levels.size === 0) {
      this.bands.delete(ks);
      removeFrom(this.bandsByDir, key.direction, band);
    }
    if (n !== (sign > 0 ? 1 : 0)) return;
    // The band at this level opens or closes: copy every lower-tier contribution meeting it.
    const sources: [PolicyKey, Contribution, number][] = [];
    for (const r of this.rawMeeting(key)) for (const [src, count] of r.contribs) if (isBelowAdmin(src.entry.precedence)) sources.push([r.key, src, count]);
    for (const [k, src, count] of sources) for (let i = 0; i < count; i++) this.copy(key, k, src, level, sign);
  }

  /** Adds (removes) the copy of `src`, held at `at`, into the band of `band` at `level`. */
  private copy(band: PolicyKey, at: PolicyKey, src: Contribution, level: number, sign: 1 | -1): void {
    const k = meet(band, at);
    if (!k) return;
    let bySource = this.copies.get(src);
    if (!bySource) this.copies.set(src, (bySource = new Map()));
    let held = bySource.get(level);
    if (!held) {
      const entry: PolicyEntry = { deny: src.entry.deny, proxyPort: src.entry.proxyPort, precedence: passCopyPrecedence(level, src.entry.precedence) };
      const copy = derivedContribution(src.origin, entry, src.l7, `${src.label}@pass${level}`, src.sharers ?? null);
      bySource.set(level, (held = { copy, uses: 0 }));
      markPassCopy(copy);
    }
    held.uses += sign;
    if (sign > 0) this.addRaw(k, held.copy);
    else this.removeRaw(k, held.copy);
    if (held.uses === 0) {
      bySource.delete(level);
      if (bySource.size === 0) this.copies.delete(src);
    }
  }

  /** The open bands whose key meets `key`. */
  private bandsMeeting(key: PolicyKey): Band[] {
    const out: Band[] = [];
    for (const b of this.bandsByDir.get(key.direction) ?? []) if (meet(b.key, key)) out.push(b);
    return out;
  }

  /** The raw entries whose key meets `key`. */
  private rawMeeting(key: PolicyKey): RawEntry[] {
    const out: RawEntry[] = [];
    const scan = (entries: Iterable<RawEntry> | undefined): void => {
      for (const r of entries ?? []) {
        this.stats.mapEntriesVisited++;
        if (meet(key, r.key)) out.push(r);
      }
    };
    if (key.identity !== 0) {
      scan(this.byIdentityDir.get(idDir(key.identity, key.direction)));
      scan(this.byIdentityDir.get(idDir(0, key.direction)));
    } else {
      for (const p of this.protocolsByDir.get(key.direction) ?? []) scan(this.byDirProto.get(dirProto(key.direction, p)));
    }
    return out;
  }

  /** Keys above the lowest precedence (the default allow's) per identity and direction: only they can hide others. */
  private countHigh(idd: number, delta: 1 | -1): void {
    const n = (this.highByIdentityDir.get(idd) ?? 0) + delta;
    if (n > 0) this.highByIdentityDir.set(idd, n);
    else this.highByIdentityDir.delete(idd);
  }

  private markDirty(ks: number, key: PolicyKey, before: PolicyEntry | undefined): void {
    if (!this.dirty.has(ks)) this.dirty.set(ks, { key, before });
  }

  private index(r: RawEntry): void {
    const key = r.key;
    addTo(this.byIdentityDir, r.idd, r);
    addTo(this.byDirProto, r.dp, r);
    addTo(this.protocolsByDir, key.direction, key.protocol);
    addTo(this.byPortKey, r.pkc, key.identity);
  }

  private unindex(r: RawEntry): void {
    const key = r.key;
    removeFrom(this.byIdentityDir, r.idd, r);
    removeFrom(this.byDirProto, r.dp, r);
    if (!this.byDirProto.has(r.dp)) removeFrom(this.protocolsByDir, key.direction, key.protocol);
    removeFrom(this.byPortKey, r.pkc, key.identity);
  }

  /** Keys whose final entry may depend on raw key `key`. */
  private dependents(key: PolicyKey, ks: number, mayPrune: boolean, out: Map<number, PolicyKey>): void {
    out.set(ks, key);
    if (key.identity === 0) {
      for (const id of this.byPortKey.get(portKeyOf(key)) ?? []) {
        const k = { ...key, identity: id };
        out.set(rawKey(k), k);
      }
    }
    // Only an entry above the lowest precedence (the default allow's) can hide narrower entries.
    if (!mayPrune) return;
    if (key.identity !== 0) {
      this.coveredBy(key, this.byIdentityDir.get(Math.floor(ks / RAW_ID_DIR)), out);
    } else if (key.protocol !== 0) {
      this.coveredBy(key, this.byDirProto.get(dirProto(key.direction, key.protocol)), out);
    } else {
      for (const p of this.protocolsByDir.get(key.direction) ?? []) this.coveredBy(key, this.byDirProto.get(dirProto(key.direction, p)), out);
    }
  }

  /** The raw entries of `entries` that `key` covers, into `out` (a method, not a closure per call: this runs once per settled key). */
  private coveredBy(key: PolicyKey, entries: Set<RawEntry> | undefined, out: Map<number, PolicyKey>): void {
    if (entries === undefined) return;
    for (const r of entries) {
      this.stats.mapEntriesVisited++;
      if (covers(key, r.key)) out.set(r.rk, r.key);
    }
  }

  /** The entry the kernel map should hold for a raw key, after Cilium's insertion rules. */
  private finalEntry(key: PolicyKey, r: RawEntry | undefined): PolicyEntry | undefined {
    if (!r) return undefined;
    const p = r.merged.precedence;
    // The key's own identity, then identity 0 (once when they are the same). Identity 0's idDir is
    // the direction's bit, its raw key this one's with that idDir: no key helper called per settled key.
    const idd0 = r.idd & 1;
    if (key.identity !== 0 && this.hiddenAt(key, r.idd, true, p)) return undefined;
    if (this.hiddenAt(key, idd0, key.identity === 0, p)) return undefined;
    if (key.identity !== 0) {
      const r0 = this.raw.get(r.rk - (r.idd - idd0) * RAW_ID_DIR);
      if (r0 && entryEquals(r0.merged, r.merged)) return undefined;
    }
    return r.merged;
  }

  /**
   * The kernel-layer entry of a key as the next `settle()` will make it: what the datapath would
   * hold now, mid-transaction, while `entries` still holds the state before it.
   */
  pendingEntry(key: PolicyKey): LookupResult | undefined {
    const r = this.raw.get(rawKey(key));
    if (!r) return undefined;
    const entry = this.finalEntry(r.key, r);
    return entry && { key: r.key, entry };
  }

  /** Is a broader-or-equal key of idDir `idd` above precedence `p`? (For the key's own (`own`), only broader ones.) */
  private hiddenAt(key: PolicyKey, idd: number, own: boolean, p: number): boolean {
    // Only keys above the lowest precedence (the default allow's) can hide this one; most levels have none.
    if (!this.highByIdentityDir.has(idd)) return false;
    // An identity with fewer raw entries than the prefix lookups below (most peers hold a few ports) is scanned instead.
    const held = this.byIdentityDir.get(idd);
    if (held !== undefined && held.size <= key.portPrefixLen) return this.hiddenAmong(key, own, p, held);
    // Broader-or-equal keys: the same protocol with shorter port prefixes, then any protocol.
    if (key.protocol !== 0) {
      for (let len = own ? key.portPrefixLen - 1 : key.portPrefixLen; len >= 0; len--) {
        this.stats.mapEntriesVisited++;
        const rb = this.raw.get(rawKeyAt(idd, key.protocol, key.port, len));
        if (rb && rb.merged.precedence > p) return true;
      }
    }
    if (key.protocol !== 0 || !own) {
      this.stats.mapEntriesVisited++;
      const rb = this.raw.get(rawKeyAt(idd, 0, 0, 0));
      if (rb && rb.merged.precedence > p) return true;
    }
    return false;
  }

  /** `hiddenAt` by a scan of one identity's raw entries `held` (same direction): the same broader-or-equal keys. */
  private hiddenAmong(key: PolicyKey, own: boolean, p: number, held: Set<RawEntry>): boolean {
    const maxLen = own ? key.portPrefixLen - 1 : key.portPrefixLen;
    for (const r of held) {
      this.stats.mapEntriesVisited++;
      if (r.merged.precedence <= p) continue;
      const k = r.key;
      // The all-ports key (0, 0, 0), the raw key the lookups probe (the key itself, when it is that, has precedence p).
      if (k.protocol === 0) {
        if (k.portPrefixLen === 0) return true;
      } else if (k.protocol === key.protocol && k.portPrefixLen <= maxLen && maskPort(key.port, k.portPrefixLen) === maskPort(k.port, k.portPrefixLen)) {
        return true;
      }
    }
    return false;
  }

  /** The contributions behind a raw key. */
  contributions(key: PolicyKey): Contribution[] {
    const r = this.raw.get(rawKey(key));
    return r ? [...r.contribs.keys()] : [];
  }

  /** For each contribution, how many kernel-layer entries it is a winning contributor of. */
  entriesByContribution(): Map<Contribution, number> {
    const out = new Map<Contribution, number>();
    for (const { key, entry } of this.entries.values()) {
      for (const c of this.contributions(key)) {
        if (entryEquals(c.entry, entry)) out.set(c, (out.get(c) ?? 0) + 1);
      }
    }
    return out;
  }

  /** Brings `entries` (and the L7 tables) up to date with the raw layer; returns what changed. */
  settle(): SettleResult {
    const changes = this.settleEntries();
    // Maps without redirects (most of them) skip the L7 layer entirely.
    if (!this.l7.relevant(changes)) return changes.length === 0 ? NOTHING_CHANGED : { entries: changes, l7: NO_L7_CHANGES, redirectsChanged: false };
    return { entries: changes, ...this.l7.settle(changes) };
  }

  private settleEntries(): EntryChange[] {
    if (this.dirty.size === 0) return [];
    this.stats.mapStateUpdates++;
    const affected = new Map<number, PolicyKey>();
    // Keys, then a lookup: no [key, value] pair to destructure per entry in code that rarely runs optimised.
    for (const ks of this.dirty.keys()) {
      const d = this.dirty.get(ks) as { key: PolicyKey; before: PolicyEntry | undefined };
      const now = this.raw.get(ks)?.merged;
      // entryEquals only when both exist (a new key's `before` is undefined): one call fewer per new key.
      if (d.before === undefined ? now === undefined : entryEquals(now, d.before)) continue;
      const mayPrune = Math.max(now?.precedence ?? 0, d.before?.precedence ?? 0) > PRECEDENCE_LOWEST;
      this.dependents(d.key, ks, mayPrune, affected);
    }
    this.dirty.clear();
    const changes: EntryChange[] = [];
    for (const rk of affected.keys()) {
      const key = affected.get(rk) as PolicyKey;
      let ks = policyKeyString(key);
      const before = this.entries.get(ks)?.entry;
      const after = this.finalEntry(key, this.raw.get(rk));
      if (before === undefined ? after === undefined : entryEquals(before, after)) continue;
      // A new key is stored for the entry's lifetime: flat, not the tree of ~6 pieces the template builds.
      if (before === undefined) ks = flat(ks);
      if (after) this.kernel.set(ks, { key, entry: after });
      else this.kernel.delete(ks);
      changes.push({ keyString: ks, key, before, after });
    }
    return changes;
  }
}
