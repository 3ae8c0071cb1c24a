import { getHeapStatistics } from 'node:v8';
import { applyChangeSet, MapBackend } from '../backend/backend.js';
import { ProxyPortAllocator } from '../engine/proxy-ports.js';
import { Engine, EngineOptions } from '../engine/engine.js';
import type { ChangeSet, EngineEvent } from '../engine/events.js';
import { comparableIpcache, comparableMaps, diffEndpointMaps, endpointMaps, EndpointMaps, initialEvents, l7Tables, l7TablesDiffSize } from '../harness/cluster-sync.js';
import { MutableCluster } from '../harness/mutable-cluster.js';
import type { ClusterState } from '../model/cluster.js';
import { IdentityAllocator } from '../model/identity.js';
import { ChurnItem, splitItems, takeItems, Trace } from './trace.js';
import { warmUpEngine } from './warm-up.js';

export type ReplayMode = 'incremental' | 'full';
export type ReplayPhase = 'cold start' | 'warm-up' | 'churn';

export interface ReplayOptions {
  /** incremental: the engine. full: every local endpoint's map state recomputed from scratch after each event. */
  readonly mode: ReplayMode;
  readonly backend?: MapBackend;
  /** Check the engine against a from-scratch recomputation every N churn events. */
  readonly verifyEvery?: number;
  /** Replay only the first N churn events (full mode is slow by design). */
  readonly limit?: number;
  /** Per phase: `cold start` (done 0 before the one transaction, then its events), then `churn` (churn events done). */
  readonly onProgress?: (done: number, total: number, phase: ReplayPhase) => void;
  /** Return every churn event's latency, in order (for per-event comparisons between modes). */
  readonly keepSamples?: boolean;
  /**
   * The trace is the replay's alone (the CLI's): its items are taken out of it, and each event is
   * dropped once applied, so the parsed trace does not stay live through the replay.
   */
  readonly consume?: boolean;
  /**
   * Between the cold start and the churn, run the churn paths once through scratch engines
   * (`warmUpEngine`, as the agent does before it reports ready); its time is `warmUpMs`, not the churn's.
   */
  readonly warmUp?: boolean;
  /** Called with the reason when the warm-up stopped early (the replay goes on). */
  readonly onWarmUpFailure?: (error: string) => void;
  /** Test-only: builds the incremental mode's engine (a deliberately broken one, to test `verifyEvery`). */
  readonly newEngine?: (options: EngineOptions) => Engine;
}

interface LatencyStats {
  readonly count: number;
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  readonly max: number;
}

/** The replay summary; these field names are a stable contract (`distill replay --json`). */
export interface ReplayResult {
  readonly mode: ReplayMode;
  readonly profile?: string;
  /** Events applied: the initial state's and the churn's. */
  readonly events: number;
  readonly eventsPerSec: number;
  /** Churn events only, keyed by the trace's tag (or event type): microseconds. */
  readonly latencyUs: Record<string, LatencyStats>;
  readonly deltas: number;
  /** L7 table deltas (rows told to the endpoints' proxies), cold start included. */
  readonly l7Deltas: number;
  readonly mapEntries: number;
  readonly peakHeapBytes: number;
  readonly coldStart: { readonly events: number; readonly ms: number; readonly heapBytes: number; readonly deltas: number };
  /** With `warmUp`: the warm-up's wall time (ms), between the cold start and the churn. */
  readonly warmUpMs?: number;
  readonly churnEvents: number;
  readonly endpoints: number;
  readonly verifications: number;
  /** Per churn event in order: its tag and latency (µs). Only with `keepSamples`. */
  readonly samples?: readonly { readonly tag: string; readonly us: number }[];
}

export class ReplayDivergence extends Error {
  override readonly name = 'ReplayDivergence';
}

/** The engine refused the trace's state: `where` is the churn event's `file:line`, or the initial phase; `cause` is the engine's error. */
export class ReplayRefusal extends Error {
  override readonly name = 'ReplayRefusal';
  constructor(
    readonly where: string,
    override readonly cause: unknown,
  ) {
    super(`${where}: ${cause instanceof Error ? cause.message : String(cause)}`);
  }
}

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] as number;
}

function latencyStats(samples: readonly number[]): LatencyStats {
  const s = [...samples].sort((a, b) => a - b);
  const r = (x: number): number => Math.round(x * 10) / 10;
  return { count: s.length, p50: r(percentile(s, 50)), p90: r(percentile(s, 90)), p99: r(percentile(s, 99)), max: r(s[s.length - 1] ?? 0) };
}

/**
 * The first prefix two comparable ipcaches (sorted `prefix labels` lines) disagree on, as text; null
 * when equal. An address whose owner left it (`unownedIps`, finding 524) is left out of both: a fresh
 * engine gives it to the pod written last, the model to nobody (finding 585).
 */
function ipcacheDivergence(want: readonly string[], got: readonly string[]): string | null {
  const byPrefix = (lines: readonly string[]): Map<string, string> => new Map(lines.map((l) => [l.slice(0, l.indexOf(' ')), l.slice(l.indexOf(' ') + 1)]));
  const w = byPrefix(want);
  const g = byPrefix(got);
  for (const prefix of [...new Set([...w.keys(), ...g.keys()])].sort()) {
    if (w.get(prefix) !== g.get(prefix)) return `prefix ${prefix}: engine ${g.get(prefix) ?? '(none)'}, recomputed ${w.get(prefix) ?? '(none)'}`;
  }
  return null;
}

/** What a non-incremental agent does per event: recompute every local endpoint's map state. */
function fullRecompute(state: ClusterState, local: ReadonlyMap<string, boolean>, capacity: number | undefined, shared?: { allocator: IdentityAllocator; proxyPorts: ProxyPortAllocator }): Engine {
  const e = new Engine({ ...(capacity === undefined ? {} : { mapCapacity: capacity }), ...(shared ? { allocator: shared.allocator, proxyPortAllocator: shared.proxyPorts } : {}) });
  e.apply(initialEvents(state, (p) => local.get(`${p.namespace}/${p.name}`) ?? false));
  return e;
}

/**
 * The cold start: the initial events as one transaction. In its own function so that its change
 * set (30,000 ipcache deltas for cilium-ci) is not kept alive by the replay's frame through the churn.
 */
function coldStart(initial: readonly EngineEvent[], opts: ReplayOptions, state: ClusterState, local: ReadonlyMap<string, boolean>, shared: { allocator: IdentityAllocator; proxyPorts: ProxyPortAllocator }): { engine: Engine; deltas: number; l7Deltas: number } {
  const capacity = opts.backend?.capacity;
  if (opts.mode === 'incremental') {
    const options = capacity === undefined ? {} : { mapCapacity: capacity };
    const engine = opts.newEngine ? opts.newEngine(options) : new Engine(options);
    const cs = engine.apply(initial);
    if (opts.backend) applyChangeSet(opts.backend, cs);
    return { engine, deltas: cs.deltas.length, l7Deltas: cs.l7Deltas.length };
  }
  const engine = fullRecompute(state, local, capacity, shared);
  const deltas = diffEndpointMaps(new Map(), endpointMaps(engine));
  const l7Deltas = l7TablesDiffSize(new Map(), l7Tables(engine));
  if (opts.backend) applyChangeSet(opts.backend, { deltas, l7Deltas: [], ipcache: [], endpointsAdded: engine.endpoints(), endpointsRemoved: [], work: engine.stats() });
  return { engine, deltas: deltas.length, l7Deltas };
}


/** Benchmark bookkeeping of `--verify-every`: the engine against a fresh one built from the model (untimed). */
function verifyAgainstFresh(engine: Engine, state: ClusterState, local: ReadonlyMap<string, boolean>, capacity: number | undefined, where: string): void {
  const fresh = fullRecompute(state, local, capacity);
  const want = comparableMaps(fresh);
  const got = comparableMaps(engine);
  if (JSON.stringify(want) !== JSON.stringify(got)) {
    const ep = [...new Set([...Object.keys(want), ...Object.keys(got)])].find((k) => JSON.stringify(want[k]) !== JSON.stringify(got[k]));
    throw new ReplayDivergence(`${where}: after this event the engine diverges from a from-scratch recomputation (endpoint ${ep ?? '?'}: engine ${JSON.stringify(got[ep ?? ''] ?? null)}, recomputed ${JSON.stringify(want[ep ?? ''] ?? null)})`);
  }
  const ipDiff = ipcacheDivergence(comparableIpcache(fresh, state.unownedIps), comparableIpcache(engine, state.unownedIps));
  if (ipDiff) throw new ReplayDivergence(`${where}: after this event the engine's ipcache diverges from a from-scratch recomputation (${ipDiff})`);
}

/** Full mode: each event recomputes every local endpoint's map from the model and writes the difference. */
class FullRecompute {
  private previous: EndpointMaps;
  private previousTables: ReturnType<typeof l7Tables>;

  constructor(
    public engine: Engine,
    private readonly state: ClusterState,
    private readonly local: ReadonlyMap<string, boolean>,
    private readonly capacity: number | undefined,
    private readonly shared: { allocator: IdentityAllocator; proxyPorts: ProxyPortAllocator },
  ) {
    this.previous = endpointMaps(engine);
    this.previousTables = l7Tables(engine);
  }

  /** Recomputes from the model (throws what the engine refuses). */
  recompute(): void {
    this.engine = fullRecompute(this.state, this.local, this.capacity, this.shared);
  }

  /** Writes the difference to the last recompute; its policy-map and L7-table delta counts. */
  write(backend: MapBackend | undefined): { deltas: number; l7Deltas: number } {
    const engine = this.engine;
    const now = endpointMaps(engine);
    const d = diffEndpointMaps(this.previous, now);
    const added = [...now.keys()].filter((ep) => !this.previous.has(ep));
    const removed = [...this.previous.keys()].filter((ep) => !now.has(ep));
    if (backend) applyChangeSet(backend, { deltas: d, l7Deltas: [], ipcache: [], endpointsAdded: added, endpointsRemoved: removed, work: engine.stats() });
    this.previous = now;
    const tables = l7Tables(engine);
    const l7Deltas = l7TablesDiffSize(this.previousTables, tables);
    this.previousTables = tables;
    return { deltas: d.length, l7Deltas };
  }
}

/** Per tag, in arrival order: churn latencies (µs). */
class Samples {
  readonly byTag = new Map<string, number[]>();
  readonly ordered: { tag: string; us: number }[] = [];

  constructor(private readonly keepOrder: boolean) {}

  add(tag: string, us: number): void {
    let s = this.byTag.get(tag);
    if (!s) this.byTag.set(tag, (s = []));
    s.push(us);
    if (this.keepOrder) this.ordered.push({ tag, us });
  }

  /** fromEntries defines own properties: a tag such as `__proto__` stays a key, not the object's prototype. */
  stats(): Record<string, LatencyStats> {
    return Object.fromEntries([...this.byTag].sort(([a], [b]) => (a < b ? -1 : 1)).map(([tag, s]) => [tag, latencyStats(s)]));
  }
}


/**
 * Replays a trace: the initial phase as one transaction (an agent starting on a running cluster),
 * then each churn event as its own transaction, timed.
 */
export function replay(trace: Trace, opts: ReplayOptions): ReplayResult {
  const { initial, churn } = splitItems(opts.consume ? takeItems(trace) : trace.items, opts.limit);
  const started = process.hrtime.bigint();
  const run = new ReplayRun(trace.source, opts, initial);
  const warmUpMs = opts.warmUp ? warmUp(opts) : undefined;
  const churnEvents = churn.length;
  const samples = new Samples(opts.keepSamples === true);
  run.churn(churn, samples);
  run.sampleHeap();
  // The warm-up is not the replay's work: events/s counts the cold start and the churn only.
  const seconds = Number(process.hrtime.bigint() - started) / 1e9 - (warmUpMs ?? 0) / 1e3;
  const engine = run.engine;
  let mapEntries = 0;
  for (const ep of engine.endpoints()) mapEntries += engine.mapState(ep).size;
  const total = run.cold.events + churnEvents;
  return {
    mode: opts.mode,
    ...(trace.header.profile !== undefined ? { profile: trace.header.profile } : {}),
    events: total,
    eventsPerSec: Math.round(total / seconds),
    latencyUs: samples.stats(),
    deltas: run.deltas,
    l7Deltas: run.l7Deltas,
    mapEntries,
    peakHeapBytes: run.peakHeap,
    coldStart: run.cold,
    ...(warmUpMs === undefined ? {} : { warmUpMs }),
    churnEvents,
    endpoints: engine.endpoints().length,
    verifications: run.verifications,
    ...(opts.keepSamples ? { samples: samples.ordered } : {}),
  };
}

function warmUp(opts: ReplayOptions): number {
  opts.onProgress?.(0, 1, 'warm-up');
  const w = warmUpEngine();
  if (w.error !== undefined) opts.onWarmUpFailure?.(w.error);
  opts.onProgress?.(1, 1, 'warm-up');
  return w.ms;
}

/** One replay's engine (a full recompute replaces it), the model beside it, and its running totals. */
class ReplayRun {
  // The model is bookkeeping of the benchmark, not the agent's work: updated in place, untimed.
  private readonly model = new MutableCluster();
  private readonly needModel: boolean;
  // Full recomputes share identity numbers and proxy ports across engines, as an agent's would stay
  // stable across a recompute (ports of endpoints that vanish stay taken: a benchmark-only leak).
  private readonly shared = { allocator: new IdentityAllocator(), proxyPorts: new ProxyPortAllocator() };
  engine: Engine;
  readonly cold: ReplayResult['coldStart'];
  deltas: number;
  l7Deltas: number;
  peakHeap = 0;
  verifications = 0;

  /** Runs the cold start: the initial events as one transaction, untracked by the timer except the apply. */
  constructor(
    private readonly source: string,
    private readonly opts: ReplayOptions,
    initial: EngineEvent[],
  ) {
    this.needModel = opts.mode === 'full' || (opts.verifyEvery ?? 0) > 0;
    const events = initial.length;
    opts.onProgress?.(0, events, 'cold start');
    for (const e of initial) this.track(e);
    const t0 = process.hrtime.bigint();
    let cold: ReturnType<typeof coldStart>;
    try {
      cold = coldStart(initial, opts, this.model, this.model.local, this.shared);
    } catch (e) {
      throw new ReplayRefusal(`${source}: the initial phase (one transaction)`, e);
    }
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    this.engine = cold.engine;
    this.deltas = cold.deltas;
    this.l7Deltas = cold.l7Deltas;
    this.cold = { events, ms: Math.round(ms * 10) / 10, heapBytes: this.sampleHeap(), deltas: cold.deltas };
    initial.length = 0; // the engine keeps what it needs
    opts.onProgress?.(events, events, 'cold start');
  }

  private track(e: EngineEvent): void {
    if (this.needModel) this.model.apply(e);
  }

  sampleHeap(): number {
    const h = getHeapStatistics().used_heap_size;
    this.peakHeap = Math.max(this.peakHeap, h);
    return h;
  }

  /** Each churn event as its own transaction, timed into `samples`; `--verify-every` checks between them. */
  churn(items: ChurnItem[], samples: Samples): void {
    const total = items.length;
    this.opts.onProgress?.(0, total, 'churn');
    const capacity = this.opts.backend?.capacity;
    const full = this.opts.mode === 'full' ? new FullRecompute(this.engine, this.model, this.model.local, capacity, this.shared) : undefined;
    // Popped from the end of the reversed list: an applied event is no longer referenced here.
    items.reverse();
    for (let i = 0, item = items.pop(); item !== undefined; i++, item = items.pop()) {
      samples.add(item.tag, full ? this.recomputeTimed(item, full) : this.applyTimed(item));
      if ((i & 63) === 0) this.sampleHeap();
      if (this.opts.verifyEvery && (i + 1) % this.opts.verifyEvery === 0 && !full) {
        this.verifications++;
        verifyAgainstFresh(this.engine, this.model, this.model.local, capacity, `${this.source}:${item.line}`);
      }
      if ((i & 255) === 0) this.opts.onProgress?.(i + 1, total, 'churn');
    }
    this.opts.onProgress?.(total, total, 'churn');
  }

  /** Incremental mode: the engine applies the event and the backend takes its change set (µs); the model moves after. */
  private applyTimed(item: ChurnItem): number {
    const t = process.hrtime.bigint();
    let cs: ChangeSet;
    try {
      cs = this.engine.apply([item.event]);
    } catch (e) {
      throw new ReplayRefusal(`${this.source}:${item.line}`, e);
    }
    if (this.opts.backend) applyChangeSet(this.opts.backend, cs);
    this.deltas += cs.deltas.length;
    this.l7Deltas += cs.l7Deltas.length;
    const us = Number(process.hrtime.bigint() - t) / 1e3;
    this.track(item.event);
    return us;
  }

  /** Full mode recomputes from the model, so the model moves first, outside the timed region (µs). */
  private recomputeTimed(item: ChurnItem, full: FullRecompute): number {
    this.track(item.event);
    const t = process.hrtime.bigint();
    try {
      full.recompute();
    } catch (e) {
      throw new ReplayRefusal(`${this.source}:${item.line}`, e);
    }
    const d = full.write(this.opts.backend);
    this.engine = full.engine;
    this.deltas += d.deltas;
    this.l7Deltas += d.l7Deltas;
    return Number(process.hrtime.bigint() - t) / 1e3;
  }
}
