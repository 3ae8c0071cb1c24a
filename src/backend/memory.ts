import { DEFAULT_MAP_CAPACITY, l4PrefixBits, maskPort, PolicyEntry, PolicyKey } from '../model/policy-map.js';
import type { MapDelta } from '../engine/events.js';
import type { Direction } from '../model/rules.js';
import { BackendError, checkCapacity, emptyWriteStats, MapBackend, MapRecord, WriteStats } from './backend.js';
import { decodeKey, DecodedValue, encodeKey } from './encoding.js';

/**
 * A map's table, split on the key: the key's port part (prefix bits, direction, protocol, port)
 * to its identity to the value. Numbers instead of a string key and a Buffer per entry: a write
 * builds no string and allocates no buffer, and the table holds a few small Maps per endpoint
 * (one per port part) instead of a string and a buffer per entry.
 */
interface Table {
  readonly byPort: Map<number, Map<number, number>>;
  size: number;
}

/** The fields of the key's first 4 bytes as `encodeKey` writes them, one to one, as one number. */
function portPart(k: PolicyKey): number {
  return ((l4PrefixBits(k) * 2 + (k.direction === 'egress' ? 1 : 0)) * 256 + (k.protocol & 0xff)) * 65536 + (k.port & 0xffff);
}

function keyOf(part: number, identity: number): PolicyKey {
  const port = part % 65536;
  const protocol = Math.floor(part / 65536) % 256;
  const egress = Math.floor(part / 16777216) % 2;
  const bits = Math.floor(part / 33554432);
  return { identity, direction: egress === 1 ? 'egress' : 'ingress', protocol, port, portPrefixLen: bits === 0 ? 0 : bits - 8 };
}

/**
 * The value bytes `encodeValue` writes, as one number below 2^49: precedence (u32), proxy port
 * (u16), deny. The value's prefix-bits field is the key's, so it is not stored.
 */
export function packValue(e: PolicyEntry): number {
  return (e.precedence >>> 0) * 131072 + (e.proxyPort & 0xffff) * 2 + (e.deny ? 1 : 0);
}

/** What `decodeValue` reads from the bytes `encodeValue(entry, key)` writes, for `packValue(entry)`. */
export function unpackValue(v: number, key: PolicyKey): DecodedValue {
  return {
    entry: { deny: v % 2 === 1, proxyPort: Math.floor(v / 2) % 65536, precedence: Math.floor(v / 131072) },
    l4PrefixBits: l4PrefixBits(key) & 0x1f,
  };
}

/**
 * The embedded default: maps as byte-keyed tables holding the kernel encoding, with the kernel's
 * capacity and failure modes (no room: E2BIG; deleting an absent key: ENOENT, stopping there).
 */
export class MemoryBackend implements MapBackend {
  readonly kind = 'memory' as const;
  readonly capacity: number;
  private readonly maps = new Map<string, Table>();

  constructor(options: { capacity?: number } = {}) {
    this.capacity = checkCapacity(options.capacity ?? DEFAULT_MAP_CAPACITY);
  }

  endpoints(): string[] {
    return [...this.maps.keys()].sort();
  }

  create(endpoint: string): void {
    this.maps.set(endpoint, { byPort: new Map(), size: 0 });
  }

  private map(endpoint: string): Table {
    const m = this.maps.get(endpoint);
    if (!m) throw new BackendError(`no policy map for endpoint ${endpoint}`, endpoint, 0);
    return m;
  }

  apply(endpoint: string, deltas: readonly MapDelta[]): WriteStats {
    const m = this.map(endpoint);
    const stats = emptyWriteStats();
    for (let done = 0; done < deltas.length; done++) {
      const d = deltas[done] as MapDelta;
      const part = portPart(d.key);
      const identity = d.key.identity >>> 0;
      let ids = m.byPort.get(part);
      if (d.op === 'upsert') {
        if (!ids?.has(identity)) {
          if (m.size >= this.capacity) throw new BackendError(`policy map of ${endpoint} is full (${this.capacity} entries)`, endpoint, done, 7);
          if (!ids) m.byPort.set(part, (ids = new Map()));
          m.size++;
        }
        ids.set(identity, packValue(d.entry));
        stats.upserts++;
      } else {
        if (!ids?.delete(identity)) throw new BackendError(`policy map of ${endpoint} has no key ${encodeKey(d.key).toString('hex')}`, endpoint, done, 2);
        if (ids.size === 0) m.byPort.delete(part);
        m.size--;
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
    const rows: { hex: string; key: PolicyKey; v: number }[] = [];
    for (const [part, ids] of this.map(endpoint).byPort) {
      for (const [identity, v] of ids) {
        const key = keyOf(part, identity);
        rows.push({ hex: encodeKey(key).toString('hex'), key, v });
      }
    }
    return rows
      .sort((a, b) => (a.hex < b.hex ? -1 : a.hex > b.hex ? 1 : 0))
      .map(({ hex, key, v }) => ({ key: decodeKey(Buffer.from(hex, 'hex')), entry: unpackValue(v, key).entry }));
  }

  lookup(endpoint: string, identity: number, direction: Direction, protocol: number, port: number): DecodedValue | undefined {
    const m = this.map(endpoint);
    for (let len = 16; len >= 0; len--) {
      const key: PolicyKey = { identity, direction, protocol, port: maskPort(port, len), portPrefixLen: len };
      const v = m.byPort.get(portPart(key))?.get(identity >>> 0);
      if (v !== undefined) return unpackValue(v, key);
    }
    const any: PolicyKey = { identity, direction, protocol: 0, port: 0, portPrefixLen: 0 };
    const v = m.byPort.get(portPart(any))?.get(identity >>> 0);
    return v === undefined ? undefined : unpackValue(v, any);
  }

  remove(endpoint: string): void {
    this.maps.delete(endpoint);
  }

  close(): void {
    this.maps.clear();
  }
}
