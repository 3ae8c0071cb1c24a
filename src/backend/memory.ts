import { DEFAULT_MAP_CAPACITY, l4PrefixBits, maskPort, PolicyKey } from '../model/policy-map.js';
import type { MapDelta } from '../engine/events.js';
import type { Direction } from '../model/rules.js';
import { BackendError, checkCapacity, emptyWriteStats, MapBackend, MapRecord, WriteStats } from './backend.js';
import { decodeKey, decodeValue, DecodedValue, encodeKey, encodeValue } from './encoding.js';

/**
 * A map's table key: the fields of the 12 key bytes `encodeKey` writes (prefix bits, identity,
 * direction, protocol, port), one to one, without building the bytes and their hex text (a
 * Buffer and a call into the runtime per written entry).
 */
function tableKey(k: PolicyKey): string {
  return `${l4PrefixBits(k)}|${k.identity >>> 0}|${k.direction === 'egress' ? 1 : 0}|${k.protocol & 0xff}|${k.port & 0xffff}`;
}

/** A key with the bytes `tableKey` stands for (port bits past the prefix as they were written). */
function keyOfTable(t: string): PolicyKey {
  const [bits, identity, egress, protocol, port] = t.split('|').map(Number) as [number, number, number, number, number];
  return { identity, direction: egress === 1 ? 'egress' : 'ingress', protocol, port, portPrefixLen: bits === 0 ? 0 : bits - 8 };
}

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
    for (let done = 0; done < deltas.length; done++) {
      const d = deltas[done] as MapDelta;
      const k = tableKey(d.key);
      if (d.op === 'upsert') {
        if (!m.has(k) && m.size >= this.capacity) throw new BackendError(`policy map of ${endpoint} is full (${this.capacity} entries)`, endpoint, done, 7);
        m.set(k, encodeValue(d.entry, d.key));
        stats.upserts++;
      } else {
        if (!m.delete(k)) throw new BackendError(`policy map of ${endpoint} has no key ${encodeKey(d.key).toString('hex')}`, endpoint, done, 2);
        stats.deletes++;
      }
    }
    return stats;
  }

  size(endpoint: string): number {
    return this.map(endpoint).size;
  }

  dump(endpoint: string): MapRecord[] {
    // In the order of the kernel's key bytes (hex), as a dump of the pinned map lists them.
    return [...this.map(endpoint)]
      .map(([k, v]) => ({ hex: encodeKey(keyOfTable(k)).toString('hex'), v }))
      .sort((a, b) => (a.hex < b.hex ? -1 : a.hex > b.hex ? 1 : 0))
      .map(({ hex, v }) => ({ key: decodeKey(Buffer.from(hex, 'hex')), entry: decodeValue(v).entry }));
  }

  lookup(endpoint: string, identity: number, direction: Direction, protocol: number, port: number): DecodedValue | undefined {
    const m = this.map(endpoint);
    for (let len = 16; len >= 0; len--) {
      const v = m.get(tableKey({ identity, direction, protocol, port: maskPort(port, len), portPrefixLen: len }));
      if (v) return decodeValue(v);
    }
    const any = m.get(tableKey({ identity, direction, protocol: 0, port: 0, portPrefixLen: 0 }));
    return any ? decodeValue(any) : undefined;
  }

  remove(endpoint: string): void {
    this.maps.delete(endpoint);
  }

  close(): void {
    this.maps.clear();
  }
}
