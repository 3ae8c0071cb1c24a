import type { MapBackend, WriteStats } from '../../src/backend/backend.js';
import type { MapDelta } from '../../src/engine/events.js';

/**
 * `inner`, written one operation at a time: `after(endpoint)` runs after every single map
 * operation, map creation and map removal, so a test can look at every state a datapath could see.
 */
export function steppedBackend(inner: MapBackend, after: (endpoint: string) => void): MapBackend {
  return Object.assign(Object.create(inner) as MapBackend, {
    apply: (endpoint: string, deltas: readonly MapDelta[]): WriteStats => {
      const total: WriteStats = { upserts: 0, deletes: 0, syscalls: 0 };
      for (const d of deltas) {
        const s = inner.apply(endpoint, [d]);
        total.upserts += s.upserts;
        total.deletes += s.deletes;
        total.syscalls += s.syscalls;
        after(endpoint);
      }
      return total;
    },
    create: (endpoint: string): void => {
      inner.create(endpoint);
      after(endpoint);
    },
    remove: (endpoint: string): void => {
      inner.remove(endpoint);
      after(endpoint);
    },
  });
}
