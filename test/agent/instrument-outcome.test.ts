import { pino } from 'pino';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { InstrumentedEngine } from '../../src/agent/instrument.js';
import { applyChangeSet } from '../../src/backend/backend.js';
import { backendLookup } from '../../src/backend/lookup.js';
import { MemoryBackend } from '../../src/backend/memory.js';
import { Engine } from '../../src/engine/engine.js';
import type { EngineEvent } from '../../src/engine/events.js';
import { parseIp } from '../../src/model/cidr.js';
import { parseManifest } from '../../src/policy/manifest.js';

/**
 * Finding 1523 (docs/attack-findings-21w.md): `InstrumentedEngine.apply` recorded a committed
 * transaction's metrics and its debug log line inside the same `try` as `engine.apply`, so a
 * logger that threw (its stream failing: a full disk, a closed descriptor, a hook) turned a
 * committed transaction into `{ ok: false }`. An embedder does what the docs say with a refusal
 * (keep running on the last good state: roll the mirror back, write nothing): the deltas were
 * never written, and the maps kept an allow the engine had deleted, through every later
 * transaction (fail-open until a full reconcile).
 */
const pod = (name: string, n: number, local: boolean): EngineEvent => ({ type: 'upsertPod', local, pod: { namespace: 'shop', name, labels: { app: name }, ip: parseIp(`10.0.0.${n}`), serviceAccount: 'default', ports: [] } });
const netpol = (name: string, ingress: unknown[]): EngineEvent => ({
  type: 'upsertPolicy',
  policy: parseManifest({ apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { name, namespace: 'shop' }, spec: { podSelector: { matchLabels: { app: 'web' } }, policyTypes: ['Ingress'], ingress } }, name),
});

describe('1523. InstrumentedEngine: the outcome is the engine\'s', () => {
  it('a logger that throws after a committed transaction leaves it ok, with its deltas', () => {
    let failing = false;
    const stream = { write: (_: string): void => void (failing ? (() => { throw new Error('ENOSPC: no space left on device'); })() : undefined) };
    const instrumented = new InstrumentedEngine(new Engine(), { registry: new Registry(), logger: pino({ level: 'debug' }, stream) });
    const backend = new MemoryBackend();
    /** The embedding loop of docs/embedding.md: a refusal writes nothing. */
    const step = (events: EngineEvent[]): boolean => {
      const outcome = instrumented.apply(events);
      if (outcome.ok) applyChangeSet(backend, outcome.changes);
      return outcome.ok;
    };
    expect(step([{ type: 'upsertNamespace', name: 'shop', labels: {} }, pod('web', 1, true), pod('client', 2, false), netpol('isolate', []), netpol('allow', [{ from: [{ podSelector: { matchLabels: { app: 'client' } } }] }])])).toBe(true);
    const client = instrumented.engine.identityOfPod('shop/client')!;
    const admits = (): boolean => backendLookup(backend, 'shop/web', client, 'ingress', 6, 80)?.entry.deny === false;
    expect(admits()).toBe(true);
    // The allow goes while the log stream fails.
    failing = true;
    const ok = step([{ type: 'deletePolicy', ref: { kind: 'NetworkPolicy', namespace: 'shop', name: 'allow' } }]);
    failing = false;
    expect(instrumented.engine.lookup('shop/web', client, 'ingress', 6, 80), 'the engine committed the delete').toBeUndefined();
    step([pod('other', 3, false)]);
    expect(admits(), 'the maps follow the engine: the client is isolated').toBe(false);
    expect(ok).toBe(true);
  });
});
