import { LookupResult, PolicyEntry, PolicyKey, policyKeyString } from '../model/mapstate.js';
import type { MapDelta } from './events.js';
import type { EngineStats } from './stats.js';

export function entryEquals(a: PolicyEntry | undefined, b: PolicyEntry | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  return a.deny === b.deny && a.proxyPort === b.proxyPort && a.precedence === b.precedence;
}

/**
 * The deltas turning one endpoint's map `before` into `after` (both keyed by policyKeyString):
 * an upsert per new or changed entry (with the value it replaces), a delete per vanished key.
 */
export function diffMaps(endpoint: string, before: ReadonlyMap<string, LookupResult>, after: ReadonlyMap<string, LookupResult>): MapDelta[] {
  const out: MapDelta[] = [];
  for (const [ks, r] of after) {
    const b = before.get(ks);
    if (!b || !entryEquals(b.entry, r.entry)) out.push({ endpoint, op: 'upsert', key: r.key, entry: r.entry, ...(b ? { previous: b.entry } : {}) });
  }
  for (const [ks, b] of before) if (!after.has(ks)) out.push({ endpoint, op: 'delete', key: b.key, entry: b.entry });
  return out;
}

/** Higher precedence wins; between redirects of equal precedence, the lower proxy port. */
function better(a: PolicyEntry, b: PolicyEntry): boolean {
  if (a.precedence !== b.precedence) return a.precedence > b.precedence;
  return a.proxyPort < b.proxyPort;
}

/** Entry objects are few and shared (allow, deny, one per proxy port): their tag part is cached. */
const entryCodes = new WeakMap<PolicyEntry, string>();
function entryCode(e: PolicyEntry): string {
  let c = entryCodes.get(e);
  if (c === undefined) entryCodes.set(e, (c = `${e.deny ? 1 : 0}|${e.proxyPort}|${e.precedence}`));
  return c;
}

interface Contribution {
  readonly source: string;
  readonly entry: PolicyEntry;
  count: number;
}

/** All the rules' wishes for one key, and their merge. */
interface RawEntry {
  readonly key: PolicyKey;
  readonly contribs: Map<string, Contribution>;
  merged: PolicyEntry;
}

/** One changed entry of a settled map state. */
export interface EntryChange {
  readonly keyString: string;
  readonly key: PolicyKey;
  readonly before: PolicyEntry | undefined;
  readonly after: PolicyEntry | undefined;
}

const portKeyOf = (k: PolicyKey): string => `${k.direction}/${k.protocol}/${k.port}/${k.portPrefixLen}`;

/** Does `outer` cover every packet `inner` covers (ignoring identity)? */
function covers(outer: PolicyKey, inner: PolicyKey): boolean {
  if (outer.direction !== inner.direction) return false;
  if (outer.protocol === 0) return true;
  if (outer.protocol !== inner.protocol || inner.portPrefixLen < outer.portPrefixLen) return false;
  const shift = 16 - outer.portPrefixLen;
  return outer.portPrefixLen === 0 || inner.port >> shift === outer.port >> shift;
}

function addTo<K, V>(m: Map<K, Set<V>>, k: K, v: V): void {
  let s = m.get(k);
  if (!s) m.set(k, (s = new Set()));
  s.add(v);
}

function removeFrom<K, V>(m: Map<K, Set<V>>, k: K, v: V): void {
  const s = m.get(k);
  if (!s) return;
  s.delete(v);
  if (s.size === 0) m.delete(k);
}

/**
 * One policy map's content, kept in two layers:
 * - raw: every key some rule contributes, with a refcount per (source, entry), merged by
 *   precedence;
 * - entries: what goes into the kernel map, the raw entries minus those the datapath can never
 *   select (Cilium's insertion rules): an entry covered by a broader-or-equal key of the same
 *   identity or of identity 0 with higher precedence, and an identity-specific entry equal to the
 *   identity-0 entry of the same key.
 * `entries` changes only in `settle()`, so until then it is the state before the transaction.
 */
export class MapState {
  private readonly raw = new Map<string, RawEntry>();
  readonly entries = new Map<string, LookupResult>();
  private readonly byIdentityDir = new Map<string, Set<string>>();
  private readonly byDirProto = new Map<string, Set<string>>();
  private readonly protocolsByDir = new Map<string, Set<number>>();
  private readonly byPortKey = new Map<string, Set<number>>();
  /** Raw keys changed since the last settle, with their merged entry before the first change. */
  private readonly dirty = new Map<string, { key: PolicyKey; before: PolicyEntry | undefined }>();

  constructor(private readonly stats: EngineStats) {}

  get isDirty(): boolean {
    return this.dirty.size > 0;
  }

  get rawSize(): number {
    return this.raw.size;
  }

  add(key: PolicyKey, source: string, entry: PolicyEntry): void {
    this.stats.mapEntriesVisited++;
    const ks = policyKeyString(key);
    const tag = `${source}|${entryCode(entry)}`;
    let r = this.raw.get(ks);
    if (!r) {
      this.markDirty(ks, key, undefined);
      r = { key, contribs: new Map(), merged: entry };
      this.raw.set(ks, r);
      this.index(ks, key);
    }
    const c = r.contribs.get(tag);
    if (c) {
      c.count++;
      return;
    }
    r.contribs.set(tag, { source, entry, count: 1 });
    if (r.contribs.size > 1 && better(entry, r.merged)) {
      this.markDirty(ks, key, r.merged);
      r.merged = entry;
    }
  }

  remove(key: PolicyKey, source: string, entry: PolicyEntry): void {
    this.stats.mapEntriesVisited++;
    const ks = policyKeyString(key);
    const tag = `${source}|${entryCode(entry)}`;
    const r = this.raw.get(ks);
    const c = r?.contribs.get(tag);
    if (!r || !c) throw new Error(`map state: removing a contribution that was never added (${ks} from ${source})`);
    if (--c.count > 0) return;
    r.contribs.delete(tag);
    this.markDirty(ks, key, r.merged);
    if (r.contribs.size === 0) {
      this.raw.delete(ks);
      this.unindex(ks, key);
      return;
    }
    let merged: PolicyEntry | undefined;
    for (const x of r.contribs.values()) if (merged === undefined || better(x.entry, merged)) merged = x.entry;
    r.merged = merged as PolicyEntry;
  }

  private markDirty(ks: string, key: PolicyKey, before: PolicyEntry | undefined): void {
    if (!this.dirty.has(ks)) this.dirty.set(ks, { key, before });
  }

  private index(ks: string, key: PolicyKey): void {
    addTo(this.byIdentityDir, `${key.identity}/${key.direction}`, ks);
    addTo(this.byDirProto, `${key.direction}/${key.protocol}`, ks);
    addTo(this.protocolsByDir, key.direction, key.protocol);
    addTo(this.byPortKey, portKeyOf(key), key.identity);
  }

  private unindex(ks: string, key: PolicyKey): void {
    removeFrom(this.byIdentityDir, `${key.identity}/${key.direction}`, ks);
    removeFrom(this.byDirProto, `${key.direction}/${key.protocol}`, ks);
    if (!this.byDirProto.has(`${key.direction}/${key.protocol}`)) removeFrom(this.protocolsByDir, key.direction, key.protocol);
    removeFrom(this.byPortKey, portKeyOf(key), key.identity);
  }

  /** Keys whose final entry may depend on raw key `key`. */
  private dependents(key: PolicyKey, ks: string, mayPrune: boolean, out: Map<string, PolicyKey>): void {
    out.set(ks, key);
    if (key.identity === 0) {
      for (const id of this.byPortKey.get(portKeyOf(key)) ?? []) {
        const k = { ...key, identity: id };
        out.set(policyKeyString(k), k);
      }
    }
    // Only an entry above plain-allow precedence can hide narrower entries.
    if (!mayPrune) return;
    const scan = (keys: Iterable<string> | undefined): void => {
      for (const other of keys ?? []) {
        this.stats.mapEntriesVisited++;
        const r = this.raw.get(other);
        if (r && covers(key, r.key)) out.set(other, r.key);
      }
    };
    if (key.identity !== 0) {
      scan(this.byIdentityDir.get(`${key.identity}/${key.direction}`));
    } else if (key.protocol !== 0) {
      scan(this.byDirProto.get(`${key.direction}/${key.protocol}`));
    } else {
      for (const p of this.protocolsByDir.get(key.direction) ?? []) scan(this.byDirProto.get(`${key.direction}/${p}`));
    }
  }

  /** The entry the kernel map should hold for a raw key, after Cilium's insertion rules. */
  private finalEntry(key: PolicyKey, r: RawEntry | undefined): PolicyEntry | undefined {
    if (!r) return undefined;
    const p = r.merged.precedence;
    const levels = key.identity === 0 ? [0] : [key.identity, 0];
    for (const id of levels) {
      // Broader-or-equal keys: the same protocol with shorter port prefixes, then any protocol.
      // Key strings are built directly (policyKeyString's format): this runs for every changed key.
      const head = `${id}/${key.direction}/`;
      if (key.protocol !== 0) {
        for (let len = id === key.identity ? key.portPrefixLen - 1 : key.portPrefixLen; len >= 0; len--) {
          const shift = 16 - len;
          const port = len === 0 ? 0 : (key.port >> shift) << shift;
          this.stats.mapEntriesVisited++;
          const rb = this.raw.get(`${head}${key.protocol}/${port}/${len}`);
          if (rb && rb.merged.precedence > p) return undefined;
        }
      }
      if (key.protocol !== 0 || id !== key.identity) {
        this.stats.mapEntriesVisited++;
        const rb = this.raw.get(`${head}0/0/0`);
        if (rb && rb.merged.precedence > p) return undefined;
      }
    }
    if (key.identity !== 0) {
      const r0 = this.raw.get(`0/${key.direction}/${key.protocol}/${key.port}/${key.portPrefixLen}`);
      if (r0 && entryEquals(r0.merged, r.merged)) return undefined;
    }
    return r.merged;
  }

  /** The contributions behind a raw key: which sources asked for what. */
  contributions(key: PolicyKey): { source: string; entry: PolicyEntry }[] {
    const r = this.raw.get(policyKeyString(key));
    if (!r) return [];
    return [...r.contribs.values()].map((c) => ({ source: c.source, entry: c.entry }));
  }

  /** For each source, how many kernel-layer entries it is a winning contributor of. */
  entriesBySource(): Map<string, number> {
    const out = new Map<string, number>();
    for (const { key, entry } of this.entries.values()) {
      for (const c of this.contributions(key)) {
        if (entryEquals(c.entry, entry)) out.set(c.source, (out.get(c.source) ?? 0) + 1);
      }
    }
    return out;
  }

  /** Brings `entries` up to date with the raw layer and returns exactly what changed. */
  settle(): EntryChange[] {
    if (this.dirty.size === 0) return [];
    this.stats.mapStateUpdates++;
    const affected = new Map<string, PolicyKey>();
    for (const [ks, d] of this.dirty) {
      const now = this.raw.get(ks)?.merged;
      if (entryEquals(now, d.before)) continue;
      const mayPrune = Math.max(now?.precedence ?? 0, d.before?.precedence ?? 0) > 1;
      this.dependents(d.key, ks, mayPrune, affected);
    }
    this.dirty.clear();
    const changes: EntryChange[] = [];
    for (const [ks, key] of affected) {
      const before = this.entries.get(ks)?.entry;
      const after = this.finalEntry(key, this.raw.get(ks));
      if (entryEquals(before, after)) continue;
      if (after) this.entries.set(ks, { key, entry: after });
      else this.entries.delete(ks);
      changes.push({ keyString: ks, key, before, after });
    }
    return changes;
  }
}
