import { DEFAULT_MAP_CAPACITY, maskPort } from '../model/policy-map.js';
import type { MapDelta } from '../engine/events.js';
import type { Direction } from '../model/rules.js';
import { BackendError, checkCapacity, emptyWriteStats, MapBackend, MapRecord, WriteStats } from './backend.js';
import { decodeKey, decodeValue, DecodedValue, encodeKey, encodeValue } from './encoding.js';

/**
 * The embedded default: maps as byte-keyed tables holding the kernel encoding, with the kernel's
 * capacity and failure modes (no room: E2BIG; deleting an absent key: ENOENT, stopping there).
 */
export class MemoryBackend implements MapBackend {
  readonly kind = 'memory' as const;
  readonly capacity: number;
  private readonly maps = new Map<string, Map<string, Buffer>>();

  constructor(options: { capacity?: number } = {}) {
    this.capacity = checkCapacity(options.capacity ?? DEFAULT_MAP_CAPACITY);
  }

  endpoints(): string[] {
    return [...this.maps.keys()].sort();
  }

  create(endpoint: string): void {
    this.maps.set(endpoint, new Map());
  }

  private map(endpoint: string): Map<string, Buffer> {
    const m = this.maps.get(endpoint);
    if (!m) throw new BackendError(`no policy map for endpoint ${endpoint}`, endpoint, 0);
    return m;
  }

  apply(endpoint: string, deltas: readonly MapDelta[]): WriteStats {
    const m = this.map(endpoint);
    const stats = emptyWriteStats();
    deltas.forEach((d, done) => {
      const k = encodeKey(d.key).toString('hex');
      if (d.op === 'upsert') {
        if (!m.has(k) && m.size >= this.capacity) throw new BackendError(`policy map of ${endpoint} is full (${this.capacity} entries)`, endpoint, done, 7);
        m.set(k, encodeValue(d.entry, d.key));
        stats.upserts++;
      } else {
        if (!m.delete(k)) throw new BackendError(`policy map of ${endpoint} has no key ${k}`, endpoint, done, 2);
        stats.deletes++;
      }
    });
    return stats;
  }

  size(endpoint: string): number {
    return this.map(endpoint).size;
  }

  dump(endpoint: string): MapRecord[] {
    return [...this.map(endpoint)]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([k, v]) => ({ key: decodeKey(Buffer.from(k, 'hex')), entry: decodeValue(v).entry }));
  }

  lookup(endpoint: string, identity: number, direction: Direction, protocol: number, port: number): DecodedValue | undefined {
    const m = this.map(endpoint);
    for (let len = 16; len >= 0; len--) {
      const v = m.get(encodeKey({ identity, direction, protocol, port: maskPort(port, len), portPrefixLen: len }).toString('hex'));
      if (v) return decodeValue(v);
    }
    const any = m.get(encodeKey({ identity, direction, protocol: 0, port: 0, portPrefixLen: 0 }).toString('hex'));
    return any ? decodeValue(any) : undefined;
  }

  remove(endpoint: string): void {
    this.maps.delete(endpoint);
  }

  close(): void {
    this.maps.clear();
  }
}
