import { L7Parser, L7Policy, l7PolicyKey, mergeL7Rules, ALLOW_ALL_L7 } from '../model/l7.js';
import { ANY_IDENTITY, IdentityId } from '../model/identity.js';
import { adminLevel, isBelowAdmin, isPassFloor, passFloorPrecedence, tierPrecedence, LookupResult, maskPort, passCopyPrecedence, PolicyEntry, PolicyKey, policyKeyString, precedenceLevel, PRECEDENCE_LOWEST } from '../model/policy-map.js';
import type { Direction, L7Rules } from '../model/rules.js';
import type { Tier, TierOrigin } from '../model/tiers.js';
import { type Contribution, derivedContribution } from './contribution.js';
import type { MapDelta } from './events.js';
import { flat } from '../model/intern.js';
import { PARSER_OF_CODE, type PortKey } from './rule-units.js';
import { SmallCounts } from './small-counts.js';
import type { EngineStats } from './stats.js';

export function entryEquals(a: PolicyEntry | undefined, b: PolicyEntry | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  return a.deny === b.deny && a.proxyPort === b.proxyPort && a.precedence === b.precedence;
}

/**
 * The deltas turning one endpoint's map `before` into `after` (both keyed by policyKeyString):
 * an upsert per new or changed entry (with the value it replaces), a delete per vanished key.
 * Entries are compared as they are; `concrete` (when given) turns each delta's entries into what
 * the kernel map holds (the commit's proxy ports), in the same pass.
 */
export function diffMaps(endpoint: string, before: ReadonlyMap<string, LookupResult>, after: ReadonlyMap<string, LookupResult>, concrete?: (key: PolicyKey, e: PolicyEntry) => PolicyEntry): MapDelta[] {
  const out: MapDelta[] = [];
  for (const [ks, r] of after) {
    const b = before.get(ks);
    if (b && entryEquals(b.entry, r.entry)) continue;
    const entry = concrete ? concrete(r.key, r.entry) : r.entry;
    out.push(mapDelta(endpoint, 'upsert', r.key, entry, b && (concrete ? concrete(r.key, b.entry) : b.entry)));
  }
  for (const [ks, b] of before) if (!after.has(ks)) out.push(mapDelta(endpoint, 'delete', b.key, concrete ? concrete(b.key, b.entry) : b.entry, undefined));
  return out;
}

/**
 * One map delta (`previous` only on an overwrite). Every delta is built here: the cold start's
 * diffs run it thousands of times, so the rare delta of a churn event (`Commit.emit`, which runs
 * a handful of times per process) builds its object in warm code, not through the runtime.
 */
export function mapDelta(endpoint: string, op: 'upsert' | 'delete', key: PolicyKey, entry: PolicyEntry, previous: PolicyEntry | undefined): MapDelta {
  return previous === undefined ? { endpoint, op, key, entry } : { endpoint, op, key, entry, previous };
}

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

/** Pass-band copies: their source holds the same L7 rules on a broader key, so the L7 tables skip them. */
const COPIES = new WeakSet<Contribution>();

/** The intersection of two keys (nested or disjoint), or undefined. */
function meet(a: PolicyKey, b: PolicyKey): PolicyKey | undefined {
  if (a.identity !== 0 && b.identity !== 0 && a.identity !== b.identity) return undefined;
  const inner = covers(a, b) ? b : covers(b, a) ? a : undefined;
  if (!inner) return undefined;
  const identity = a.identity !== 0 ? a.identity : b.identity;
  return inner.identity === identity ? inner : { ...inner, identity };
}

/** Contributions by raw key, with their counts. */
type Held = Map<string, { readonly key: PolicyKey; readonly contribs: Map<Contribution, number> }>;

function hold(held: Held, key: PolicyKey, c: Contribution, sign: 1 | -1): void {
  const ks = policyKeyString(key);
  const h = held.get(ks);
  const n = (h?.contribs.get(c) ?? 0) + sign;
  if (n > 0) {
    if (h) h.contribs.set(c, n);
    else held.set(ks, { key, contribs: new Map([[c, n]]) });
  } else if (h) {
    h.contribs.delete(c);
    if (h.contribs.size === 0) held.delete(ks);
  }
}

/** The contributions of one tier, priority and direction in one map state. */
interface Group {
  readonly tier: Tier;
  readonly priority: number;
  readonly direction: Direction;
  /** Policy name → contributions it makes. */
  readonly policies: Map<string, number>;
  /** While two or more policies contribute (flat): their contributions, out of the raw layer. */
  held: Held | null;
  /** In the raw layer while flat. */
  cells: { readonly key: PolicyKey; readonly c: Contribution }[];
}

const tierOf = (c: Contribution): TierOrigin => c.origin?.tier as TierOrigin;

/**
 * How specific a cell is: 0 … 19, strictly greater for a strictly smaller key (L4 prefix, then the
 * specific identity). A cell at depth `d` takes the slot of rule index `24 − d` of its priority
 * (the group's own rules are out of the raw layer while it is flat), so of the cells covering a
 * packet the most specific one has the highest level.
 */
function cellDepth(k: PolicyKey): number {
  return (k.protocol === 0 ? 0 : 1 + k.portPrefixLen) + (k.identity === 0 ? 0 : 1);
}

/**
 * A same-priority group's cells: its keys, plus the intersection of each identity-specific key
 * with each identity-0 key, so the cells covering a packet always have a most specific one. Each
 * cell gets the oracle's group decision for the packets it is the most specific cell of: each
 * policy's first matching rule (its highest-precedence contribution covering the cell), then Deny
 * over Pass over Accept, the policy first by name naming the rule. An Admin Pass cell is a floor:
 * the Pass band machinery materialises the lower tiers on it. A Baseline Pass is an Accept.
 */
function flatten(held: Held): { key: PolicyKey; c: Contribution }[] {
  const cells = new Map<string, PolicyKey>();
  const keys = [...held.values()].map((h) => h.key);
  for (const k of keys) cells.set(policyKeyString(k), k);
  for (const a of keys) if (a.identity !== 0) for (const z of keys) {
    const m = z.identity === 0 ? meet(a, z) : undefined;
    if (m) cells.set(policyKeyString(m), m);
  }
  const out: { key: PolicyKey; c: Contribution }[] = [];
  for (const cell of cells.values()) {
    const first = new Map<string, Contribution>();
    for (const h of held.values()) {
      if ((h.key.identity !== 0 && h.key.identity !== cell.identity) || !covers(h.key, cell)) continue;
      for (const c of h.contribs.keys()) {
        const best = first.get(tierOf(c).policy);
        if (!best || c.entry.precedence > best.entry.precedence) first.set(tierOf(c).policy, c);
      }
    }
    const byName = [...first.values()].sort((a, b) => (tierOf(a).policy < tierOf(b).policy ? -1 : 1));
    const decided = byName.find((c) => c.entry.deny && !isPassFloor(c.entry.precedence)) ?? byName.find((c) => isPassFloor(c.entry.precedence)) ?? byName[0];
    if (!decided) continue;
    const t = tierOf(decided);
    const index = 24 - cellDepth(cell);
    const pass = isPassFloor(decided.entry.precedence);
    const precedence = pass ? passFloorPrecedence(adminLevel(t.priority, index)) : tierPrecedence(t.tier, t.priority, index, decided.entry.deny);
    out.push({ key: cell, c: derivedContribution(decided.origin, { deny: decided.entry.deny, proxyPort: 0, precedence }, undefined, `${decided.label}@cell`) });
  }
  return out;
}

/** One changed entry of a settled map state. */
export interface EntryChange {
  readonly keyString: string;
  readonly key: PolicyKey;
  readonly before: PolicyEntry | undefined;
  readonly after: PolicyEntry | undefined;
}

/**
 * A proxy redirect of one map: traffic on (direction, protocol, port prefix) to the `parser`
 * proxy. A port range with L7 rules is redirected by its LPM prefixes, as Cilium's map state keys
 * a range's L4Filter (pkg/policy/types PortProtoToMaskedPorts); the proxy judges each request by
 * its own destination port (`l7PortContributions`).
 */
export interface Redirect {
  readonly direction: Direction;
  readonly protocol: number;
  readonly port: number;
  readonly portPrefixLen: number;
  readonly parser: L7Parser;
}

/** The redirect of a kernel key whose entry redirects to `parser`. */
export function keyRedirect(key: PolicyKey, parser: L7Parser): Redirect {
  return { direction: key.direction, protocol: key.protocol, port: key.port, portPrefixLen: key.portPrefixLen, parser };
}

/** A single port's id is the one it had before prefixes were redirected (pinned proxy ports keep it). */
export function redirectId(r: Redirect): string {
  return r.portPrefixLen === 16 ? `${r.direction}/${r.protocol}/${r.port}/${r.parser}` : `${r.direction}/${r.protocol}/${r.port}/${r.portPrefixLen}/${r.parser}`;
}

/** One row of a map's L7 tables: what the proxy of `redirect` is told for one peer identity. */
export interface L7Row {
  readonly redirect: Redirect;
  /** The peer identity, ANY_IDENTITY standing for every peer. The proxy applies the peer's row and the ANY_IDENTITY row. */
  readonly peer: IdentityId;
  readonly policy: L7Policy;
  /**
   * A narrower port prefix inside the redirect's range this row applies to (absent: the whole
   * range): the rules of a narrower range or a plain allow that the datapath hides behind the wider
   * redirect key; the proxy ORs the rows whose range covers a request's port.
   */
  readonly range?: { readonly port: number; readonly portPrefixLen: number };
}

export interface L7Change {
  readonly rowKey: string;
  readonly before: L7Row | undefined;
  readonly after: L7Row | undefined;
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

/** Which parser a redirect entry stands for (map states hold parser codes, see rule-units). */
function parserOf(e: PolicyEntry): L7Parser | undefined {
  return PARSER_OF_CODE[e.proxyPort];
}

/*
 * Raw keys are numbers: the raw layer is probed for every contribution and, per changed key, for
 * each of its broader port prefixes, and a key string would be built, flattened and hashed each
 * time. (protocol, port prefix) is one integer below 2^25: the protocol above the prefix's bits
 * under a leading 1 (len 0 → 1, len 16 → 2^16 + port); identity and direction above it (exact
 * below 2^53 for identities below 2^27).
 */
const P25 = 2 ** 25;
const P17 = 2 ** 17;
// The helpers below run tens of thousands of times in a cold start, mostly unoptimised, where
// every call costs: none calls another. The direction's bit is 0 for ingress, 1 for egress; the
// prefix code of (port, len) within a protocol is `(1 << len) + (port >>> (16 - len))`.
/** Identity and direction as one small integer. */
const idDir = (identity: IdentityId, d: Direction): number => identity * 2 + (d === 'ingress' ? 0 : 1);
/** The raw key of (identity and direction, protocol, port prefix). */
const rawKeyAt = (idd: number, protocol: number, port: number, len: number): number => idd * P25 + protocol * P17 + (1 << len) + (port >>> (16 - len));

function rawKey(k: PolicyKey): number {
  return rawKeyAt(idDir(k.identity, k.direction), k.protocol, k.port, k.portPrefixLen);
}

/** (direction, protocol) as one integer. */
const dirProto = (d: Direction, protocol: number): number => (d === 'ingress' ? 0 : 256) + protocol;
/** A key without its identity: its (direction, protocol) above its prefix code. */
const portKeyOf = (k: PolicyKey): number => ((k.direction === 'ingress' ? 0 : 256) + k.protocol) * P17 + (1 << k.portPrefixLen) + (k.port >>> (16 - k.portPrefixLen));

/** Does `outer` cover every packet `inner` covers (ignoring identity)? */
function covers(outer: PolicyKey, inner: PolicyKey): boolean {
  if (outer.direction !== inner.direction) return false;
  if (outer.protocol === 0) return true;
  if (outer.protocol !== inner.protocol || inner.portPrefixLen < outer.portPrefixLen) return false;
  // maskPort(inner.port, len) === maskPort(outer.port, len), inline (ports are below 2^16).
  const shift = 16 - outer.portPrefixLen;
  return outer.portPrefixLen === 0 || inner.port >> shift === outer.port >> shift;
}

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
  readonly entries = new Map<string, LookupResult>();
  /** Raw entries by `idDir`. */
  private readonly byIdentityDir = new Map<number, Set<RawEntry>>();
  /** Raw entries by `dirProto`. */
  private readonly byDirProto = new Map<number, Set<RawEntry>>();
  private readonly protocolsByDir = new Map<string, Set<number>>();
  private readonly byPortKey = new Map<number, Set<number>>();
  private readonly highByIdentityDir = new Map<number, number>();
  /** Open Pass bands by raw key (docs/tiers-encoding.md §3): each Admin Pass level holding a floor there. */
  private readonly bands = new Map<number, Band>();
  private readonly bandsByDir = new Map<Direction, Set<Band>>();
  /** The copy of each lower-tier contribution in each band level it is copied into, with its use count. */
  private readonly copies = new Map<Contribution, Map<number, { readonly copy: Contribution; uses: number }>>();
  /** Tier contributions by (priority, direction, tier) (see `tierChange`). */
  private readonly groups = new Map<number, Group>();
  /** Raw keys changed since the last settle, with their merged entry before the first change. */
  private readonly dirty = new Map<number, { key: PolicyKey; before: PolicyEntry | undefined }>();

  /** Redirects the kernel layer uses, with how many entries use each. */
  private readonly redirectUse = new Map<string, { readonly redirect: Redirect; count: number }>();
  /** L7 tables, one row per (redirect, peer identity): `${redirectId}|${peer}`. */
  readonly l7 = new Map<string, L7Row>();
  private readonly rowsByRedirect = new Map<string, Set<string>>();
  /** Raw keys whose contributions changed since the last settle, while L7 rows may depend on them. */
  private readonly l7Touched = new Map<number, PolicyKey>();

  constructor(private readonly stats: EngineStats) {}

  /** The redirects this map's entries use. */
  redirects(): IterableIterator<string> {
    return this.redirectUse.keys();
  }

  redirect(id: string): Redirect | undefined {
    return this.redirectUse.get(id)?.redirect;
  }

  get hasRedirects(): boolean {
    return this.redirectUse.size > 0;
  }

  get isDirty(): boolean {
    return this.dirty.size > 0 || this.l7Touched.size > 0;
  }

  get rawSize(): number {
    return this.raw.size;
  }

  add(key: PolicyKey, c: Contribution): void {
    const t = c.origin?.tier;
    if (t && !COPIES.has(c)) this.tierChange(key, c, t, +1);
    else this.direct(key, c, +1);
  }

  remove(key: PolicyKey, c: Contribution): void {
    const t = c.origin?.tier;
    if (t && !COPIES.has(c)) this.tierChange(key, c, t, -1);
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
      if (t && !COPIES.has(c)) {
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
        if (t?.tier === g.tier && t.priority === g.priority && !COPIES.has(c)) for (let i = 0; i < count; i++) hold(held, r.key, c, +1);
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
      r = { key: k, rk: ks, idd: idDir(identity, direction), dp: dirProto(direction, pk.protocol), pkc: portKeyOf(k), contribs: new SmallCounts<Contribution>(), merged: entry };
      this.raw.set(ks, r);
      this.index(r);
      if (entry.precedence > PRECEDENCE_LOWEST) this.countHigh(r.idd, +1);
    }
    if (entry.proxyPort !== 0 || this.redirectUse.size > 0) this.l7Touched.set(ks, r.key);
    const count = r.contribs.get(c);
    if (count !== undefined) {
      r.contribs.set(c, count + 1);
      return r;
    }
    r.contribs.set(c, 1);
    if (r.contribs.size > 1 && better(entry, r.merged)) {
      this.markDirty(ks, r.key, r.merged);
      if (r.merged.precedence <= PRECEDENCE_LOWEST && entry.precedence > PRECEDENCE_LOWEST) this.countHigh(r.idd, +1);
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
    if (c.entry.proxyPort !== 0 || this.redirectUse.size > 0) this.l7Touched.set(ks, key);
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
      return r;
    }
    let merged: PolicyEntry | undefined;
    for (const x of r.contribs.keys()) if (merged === undefined || better(x.entry, merged)) merged = x.entry;
    if (r.merged.precedence > PRECEDENCE_LOWEST && (merged as PolicyEntry).precedence <= PRECEDENCE_LOWEST) this.countHigh(r.idd, -1);
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
      COPIES.add(copy);
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
      this.coveredBy(key, this.byIdentityDir.get(idDir(key.identity, key.direction)), out);
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
    // The key's own identity, then identity 0 (once when they are the same).
    if (key.identity !== 0 && this.hiddenAt(key, key.identity, p)) return undefined;
    if (this.hiddenAt(key, 0, p)) return undefined;
    if (key.identity !== 0) {
      const r0 = this.raw.get(rawKeyAt(idDir(0, key.direction), key.protocol, key.port, key.portPrefixLen));
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

  /** Is a broader-or-equal key of identity `id` above precedence `p`? (For the key itself, only broader ones.) */
  private hiddenAt(key: PolicyKey, id: IdentityId, p: number): boolean {
    const idd = idDir(id, key.direction);
    // Only keys above the lowest precedence (the default allow's) can hide this one; most levels have none.
    if (!this.highByIdentityDir.has(idd)) return false;
    // An identity with fewer raw entries than the prefix lookups below (most peers hold a few ports) is scanned instead.
    const held = this.byIdentityDir.get(idd);
    if (held !== undefined && held.size <= key.portPrefixLen) return this.hiddenAmong(key, id, p, held);
    // Broader-or-equal keys: the same protocol with shorter port prefixes, then any protocol.
    if (key.protocol !== 0) {
      for (let len = id === key.identity ? key.portPrefixLen - 1 : key.portPrefixLen; len >= 0; len--) {
        this.stats.mapEntriesVisited++;
        const rb = this.raw.get(rawKeyAt(idd, key.protocol, key.port, len));
        if (rb && rb.merged.precedence > p) return true;
      }
    }
    if (key.protocol !== 0 || id !== key.identity) {
      this.stats.mapEntriesVisited++;
      const rb = this.raw.get(rawKeyAt(idd, 0, 0, 0));
      if (rb && rb.merged.precedence > p) return true;
    }
    return false;
  }

  /** `hiddenAt` by a scan of identity `id`'s raw entries `held` (same direction): the same broader-or-equal keys. */
  private hiddenAmong(key: PolicyKey, id: IdentityId, p: number, held: Set<RawEntry>): boolean {
    const maxLen = id === key.identity ? key.portPrefixLen - 1 : key.portPrefixLen;
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
    const l7Relevant = this.l7Touched.size > 0 || this.redirectUse.size > 0 || someRedirect(changes);
    if (!l7Relevant) return changes.length === 0 ? NOTHING_CHANGED : { entries: changes, l7: NO_L7_CHANGES, redirectsChanged: false };
    return { entries: changes, ...this.settleL7(changes) };
  }

  private settleEntries(): EntryChange[] {
    if (this.dirty.size === 0) return [];
    this.stats.mapStateUpdates++;
    const affected = new Map<number, PolicyKey>();
    // Keys, then a lookup: no [key, value] pair to destructure per entry in code that rarely runs optimised.
    for (const ks of this.dirty.keys()) {
      const d = this.dirty.get(ks) as { key: PolicyKey; before: PolicyEntry | undefined };
      const now = this.raw.get(ks)?.merged;
      if (entryEquals(now, d.before)) continue;
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
      if (entryEquals(before, after)) continue;
      // A new key is stored for the entry's lifetime: flat, not the tree of ~6 pieces the template builds.
      if (before === undefined) ks = flat(ks);
      if (after) this.entries.set(ks, { key, entry: after });
      else this.entries.delete(ks);
      changes.push({ keyString: ks, key, before, after });
    }
    return changes;
  }

  private redirectOf(key: PolicyKey, e: PolicyEntry | undefined): Redirect | undefined {
    if (e === undefined || e.proxyPort === 0) return undefined;
    const parser = parserOf(e);
    return parser === undefined ? undefined : keyRedirect(key, parser);
  }

  /**
   * Redirects follow the kernel entries that use them; a new redirect gets every row, a gone one
   * loses them, and a changed raw key recomputes the rows of its identity for the redirects whose
   * port it covers.
   */
  private settleL7(changes: readonly EntryChange[]): { l7: L7Change[]; redirectsChanged: boolean } {
    const added = new Set<string>();
    const removed = new Set<string>();
    for (const c of changes) this.countRedirectUse(c, added, removed);
    const out: L7Change[] = [];
    for (const id of removed) for (const rowKey of [...(this.rowsByRedirect.get(id) ?? [])]) this.setL7Row(out, rowKey, id, undefined);
    // A redirect neither new nor touched by a raw key keeps its rows: no scratch work for it.
    if (added.size > 0 || this.l7Touched.size > 0) {
      for (const [id, { redirect }] of this.redirectUse) this.refreshRedirectRows(out, id, redirect, added.has(id));
    }
    this.l7Touched.clear();
    return { l7: out, redirectsChanged: added.size > 0 || removed.size > 0 };
  }

  private countRedirectUse(c: EntryChange, added: Set<string>, removed: Set<string>): void {
    const before = this.redirectOf(c.key, c.before);
    const after = this.redirectOf(c.key, c.after);
    if (before) {
      const id = redirectId(before);
      const u = this.redirectUse.get(id) as { redirect: Redirect; count: number };
      if (--u.count === 0) {
        this.redirectUse.delete(id);
        if (added.has(id)) added.delete(id);
        else removed.add(id);
      }
    }
    if (after) {
      const id = redirectId(after);
      const u = this.redirectUse.get(id);
      if (u) u.count++;
      else {
        this.redirectUse.set(id, { redirect: after, count: 1 });
        if (removed.has(id)) removed.delete(id);
        else added.add(id);
      }
    }
  }

  /** Recomputes the rows of `redirect` for the peers a new redirect sees, or those of the touched raw keys. */
  private refreshRedirectRows(out: L7Change[], id: string, redirect: Redirect, isNew: boolean): void {
    const peers = new Set<IdentityId>();
    const narrower = new Map<string, PolicyKey>();
    if (isNew) {
      for (const proto of [redirect.protocol, 0]) {
        for (const r of this.byDirProto.get(dirProto(redirect.direction, proto)) ?? []) {
          this.stats.mapEntriesVisited++;
          visitForRedirect(r.key, id, redirect, peers, narrower);
        }
      }
    } else {
      for (const key of this.l7Touched.values()) visitForRedirect(key, id, redirect, peers, narrower);
    }
    for (const peer of peers) this.setL7Row(out, `${id}|${peer}`, id, this.computeRow(redirect, peer));
    for (const [rowKey, key] of narrower) this.setL7Row(out, rowKey, id, this.computeNarrowerRow(redirect, key));
  }

  private setL7Row(out: L7Change[], rowKey: string, redirectKey: string, row: L7Row | undefined): void {
    const before = this.l7.get(rowKey);
    if (before === undefined && row === undefined) return;
    if (before && row && l7PolicyKey(before.policy) === l7PolicyKey(row.policy)) return;
    if (row) {
      this.l7.set(rowKey, row);
      let s = this.rowsByRedirect.get(redirectKey);
      if (!s) this.rowsByRedirect.set(redirectKey, (s = new Set()));
      s.add(rowKey);
    } else {
      this.l7.delete(rowKey);
      const s = this.rowsByRedirect.get(redirectKey);
      s?.delete(rowKey);
      if (s?.size === 0) this.rowsByRedirect.delete(redirectKey);
    }
    out.push({ rowKey, before, after: row });
  }

  /**
   * The NP-tier contributions a proxy's decision for `peer` on `redirect` rests on: those of every raw key
   * of the peer (and, for a specific peer, of identity 0) that covers the redirected port.
   */
  l7Contributions(redirect: Redirect, peer: IdentityId): Contribution[] {
    const out: Contribution[] = [];
    for (const id of peer === ANY_IDENTITY ? [ANY_IDENTITY] : [peer, ANY_IDENTITY]) {
      for (const ks of coveringKeys(id, redirect)) for (const c of this.raw.get(ks)?.contribs.keys() ?? []) if (!c.origin?.tier && !COPIES.has(c)) out.push(c);
    }
    return out;
  }

  /**
   * The NP-tier contributions of the raw keys of `peer` (and of identity 0) inside the redirect's
   * prefix, narrower than it, that cover `port`. The proxy judges a request by every rule whose
   * range covers its port (cilium/proxy cilium/network_policy.cc: `PortNetworkPolicy` splits
   * overlapping `port`..`end_port` ranges into disjoint ones holding the rules of each covering
   * range, and `PortPolicy::forRange` ORs them with the wildcard port's),
   * so these add to the redirect's rows for that port: e.g. a plain allow the datapath hides behind
   * a wider redirect still lets its port's requests through. None for a single-port redirect.
   */
  l7NarrowerContributions(redirect: Redirect, peer: IdentityId, port: number): Contribution[] {
    const out: Contribution[] = [];
    for (const id of peer === ANY_IDENTITY ? [ANY_IDENTITY] : [peer, ANY_IDENTITY]) {
      const idd = idDir(id, redirect.direction);
      for (let len = 16; len > redirect.portPrefixLen; len--) {
        for (const c of this.raw.get(rawKeyAt(idd, redirect.protocol, port, len))?.contribs.keys() ?? []) if (!c.origin?.tier && !COPIES.has(c)) out.push(c);
      }
    }
    return out;
  }

  /**
   * The row of a raw key narrower than `redirect` inside its prefix: what its own contributions
   * let through on its ports (`l7NarrowerContributions` judged one by one), for its identity.
   */
  private computeNarrowerRow(redirect: Redirect, key: PolicyKey): L7Row | undefined {
    this.stats.mapEntriesVisited++;
    const range = { port: key.port, portPrefixLen: key.portPrefixLen };
    const lists: L7Rules[] = [];
    for (const c of this.raw.get(rawKeyAt(idDir(key.identity, key.direction), key.protocol, key.port, key.portPrefixLen))?.contribs.keys() ?? []) {
      if (c.entry.deny || c.origin?.tier || COPIES.has(c)) continue;
      if (c.entry.proxyPort === 0) return { redirect, peer: key.identity, policy: ALLOW_ALL_L7, range };
      if (parserOf(c.entry) === redirect.parser && c.l7) lists.push(c.l7);
    }
    return lists.length === 0 ? undefined : { redirect, peer: key.identity, policy: mergeL7Rules(redirect.parser, lists), range };
  }

  /**
   * The row of `peer` for `redirect`: allow-all when an allow rule without L7 rules covers the
   * peer and port, else the union of the L7 rules of the redirect's parser on that port.
   */
  private computeRow(redirect: Redirect, peer: IdentityId): L7Row | undefined {
    const lists: L7Rules[] = [];
    for (const ks of coveringKeys(peer, redirect)) {
      this.stats.mapEntriesVisited++;
      for (const c of this.raw.get(ks)?.contribs.keys() ?? []) {
        // A ClusterNetworkPolicy rule is another tier: it never merges into the NP tier's L7 rules.
        if (c.entry.deny || c.origin?.tier || COPIES.has(c)) continue;
        if (c.entry.proxyPort === 0) return { redirect, peer, policy: ALLOW_ALL_L7 };
        if (parserOf(c.entry) === redirect.parser && c.l7) lists.push(c.l7);
      }
    }
    return lists.length === 0 ? undefined : { redirect, peer, policy: mergeL7Rules(redirect.parser, lists) };
  }
}

function visitForRedirect(key: PolicyKey, id: string, redirect: Redirect, peers: Set<IdentityId>, narrower: Map<string, PolicyKey>): void {
  if (coversPort(key, redirect)) peers.add(key.identity);
  else if (insidePrefix(key, redirect)) narrower.set(`${id}|${key.identity}|${key.port}/${key.portPrefixLen}`, key);
}

/** Whether a change leaves a redirect entry. */
function someRedirect(changes: readonly EntryChange[]): boolean {
  for (const c of changes) if (c.after !== undefined && c.after.proxyPort !== 0) return true;
  return false;
}

/** The raw keys of `identity` that cover the redirect's whole prefix: every broader-or-equal port prefix, then any protocol. */
function coveringKeys(identity: IdentityId, r: Redirect): number[] {
  const idd = idDir(identity, r.direction);
  const out: number[] = [];
  for (let len = r.portPrefixLen; len >= 0; len--) out.push(rawKeyAt(idd, r.protocol, r.port, len));
  out.push(rawKeyAt(idd, 0, 0, 0));
  return out;
}

/** Is `key` a narrower port prefix inside the redirect's, of its direction and protocol? */
function insidePrefix(key: PolicyKey, r: Redirect): boolean {
  if (key.direction !== r.direction || key.protocol !== r.protocol || key.portPrefixLen <= r.portPrefixLen) return false;
  return maskPort(key.port, r.portPrefixLen) === r.port;
}

/** Does `key` cover the redirect's (direction, protocol, port prefix), whatever its identity? */
function coversPort(key: PolicyKey, r: Redirect): boolean {
  if (key.direction !== r.direction) return false;
  if (key.protocol === 0) return true;
  if (key.protocol !== r.protocol || key.portPrefixLen > r.portPrefixLen) return false;
  return maskPort(r.port, key.portPrefixLen) === maskPort(key.port, key.portPrefixLen);
}
