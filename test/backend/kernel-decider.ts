import { applyChangeSet } from '../../src/backend/backend.js';
import { BpfBackend } from '../../src/backend/bpf.js';
import { backendLookup } from '../../src/backend/lookup.js';
import { Engine, type EngineOptions } from '../../src/engine/engine.js';
import { EngineDecider } from '../../src/harness/engine-decider.js';
import { reconcile } from '../../src/node/restart.js';
import type { FlowDecider, ScenarioRun } from '../../src/scenario/run.js';

/**
 * A scenario decider that answers from real kernel maps: a fresh engine whose change sets are
 * written to a pinned BpfBackend in `pinDir`, and whose verdicts come from the kernel's lookups.
 */
export function kernelDecider(pinDir: string, options: EngineOptions = {}): { decide: FlowDecider; close: () => void } {
  const backend = new BpfBackend({ pinDir });
  const engine = new Engine({ ...options, mapCapacity: backend.capacity });
  reconcile(engine, backend);
  const d = new EngineDecider(engine, undefined, (cs) => applyChangeSet(backend, cs), (ep, peer, dir, proto, port) => backendLookup(backend, ep, peer, dir, proto, port)?.entry);
  return { decide: d.decide, close: () => backend.close() };
}

/** A scenario run's results, one comparable line per flow. */
export const verdicts = (r: ScenarioRun): string[] => r.steps.flatMap((s) => s.results.map((x) => `${x.from}->${x.to} ${x.port}/${x.protocol} ${x.allowed} ${x.proxied}`));
