import type { ChangeSet, MapDelta } from '../engine/events.js';
import type { PolicyEntry, PolicyKey } from '../model/mapstate.js';
import type { Direction } from '../model/rules.js';
import type { DecodedValue } from './encoding.js';

export const DEFAULT_CAPACITY = 16384;
export const MIN_CAPACITY = 256;
export const MAX_CAPACITY = 65536;

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
  /**
   * Applies deltas: upserts before deletes, so no transient drop opens. When the map has no room
   * for the new keys, deletes of allow/redirect entries go first (never deny entries, whose early
   * removal could let traffic through). Upserts carry `previous` when they overwrite a key, as
   * the engine's deltas do.
   */
  apply(endpoint: string, deltas: readonly MapDelta[]): WriteStats;
  dump(endpoint: string): MapRecord[];
  /** The LPM lookup for one peer identity: the longest-prefix entry covering the packet. */
  lookup(endpoint: string, identity: number, direction: Direction, protocol: number, port: number): DecodedValue | undefined;
  remove(endpoint: string): void;
  close(): void;
}

/**
 * Orders a write: upserts before deletes; when the map has no room for the new keys, deletes of
 * allow/redirect entries first. An upsert is known to overwrite by its `previous` field.
 */
export function orderDeltas(deltas: readonly MapDelta[], size: number, capacity: number): readonly MapDelta[] {
  // Deletes alone, or replaces alone, need no reordering (and no copy of a large batch).
  if (deltas.every((d) => d.op === 'delete') || deltas.every((d) => d.op === 'upsert' && d.previous !== undefined)) return deltas;
  const replaces: MapDelta[] = [];
  const adds: MapDelta[] = [];
  const deletes: MapDelta[] = [];
  for (const d of deltas) {
    if (d.op === 'delete') deletes.push(d);
    else if (d.previous !== undefined) replaces.push(d);
    else adds.push(d);
  }
  const room = capacity - size;
  if (adds.length <= room) return [...replaces, ...adds, ...deletes];
  const early = new Set(deletes.filter((d) => !d.entry.deny).slice(0, adds.length - room));
  return [...replaces, ...early, ...adds, ...deletes.filter((d) => !early.has(d))];
}

/** Applies one engine transaction to a backend: new maps, deltas, removed maps. */
export function applyChangeSet(backend: MapBackend, cs: ChangeSet): WriteStats {
  const total = emptyWriteStats();
  for (const ep of cs.endpointsAdded) backend.create(ep);
  const byEndpoint = new Map<string, MapDelta[]>();
  for (const d of cs.deltas) {
    let l = byEndpoint.get(d.endpoint);
    if (!l) byEndpoint.set(d.endpoint, (l = []));
    l.push(d);
  }
  for (const [ep, ds] of byEndpoint) {
    const s = backend.apply(ep, ds);
    total.upserts += s.upserts;
    total.deletes += s.deletes;
    total.syscalls += s.syscalls;
  }
  for (const ep of cs.endpointsRemoved) backend.remove(ep);
  return total;
}

export function checkCapacity(capacity: number): number {
  if (!Number.isInteger(capacity) || capacity < MIN_CAPACITY || capacity > MAX_CAPACITY) {
    throw new RangeError(`map capacity ${capacity} is outside ${MIN_CAPACITY}..${MAX_CAPACITY}`);
  }
  return capacity;
}
