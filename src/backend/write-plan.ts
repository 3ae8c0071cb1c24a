import type { MapDelta } from '../engine/events.js';
import { PolicyEntry, policyKeyString, PolicyKey, PRECEDENCE_DENY } from '../model/mapstate.js';
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
 * state (rank >= min), and between the phases at most as much as by both (rank >= max). A
 * redirect key is neither (a new one can hide a deny, a deleted one can expose an allow): it is
 * written as a deny in the tighten phase and gets its final value (redirect, or gone) in the
 * loosen phase, a transient drop of the traffic it matches.
 */
export type WritePhase = 'tighten' | 'loosen';

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

/** The map's entries before the write, asked for only when the map is short of room. */
export type CurrentEntries = (endpoint: string) => Iterable<MapRecord>;

/** What a write plan does when a map has no room for the tighten phase. */
export type CapacityMode = 'normal' | 'allows-first' | 'deny-all';

/** The deny an entry turns into while its final value waits for the loosen phase. */
export const TRANSIENT_DENY: PolicyEntry = { deny: true, proxyPort: 0, precedence: PRECEDENCE_DENY };

export function entryRank(e: PolicyEntry): number {
  return e.deny ? 2 : e.proxyPort !== 0 ? 1 : 0;
}

const isRedirect = (e: PolicyEntry): boolean => entryRank(e) === 1;

interface Split {
  tightenDeletes: MapDelta[];
  tightenUpserts: MapDelta[];
  loosenDeletes: MapDelta[];
  loosenUpserts: MapDelta[];
}

/** Sorts one map's deltas into the two phases (see the module comment). */
function split(deltas: readonly MapDelta[]): Split {
  const s: Split = { tightenDeletes: [], tightenUpserts: [], loosenDeletes: [], loosenUpserts: [] };
  for (const d of deltas) {
    if (d.op === 'delete') {
      if (isRedirect(d.entry)) {
        s.tightenUpserts.push({ ...d, op: 'upsert', entry: TRANSIENT_DENY, previous: d.entry });
        s.loosenDeletes.push({ ...d, entry: TRANSIENT_DENY });
      } else (d.entry.deny ? s.loosenDeletes : s.tightenDeletes).push(d);
    } else if (d.previous === undefined) {
      if (isRedirect(d.entry)) {
        s.tightenUpserts.push({ endpoint: d.endpoint, op: 'upsert', key: d.key, entry: TRANSIENT_DENY });
        s.loosenUpserts.push({ ...d, previous: TRANSIENT_DENY });
      } else (d.entry.deny ? s.tightenUpserts : s.loosenUpserts).push(d);
    } else {
      // Equal ranks (a redirect's port or priority) cannot open anything: written early.
      (entryRank(d.entry) >= entryRank(d.previous) ? s.tightenUpserts : s.loosenUpserts).push(d);
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
  return size - s.tightenDeletes.length + grows(s.tightenUpserts);
}

/** One map's writes, in order, per phase. */
export interface MapPlan {
  readonly tighten: readonly MapDelta[];
  readonly loosen: readonly MapDelta[];
  readonly mode: CapacityMode;
}

const ordered = (s: Split, mode: CapacityMode): MapPlan => ({
  tighten: [...s.tightenDeletes, ...s.tightenUpserts],
  loosen: [...s.loosenDeletes, ...s.loosenUpserts],
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
export function planMap(write: MapWrite, capacity: number, current: CurrentEntries): MapPlan {
  const s = split(write.deltas);
  if (tightenPeak(write.size, s) <= capacity) return ordered(s, 'normal');
  const entries = [...current(write.endpoint)];
  const a = allowsFirst(write, s, capacity, entries);
  return a ? ordered(a, 'allows-first') : denyAll(write, entries);
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
