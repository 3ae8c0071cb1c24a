import type { L7Parser } from '../model/l7.js';
import { l7PolicyKey } from '../model/l7.js';
import { maskedPortEnd, type LookupResult, type PolicyEntry, type PolicyKey } from '../model/policy-map.js';
import { policyRefKey } from '../model/rules.js';
import type { EngineContext } from './context.js';
import { originsOf } from './contribution.js';
import { ChangeSet, IpcacheDelta, L7Delta, L7PortRange, MapCapacityError, MapDelta, RedirectInfo } from './events.js';
import { keyRedirect, L7Change, L7Row, Redirect, redirectId } from './l7-tables.js';
import { diffMaps, mapDelta } from './map-deltas.js';
import type { EntryChange, SettleResult } from './map-state.js';
import { ProxyPortAllocator, ProxyPortsExhaustedError } from './proxy-ports.js';
import { l7ParserConflict, L7ParserConflictError, PARSER_OF_CODE } from './rule-units.js';
import type { SharedMapState, SharedMaps } from './shared-maps.js';

/** What commit produces: the change set (without work counters) and what the refusal checks need. */
export type CommitResult = Omit<ChangeSet, 'work'> & { readonly touched: ReadonlySet<string>; readonly exhausted: ProxyPortsExhaustedError | null };

/** A map-state entry as the endpoint's kernel map holds it: redirects get the endpoint's proxy port. */
export function concreteEntry(ports: ProxyPortAllocator, endpoint: string, key: PolicyKey, e: PolicyEntry, strict = true): PolicyEntry {
  if (e.proxyPort === 0) return e;
  const parser = PARSER_OF_CODE[e.proxyPort] as L7Parser;
  const port = ports.portOf(endpoint, redirectId(keyRedirect(key, parser)));
  // A contribution whose redirect no kernel entry uses (it lost to another entry) has no port.
  if (port === undefined && !strict) return e;
  if (port === undefined) throw new Error(`internal: endpoint ${endpoint} has no proxy port for ${parser} on ${key.direction} ${key.protocol}/${key.port}`);
  return { deny: false, proxyPort: port, precedence: e.precedence };
}

export function redirectInfo(ports: ProxyPortAllocator, endpoint: string, r: Redirect): RedirectInfo {
  const { portPrefixLen, ...rest } = r;
  return { ...rest, ...(portPrefixLen === 16 ? {} : { portPrefixLen }), proxyPort: ports.portOf(endpoint, redirectId(r)) ?? 0 };
}

/** A row's narrower port range, as its JSON carries it (nothing for a row of the whole redirect). */
export function rowPortRange(row: L7Row): { portRange?: L7PortRange } {
  const r = row.range;
  return r === undefined ? {} : { portRange: { port: r.port, endPort: maskedPortEnd(r.port, r.portPrefixLen) } };
}

/** What a commit with nothing to settle and no endpoint moved shares (never written to). */
const NONE: readonly never[] = Object.freeze([]);
const NO_ENDPOINTS: ReadonlySet<string> = new Set<string>();

const NO_MOVES: ReadonlyMap<string, SharedMapState | null> = new Map();
const NO_PORT_CHANGES: { release: { endpoint: string; redirect: string }[]; exhausted: null } = { release: [], exhausted: null };

const byPrefix = (a: IpcacheDelta, b: IpcacheDelta): number => (a.prefix < b.prefix ? -1 : a.prefix > b.prefix ? 1 : 0);

/**
 * A cold start's journal holds a prefix once per touch (IpcacheJournal.bulk): sorted, the repeats
 * are neighbours and equal (no `previous`, the identity now), so the first of each run stays.
 */
function withoutRepeats(sorted: IpcacheDelta[]): IpcacheDelta[] {
  let n = 0;
  for (let i = 0; i < sorted.length; i++) {
    const d = sorted[i] as IpcacheDelta;
    if (n > 0 && (sorted[n - 1] as IpcacheDelta).prefix === d.prefix) continue;
    sorted[n++] = d;
  }
  sorted.length = n;
  return sorted;
}

/** One endpoint's deltas of the running commit (a class: a nested literal is built by the runtime in code that runs rarely). */
class EndpointDeltas {
  readonly upserts: MapDelta[] = [];
  readonly deletes: MapDelta[] = [];
  readonly l7: L7Delta[] = [];
}

/**
 * The commit stage: settle the dirty map states, bring the proxy ports of the endpoints whose
 * redirects changed in line, and turn the settled changes into per-endpoint deltas.
 *
 * Contract: consumes the transaction's dirty map states and moved endpoints (EngineContext);
 * emits the change set. New proxy ports are allocated before any delta is emitted and released
 * ones are freed after, so a delta's `previous` still carries its old port. It never emits an
 * unchanged entry; an endpoint that changed map state is diffed old-before against new-now.
 */
export class Commit {
  /** The running commit's deltas per endpoint (one Map for the stage's life: emptied at each commit). */
  private readonly out = new Map<string, EndpointDeltas>();

  constructor(
    private readonly ctx: EngineContext,
    private readonly maps: SharedMaps,
    private readonly ports: ProxyPortAllocator,
  ) {}

  run(): CommitResult {
    // Most transactions (a remote pod no rule selects) touch no map state: nothing to allocate.
    if (this.ctx.dirtyMaps.size === 0 && this.ctx.movedEndpoints.size === 0) {
      return { deltas: NONE, l7Deltas: NONE, ipcache: this.ipcacheDeltas(), endpointsAdded: NONE, endpointsRemoved: NONE, touched: NO_ENDPOINTS, exhausted: null };
    }
    if (this.out.size > 0) this.out.clear();
    const settled = new Map<SharedMapState, SettleResult>();
    for (const m of this.ctx.dirtyMaps) {
      if (this.ctx.faultHook) this.ctx.fault('settle');
      settled.set(m, m.state.settle());
    }
    this.ctx.dirtyMaps.clear();
    const moved = this.movedEndpoints();
    const ports = this.allocatePorts(moved, settled);
    if (ports.exhausted) return { deltas: [], l7Deltas: [], ipcache: [], endpointsAdded: [], endpointsRemoved: [], touched: new Set(), exhausted: ports.exhausted };

    const added: string[] = [];
    const removed: string[] = [];
    for (const [endpoint, was] of moved) {
      const now = this.maps.byEndpoint.get(endpoint) ?? null;
      if (now === null) {
        if (was !== null) removed.push(endpoint);
        continue;
      }
      if (was === null) added.push(endpoint);
      this.emitMove(endpoint, was, was ? settled.get(was) : undefined, now);
    }
    for (const m of settled.keys()) {
      const changes = settled.get(m) as SettleResult;
      if (changes.entries.length === 0 && changes.l7.length === 0) continue;
      for (const endpoint of m.endpoints) {
        if (moved.has(endpoint)) continue;
        for (const c of changes.entries) this.emit(endpoint, c.key, c.before, c.after);
        for (const c of changes.l7) this.emitL7(endpoint, c.before, c.after);
      }
    }
    if (this.ctx.faultHook) this.ctx.fault('releasePorts');
    for (const r of ports.release) this.ports.release(r.endpoint, r.redirect);
    const { deltas, l7Deltas, touched } = this.collect();
    return { deltas, l7Deltas, ipcache: this.ipcacheDeltas(), endpointsAdded: added.sort(), endpointsRemoved: removed.sort(), touched, exhausted: null };
  }

  /** The touched ipcache prefixes whose identity changed, by prefix text. */
  private ipcacheDeltas(): IpcacheDelta[] {
    if (this.ctx.ipcacheTouched.size === 0) return [];
    const out: IpcacheDelta[] = [];
    const touched = this.ctx.ipcacheTouched;
    const repeats = touched.bulk;
    for (let i = 0; i < touched.size; i++) {
      const t = touched.at(i);
      const now = t.host ? this.ctx.ipcacheHostAt(t.host) : this.ctx.ipcachePrefixAt(t.cidr);
      const before = t.before;
      if (now === before) continue;
      const prefix = t.host ? `${t.host.text}/${t.host.family === 'ipv4' ? 32 : 128}` : t.cidr.text;
      // One literal of one shape (`previous` always present, undefined when none): a cold start emits
      // only fresh upserts, so a second literal or shape is first met in the churn and deoptimises
      // this function and `byPrefix` (perf19c). JSON output is unchanged (undefined is not written).
      const gone = now === undefined;
      out.push({ op: gone ? 'delete' : 'upsert', prefix, identity: gone ? (before as number) : now, previous: gone ? undefined : before });
    }
    this.ctx.ipcacheTouched.clear();
    if (out.length > 1) out.sort(byPrefix);
    return repeats ? withoutRepeats(out) : out;
  }

  /** Endpoints whose map state really changed in this transaction → their map state before it. */
  private movedEndpoints(): ReadonlyMap<string, SharedMapState | null> {
    if (this.ctx.movedEndpoints.size === 0) return NO_MOVES;
    const moved = new Map<string, SharedMapState | null>();
    for (const [endpoint, was] of this.ctx.movedEndpoints) if (was !== (this.maps.byEndpoint.get(endpoint) ?? null)) moved.set(endpoint, was);
    this.ctx.movedEndpoints.clear();
    return moved;
  }

  /**
   * Proxy ports for the endpoints that moved and those whose map state's redirects changed: every
   * redirect gets a port now; ports of gone redirects are returned to be released after the deltas.
   */
  private allocatePorts(
    moved: ReadonlyMap<string, SharedMapState | null>,
    settled: ReadonlyMap<SharedMapState, SettleResult>,
  ): { release: { endpoint: string; redirect: string }[]; exhausted: ProxyPortsExhaustedError | null } {
    let endpoints: Set<string> | null = moved.size > 0 ? new Set(moved.keys()) : null;
    for (const m of settled.keys()) if ((settled.get(m) as SettleResult).redirectsChanged) for (const ep of m.endpoints) (endpoints ??= new Set()).add(ep);
    if (endpoints === null) return NO_PORT_CHANGES;
    const release: { endpoint: string; redirect: string }[] = [];
    let exhausted: ProxyPortsExhaustedError | null = null;
    // By endpoint, then redirect: the Sets' insertion order follows the undo path's re-insertions after a
    // refused or failed transaction, and new ports go lowest first, so that order would decide which
    // endpoint gets which port (finding 2151: a twin that saw no refusal must get the same ports).
    const order = endpoints.size > 1 ? [...endpoints].sort() : endpoints;
    for (const endpoint of order) {
      const m = this.maps.byEndpoint.get(endpoint);
      const want = new Set(m ? m.state.l7.redirects() : []);
      for (const id of this.ports.redirectsOf(endpoint).keys()) if (!want.has(id)) release.push({ endpoint, redirect: id });
      for (const id of want.size > 1 ? [...want].sort() : want) {
        try {
          if (this.ports.portOf(endpoint, id) === undefined) this.ctx.stats.proxyPortsAllocated++;
          this.ports.allocate(endpoint, id);
        } catch (e) {
          if (!(e instanceof ProxyPortsExhaustedError)) throw e;
          exhausted ??= e;
        }
      }
    }
    return { release, exhausted };
  }

  private deltasOf(endpoint: string): EndpointDeltas {
    let o = this.out.get(endpoint);
    if (!o) this.out.set(endpoint, (o = new EndpointDeltas()));
    return o;
  }

  private emit(endpoint: string, key: PolicyKey, before: PolicyEntry | undefined, after: PolicyEntry | undefined): void {
    if (this.ctx.faultHook) this.ctx.fault('emit');
    const b = before === undefined || before.proxyPort === 0 ? before : concreteEntry(this.ports, endpoint, key, before);
    const a = after === undefined || after.proxyPort === 0 ? after : concreteEntry(this.ports, endpoint, key, after);
    if (a === undefined) {
      if (b !== undefined) this.deltasOf(endpoint).deletes.push(mapDelta(endpoint, 'delete', key, b, undefined));
    } else this.deltasOf(endpoint).upserts.push(mapDelta(endpoint, 'upsert', key, a, b));
  }

  private emitL7(endpoint: string, before: L7Row | undefined, after: L7Row | undefined): void {
    const row = after ?? before;
    if (!row) return;
    const redirect = redirectInfo(this.ports, endpoint, row.redirect);
    if (after) this.deltasOf(endpoint).l7.push({ endpoint, op: 'upsert', redirect, peer: row.peer, policy: after.policy, ...rowPortRange(row), ...(before ? { previous: before.policy } : {}) });
    else this.deltasOf(endpoint).l7.push({ endpoint, op: 'delete', redirect, peer: row.peer, policy: row.policy, ...rowPortRange(row) });
  }

  /** An endpoint that changed map state: old map state's pre-transaction content → new one's current content. */
  private emitMove(endpoint: string, was: SharedMapState | null, wasChanges: SettleResult | undefined, now: SharedMapState): void {
    if (was === null) {
      // A new endpoint's entries go through `emit`, so the churn's rare deltas run code the cold start ran.
      this.ctx.stats.mapEntriesVisited += now.state.entries.size;
      for (const r of now.state.entries.values()) this.emit(endpoint, r.key, undefined, r.entry);
    } else {
      for (const d of this.diffMapStates(endpoint, was, wasChanges?.entries ?? [], now)) {
        if (d.op === 'upsert') this.deltasOf(endpoint).upserts.push(d);
        else this.deltasOf(endpoint).deletes.push(d);
      }
    }
    const beforeRows = new Map<string, L7Row>(was ? was.state.l7.rows : []);
    for (const c of wasChanges?.l7 ?? ([] as readonly L7Change[])) {
      if (c.before) beforeRows.set(c.rowKey, c.before);
      else beforeRows.delete(c.rowKey);
    }
    for (const [rk, row] of now.state.l7.rows) {
      const b = beforeRows.get(rk);
      if (!b || l7PolicyKey(b.policy) !== l7PolicyKey(row.policy)) this.emitL7(endpoint, b, row);
    }
    for (const [rk, b] of beforeRows) if (!now.state.l7.rows.has(rk)) this.emitL7(endpoint, b, undefined);
  }

  /** Deltas turning the old map state's pre-transaction content into the new one's current content. */
  private diffMapStates(endpoint: string, was: SharedMapState, wasChanges: readonly EntryChange[], now: SharedMapState): MapDelta[] {
    const before = new Map<string, LookupResult>(was.state.entries);
    for (const c of wasChanges) {
      if (c.before) before.set(c.keyString, { key: c.key, entry: c.before });
      else before.delete(c.keyString);
    }
    this.ctx.stats.mapEntriesVisited += before.size + now.state.entries.size;
    // For one endpoint a redirect has one port, so symbolic entries differ iff their ports do.
    return diffMaps(endpoint, before, now.state.entries, (key, e) => concreteEntry(this.ports, endpoint, key, e));
  }

  /** Per endpoint in order: upserts, then deletes (the write plan orders across endpoints). */
  private collect(): { deltas: MapDelta[]; l7Deltas: L7Delta[]; touched: Set<string> } {
    const deltas: MapDelta[] = [];
    const l7Deltas: L7Delta[] = [];
    const endpoints = [...this.out.keys()];
    if (endpoints.length > 1) endpoints.sort();
    for (const endpoint of endpoints) {
      const o = this.out.get(endpoint) as EndpointDeltas;
      for (const d of o.upserts) deltas.push(d);
      for (const d of o.deletes) deltas.push(d);
      for (const d of o.l7) l7Deltas.push(d);
    }
    const touched = new Set(endpoints);
    this.out.clear();
    return { deltas, l7Deltas, touched };
  }
}

/** The first touched endpoint whose map would exceed its capacity (the fullest), with its top contributors. */
export function findOverflow(maps: SharedMaps, endpoints: Iterable<string>, capacity: number): MapCapacityError | null {
  let worst: { endpoint: string; map: SharedMapState } | null = null;
  for (const endpoint of endpoints) {
    const m = maps.byEndpoint.get(endpoint);
    if (!m || m.state.entries.size <= capacity) continue;
    if (!worst || m.state.entries.size > worst.map.state.entries.size) worst = { endpoint, map: m };
  }
  if (!worst) return null;
  const top = [...worst.map.state.entriesByContribution()]
    .filter(([c]) => c.origin !== null)
    .flatMap(([c, entries]) => originsOf(c).map((o) => ({ rule: o ? `${policyRefKey(o.policy)} ${o.path}` : c.label, entries })))
    .sort((a, b) => b.entries - a.entries)
    .slice(0, 3);
  return new MapCapacityError(worst.endpoint, worst.map.state.entries.size, capacity, top);
}

/** A local identity that adopted rules in this transaction must not mix L7 parsers on a port. */
export function findL7Conflict(ctx: EngineContext): L7ParserConflictError | null {
  for (const local of ctx.adoptedL7) {
    const endpoint = [...local.maps.values()].flatMap((m) => [...m.endpoints]).sort()[0];
    const conflict = endpoint === undefined ? null : l7ParserConflict(endpoint, [...local.units].map((a) => a.unit));
    if (conflict) return conflict;
  }
  return null;
}
