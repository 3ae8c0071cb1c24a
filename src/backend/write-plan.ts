import type { MapDelta } from '../engine/events.js';
import { LookupResult, maskPort, PolicyEntry, policyKeyString, PolicyKey, PRECEDENCE_DENY, wildcardKey } from '../model/policy-map.js';
import type { MapRecord } from './backend.js';

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
 * Hence at every point each flow is allowed at most as much as by the old state or as by the new
 * state (rank >= min), and between the phases at most as much as by both (rank >= max).
 *
 * A new or deleted redirect key is neither in general (a new one can hide a deny, a deleted one
 * can expose an allow). A new one is written right after the tighten phase's deletes when what it
 * hides there is an allow or a redirect, or an identity-0 entry covers it (`redirectRaises`); a
 * deleted one is deleted at the very end of the loosen phase when the same holds for what it
 * exposes in the new state. Otherwise the key is a deny from the tighten phase until its final
 * value is written in the loosen phase; that deny drops only traffic the old or the new state
 * drops, or allows through a narrower entry of the other trie (identity 0 versus the peer's).
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
const PRECEDENCE_TRANSIENT_DENY = 0xffffffff;
// Above every tier level: whatever identity-0 entry the map holds, the transient deny wins (fails closed).
const TRANSIENT_DENY: PolicyEntry = { deny: true, proxyPort: 0, precedence: PRECEDENCE_TRANSIENT_DENY };

export function entryRank(e: PolicyEntry): number {
  return e.deny ? 2 : e.proxyPort !== 0 ? 1 : 0;
}

const isRedirect = (e: PolicyEntry): boolean => entryRank(e) === 1;

type State = ReadonlyMap<string, LookupResult>;

/** The longest entry of the same identity strictly broader than `key` that covers it. */
function covering(state: State, key: PolicyKey, gone: ReadonlySet<string>): LookupResult | undefined {
  if (key.protocol === 0) return undefined;
  const at = (k: PolicyKey): LookupResult | undefined => {
    const ks = policyKeyString(k);
    return gone.has(ks) ? undefined : state.get(ks);
  };
  for (let len = key.portPrefixLen - 1; len >= 0; len--) {
    const hit = at({ ...key, port: maskPort(key.port, len), portPrefixLen: len });
    if (hit) return hit;
  }
  return at(wildcardKey(key.identity, key.direction));
}

/**
 * Whether adding a redirect at `key` to `state` (minus the keys in `gone`) can only raise ranks.
 * It changes the lookup only for packets it is the longest match of in its trie, and there it
 * replaces the covering entry: raising if that is an allow, equal if a redirect, lowering if a
 * deny. With no covering entry it lowers a drop by no match, unless an identity-0 entry covers
 * the key (then the verdict was at best that entry's and is now at least a redirect); for an
 * identity-0 key nothing guarantees that every peer identity had a match.
 */
function redirectRaises(state: State, key: PolicyKey, gone: ReadonlySet<string>, precedence: number): boolean {
  const c = covering(state, key, gone);
  if (c) return !c.entry.deny;
  if (key.identity === 0) return false;
  const w = { ...key, identity: 0 };
  const ws = policyKeyString(w);
  const hit = state.has(ws) && !gone.has(ws) ? state.get(ws) : covering(state, w, gone);
  // An identity-0 deny of a lower tier level than the redirect would lose to it: not a raise.
  return hit !== undefined && !(hit.entry.deny && hit.entry.precedence < precedence);
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

function throughTransientDeny(s: Split, d: MapDelta): void {
  s.tightenUpserts.push({ endpoint: d.endpoint, op: 'upsert', key: d.key, entry: TRANSIENT_DENY, ...(d.previous ? { previous: d.previous } : {}) });
  s.loosenUpserts.push({ ...d, previous: TRANSIENT_DENY });
}

function split(deltas: readonly MapDelta[], states?: MapStates): Split {
  const s: Split = { tightenDeletes: [], tightenRedirects: [], tightenUpserts: [], loosenDeletes: [], loosenUpserts: [], loosenRedirectDeletes: [] };
  const allowDeletes = new Set(deltas.filter((d) => d.op === 'delete' && entryRank(d.entry) === 0).map((d) => policyKeyString(d.key)));
  const none = new Set<string>();
  for (const d of deltas) {
    if (d.op === 'delete') {
      if (isRedirect(d.entry) && states?.next && redirectRaises(states.next, d.key, none, d.entry.precedence)) s.loosenRedirectDeletes.push(d);
      else if (isRedirect(d.entry)) {
        s.tightenUpserts.push({ ...d, op: 'upsert', entry: TRANSIENT_DENY, previous: d.entry });
        s.loosenDeletes.push({ ...d, entry: TRANSIENT_DENY });
      } else (d.entry.deny ? s.loosenDeletes : s.tightenDeletes).push(d);
    } else if (d.previous === undefined) {
      if (isRedirect(d.entry) && states && redirectRaises(states.old, d.key, allowDeletes, d.entry.precedence)) s.tightenRedirects.push(d);
      else if (isRedirect(d.entry)) {
        s.tightenUpserts.push({ endpoint: d.endpoint, op: 'upsert', key: d.key, entry: TRANSIENT_DENY });
        s.loosenUpserts.push({ ...d, previous: TRANSIENT_DENY });
      } else if (belowNpTier(d.entry)) throughTransientDeny(s, d);
      else (d.entry.deny ? s.tightenUpserts : s.loosenUpserts).push(d);
    } else if (entryRank(d.entry) > entryRank(d.previous) || (entryRank(d.entry) === entryRank(d.previous) && (d.entry.deny || d.entry.precedence <= d.previous.precedence))) {
      // Equal ranks (a redirect's port or priority) cannot open anything: written early. Not an
      // allow or redirect raised to a higher tier level: it may now beat denies of other keys.
      if (belowNpTier(d.entry)) throughTransientDeny(s, d);
      else s.tightenUpserts.push(d);
    } else {
      s.loosenUpserts.push(d);
    }
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
interface MapPlan {
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

/** One map's plan, with the capacity mode it needed. */
function planMap(write: MapWrite, capacity: number, current: CurrentEntries): MapPlan {
  let entries: readonly MapRecord[] | undefined;
  const entriesNow = (): readonly MapRecord[] => (entries ??= [...current(write.endpoint)]);
  let s = split(write.deltas);
  if (changesRedirectKeys(write.deltas)) {
    const old: State = new Map(entriesNow().map((r) => [policyKeyString(r.key), r]));
    s = split(write.deltas, { old, next: applied(old, write.deltas) });
    // Deleted redirects kept to the end of the loosen phase must fit beside the final state.
    if (finalSize(write) + s.loosenRedirectDeletes.length > capacity) s = split(write.deltas, { old });
  }
  if (tightenPeak(write.size, s) <= capacity) return ordered(s, 'normal');
  // Short of room: the fallbacks reason on the plain split (every redirect through a deny).
  const plain = split(write.deltas);
  const a = allowsFirst(write, plain, capacity, entriesNow());
  return a ? ordered(a, 'allows-first') : denyAll(write, entriesNow());
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
