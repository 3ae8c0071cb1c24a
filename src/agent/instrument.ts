import { pino, Logger } from 'pino';
import { Counter, Gauge, Histogram, Registry, register as defaultRegistry } from 'prom-client';
import type { Engine, TransactionVeto } from '../engine/engine.js';
import type { ChangeSet, EngineEvent } from '../engine/events.js';
import { MapCapacityError } from '../engine/events.js';
import type { EngineStats } from '../engine/stats.js';
import { pinName } from '../backend/bpf.js';
import { limitedWarn, LogLimiter } from './log-limit.js';

/** Options of an InstrumentedEngine. */
export interface InstrumentOptions {
  /** Where the metrics are registered (default: prom-client's default registry). */
  readonly registry?: Registry;
  /** Where logs go (default: a silent pino logger). */
  readonly logger?: Logger;
  /** The clock of the refusal warnings' rate limit (ms; default `Date.now`). */
  readonly now?: () => number;
}

/** What one `apply` did: the change set, or the error that refused the transaction. */
export type ApplyOutcome = { readonly ok: true; readonly changes: ChangeSet } | { readonly ok: false; readonly error: Error };

const WORK_COUNTERS: readonly (keyof EngineStats)[] = ['selectorEvaluations', 'policyResolutions', 'mapStateUpdates', 'mapEntriesVisited', 'identitiesAllocated', 'identitiesReleased', 'proxyPortsAllocated', 'fqdnIpsChecked', 'fqdnIdentitiesRefused'];

function snake(s: string): string {
  return s.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

/** The batch's event type for the duration histogram: its one type, or `mixed`. */
function batchType(events: readonly EngineEvent[]): string {
  const types = new Set(events.map((e) => e.type));
  return types.size === 1 ? [...types][0]! : types.size === 0 ? 'empty' : 'mixed';
}

function changesPolicy(events: readonly EngineEvent[]): boolean {
  return events.some((e) => e.type === 'upsertPolicy' || e.type === 'deletePolicy');
}

/** Runs a metrics or logging step; what it throws is dropped (it must not change an outcome). */
function record(step: () => void): void {
  try {
    step();
  } catch {
    // The logger or a metric failed: the transaction's outcome stands.
  }
}

/**
 * An Engine observed from outside: `apply` is timed and counted, refusals are counted by error
 * class and logged at `warn` with their culprits, transactions are logged at `debug`, and gauges
 * read `sizes()` and `mapPressure()` when the registry is scraped. Metric names follow Cilium's
 * under a `distill_` prefix.
 */
export class InstrumentedEngine {
  /** The logger in use (silent unless one was given). */
  readonly logger: Logger;
  private readonly policyChanges: Counter<'outcome'>;
  private readonly regenerations: Counter<'outcome'>;
  private readonly refused: Counter<'reason'>;
  private readonly deltas: Counter;
  private readonly l7Deltas: Counter;
  private readonly work: Counter<'counter'>;
  private readonly duration: Histogram<'event_type'>;
  private readonly implementationDelay: Histogram;
  /** Refusals follow what any namespace admin writes (a batch is retried in halves): rate-limited as the mirror's warnings. */
  private readonly warnRefused: (fields: object, msg: string) => void;

  constructor(
    readonly engine: Engine,
    options: InstrumentOptions = {},
  ) {
    const registers = [options.registry ?? defaultRegistry];
    this.logger = options.logger ?? pino({ level: 'silent' });
    this.warnRefused = limitedWarn(this.logger, new LogLimiter(options.now ?? Date.now));
    this.policyChanges = new Counter({ name: 'distill_policy_change_total', help: 'Policy transactions by outcome (success, failure)', labelNames: ['outcome'], registers });
    this.regenerations = new Counter({ name: 'distill_endpoint_regenerations_total', help: 'Endpoints whose policy map a transaction changed, by outcome', labelNames: ['outcome'], registers });
    this.refused = new Counter({ name: 'distill_refused_transactions_total', help: 'Transactions refused, by error class', labelNames: ['reason'], registers });
    this.deltas = new Counter({ name: 'distill_deltas_total', help: 'Policy-map deltas emitted', registers });
    this.l7Deltas = new Counter({ name: 'distill_l7_deltas_total', help: 'L7 table deltas emitted', registers });
    this.work = new Counter({ name: 'distill_engine_work_total', help: 'Engine work counters (see EngineStats)', labelNames: ['counter'], registers });
    this.duration = new Histogram({ name: 'distill_transaction_duration_seconds', help: 'Time to compute one transaction, by event type (mixed: several types)', labelNames: ['event_type'], buckets: [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5], registers });
    this.implementationDelay = new Histogram({ name: 'distill_policy_implementation_delay', help: 'Seconds from a policy change reaching the engine to its deltas being computed', buckets: [0.0001, 0.001, 0.01, 0.1, 1, 10], registers });
    // Known label values start at 0, so a rate() or an alert on failures has a series before the first one (finding 2307).
    for (const outcome of ['success', 'failure']) {
      this.policyChanges.inc({ outcome }, 0);
      this.regenerations.inc({ outcome }, 0);
    }
    this.registerGauges(registers);
  }

  private registerGauges(registers: Registry[]): void {
    const engine = this.engine;
    new Gauge({ name: 'distill_policy_selector_cache_selectors', help: 'Selectors in the selector cache', registers, collect() { this.set(engine.sizes().selectors); } });
    new Gauge({ name: 'distill_policy_selector_cache_identities', help: 'Identities the selector cache matches against', registers, collect() { this.set(engine.sizes().identities); } });
    new Gauge({
      // Cilium's identity types (pkg/identity/identity.go ReservedIdentityType, ClusterLocalIdentityType,
      // NodeLocalIdentityType): a dashboard built for Cilium's `identity` gauge reads this one.
      name: 'distill_identity', help: 'Identities by type (reserved, cluster_local, node_local, remote_node)', labelNames: ['type'], registers,
      collect() {
        for (const [type, n] of engine.identityTypes()) this.set({ type }, n);
      },
    });
    new Gauge({ name: 'distill_endpoints', help: 'Local endpoints', registers, collect() { this.set(engine.sizes().endpoints); } });
    new Gauge({
      name: 'distill_bpf_map_pressure', help: 'Fill of each endpoint policy map (entries / capacity)', labelNames: ['map_name'], registers,
      collect() {
        this.reset();
        for (const p of engine.mapPressure()) this.set({ map_name: pinName(p.endpoint) }, p.pressure);
      },
    });
  }

  /**
   * Applies one transaction; never throws: a refusal is counted, logged and returned. The outcome
   * is the engine's alone: a metric or a log line that throws (a logger whose stream fails) is
   * dropped, never turned into a refusal of a transaction the engine committed, whose deltas the
   * caller would then not write (finding 1523).
   */
  apply(events: readonly EngineEvent[], veto?: TransactionVeto): ApplyOutcome {
    const started = process.hrtime.bigint();
    let changes: ChangeSet;
    try {
      changes = this.engine.apply(events, veto);
    } catch (e) {
      const error = e instanceof Error ? e : new Error(String(e));
      record(() => this.recordRefusal(events, error));
      return { ok: false, error };
    }
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    record(() => this.recordSuccess(events, changes, seconds));
    return { ok: true, changes };
  }

  private recordSuccess(events: readonly EngineEvent[], cs: ChangeSet, seconds: number): void {
    const hasPolicy = changesPolicy(events);
    this.duration.observe({ event_type: batchType(events) }, seconds);
    if (hasPolicy) {
      this.policyChanges.inc({ outcome: 'success' });
      this.implementationDelay.observe(seconds);
    }
    const touched = new Set(cs.deltas.map((d) => d.endpoint));
    for (const ep of cs.endpointsAdded) touched.add(ep);
    this.regenerations.inc({ outcome: 'success' }, touched.size);
    this.deltas.inc(cs.deltas.length);
    this.l7Deltas.inc(cs.l7Deltas.length);
    for (const k of WORK_COUNTERS) this.work.inc({ counter: snake(k) }, cs.work[k]);
    if (cs.work.fqdnIdentitiesRefused > 0) this.logger.warn({ refused: cs.work.fqdnIdentitiesRefused }, 'learnt IPs left unselected: the FQDN combination identity limit (maxSelectorCombinations) is reached');
    this.logger.debug({ events: events.length, eventType: batchType(events), deltas: cs.deltas.length, l7Deltas: cs.l7Deltas.length, endpointsAdded: cs.endpointsAdded.length, endpointsRemoved: cs.endpointsRemoved.length, seconds }, 'transaction applied');
  }

  private recordRefusal(events: readonly EngineEvent[], error: Error): void {
    this.refused.inc({ reason: error.name });
    if (changesPolicy(events)) this.policyChanges.inc({ outcome: 'failure' });
    this.regenerations.inc({ outcome: 'failure' }, 0);
    const culprits = error instanceof MapCapacityError ? error.topContributors.map((c) => c.rule) : [];
    this.warnRefused({ reason: error.name, error: error.message, culprits, events: events.length }, 'transaction refused');
  }
}
