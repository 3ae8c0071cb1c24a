import type { ChangeSet, MapDelta } from '../engine/events.js';
import type { PolicyEntry, PolicyKey } from '../model/policy-map.js';
import type { Direction } from '../model/rules.js';
import type { DecodedValue } from './encoding.js';
import { planWrites, WriteBatch, type MapWrite } from './write-plan.js';

const MIN_CAPACITY = 256;
const MAX_CAPACITY = 65536;

/** One entry of a policy map: its key and value, decoded. */
export interface MapRecord {
  readonly key: PolicyKey;
  readonly entry: PolicyEntry;
}

/** What one write cost. */
export interface WriteStats {
  /** Entries written (upserts) and removed. */
  upserts: number;
  deletes: number;
  /** bpf() calls made (0 for the memory backend). */
  syscalls: number;
}

export function emptyWriteStats(): WriteStats {
  return { upserts: 0, deletes: 0, syscalls: 0 };
}

/** A write the map refused part-way: `done` operations took effect, in the order given. */
export class BackendError extends Error {
  override readonly name = 'BackendError';
  constructor(
    message: string,
    readonly endpoint: string,
    readonly done: number,
    readonly errno?: number,
  ) {
    super(message);
  }
}

/**
 * Where endpoints' policy maps live. Both implementations use the kernel's binary layout
 * (`encoding.ts`) and the same capacity.
 */
export interface MapBackend {
  readonly kind: 'memory' | 'bpf';
  readonly capacity: number;
  /** Endpoints that have a map (for the bpf backend: pinned, so they survive a restart). */
  endpoints(): string[];
  /** Creates an empty map for the endpoint (replacing any existing one). */
  create(endpoint: string): void;
  /** Entries in the endpoint's map now. */
  size(endpoint: string): number;
  /**
   * Writes the operations in the order given (`planWrites` decides it). Upserts carry `previous`
   * when they overwrite a key. A refusal part-way throws a BackendError whose `done` counts the
   * operations that took effect.
   */
  apply(endpoint: string, deltas: readonly MapDelta[]): WriteStats;
  /**
   * The map's entries. `purpose: 'diff'`: the caller writes the difference between them and the
   * engine's state (`reconcile`), so a bpf map replaced at open accepts deltas again; any other
   * read (write planning, proxy ports, a summary) leaves it refusing them.
   */
  dump(endpoint: string, purpose?: 'diff'): MapRecord[];
  /** The LPM lookup for one peer identity: the longest-prefix entry covering the packet. */
  lookup(endpoint: string, identity: number, direction: Direction, protocol: number, port: number): DecodedValue | undefined;
  remove(endpoint: string): void;
  close(): void;
}

/**
 * Applies one engine transaction to a backend: removed maps go (disarmed first, for a program that
 * still holds one) and new (empty) maps come first, both of which only drop traffic, then the deltas of all endpoints in the fail-closed order of
 * `planWrites` (every endpoint's tighten batch before any loosen batch).
 *
 * `betweenPhases` runs after the last tighten batch and before the first loosen batch: that is
 * where a caller that owns an ipcache writes the transaction's ipcache deltas. Between the phases
 * every map allows a peer identity only what both the old and the new state allow it, so a pod
 * read under its old identity (before the ipcache write) or its new one (after) gets at most what
 * the old, respectively the new, state gives it. Written before the policy maps, a new identity
 * would meet maps without its entries; written after, an old identity whose entries are already
 * deleted falls through to identity-0 entries: both can open what both states deny.
 */
export function applyChangeSet(backend: MapBackend, cs: ChangeSet, betweenPhases?: () => void): WriteStats {
  for (const ep of cs.endpointsRemoved) backend.remove(ep);
  for (const ep of cs.endpointsAdded) backend.create(ep);
  // Most churn events change no map: no grouping, plan or batch objects for them.
  if (cs.deltas.length === 0) {
    betweenPhases?.();
    return emptyWriteStats();
  }
  const byEndpoint = new Map<string, MapDelta[]>();
  for (const d of cs.deltas) {
    let l = byEndpoint.get(d.endpoint);
    if (!l) byEndpoint.set(d.endpoint, (l = []));
    l.push(d);
  }
  const writes: MapWrite[] = [];
  for (const [endpoint, deltas] of byEndpoint) writes.push({ endpoint, deltas, size: backend.size(endpoint) });
  return writePlan(backend, planWrites(writes, backend.capacity, (ep) => backend.dump(ep)), betweenPhases);
}

/**
 * Writes a plan's batches in order. A refusal stops the plan there (later batches, and so every
 * loosen batch if it was a tighten batch, are not written): the BackendError's `done` counts the
 * plan's operations that took effect, in plan order.
 */
export function writePlan(backend: MapBackend, plan: readonly WriteBatch[], betweenPhases?: () => void): WriteStats {
  const total = emptyWriteStats();
  const planned = plan.reduce((n, b) => n + b.ops.length, 0);
  let done = 0;
  let between = betweenPhases;
  for (const b of plan) {
    if (between && b.phase === 'loosen') {
      between();
      between = undefined;
    }
    let s: WriteStats;
    try {
      s = backend.apply(b.endpoint, b.ops);
    } catch (e) {
      if (!(e instanceof BackendError)) throw e;
      throw new BackendError(`${e.message} (${b.phase} phase; ${done + e.done} of ${planned} planned operations took effect)`, e.endpoint, done + e.done, e.errno);
    }
    done += b.ops.length;
    total.upserts += s.upserts;
    total.deletes += s.deletes;
    total.syscalls += s.syscalls;
  }
  between?.();
  return total;
}

export function checkCapacity(capacity: number): number {
  if (!Number.isInteger(capacity) || capacity < MIN_CAPACITY || capacity > MAX_CAPACITY) {
    throw new RangeError(`map capacity ${capacity} is outside ${MIN_CAPACITY}..${MAX_CAPACITY}`);
  }
  return capacity;
}
