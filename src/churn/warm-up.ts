import { applyChangeSet } from '../backend/backend.js';
import { MemoryBackend } from '../backend/memory.js';
import { Engine } from '../engine/engine.js';
import type { ChangeSet, EngineEvent } from '../engine/events.js';
import { parseIp as ip } from '../model/cidr.js';
import { parseManifest } from '../policy/manifest.js';
import { generateTrace } from './profiles.js';
import { parseTrace, splitItems, Trace } from './trace.js';

/**
 * What a warm-up cost. `error`: why it stopped early (a bug in the workload or the engine: the
 * caller logs it and goes on; the caller's engine never saw the scratch engines).
 */
export interface WarmUpResult {
  readonly ms: number;
  /** Events applied (refused ones included). */
  readonly events: number;
  /** Transactions the scratch engines refused, as the workload meant them to be. */
  readonly refused: number;
  /** Map operations written to the scratch engines' backends (the write plan's paths, warmed too). */
  readonly writes: number;
  readonly error?: string;
}

/**
 * The built-in workload: small generated clusters whose churn covers every event kind a replay or
 * an agent's watch brings (pod add/delete/relabel, identity add/remove by new or last pods,
 * namespace relabel, policy add/delete, CIDR and L7 policies, DNS answers and clock steps), plus
 * policy updates, node and API-server events, external identities and refused transactions. Fixed
 * seeds: the same workload in every process. One pass over each path is what moves the deopts out
 * of the churn; more volume buys compiles at more CPU (docs/benchmarks.md, perf22tail).
 */
interface WarmUpTrace {
  readonly profile: string;
  readonly scale?: number;
  readonly churn: number;
  readonly fqdn?: boolean;
  /** Times the whole trace runs, each on a fresh scratch engine (default 1): V8 optimises a function after enough calls. */
  readonly rounds?: number;
}

const WORKLOAD: readonly WarmUpTrace[] = [
  { profile: 'cilium-ci', scale: 0.002, churn: 300 },
  { profile: 'small', churn: 120 },
  { profile: 'fqdn', scale: 0.01, churn: 40, fqdn: true },
];
/** Churn events kept per tag: enough for V8 to optimise each path; a namespace relabel re-derives every pod of its namespace. */
const PER_TAG = 24;
const PER_NAMESPACE_RELABEL = 4;
const WARM_UP_SEED = 22;

export interface WarmUpOptions {
  /** The built-in workload unless given (a test's, e.g. one that cannot run; a benchmark's arm). */
  readonly workload?: readonly WarmUpTrace[];
  /**
   * How the workload's policies are made: `trace` as a replay reads them (the trace reader's
   * class), `manifest` as `parseManifest` returns them (what an agent's watch streams give): the
   * scratch engines then see the policy shape the caller's churn will send.
   */
  readonly policies?: 'trace' | 'manifest';
}

/**
 * Runs the churn paths once before a real churn: each workload through a scratch Engine (the cold
 * start as one transaction, then each churn event as its own), then drops them. V8 compiles and
 * deoptimises the paths a cold start never runs (deletes, relabels, the undo log, event shapes it
 * never saw) here instead of inside the first real events (docs/benchmarks.md, perf19, perf22tail).
 * Touches nothing of the caller's: no engine, backend, metrics or identity allocator is shared.
 * Never throws.
 */
export function warmUpEngine(options: WarmUpOptions = {}): WarmUpResult {
  const manifests = options.policies === 'manifest';
  const t0 = process.hrtime.bigint();
  const counts: Counts = { events: 0, refused: 0, writes: 0 };
  let error: string | undefined;
  try {
    for (const w of options.workload ?? WORKLOAD) {
      const trace = parseTrace(generateTrace({ profile: w.profile, seed: WARM_UP_SEED, churnEvents: w.churn, ...(w.scale === undefined ? {} : { scale: w.scale }) }), 'warm-up', { manifests, fqdn: w.fqdn === true });
      for (let i = 0; i < (w.rounds ?? 1); i++) runTrace(trace, manifests, counts);
    }
    runNodesAndRefusals(manifests, counts);
    runExternalIdentities(counts);
  } catch (e) {
    error = e instanceof Error ? e.message : String(e);
  }
  const ms = Math.round(Number(process.hrtime.bigint() - t0) / 1e5) / 10;
  return { ms, ...counts, ...(error === undefined ? {} : { error }) };
}

/** A policy event as `parseManifest` would have made it (from the manifest the trace kept). */
function asParsed(e: EngineEvent): EngineEvent {
  return e.type === 'upsertPolicy' ? { type: 'upsertPolicy', policy: parseManifest(e.policy.manifest, 'warm-up') } : e;
}

type Counts = { events: number; refused: number; writes: number };

/**
 * A scratch engine and the memory backend its change sets are written to, as `replay` and the agent
 * write theirs: the write plan's paths (a map's single operation, its general plan) run here too,
 * not for the first time inside the churn's rare events that change a map (perf32tail, 3460).
 */
interface Scratch {
  readonly engine: Engine;
  readonly backend: MemoryBackend;
}

const scratch = (engine: Engine): Scratch => ({ engine, backend: new MemoryBackend() });

/** As `replay` applies a trace: the initial phase as one transaction, then one per churn event. */
function runTrace(trace: Trace, manifests: boolean, counts: Counts): void {
  const s = scratch(new Engine());
  const { initial, churn } = splitItems(trace.items);
  const shaped = (e: EngineEvent): EngineEvent => (manifests ? asParsed(e) : e);
  apply(s, initial.map(shaped), counts);
  const kept = new Map<string, number>();
  for (const item of churn) {
    const n = kept.get(item.tag) ?? 0;
    if (n >= (item.tag === 'namespace-relabel' ? PER_NAMESPACE_RELABEL : PER_TAG)) continue;
    kept.set(item.tag, n + 1);
    apply(s, [shaped(item.event)], counts);
  }
}

/**
 * Applies one transaction and writes its change set; a refusal is counted (the engine left its
 * state as it was, nothing is written). A write the backend refuses is a bug: it ends the warm-up.
 */
function apply(s: Scratch, events: readonly EngineEvent[], counts: Counts): void {
  counts.events += events.length;
  let cs: ChangeSet;
  try {
    cs = s.engine.apply(events);
  } catch {
    counts.refused++;
    return;
  }
  const w = applyChangeSet(s.backend, cs);
  counts.writes += w.upserts + w.deletes;
}

/** Policy updates, node and API-server events on a cluster with local endpoints, and transactions the engine refuses. */
function runNodesAndRefusals(manifests: boolean, counts: Counts): void {
  const trace = parseTrace(generateTrace({ profile: 'small', seed: WARM_UP_SEED, churnEvents: 0 }), 'warm-up', { manifests });
  const s = scratch(new Engine());
  const events: EngineEvent[] = [];
  for (const item of trace.items) if (item.kind === 'event') events.push(manifests ? asParsed(item.event) : item.event);
  apply(s, events, counts);
  // Policy updates: each policy upserted again under its name (the churn's profiles only add and delete).
  for (const e of events) if (e.type === 'upsertPolicy') apply(s, [e], counts);
  apply(s, [{ type: 'upsertNode', name: 'warm-up-0', ips: [ip('10.255.0.1')], local: true }], counts);
  apply(s, [{ type: 'upsertNode', name: 'warm-up-1', ips: [ip('10.255.0.2'), ip('fd00:ff::2')], health: [ip('10.255.1.2')], ingress: [ip('10.255.2.2')], labels: { zone: 'a' } }], counts);
  apply(s, [{ type: 'setApiServer', addresses: [ip('10.255.3.1')] }], counts);
  apply(s, [{ type: 'upsertNode', name: 'warm-up-1', ips: [ip('10.255.0.3')] }], counts);
  apply(s, [{ type: 'deleteNode', name: 'warm-up-1' }], counts);
  apply(s, [{ type: 'setApiServer', addresses: [] }], counts);
  // Refused: a pod that is not a pod, then an identity event on an engine with local identities.
  apply(s, [{ type: 'deleteNode', name: 'warm-up-0' }, { type: 'upsertPod', pod: null } as unknown as EngineEvent], counts);
  apply(s, [{ type: 'upsertIdentity', id: 70000, labels: { 'k8s:app': 'warm-up' } }], counts);
}

/** An engine fed identities from elsewhere (an agent with etcd or CiliumIdentity objects). */
function runExternalIdentities(counts: Counts): void {
  const s = scratch(new Engine({ identitySource: 'external' }));
  for (let i = 0; i < 8; i++) apply(s, [{ type: 'upsertIdentity', id: 70000 + i, labels: { 'k8s:app': `warm-up-${i % 4}`, 'k8s:io.kubernetes.pod.namespace': 'default' } }], counts);
  for (let i = 0; i < 8; i += 2) apply(s, [{ type: 'deleteIdentity', id: 70000 + i }], counts);
}
