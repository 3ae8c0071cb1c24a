import { createReadStream, statSync } from 'node:fs';
import { createServer, Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import { Counter, Gauge, Registry } from 'prom-client';
import { limitedWarn, LogLimiter } from './log-limit.js';
import { applyChangeSet, MapBackend } from '../backend/backend.js';
import { kernelIpcacheContent, kernelIpcacheDeltas, LocalAddresses, localEndpointAddresses } from '../backend/ipcache-content.js';
import { Engine, TransactionVeto } from '../engine/engine.js';
import type { AllowLocalhost } from '../model/localhost.js';
import { ANY_IDENTITY, type StackMode } from '../model/identity.js';
import { ChangeSet, EngineEvent, IpcacheDelta, TransactionVetoedError } from '../engine/events.js';
import { podIps } from '../model/cluster.js';
import { ClusterMirror } from '../k8s/mirror.js';
import { WatchStreamParser } from '../k8s/watch.js';
import { ciliumAgentOptions, type CiliumAgentOptions } from '../policy/manifest.js';
import { proxyPortsFromMaps, reconcile } from '../node/restart.js';
import { ApplyOutcome, InstrumentedEngine } from './instrument.js';
import { warmUpEngine } from '../churn/warm-up.js';

/** What `distill agent` is told (with Cilium's agent options that change how policies read, `CiliumAgentOptions`). */
export interface AgentConfig extends CiliumAgentOptions {
  readonly node: string;
  /** Watch stream files; `-` is standard input. */
  readonly watch: readonly string[];
  readonly backend: MapBackend;
  /**
   * The datapath's ipcache (prefix → identity; `KernelIpcache` for bpf maps), written between the
   * policy maps' tighten and loosen phases and brought to the engine's at the first write. None:
   * another component owns it. The agent closes it when it stops.
   */
  readonly ipcache?: AgentIpcache;
  readonly logger: Logger;
  readonly registry: Registry;
  /** `HOST:PORT` for /metrics and /healthz. */
  readonly metricsAddr?: string;
  /** Called once the metrics server listens, with the address it got (port 0: the kernel picks a free one). */
  readonly onListening?: (addr: string) => void;
  /** Finish when every stream has ended (else: run until `stop`). */
  readonly exitAtEof?: boolean;
  /**
   * Where identity numbers come from: `local` (the engine allocates; CiliumIdentity objects are
   * ignored) or `external` (CiliumIdentity objects / identity events give the cluster's numbers).
   */
  readonly identities?: 'local' | 'external';
  /**
   * Identities from elsewhere (etcd): the engine runs with external identities, CiliumIdentity
   * objects are ignored, and this source sees every committed event and gives identity events.
   */
  readonly identitySource?: AgentIdentitySource;
  /** Cilium's `allow-localhost` (src/model/localhost.ts); default `always`, what Cilium's `auto` is under Kubernetes. */
  readonly allowLocalhost?: AllowLocalhost;
  /** Cilium's IP stack mode (model/identity.ts `StackMode`); default single, Cilium's default install (IPv4 only). */
  readonly stack?: StackMode;
  /** The clock (ms since the epoch; default `Date.now`): gracefully deleted local pods stop being endpoints at their `deletionTimestamp`, remote ones are held fail-closed from then until deleted. */
  readonly now?: () => number;
  /** A monotonic clock (ms; default `performance.now` when `now` is not given): see `MirrorOptions.elapsed`. */
  readonly elapsed?: () => number;
  /** Timer functions (default the global ones): the agent keeps one timer, for the earliest pending pod deletion. */
  readonly timers?: AgentTimers;
  /**
   * Every this many ms, bring the maps to the engine's state by reading them (what another writer
   * changed is undone), as Cilium's `bpf-policy-map-full-reconciliation-interval` (15 min)
   * does. 0 or absent: never (the CLI's default is 15 min).
   */
  readonly fullReconcileMs?: number;
  /**
   * The first transaction waits until every regular file is read up to its size at open and no
   * other stream (a pipe, stdin) received data for this many ms (streams that ended never wait;
   * default 250, 0: no quiet wait). `kubectl get --watch --output-watch-events` prints the
   * initial objects as ADDED events with no end marker: a first transaction over part of them (an
   * allow read before the deny after it) would reconcile the pinned maps to what both the old and
   * the new policy deny (attack-findings-16w, 742).
   */
  readonly initialQuietMs?: number;
  /**
   * After the first transaction's write, run the churn paths once through scratch engines
   * (`warmUpEngine`: V8 compiles and deoptimises them there, not inside the first real events);
   * /healthz is not ready until it ran. The CLI's default is on (`--no-warm-up`); absent: off.
   */
  readonly warmUp?: boolean;
  /** A stream carries every CiliumCIDRGroup from the start (`MirrorOptions.cidrGroups`; CLI `--cidr-groups`). */
  readonly cidrGroups?: boolean;
}

/** An ipcache the agent writes (`KernelIpcache` is one). */
export interface AgentIpcache {
  /** `local`: the local endpoints' addresses after the write, which its transition barrier guards (finding 1120). */
  apply(deltas: readonly IpcacheDelta[], local?: LocalAddresses): unknown;
  /** Makes it hold exactly `wanted`, writing only the difference; returns how many entries changed. */
  sync(wanted: ReadonlyMap<string, number>, local?: LocalAddresses): number;
  close(): void;
}

/** The timer functions an agent uses (injectable, for tests with a fake clock). */
export interface AgentTimers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

const GLOBAL_TIMERS: AgentTimers = {
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
};

/**
 * Retries of a failed map write: the delay doubles from the first to the last (then stays). The
 * maps stay as the failed write left them (its plan stops before the loosen phase), never looser.
 */
const WRITE_RETRY_FIRST_MS = 1000;
const WRITE_RETRY_MAX_MS = 60_000;

/**
 * The metrics server's bounds: connections beyond the limit are closed at accept, and a connection
 * idle (or still sending its request) this long is closed. Unbounded, idle connections from anyone
 * who reaches the port held a file descriptor each: at the process's limit no endpoint's map could
 * be created and /healthz did not answer (1141).
 */
const HTTP_MAX_CONNECTIONS = 64;
const HTTP_IDLE_MS = 10_000;

/** setTimeout's longest delay (2^31 - 1 ms, ~24.8 days); a later deadline is re-armed when it fires. */
const MAX_TIMER_DELAY = 2 ** 31 - 1;

function fileSize(path: string): number {
  try {
    const st = statSync(path);
    return st.isFile() ? st.size : 0;
  } catch {
    return 0;
  }
}

/** An identity source the agent feeds its committed events to and takes identity events from. */
interface AgentIdentitySource {
  observe(events: readonly EngineEvent[]): void;
  /** Identity events waiting; `ack(n)` drops the first n once a transaction applied them. */
  peek(): readonly EngineEvent[];
  ack(n: number): void;
  /** Set by the agent: called when identity events wait. */
  onChange: () => void;
  /**
   * False until the cluster's identities were listed once: the first transaction (which
   * reconciles the pinned maps) waits for it, so a restart does not empty the maps it then refills.
   */
  readonly ready: boolean;
  /** Why the node's identities may lag (e.g. etcd unreachable), or undefined: /healthz answers 503 with it. */
  readonly problem?: string | undefined;
}

/**
 * The agent's state as `/healthz?format=json` gives it and its `status` log lines say it, in the words of Cilium's
 * status (api/v1 models.Status `state`: Ok, Warning, Failure; daemon/cmd/status.go `getStatus`). `Failure`: not
 * ready, /healthz answers 503 (`notReady`, each cause). `Warning`: ready (200) and enforcing, but some input is not
 * in force as given (`warnings`): the node keeps what it last committed for it, never looser than that and the new
 * input both deny. Cilium likewise keeps an endpoint's last realized policy while its regeneration fails and shows
 * the failure in `cilium status` (its controllers) and `cilium_endpoint_regenerations_total{outcome="fail"}`,
 * without failing the agent's health (finding 2395).
 */
export interface AgentStatus {
  readonly state: 'Ok' | 'Warning' | 'Failure';
  readonly notReady: readonly string[];
  readonly warnings: readonly string[];
  /** Identity events (`--identities etcd`) the engine refused, waiting for the next transaction (finding 2203). */
  readonly identityEventsWaiting: number;
  /** Objects the engine refused on their own and still lacks (`ClusterMirror.refusedObjects`), and the first of their keys. */
  readonly objectsRefused: number;
  readonly refusedObjects: readonly string[];
  /** External identity numbers read as the fail-closed stand-in (`Engine.unreadableIdentities`), and the first of them. */
  readonly identitiesUnreadable: number;
  readonly unreadableIdentities: readonly number[];
  /** CiliumCIDRGroup objects that cannot be read (group peers read as the stand-in meanwhile). */
  readonly cidrGroupsUnreadable: number;
  /** Watch streams that ended without `--exit-at-eof` (finding 3140): no later change of their objects reaches the maps. */
  readonly streamsEnded: number;
  readonly endedStreams: readonly string[];
}

/** How many keys or numbers a status names (the counts are whole): a body any namespace admin can grow stays short. */
const STATUS_NAMES = 10;

/** What the agent did, for its summary. */
export interface AgentSummary {
  transactions: number;
  refusals: number;
  events: number;
  unreadableStreams: number;
  /** Map writes (a transaction's, or a reconcile) that failed. */
  writeFailures: number;
}

/**
 * Refuses a transaction that could admit a number of `stale` more than now (finding 2370, `Agent.staleVetoOf`): a new
 * winner of a lookup for it is an upsert keyed on it or on identity 0 that is no deny, a lost deny winner a delete of a
 * deny keyed on either (or its upsert as no deny); an address moved to it is a new packet carrying it. Two more
 * (review 28c): the map of a local endpoint whose own number is stale (the new inputs make it a stand-in's, which
 * denies both ways: 2450) may widen on any peer; and a proxy's table may let more requests through with no map delta
 * (an L7 row upserted for the number, for any peer, or in such an endpoint: 2451).
 */
export function staleVeto(stale: ReadonlySet<number>): TransactionVeto {
  return (cs, endpointIdentity) => {
    const subjects = new Map<string, boolean>();
    const staleSubject = (ep: string): boolean => {
      let s = subjects.get(ep);
      if (s === undefined) subjects.set(ep, (s = stale.has(endpointIdentity(ep) ?? ANY_IDENTITY)));
      return s;
    };
    for (const d of cs.deltas) {
      if (d.key.identity !== ANY_IDENTITY && !stale.has(d.key.identity) && !staleSubject(d.endpoint)) continue;
      if (d.op === 'upsert' ? !d.entry.deny : d.entry.deny) return new TransactionVetoedError(`the transaction would admit identity ${d.key.identity === ANY_IDENTITY ? 'numbers' : d.key.identity} while identity events wait (endpoint ${d.endpoint}, ${d.key.direction})`);
    }
    for (const d of cs.l7Deltas) {
      if (d.op === 'upsert' && (d.peer === ANY_IDENTITY || stale.has(d.peer) || staleSubject(d.endpoint))) return new TransactionVetoedError(`the transaction would let identity ${d.peer === ANY_IDENTITY ? 'numbers' : d.peer} through a proxy while identity events wait (endpoint ${d.endpoint}, port ${d.redirect.port})`);
    }
    for (const d of cs.ipcache) if (d.op === 'upsert' && stale.has(d.identity)) return new TransactionVetoedError(`the transaction would move ${d.prefix} to identity ${d.identity} while its identity event waits`);
    return null;
  };
}

/**
 * The node agent: watch streams in, one transaction per batch of what arrived together, maps
 * written (reconciled with the pinned maps at the first transaction), metrics served.
 */
export class Agent {
  readonly engine: Engine;
  readonly mirror: ClusterMirror;
  readonly instrumented: InstrumentedEngine;
  readonly summary: AgentSummary = { transactions: 0, refusals: 0, events: 0, unreadableStreams: 0, writeFailures: 0 };
  private readonly streams: Readable[] = [];
  private started = 0;
  private ended = 0;
  private reconciled = false;
  private flushQueued = false;
  private server: Server | undefined;
  private readonly now: () => number;
  private readonly timers: AgentTimers;
  /** The timer set for the earliest pending pod deletion, and that deadline. */
  private deadlineTimer: { readonly at: number; readonly handle: unknown } | undefined;
  /** Failed map writes in a row, and the timer of the next reconcile (set while the maps lag the engine). */
  private writeRetry: { failures: number; handle: unknown } | undefined;
  private readonly writeFailures: Counter<'stage'>;
  /** When a stream other than a regular file last received data (the steady clock, ms), and the timer of the first transaction's quiet wait. */
  private lastData = -Infinity;
  private quietTimer: unknown;
  private firstApplied = false;
  /**
   * Set once a transaction committed. Before that a refused transaction is not split (finding 2132): the first one
   * reconciles the pinned maps and must hold the whole state, not the Kubernetes events without the identities.
   */
  private committed = false;
  /** How many identity events waited after the last split transaction (`applyIdentitiesAlone`), for its warning. */
  private identitiesWaiting = 0;
  /** The counts of the last `status` log line (`logStatus`): one line when they change, not one per flush. */
  private loggedStatus = '0 0 0 0 0';
  /** The `status` lines' rate limit: an object flipping between refused and applied at each event must not flood the log. */
  private readonly statusLimiter: LogLimiter;
  /** With `warmUp`: true once it ran (after the first transaction's write). */
  private warmedUp = false;
  /** Set once the stack-mode warning (`warnStackMismatch`) was logged. */
  private stackWarned = false;
  /** Streams of regular files not yet read up to their size at open. */
  private catchingUp = 0;
  private readonly elapsed: () => number;
  /** The timer of the next periodic full reconcile (`fullReconcileMs`). */
  private fullReconcileTimer: unknown;
  /** The last failed map write's error, while the maps lag the engine (cleared by a reconcile that succeeds). */
  private lastWriteError: string | undefined;
  /** Streams that became unreadable (closed, what they gave before stays): the policy no longer follows them. */
  private readonly unreadable: string[] = [];
  /** Streams that ended readable without `exitAtEof`: the agent serves what they gave, nothing later (a warning). */
  private readonly endedStreams: string[] = [];
  /** True once `stop` was called (by SIGTERM, or at the end). */
  stopped = false;
  /**
   * True once `stop` closed the backend: a flush or reconcile queued before (a refused batch's
   * halves, a chunk read in SIGTERM's turn, an identity change) writes nothing (finding 1521).
   */
  private closed = false;
  private readonly finished: Promise<void>;
  private finish: () => void = () => {};

  constructor(private readonly config: AgentConfig) {
    const log = config.logger;
    // A restarted agent keeps the proxy ports its pinned maps already use, so reconcile rewrites no redirect.
    this.engine = new Engine({ identitySource: config.identitySource ? 'external' : (config.identities ?? 'local'), proxyPortAllocator: proxyPortsFromMaps(config.backend), ...(config.allowLocalhost ? { allowLocalhost: config.allowLocalhost } : {}), ...(config.stack ? { stack: config.stack } : {}) });
    if (config.identitySource) config.identitySource.onChange = () => this.queueFlush();
    this.now = config.now ?? Date.now;
    this.timers = config.timers ?? GLOBAL_TIMERS;
    this.elapsed = config.elapsed ?? (config.now ? config.now : () => performance.now());
    // Object warnings follow what any namespace admin writes: rate-limited as Cilium's reconciler logs (2/s, burst 10).
    const warn = limitedWarn(log, new LogLimiter(this.now));
    this.mirror = new ClusterMirror({
      nodeName: config.node,
      ...ciliumAgentOptions(config),
      ...(config.cidrGroups === true ? { cidrGroups: true } : {}),
      // Identities from outside cannot be split: a rule needing splits reads as the fail-closed stand-in (2247).
      ...(config.identitySource || config.identities === 'external' ? { externalIdentities: true } : {}),
      // The mirror's own defaults (Date.now, and performance.now as its steady clock) unless given.
      ...(config.now ? { now: config.now } : {}),
      ...(config.elapsed ? { elapsed: config.elapsed } : {}),
      debug: (msg, fields) => log.debug(fields, msg),
      warn: (msg, fields) => warn(fields, msg),
    });
    this.instrumented = new InstrumentedEngine(this.engine, { registry: config.registry, logger: log, now: this.now });
    this.statusLimiter = new LogLimiter(this.now);
    this.registerStatusGauges(config.registry);
    this.writeFailures = new Counter({ name: 'distill_map_write_failures_total', help: 'Map writes that failed, by stage (write: a transaction\'s, reconcile: bringing the maps to the engine\'s state)', labelNames: ['stage'], registers: [config.registry] });
    this.finished = new Promise((resolve) => (this.finish = resolve));
  }

  /** Starts reading every stream (and the metrics server); resolves when every stream has ended. */
  async run(): Promise<void> {
    if (this.config.metricsAddr !== undefined) await this.listen(this.config.metricsAddr);
    for (const path of this.config.watch) this.open(path);
    if (this.config.exitAtEof && this.config.watch.length === 0) this.finish();
    return this.finished;
  }

  private open(path: string): void {
    const file = path === '-' ? undefined : createReadStream(path);
    const stream: Readable = file ?? process.stdin;
    stream.setEncoding('utf8');
    // A regular file's content at open is the initial objects at least: the first transaction waits until it is read.
    const initialBytes = file ? fileSize(path) : 0;
    let caughtUp = initialBytes === 0;
    if (!caughtUp) this.catchingUp++;
    const catchUp = (): void => {
      if (!caughtUp) (caughtUp = true), this.catchingUp--;
    };
    const parser = new WatchStreamParser(path === '-' ? '<stdin>' : path);
    let first = true;
    let done = false;
    const started = (): void => {
      if (first) (first = false), this.started++;
    };
    const ended = (): void => {
      started();
      catchUp();
      this.mirror.endStream(path);
      if (!done) (done = true), this.ended++;
      this.queueFlush();
    };
    this.streams.push(stream);
    stream.on('data', (data: string | Buffer) => {
      started();
      // A file stream ends at its end (it does not follow appends): only pipes and stdin need the quiet wait.
      if (initialBytes === 0) this.lastData = this.elapsed();
      else if (file && file.bytesRead >= initialBytes) catchUp();
      try {
        parser.push(typeof data === 'string' ? data : data.toString('utf8'), (item) => this.mirror.observe(item, path));
      } catch (e) {
        this.config.logger.error({ stream: path, error: (e as Error).message }, 'watch stream unreadable: it is closed, what it gave before stays');
        this.markUnreadable(path);
        if (stream !== process.stdin) stream.destroy();
        else stream.pause();
        ended();
        return;
      }
      this.queueFlush();
    });
    stream.on('end', () => {
      try {
        parser.end();
      } catch (e) {
        this.config.logger.error({ stream: path, error: (e as Error).message }, 'watch stream ended inside an object');
        this.markUnreadable(path);
      }
      if (!this.config.exitAtEof) {
        this.config.logger.warn({ stream: path }, 'watch stream ended: the agent keeps running on what it read, and no later change of these objects reaches it (restart the watch)');
        // An unreadable one is already a cause of 503 (`problems`).
        if (!this.unreadable.includes(path)) this.endedStreams.push(path);
      }
      ended();
    });
    stream.on('error', (e: Error) => {
      this.config.logger.error({ stream: path, error: e.message }, 'watch stream failed');
      this.markUnreadable(path);
      ended();
    });
  }

  /** Everything that arrived before the next turn of the event loop is one transaction. */
  private queueFlush(): void {
    if (this.flushQueued) return;
    this.flushQueued = true;
    setImmediate(() => {
      this.flushQueued = false;
      this.flush();
      // A flush that left work (a refused batch retried one object at a time) queued the next one.
      if (this.config.exitAtEof && this.ended === this.config.watch.length && !this.flushQueued) this.finish();
    });
  }

  /**
   * Applies what waits (pods whose deletion grace period is over included), then sets the timer
   * for the next such deadline. The first transaction waits for every stream's first data, its
   * Lists and the relist of a stream that lost events before giving any (a restart must see the whole state: it
   * reconciles the pinned maps; Cilium regenerates restored endpoints once every informer synced,
   * pkg/k8s/watchers/watcher.go `InitK8sSubsystem` "Waiting until all pre-existing resources have
   * been received", and exits when that times out). A stream that never relists, or one that became
   * unreadable first, keeps the pinned maps as they were (/healthz 503).
   */
  flush(): void {
    if (this.closed) return;
    this.applyPending();
    this.armDeadlineTimer();
    this.logStatus();
  }

  /** Gauges of what is not in force as given (`status`), read at each scrape; names in Cilium's style. */
  private registerStatusGauges(registry: Registry): void {
    const registers = [registry];
    const agent = this;
    new Gauge({ name: 'distill_identity_events_waiting', help: 'Identity events (--identities etcd) the engine refused, waiting for the next transaction (their numbers keep their previous reading)', registers, collect() { this.set(agent.identitiesWaiting); } });
    new Gauge({ name: 'distill_objects_refused', help: 'Objects the engine refused on their own and still lacks (it keeps their previous version): retried when they change or after the next commit', registers, collect() { this.set(agent.mirror.refusedObjectCount); } });
    new Gauge({ name: 'distill_identities_unreadable', help: 'External identity numbers read as the fail-closed stand-in (their value cannot be read): every local map denies them', registers, collect() { this.set(agent.engine.unreadableIdentities().length); } });
    new Gauge({ name: 'distill_cidr_groups_unreadable', help: 'CiliumCIDRGroup objects that cannot be read: group peers read as the fail-closed stand-in meanwhile', registers, collect() { this.set(agent.mirror.unreadableCidrGroups); } });
    new Gauge({ name: 'distill_watch_streams_ended', help: 'Watch streams that ended (without --exit-at-eof): the agent keeps what they gave, no later change of their objects reaches the maps', registers, collect() { this.set(agent.endedStreams.length); } });
  }

  /**
   * The agent's state (`AgentStatus`): what /healthz answers (503 with `notReady`, else 200, with `warnings` after
   * its `ok`) and `/healthz?format=json` gives whole.
   */
  status(): AgentStatus {
    const notReady = this.problems();
    const refused = this.mirror.refusedObjects();
    const unreadable = this.engine.unreadableIdentities();
    const groups = this.mirror.unreadableCidrGroups;
    const waiting = this.identitiesWaiting;
    const warnings: string[] = [];
    // Names are checked where they are read (policy/common.ts `checkObjectName`: a DNS subdomain), so no line break (2396).
    const some = (names: readonly (string | number)[]): string => names.slice(0, STATUS_NAMES).join(', ') + (names.length > STATUS_NAMES ? ', …' : '');
    if (waiting > 0) warnings.push(`${waiting} identity event(s) refused, waiting for the next transaction: their numbers keep their previous reading`);
    if (refused.length > 0) warnings.push(`${refused.length} object(s) refused, the engine keeps their previous version (retried when they change or after the next commit): ${some(refused)}`);
    if (unreadable.length > 0) warnings.push(`${unreadable.length} identity number(s) unreadable, read as the fail-closed stand-in (every local map denies them): ${some(unreadable)}`);
    if (groups > 0) warnings.push(`${groups} CiliumCIDRGroup(s) unreadable: policies naming groups read their peers as the fail-closed stand-in`);
    const ended = this.endedStreams;
    if (ended.length > 0) warnings.push(`${ended.length} watch stream(s) ended, the node keeps what they gave and no later change of their objects reaches the maps (restart the watch): ${some(ended)}`);
    return {
      state: notReady.length > 0 ? 'Failure' : warnings.length > 0 ? 'Warning' : 'Ok',
      notReady,
      warnings,
      identityEventsWaiting: waiting,
      objectsRefused: refused.length,
      refusedObjects: refused.slice(0, STATUS_NAMES),
      identitiesUnreadable: unreadable.length,
      unreadableIdentities: unreadable.slice(0, STATUS_NAMES),
      cidrGroupsUnreadable: groups,
      streamsEnded: ended.length,
      endedStreams: ended.slice(0, STATUS_NAMES),
    };
  }

  /**
   * A `status` line when the counts of what is not in force change (`warn` with each count, `info` once all are 0
   * again), as `cilium status` would show them: a log reader sees when the node started and stopped lagging its inputs.
   */
  private logStatus(): void {
    const waiting = this.identitiesWaiting;
    const unreadable = this.engine.unreadableIdentities();
    const groups = this.mirror.unreadableCidrGroups;
    const counts = `${waiting} ${this.mirror.refusedObjectCount} ${unreadable.length} ${groups} ${this.endedStreams.length}`;
    if (counts === this.loggedStatus) return;
    // A line the limiter drops is tried again at the next flush (the counts still differ from the last written).
    const suppressed = this.statusLimiter.take();
    if (suppressed === undefined) return;
    this.loggedStatus = counts;
    const refused = this.mirror.refusedObjects();
    const fields = { ...(suppressed > 0 ? { suppressed } : {}), identityEventsWaiting: waiting, objectsRefused: refused.length, refusedObjects: refused.slice(0, STATUS_NAMES), identitiesUnreadable: unreadable.length, unreadableIdentities: unreadable.slice(0, STATUS_NAMES), cidrGroupsUnreadable: groups, streamsEnded: this.endedStreams.length, endedStreams: this.endedStreams.slice(0, STATUS_NAMES) };
    if (counts === '0 0 0 0 0') this.config.logger.info(fields, 'status: every input is in force');
    else this.config.logger.warn(fields, 'status: some inputs are not in force as given (the node enforces what it last committed for them; /healthz?format=json)');
  }

  private applyPending(): void {
    if (!this.reconciled && this.started < this.config.watch.length) return;
    if (!this.reconciled && this.config.identitySource?.ready === false) return;
    // A restart's first transaction waits for the Lists being read too (as client-go's HasSynced waits for the first list).
    if (!this.reconciled && this.mirror.listsInProgress().length > 0) return;
    // And for the relist of a stream that lost events (an ERROR, a List cut short) before it ever completed a List,
    // and never for one that became unreadable (a prefix cut anywhere): they hold part of a view (1751-1753).
    if (!this.firstApplied && (this.unreadable.length > 0 || this.mirror.streamsWithoutView().length > 0)) return;
    if (!this.firstApplied && this.waitQuiet()) return;
    const batch = this.mirror.flush();
    // With local identities the engine numbers pods itself: the cluster's identities are not its input,
    // nor the CiliumEndpoints naming them. With etcd identities Cilium's ipcache takes the kvstore's ip
    // entries over a CiliumEndpoint's (pkg/source `AllowOverwrite`), which distill does not read: the
    // endpoints are left out too, and a pod without an id keeps the fail-closed 255 (finding 2225).
    const source = this.config.identitySource;
    const external = !source && (this.config.identities ?? 'local') === 'external';
    const k8s = external ? batch.events : batch.events.filter((e): e is EngineEvent => e.type !== 'upsertIdentity' && e.type !== 'deleteIdentity' && e.type !== 'upsertEndpoint' && e.type !== 'deleteEndpoint');
    const identities = [...(source?.peek() ?? [])];
    const events = [...identities, ...k8s];
    if (events.length === 0 && this.reconciled) return batch.commit();
    this.summary.events += events.length;
    // CRD identities: a batch that would admit a number whose CiliumIdentity narrows outside it (refused alone, or
    // left by the halving) is refused: retried in halves, an object alone sent again with that identity (findings
    // 2373, 2440; `MirrorBatch.stale`).
    const crdVeto = external && batch.stale.size > 0 ? staleVeto(batch.stale) : undefined;
    let outcome: ApplyOutcome | { readonly ok: true; readonly changes: null } = this.instrumented.apply(events, crdVeto);
    this.firstApplied = true;
    let acked = identities.length;
    if (!outcome.ok && source && identities.length > 0 && this.committed) {
      // The source's events wait at the head of every transaction until one commits: one that cannot (a stand-in
      // whose deny does not fit a full map, finding 2132) must not hold back the rest. The Kubernetes events go
      // alone, then the identity events one at a time up to the first refused, which waits for the next flush.
      this.summary.refusals++;
      outcome = k8s.length > 0 ? this.instrumented.apply(k8s, this.staleVetoOf(identities)) : { ok: true, changes: null };
      acked = 0;
    }
    if (!outcome.ok) {
      this.summary.refusals++;
      batch.rollback(crdVeto !== undefined && outcome.error instanceof TransactionVetoedError);
      if (!this.mirror.idle) this.queueFlush();
      return;
    }
    batch.commit();
    this.committed = true;
    if (!this.stackWarned) this.warnStackMismatch(k8s);
    if (acked > 0) {
      source?.ack(acked);
      if (this.identitiesWaiting > 0) this.config.logger.info('the identity events that waited are applied');
      this.identitiesWaiting = 0;
    }
    source?.observe(k8s);
    if (outcome.changes !== null) {
      if (events.length > 0) this.summary.transactions++;
      this.write(outcome.changes);
    }
    // A lone identity event without Kubernetes events was the refused transaction itself: not tried twice.
    if (source && acked === 0 && identities.length > 0) this.applyIdentitiesAlone(source, k8s.length > 0 || identities.length > 1 ? identities : []);
    if (this.config.warmUp && !this.warmedUp) this.warmUp();
    if (!this.mirror.idle) this.queueFlush();
  }

  /**
   * The Kubernetes events applied without the identity events that wait read those numbers under their previous
   * labels. A waiting event may narrow its number (a stand-in, denied by every map; a delete, after which its pods fall
   * to the fail-closed 255), so a transaction that would admit such a number more than now is refused (finding 2370):
   * one that upserts an entry that is no deny keyed on it or on identity 0 (which admits every number), deletes a deny
   * keyed on either, moves an address to it, widens the map of a local endpoint at it, or upserts an L7 row that may
   * reach it (review 28c). Both the old inputs and the new ones may deny what it would admit;
   * it waits for the identity events (the node then waits as it did before 2132, for these transactions only).
   * Numbers the engine does not know yet have no previous reading and are left out, and so are readable upserts (a
   * stand-in turning readable widens; Cilium never gives a number other labels). The cost is liveness: the mirror
   * retries a vetoed batch in halves, like every refused one (finding 2440), so the objects that open such a number wait
   * with it (a new local pod no policy selects, with its default allow, included), the rest commits.
   */
  private staleVetoOf(identities: readonly EngineEvent[]): TransactionVeto | undefined {
    const stale = new Set<number>();
    for (const e of identities) if (((e.type === 'upsertIdentity' && e.unreadable === true) || e.type === 'deleteIdentity') && this.engine.identityLabels(e.id) !== undefined) stale.add(e.id);
    return stale.size === 0 ? undefined : staleVeto(stale);
  }

  /**
   * The identity source's events after the transaction that held them at its head was refused (finding 2132): each
   * alone, in order, acked when committed; the first refused one and those after it stay with the source and head
   * the next flush's transaction. Until then the node applies the Kubernetes events under the number's previous
   * reading (its last readable labels), as the CRD mirror does with a refused object it retries alone: every
   * committed state is one of the inputs read in another order. That alone is not safe (finding 2370): a policy that
   * arrives while a stand-in waits reads the number under its previous labels and could admit it where both the old
   * inputs and the new ones (the stand-in, denied everywhere) deny it; `staleVeto` refuses those transactions.
   */
  private applyIdentitiesAlone(source: AgentIdentitySource, identities: readonly EngineEvent[]): void {
    let i = 0;
    for (; i < identities.length; i++) {
      const outcome = this.instrumented.apply([identities[i] as EngineEvent]);
      if (!outcome.ok) {
        this.summary.refusals++;
        break;
      }
      source.ack(1);
      this.summary.transactions++;
      this.write(outcome.changes);
    }
    // Said when the number waiting changes, not at every flush that retries them.
    const pending = source.peek().length;
    if (pending > 0 && pending !== this.identitiesWaiting) this.config.logger.warn({ pending }, 'identity events refused: they wait and are retried at the next transaction; other changes go on (their numbers keep their previous reading meanwhile)');
    this.identitiesWaiting = pending;
  }

  /**
   * A pod whose families do not fit the agent's stack mode: one with addresses of both families shows
   * the cluster runs dual-stack (Cilium's IPAM gives every pod one address per enabled family) while
   * this agent reads outside addresses single-stack (`--enable-ipv6` false, the default), so raw
   * `reserved:world` selectors admit outside addresses a dual-stack Cilium drops (attack finding 2103);
   * one with a single family while the agent runs dual-stack shows the reverse, where a raw
   * `reserved:world` deny denies nothing here and a raw `reserved:world-ipv4` allow admits what a
   * single-stack Cilium drops (review 26s, finding 2141). Said once.
   */
  private warnStackMismatch(events: readonly EngineEvent[]): void {
    const dual = this.engine.stack === 'dual';
    for (const e of events) {
      if (e.type !== 'upsertPod') continue;
      const families = new Set(podIps(e.pod).map((ip) => ip.family));
      if (families.size === (dual ? 2 : 1)) continue;
      this.stackWarned = true;
      const pod = `${e.pod.namespace}/${e.pod.name}`;
      if (dual) this.config.logger.warn({ pod }, 'a pod has addresses of one family but the agent runs dual-stack: if Cilium runs with only one of enable-ipv4 and enable-ipv6, drop --enable-ipv6=true (outside addresses are then reserved:world, not reserved:world-ipv4/-ipv6)');
      else this.config.logger.warn({ pod }, 'a pod has IPv4 and IPv6 addresses but the agent runs single-stack: if Cilium runs with enable-ipv6, pass --enable-ipv6=true (outside addresses are then reserved:world-ipv4/-ipv6, not reserved:world)');
      return;
    }
  }

  /**
   * Once, right after the first transaction's write and before any later event: the maps already
   * hold the cluster's policy, and the churn that follows runs on compiled paths. The scratch
   * engines share nothing with this agent's; a failure is logged and the agent goes on.
   */
  private warmUp(): void {
    this.warmedUp = true;
    const w = warmUpEngine({ policies: 'manifest' });
    new Gauge({ name: 'distill_warm_up_seconds', help: 'Time the start-up warm-up took (scratch engines running the churn paths once)', registers: [this.config.registry] }).set(w.ms / 1e3);
    if (w.error !== undefined) this.config.logger.warn({ ms: w.ms, error: w.error }, 'warm-up stopped early (the agent goes on)');
    else this.config.logger.info({ ms: w.ms, events: w.events }, 'warm-up: the churn paths ran once through scratch engines');
  }

  /** True (and a timer set) while streams that have not ended may still be printing their initial objects. */
  private waitQuiet(): boolean {
    if (this.quietTimer !== undefined) this.timers.clearTimeout(this.quietTimer);
    this.quietTimer = undefined;
    const quiet = this.config.initialQuietMs ?? 250;
    if (this.stopped || this.ended >= this.config.watch.length) return false;
    if (this.catchingUp > 0) return true;
    if (quiet <= 0) return false;
    const wait = this.lastData + quiet - this.elapsed();
    if (!(wait > 0)) return false;
    this.quietTimer = this.timers.setTimeout(() => {
      this.quietTimer = undefined;
      this.queueFlush();
    }, Math.ceil(wait));
    return true;
  }

  /** One timer, for the earliest deadline of a pod being deleted; when it fires, a flush removes the pod. */
  private armDeadlineTimer(): void {
    const at = this.stopped ? undefined : this.mirror.nextDeadline();
    if (this.deadlineTimer?.at === at) return;
    if (this.deadlineTimer) this.timers.clearTimeout(this.deadlineTimer.handle);
    this.deadlineTimer = undefined;
    if (at === undefined) return;
    // The mirror's clock, which decides when the pod goes: the raw one lags it after an NTP step back.
    const delay = Math.min(Math.max(0, at - this.mirror.clock()), MAX_TIMER_DELAY);
    const handle = this.timers.setTimeout(() => {
      this.deadlineTimer = undefined;
      this.queueFlush();
    }, delay);
    this.deadlineTimer = { at, handle };
  }

  /**
   * One transaction's writes, the ipcache's between the policy maps' phases. The first (and any
   * after a failed write) brings the pinned maps and the ipcache to the engine's state, writing
   * only the difference.
   */
  private write(cs: ChangeSet): void {
    const ipcache = this.config.ipcache;
    if (this.reconciled) {
      try {
        const created = new Set(cs.endpointsAdded);
        applyChangeSet(this.config.backend, cs, ipcache && (() => ipcache.apply(kernelIpcacheDeltas(cs.ipcache, this.engine.stack), localEndpointAddresses(this.engine, created))));
        return;
      } catch (e) {
        this.config.logger.error({ error: (e as Error).message }, 'writing the maps failed; reconciling them with the engine');
        this.countWriteFailure('write', e);
        this.reconciled = false;
      }
    }
    this.reconcileMaps();
  }

  /**
   * Brings the maps to the engine's state. A failure is logged, counted and retried with backoff
   * (every transaction meanwhile also retries): the agent keeps running on maps that are never
   * looser than the old or the new policy (the write plan stops before its loosen phase).
   */
  private reconcileMaps(): void {
    if (this.closed) return;
    const log = this.config.logger;
    const ipcache = this.config.ipcache;
    try {
      let ipcacheWrites = 0;
      const had = new Set(this.config.backend.endpoints());
      const local = (): LocalAddresses => localEndpointAddresses(this.engine, new Set(this.engine.endpoints().filter((ep) => !had.has(ep))));
      const stats = reconcile(this.engine, this.config.backend, ipcache && (() => void (ipcacheWrites = ipcache.sync(kernelIpcacheContent(this.engine), local()))));
      this.reconciled = true;
      this.lastWriteError = undefined;
      if (this.writeRetry) this.timers.clearTimeout(this.writeRetry.handle);
      this.writeRetry = undefined;
      log.info({ ...stats, ...(ipcache ? { ipcacheWrites } : {}) }, this.config.backend.kind === 'bpf' ? 'pinned maps reconciled' : 'maps reconciled');
      this.armFullReconcile();
    } catch (e) {
      this.countWriteFailure('reconcile', e);
      const failures = (this.writeRetry?.failures ?? 0) + 1;
      if (this.writeRetry) this.timers.clearTimeout(this.writeRetry.handle);
      const delay = Math.min(WRITE_RETRY_FIRST_MS * 2 ** Math.min(failures - 1, 30), WRITE_RETRY_MAX_MS);
      log.error({ error: (e as Error).message, failures, retryInMs: delay }, 'reconciling the maps with the engine failed; they keep what was written, the policy is not in force until a retry succeeds');
      const handle = this.stopped ? undefined : this.timers.setTimeout(() => this.reconcileMaps(), delay);
      this.writeRetry = { failures, handle };
    }
  }

  /** The next periodic full reconcile; unref'd, so it never keeps the process alive. */
  private armFullReconcile(): void {
    const ms = this.config.fullReconcileMs ?? 0;
    if (ms <= 0 || this.stopped || this.fullReconcileTimer !== undefined) return;
    const handle = this.timers.setTimeout(() => {
      this.fullReconcileTimer = undefined;
      if (!this.stopped) this.reconcileMaps();
    }, ms);
    (handle as { unref?: () => void } | undefined)?.unref?.();
    this.fullReconcileTimer = handle;
  }

  private countWriteFailure(stage: 'write' | 'reconcile', e: unknown): void {
    this.summary.writeFailures++;
    this.writeFailures.inc({ stage });
    this.lastWriteError = `${stage}: ${(e as Error).message}`;
  }

  /**
   * Why the maps do not hold the engine's policy, or undefined when they do (or nothing was
   * written yet). Set by a failed write until a reconcile succeeds: /healthz answers 503 with it,
   * as Cilium's endpoint health is not-ready while its regeneration fails, and `--exit-at-eof`
   * exits non-0.
   */
  get mapsBehind(): string | undefined {
    return this.reconciled ? undefined : this.lastWriteError;
  }

  private markUnreadable(path: string): void {
    this.summary.unreadableStreams++;
    this.unreadable.push(path);
  }

  /**
   * Why the agent is not ready (every reason, one per line), or undefined: the maps lag the engine (`mapsBehind`), a watch
   * stream became unreadable (the policy no longer follows it), or a stream reported an ERROR
   * and was not relisted since (events may be lost), or the identity source cannot reach etcd.
   * Cilium's /healthz fails likewise while its Kubernetes or kvstore connection is not ready
   * (daemon/cmd/status.go getStatus).
   */
  get notReady(): string | undefined {
    const problems = this.problems();
    return problems.length === 0 ? undefined : problems.join('\n');
  }

  /** Every reason the agent is not ready, most urgent first (/healthz names them all: attack-findings-19u, 1269). */
  private problems(): string[] {
    const problems: string[] = [];
    if (this.config.warmUp && !this.warmedUp) problems.push('starting: the first transaction and the warm-up have not run yet');
    const behind = this.mapsBehind;
    if (behind !== undefined) problems.push(`maps behind the policy after a failed write (${behind}); retrying`);
    if (this.unreadable.length > 0) problems.push(`watch stream unreadable (${[...new Set(this.unreadable)].join(', ')}): the policy no longer follows it`);
    const identities = this.config.identitySource?.problem;
    if (identities !== undefined) problems.push(identities);
    const lost = this.mirror.streamsAwaitingRelist();
    if (lost.length > 0) problems.push(`watch stream error not followed by a relist (or a List cut short) (${lost.join(', ')}): events may be lost`);
    const listing = this.mirror.listsInProgress();
    if (listing.length > 0) problems.push(`List being read (${listing.join(', ')}): not applied before its last page`);
    return problems;
  }

  private async listen(addr: string): Promise<void> {
    const m = /^(.*):(\d+)$/.exec(addr);
    if (!m) throw new Error(`--metrics-addr: "${addr}" is not HOST:PORT`);
    // Node's own words name neither the option nor, for a bad port, the address (finding 2303).
    if (Number(m[2]) > 65535) throw new Error(`--metrics-addr: "${addr}": port ${m[2]!} is above 65535`);
    const host = m[1]!.replace(/^\[(.*)\]$/, '$1');
    const server = createServer({ headersTimeout: HTTP_IDLE_MS, requestTimeout: HTTP_IDLE_MS, connectionsCheckingInterval: 1000 }, (req, res) => this.serve(req.url, res));
    // Idle connections held open would take the file descriptors the maps need (attack-findings-19w, 1141).
    server.maxConnections = HTTP_MAX_CONNECTIONS;
    server.timeout = HTTP_IDLE_MS;
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', (e: Error) => reject(new Error(`--metrics-addr: "${addr}": ${e.message}`)));
      server.listen(Number(m[2]), host, () => resolve());
    });
    const a = server.address() as AddressInfo;
    this.config.onListening?.(`${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`);
  }

  private serve(url: string | undefined, res: ServerResponse): void {
    if (url === '/healthz' || url === '/healthz?format=json') {
      const status = this.status();
      const code = status.notReady.length > 0 ? 503 : 200;
      if (url !== '/healthz') return void res.writeHead(code, { 'content-type': 'application/json' }).end(`${JSON.stringify(status)}\n`);
      if (code === 503) return void res.writeHead(503, { 'content-type': 'text/plain' }).end(`${status.notReady.join('\n')}\n`);
      // Ready and enforcing: kubelet reads the code alone; what waits follows the `ok` line (finding 2395).
      return void res.writeHead(200, { 'content-type': 'text/plain' }).end(['ok', ...status.warnings.map((w) => `warning: ${w}`)].join('\n') + '\n');
    }
    if (url !== '/metrics') return void res.writeHead(404).end();
    this.config.registry.metrics().then(
      (text) => res.writeHead(200, { 'content-type': this.config.registry.contentType }).end(text),
      (e: Error) => res.writeHead(500).end(e.message),
    );
  }

  /** Stops reading, applies what already arrived, closes the server and the backend (releasing the pin-dir lock). */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    for (const s of this.streams) if (s !== process.stdin) s.destroy();
    process.stdin.pause();
    this.flush();
    if (this.writeRetry) this.timers.clearTimeout(this.writeRetry.handle);
    if (this.fullReconcileTimer !== undefined) this.timers.clearTimeout(this.fullReconcileTimer);
    if (this.quietTimer !== undefined) this.timers.clearTimeout(this.quietTimer);
    if (this.server) await new Promise<void>((resolve) => this.server!.close(() => resolve()));
    this.closed = true;
    this.config.ipcache?.close();
    this.config.backend.close();
    this.finish();
  }
}
