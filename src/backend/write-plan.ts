import type { MapDelta } from '../engine/events.js';
import { datapathLookup, LookupResult, maskedPortEnd, PolicyEntry, policyKeyString, PolicyKey, PRECEDENCE_DENY } from '../model/policy-map.js';
import type { MapRecord } from './backend.js';
import { entryRank, NO_ANCESTOR_KEYS, NOTHING_TRUSTED, opSafe, PRECEDENCE_TRANSIENT_DENY, unsafeKeys } from './write-check.js';

export { entryRank } from './write-check.js';

/**
 * Fail-closed write ordering. A flow's rank in a map is allow 0 < redirect 1 < deny-or-no-match 2
 * (a redirect filters at L7); a flow between two local endpoints has the higher rank of the
 * source's egress and the destination's ingress map. Every write of a transaction belongs to one
 * of two global phases, across all its endpoints:
 *
 * - `tighten`: operations that never lower any flow's rank in the map they touch, whatever else
 *   the map holds (deny upserts, allow deletes, overwrites to a higher rank). So every prefix of
 *   the phase leaves every map at or above the old state, flow by flow.
 * - `loosen`: operations that, undone from the new state, never lower a rank (allow upserts, deny
 *   deletes, overwrites to a lower rank). So every prefix of the phase leaves every map at or
 *   above the new state.
 *
 * An overwrite's rank is not enough: the entry meets the other trie's match by precedence, so a
 * deny lowered below an allow of the other trie opens what that allow covers (`overwriteRaises`);
 * an overwrite neither raising nor, undone, raising goes through the transient deny.
 *
 * Hence at every point each flow is allowed at most as much as by the old state or as by the new
 * state (rank >= min), and between the phases at most as much as by both (rank >= max).
 *
 * The sorting above is a first guess: a key's operation also changes which entry meets the other
 * trie for the packets under it, so a deny of lower precedence written under a same-trie deny of
 * higher precedence, or an allow written under a redirect kept to the end, can lower a rank. Every
 * map's plan is therefore checked operation by operation (`unsafeKeys`, write-check.ts, exact for
 * every entry the other trie can hold) and a failing key goes through the transient deny.
 *
 * A new or deleted redirect key is neither in general (a new one can hide a deny, a deleted one
 * can expose an allow). A new one is written right after the tighten phase's deletes when adding
 * it there lowers no packet's rank (`redirectRaises`); a deleted one is deleted at the end of the
 * loosen phase when adding it back to the new state lowers none. Otherwise the key is a deny from
 * the tighten phase until its final value is written in the loosen phase; that deny drops only
 * traffic the old or the new state drops, or allows through a narrower entry of the other trie
 * (identity 0 versus the peer's).
 *
 * "Lowers no rank" is decided on the datapath's verdict, not on the redirect's own trie: the
 * datapath picks between the peer's and the identity-0 trie by precedence, so an identity-0
 * NP-tier redirect kept over an identity-0 default allow still beat a peer's Baseline deny that
 * the new state enforces: the flow stayed open through the phase boundary (where the ipcache is
 * written) and, once the other side's map opened, beyond what the old and the new state allow.
 */
type WritePhase = 'tighten' | 'loosen';

/** One endpoint's part of a transaction. */
export interface MapWrite {
  readonly endpoint: string;
  readonly deltas: readonly MapDelta[];
  /** Entries in the map before the write. */
  readonly size: number;
}

/** Operations for one map, written in this order, after every earlier batch of the plan. */
export interface WriteBatch {
  readonly endpoint: string;
  readonly phase: WritePhase;
  readonly ops: readonly MapDelta[];
  /** How the map's plan dealt with capacity. */
  readonly mode: CapacityMode;
}

/**
 * The map's entries before the write, asked for only when the map is short of room or the write
 * adds or deletes redirect keys.
 */
export type CurrentEntries = (endpoint: string) => Iterable<MapRecord>;

/** What a write plan does when a map has no room for the tighten phase. */
export type CapacityMode = 'normal' | 'allows-first' | 'deny-all';

/** The deny an entry turns into while its final value waits for the loosen phase. */
// Above every tier level: whatever identity-0 entry the map holds, the transient deny wins (fails closed).
const TRANSIENT_DENY: PolicyEntry = { deny: true, proxyPort: 0, precedence: PRECEDENCE_TRANSIENT_DENY };

const isRedirect = (e: PolicyEntry): boolean => entryRank(e) === 1;

type State = ReadonlyMap<string, LookupResult>;

/** The ports [lo, hi] a key matches (protocol 0: every port of every protocol). */
function portRange(k: PolicyKey): [number, number] {
  if (k.protocol === 0) return [0, 0xffff];
  return [k.port, maskedPortEnd(k.port, k.portPrefixLen)];
}

/**
 * The packets adding `key` can change the verdict of: peer identity, protocol, port. The lookup
 * is constant between the range ends of the keys of the same protocol, so those ends (inside the
 * key's range) stand for every port; identities without a key of the direction and protocol
 * behave alike, so one unnamed identity stands for them.
 */
function probesOf(state: State, key: PolicyKey): { identity: number; protocol: number; port: number }[] {
  const [lo, hi] = portRange(key);
  const ids = new Set<number>(key.identity === 0 ? [] : [key.identity]);
  const ports = new Map<number, Set<number>>();
  const portsOf = (protocol: number): Set<number> => {
    let set = ports.get(protocol);
    if (!set) ports.set(protocol, (set = new Set([lo])));
    return set;
  };
  if (key.protocol !== 0) portsOf(key.protocol);
  for (const { key: k } of state.values()) {
    if (k.direction !== key.direction || (key.protocol !== 0 && k.protocol !== 0 && k.protocol !== key.protocol)) continue;
    if (key.identity === 0 && k.identity !== 0) ids.add(k.identity);
    if (k.protocol === 0) continue;
    const [a, b] = portRange(k);
    const set = portsOf(k.protocol);
    if (a >= lo && a <= hi) set.add(a);
    if (b + 1 >= lo && b + 1 <= hi) set.add(b + 1);
  }
  if (key.identity === 0) ids.add(Math.max(0xffffff, ...ids) + 1);
  // A protocol-0 key also matches protocols no key names.
  if (key.protocol === 0) portsOf(Math.max(255, ...ports.keys()) + 1);
  const out: { identity: number; protocol: number; port: number }[] = [];
  for (const identity of ids) for (const [protocol, ps] of ports) for (const port of ps) out.push({ identity, protocol, port });
  return out;
}

const rankAt = (state: State, key: PolicyKey, p: { identity: number; protocol: number; port: number }): number => {
  const r = datapathLookup(state, p.identity, key.direction, p.protocol, p.port);
  return r ? entryRank(r.entry) : 2;
};

/**
 * Whether adding the redirect `entry` at `key` to `state` can only raise ranks, packet by packet.
 * The redirect changes its own trie's longest match, but the datapath then picks between the
 * peer's and the identity-0 trie by precedence: an identity-0 NP-tier redirect beats a peer's
 * lower-tier (Baseline) deny, and a peer's redirect beats a lower-tier identity-0 deny. So the
 * answer compares the datapath's verdicts before and after, on every packet class the key covers.
 * `state` is restored before returning.
 */
function redirectRaises(state: Map<string, LookupResult>, key: PolicyKey, entry: PolicyEntry): boolean {
  const ks = policyKeyString(key);
  if (state.has(ks)) return false;
  const probes = probesOf(state, key);
  const before = probes.map((p) => rankAt(state, key, p));
  state.set(ks, { key, entry });
  const raises = probes.every((p, i) => rankAt(state, key, p) >= (before[i] as number));
  state.delete(ks);
  return raises;
}

interface Split {
  tightenDeletes: MapDelta[];
  /** New redirect keys that only raise ranks right after the tighten deletes. */
  tightenRedirects: MapDelta[];
  tightenUpserts: MapDelta[];
  loosenDeletes: MapDelta[];
  loosenUpserts: MapDelta[];
  /** Deleted redirect keys whose return, from the new state, only raises ranks. */
  loosenRedirectDeletes: MapDelta[];
}

/** The map's state before the write, and after it (absent: deleted redirects use a deny). */
interface MapStates {
  readonly old: State;
  readonly next?: State;
}

function applied(old: State, deltas: readonly MapDelta[]): State {
  const out = new Map(old);
  for (const d of deltas) {
    const ks = policyKeyString(d.key);
    if (d.op === 'upsert') out.set(ks, { key: d.key, entry: d.entry });
    else out.delete(ks);
  }
  return out;
}

/**
 * Sorts one map's deltas into the two phases (see the module comment). Without the map's states,
 * every new or deleted redirect key goes through a transient deny.
 */
/**
 * A Baseline deny (below the NetworkPolicy tier's deny) can lose, in an intermediate state, to an
 * identity-0 NP-tier allow or redirect the tighten phase has not deleted yet (or a redirect kept
 * to the end): it goes through the transient deny, which wins over everything.
 */
const belowNpTier = (e: PolicyEntry): boolean => e.deny && e.precedence < PRECEDENCE_DENY;

/** Whether some precedence in [lo, hi] has a verdict byte (bits 7-0) that `byte` accepts. */
function somePrecedence(lo: number, hi: number, byte: (b: number) => boolean): boolean {
  if (hi - lo >= 0xff) return true;
  for (let p = lo; p <= hi; p++) if (byte(p & 0xff)) return true;
  return false;
}

const DENY_BYTE = (b: number): boolean => b === 0xff;

/**
 * Whether overwriting `from` with `to` lowers no rank whatever the other trie holds. The entry
 * meets the other trie's match W by precedence (ties: prefix lengths): the same key with a
 * higher precedence also beats the W between the two precedences, so it must then rank at least
 * as high as the highest entry there can be (a deny; a redirect if no deny precedence lies between); with a
 * lower precedence it loses to the W between, so `from` must rank no higher than any entry there
 * can (an allow; a redirect if no allow or default-allow precedence lies between).
 */
function overwriteRaises(from: PolicyEntry, to: PolicyEntry): boolean {
  const rf = entryRank(from);
  const rt = entryRank(to);
  if (rt < rf) return false;
  if (to.precedence === from.precedence) return true;
  if (to.precedence > from.precedence) return to.deny || (rt === 1 && !somePrecedence(from.precedence, to.precedence, DENY_BYTE));
  return rf === 0 || (rf === 1 && !somePrecedence(to.precedence, from.precedence, (b) => b === 1 || b === 0));
}

function throughTransientDeny(s: Split, d: MapDelta): void {
  if (d.op === 'delete') {
    s.tightenUpserts.push({ ...d, op: 'upsert', entry: TRANSIENT_DENY, previous: d.entry });
    s.loosenDeletes.push({ ...d, entry: TRANSIENT_DENY });
    return;
  }
  s.tightenUpserts.push({ endpoint: d.endpoint, op: 'upsert', key: d.key, entry: TRANSIENT_DENY, ...(d.previous ? { previous: d.previous } : {}) });
  s.loosenUpserts.push({ ...d, previous: TRANSIENT_DENY });
}

function split(deltas: readonly MapDelta[], states?: MapStates, forced?: ReadonlySet<string>): Split {
  const s: Split = { tightenDeletes: [], tightenRedirects: [], tightenUpserts: [], loosenDeletes: [], loosenUpserts: [], loosenRedirectDeletes: [] };
  const isForced = (d: MapDelta): boolean => forced !== undefined && forced.size > 0 && forced.has(policyKeyString(d.key));
  // The states the redirects written directly meet, each with the ones accepted before it: the
  // old state minus the tighten deletes, and the new state (the kept redirects are deleted last,
  // in reverse order, so every state of the loosen phase's tail is the new state plus some).
  const allowDeletes = new Set(deltas.filter((d) => d.op === 'delete' && entryRank(d.entry) === 0 && !isForced(d)).map((d) => policyKeyString(d.key)));
  const early = states ? new Map([...states.old].filter(([ks]) => !allowDeletes.has(ks))) : undefined;
  const late = states?.next ? new Map(states.next) : undefined;
  const accept = (state: Map<string, LookupResult> | undefined, d: MapDelta): boolean => {
    if (!state || !redirectRaises(state, d.key, d.entry)) return false;
    state.set(policyKeyString(d.key), { key: d.key, entry: d.entry });
    return true;
  };
  for (const d of deltas) {
    if (isForced(d)) throughTransientDeny(s, d);
    else if (d.op === 'delete') {
      if (isRedirect(d.entry) && accept(late, d)) s.loosenRedirectDeletes.unshift(d);
      else if (isRedirect(d.entry)) {
        s.tightenUpserts.push({ ...d, op: 'upsert', entry: TRANSIENT_DENY, previous: d.entry });
        s.loosenDeletes.push({ ...d, entry: TRANSIENT_DENY });
      } else (d.entry.deny ? s.loosenDeletes : s.tightenDeletes).push(d);
    } else if (d.previous === undefined) {
      if (isRedirect(d.entry) && accept(early, d)) s.tightenRedirects.push(d);
      else if (isRedirect(d.entry)) {
        s.tightenUpserts.push({ endpoint: d.endpoint, op: 'upsert', key: d.key, entry: TRANSIENT_DENY });
        s.loosenUpserts.push({ ...d, previous: TRANSIENT_DENY });
      } else if (belowNpTier(d.entry)) throughTransientDeny(s, d);
      else (d.entry.deny ? s.tightenUpserts : s.loosenUpserts).push(d);
    } else if (overwriteRaises(d.previous, d.entry)) {
      if (belowNpTier(d.entry)) throughTransientDeny(s, d);
      else s.tightenUpserts.push(d);
    } else if (overwriteRaises(d.entry, d.previous)) {
      s.loosenUpserts.push(d);
    } else throughTransientDeny(s, d);
  }
  return s;
}

const grows = (ops: readonly MapDelta[]): number => ops.filter((d) => d.op === 'upsert' && d.previous === undefined).length;

/**
 * The tighten phase's peak size: its deletes go first, then its upserts. The loosen phase also
 * deletes first, so it never exceeds the final size, which the engine keeps within capacity.
 */
function tightenPeak(size: number, s: Split): number {
  return size - s.tightenDeletes.length + s.tightenRedirects.length + grows(s.tightenUpserts);
}

/** Entries after the write. */
function finalSize(write: MapWrite): number {
  return write.size + grows(write.deltas) - write.deltas.filter((d) => d.op === 'delete').length;
}

const changesRedirectKeys = (deltas: readonly MapDelta[]): boolean =>
  deltas.some((d) => isRedirect(d.entry) && (d.op === 'delete' || d.previous === undefined));

/** One map's writes, in order, per phase. */
export interface MapPlan {
  readonly tighten: readonly MapDelta[];
  readonly loosen: readonly MapDelta[];
  readonly mode: CapacityMode;
}

const ordered = (s: Split, mode: CapacityMode): MapPlan => ({
  tighten: [...s.tightenDeletes, ...s.tightenRedirects, ...s.tightenUpserts],
  loosen: [...s.loosenDeletes, ...s.loosenUpserts, ...s.loosenRedirectDeletes],
  mode,
});

/**
 * Short of room, first choice: also delete, early, allow entries that stay unchanged, and put
 * them back in the loosen phase (their traffic drops meanwhile). Undefined if that is not enough.
 */
function allowsFirst(write: MapWrite, s: Split, capacity: number, current: readonly MapRecord[]): Split | undefined {
  const touched = new Set(write.deltas.map((d) => policyKeyString(d.key)));
  let over = tightenPeak(write.size, s) - capacity;
  const extraDeletes: MapDelta[] = [];
  const extraUpserts: MapDelta[] = [];
  for (const r of current) {
    if (over <= 0) break;
    if (entryRank(r.entry) !== 0 || touched.has(policyKeyString(r.key))) continue;
    extraDeletes.push({ endpoint: write.endpoint, op: 'delete', key: r.key, entry: r.entry });
    extraUpserts.push({ endpoint: write.endpoint, op: 'upsert', key: r.key, entry: r.entry });
    over--;
  }
  if (over > 0) return undefined;
  return { ...s, tightenDeletes: [...s.tightenDeletes, ...extraDeletes], loosenUpserts: [...s.loosenUpserts, ...extraUpserts] };
}

const isTransientDeny = (e: PolicyEntry): boolean => e.deny === TRANSIENT_DENY.deny && e.proxyPort === TRANSIENT_DENY.proxyPort && e.precedence === TRANSIENT_DENY.precedence;

/**
 * Short of room, last resort, which can only drop: every entry of the map becomes a deny
 * (overwrites, no new key), so the endpoint drops all its traffic; then keys of the old state
 * only are deleted and keys of the new state only are added as denies (the size never exceeds
 * the larger of the old and new size); the loosen phase gives every key its final value.
 */
function denyAll(write: MapWrite, current: readonly MapRecord[]): MapPlan {
  const endpoint = write.endpoint;
  const final = new Map<string, { key: PolicyKey; entry: PolicyEntry | undefined }>();
  for (const d of write.deltas) final.set(policyKeyString(d.key), { key: d.key, entry: d.op === 'upsert' ? d.entry : undefined });
  const overwrites: MapDelta[] = [];
  const deletes: MapDelta[] = [];
  const adds: MapDelta[] = [];
  const loosen: MapDelta[] = [];
  const settle = (key: PolicyKey, entry: PolicyEntry): void => {
    if (!isTransientDeny(entry)) loosen.push({ endpoint, op: 'upsert', key, entry, previous: TRANSIENT_DENY });
  };
  for (const r of current) {
    const ks = policyKeyString(r.key);
    const f = final.has(ks) ? final.get(ks)?.entry : r.entry;
    final.delete(ks);
    if (!isTransientDeny(r.entry)) overwrites.push({ endpoint, op: 'upsert', key: r.key, entry: TRANSIENT_DENY, previous: r.entry });
    if (f === undefined) deletes.push({ endpoint, op: 'delete', key: r.key, entry: TRANSIENT_DENY });
    else settle(r.key, f);
  }
  for (const { key, entry } of final.values()) {
    if (entry === undefined) continue;
    adds.push({ endpoint, op: 'upsert', key, entry: TRANSIENT_DENY });
    settle(key, entry);
  }
  return { tighten: [...overwrites, ...deletes, ...adds], loosen, mode: 'deny-all' };
}

const NO_OPS: readonly MapDelta[] = Object.freeze([]);
const NO_KEYS: ReadonlyMap<string, PolicyEntry | undefined> = new Map();

/**
 * The plan of a map with one operation that is no new or deleted redirect key, when the general
 * path would write it as it is, in one phase, within capacity; else undefined. It is exactly what
 * the general path gives then (`split` puts it in one bucket, and `unsafeKeys` checks it with its
 * own trie as the only written key), without the general path's Maps, Sets and closures: a map
 * change between churn events is rare enough that the general path runs as cold code every time.
 * A key that comes or goes with an allow or a deny needs no check: an allow is the lowest rank and
 * a deny the highest, so whatever the fallback and the other trie hold, adding a deny or removing
 * an allow (and undoing an allow added or a deny removed) lowers no packet's rank.
 */
function planSingle(write: MapWrite, capacity: number): MapPlan | undefined {
  const d = write.deltas[0] as MapDelta;
  const e = d.entry;
  // Field tests rather than `isRedirect`/`belowNpTier`: fewer functions on a path that runs cold.
  const redirect = !e.deny && e.proxyPort !== 0;
  let tighten: boolean;
  if (d.op === 'delete') {
    if (redirect) return undefined;
    tighten = !e.deny;
  } else if (d.previous === undefined) {
    if (redirect || (e.deny && e.precedence < PRECEDENCE_DENY)) return undefined;
    tighten = e.deny;
  } else if (overwriteRaises(d.previous, e)) {
    if (belowNpTier(e)) return undefined;
    tighten = true;
  } else if (overwriteRaises(e, d.previous)) {
    tighten = false;
  } else return undefined;
  const grows = tighten && d.op === 'upsert' && d.previous === undefined ? 1 : 0;
  const shrinks = tighten && d.op === 'delete' ? 1 : 0;
  if (write.size - shrinks + grows > capacity) return undefined;
  if (d.op === 'upsert' && d.previous !== undefined && !opSafe(d.key, d.previous, e, tighten, NO_KEYS, NO_ANCESTOR_KEYS)) return undefined;
  const ops: readonly MapDelta[] = write.deltas;
  return tighten ? { tighten: ops, loosen: NO_OPS, mode: 'normal' } : { tighten: NO_OPS, loosen: ops, mode: 'normal' };
}

/** One map's plan, with the capacity mode it needed. */
function planMap(write: MapWrite, capacity: number, current: CurrentEntries): MapPlan {
  return (write.deltas.length === 1 ? planSingle(write, capacity) : undefined) ?? planGeneral(write, capacity, current);
}

/** `planMap` without the one-operation shortcut (exported for the test that they agree). */
export function planGeneral(write: MapWrite, capacity: number, current: CurrentEntries): MapPlan {
  let entries: readonly MapRecord[] | undefined;
  const entriesNow = (): readonly MapRecord[] => (entries ??= [...current(write.endpoint)]);
  const forced = new Set<string>();
  const old: State | undefined = changesRedirectKeys(write.deltas) ? new Map(entriesNow().map((r) => [policyKeyString(r.key), r])) : undefined;
  // Each round sends the keys whose operation failed the exact check through the transient deny;
  // a transient deny always passes, so the rounds end.
  for (;;) {
    let s = split(write.deltas, old && { old, next: applied(old, write.deltas) }, forced);
    // Deleted redirects kept to the end of the loosen phase must fit beside the final state.
    if (old && finalSize(write) + s.loosenRedirectDeletes.length > capacity) s = split(write.deltas, { old }, forced);
    if (tightenPeak(write.size, s) > capacity) break;
    const plan = ordered(s, 'normal');
    const bad = unsafeKeys(plan, s.tightenRedirects.length + s.loosenRedirectDeletes.length === 0 ? NOTHING_TRUSTED : new Set([...s.tightenRedirects, ...s.loosenRedirectDeletes]));
    if (bad.size === 0) return plan;
    for (const ks of bad) forced.add(ks);
  }
  // Short of room: the fallbacks reason on the plain split (every redirect through a deny).
  const a = allowsFirst(write, split(write.deltas, undefined, forced), capacity, entriesNow());
  const plan = a && ordered(a, 'allows-first');
  return plan && unsafeKeys(plan, NOTHING_TRUSTED).size === 0 ? plan : denyAll(write, entriesNow());
}

/**
 * Orders a transaction's writes over all its endpoints: every endpoint's tighten batch, then
 * every endpoint's loosen batch; within a batch, deletes before upserts (so the loosen phase
 * never needs more room than the final state). At most two batches per endpoint.
 */
export function planWrites(writes: readonly MapWrite[], capacity: number, current: CurrentEntries): WriteBatch[] {
  const tighten: WriteBatch[] = [];
  const loosen: WriteBatch[] = [];
  for (const w of writes) {
    if (w.deltas.length === 0) continue;
    const p = planMap(w, capacity, current);
    if (p.tighten.length > 0) tighten.push({ endpoint: w.endpoint, phase: 'tighten', ops: p.tighten, mode: p.mode });
    if (p.loosen.length > 0) loosen.push({ endpoint: w.endpoint, phase: 'loosen', ops: p.loosen, mode: p.mode });
  }
  return [...tighten, ...loosen];
}
