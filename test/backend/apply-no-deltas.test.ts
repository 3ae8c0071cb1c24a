import { describe, expect, it } from 'vitest';
import { applyChangeSet } from '../../src/backend/backend.js';
import { MemoryBackend } from '../../src/backend/memory.js';
import { Engine } from '../../src/engine/engine.js';
import type { EngineEvent } from '../../src/engine/events.js';
import { parseIp } from '../../src/model/cidr.js';

/*
 * Most churn events (a remote pod coming or going that no local policy selects) change no policy
 * map but do change the ipcache. applyChangeSet skips its write planning for them (perf14alloc);
 * the caller's ipcache write (`betweenPhases`) must still run, exactly once.
 */
const pod = (name: string, ip: string, local: boolean): EngineEvent => ({
  type: 'upsertPod',
  pod: { namespace: 'ns', name, labels: { app: name }, ip: parseIp(ip), serviceAccount: 'default', ports: [] },
  local,
});

describe('applyChangeSet without policy-map deltas', () => {
  it('still writes the ipcache between the phases, once, and reports no writes', () => {
    const engine = new Engine();
    const backend = new MemoryBackend();
    applyChangeSet(backend, engine.apply([{ type: 'upsertNamespace', name: 'ns', labels: {} }, pod('a', '10.0.0.1', true)]));
    const cs = engine.apply([pod('remote', '10.0.9.9', false)]);
    expect(cs.deltas).toHaveLength(0);
    expect(cs.ipcache.length).toBeGreaterThan(0);
    let calls = 0;
    const stats = applyChangeSet(backend, cs, () => calls++);
    expect(calls).toBe(1);
    expect(stats).toEqual({ upserts: 0, deletes: 0, syscalls: 0 });
    expect(backend.endpoints()).toEqual(['ns/a']);
  });
});
