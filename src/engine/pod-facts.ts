import type { Pod } from '../model/cluster.js';
import { IpKey, ipKeyOfText, ipTextOfKey } from './ip-key.js';
import { TombstoneMap } from './tombstone-map.js';

/** What the committed model reads of a pod's record: the pod, whether it is local, when it was written (none change in place). */
export interface PodFact {
  readonly pod: Pod;
  readonly local: boolean;
  readonly written: number;
}

/**
 * The pods and the owner of each pod IP: one table per fact. The engine's pod table (PodTable)
 * writes them as a transaction runs; the committed model (ModelStore) reads them between
 * transactions. A 30,000-entry string-keyed Map costs most on a fresh insert, and a pod made four
 * (docs/benchmarks.md, perf20 and perf21pods): now it makes two. The IP owners are keyed as
 * ip-key.ts keys (an IPv4 address as its int32: no string hashed or compared per lookup, perf23);
 * the methods still take and give the IP's text. A text that is no canonical dotted quad (IPv6, or
 * anything else) is its own key, so the table answers as one keyed by text. `ipKeyOfText(ip) ?? ip`
 * is written out at each use: a helper would be one more call per lookup in a cold start.
 *
 * So that the committed model stays readable after a transaction that did not go through, every
 * write while one is open first keeps the key's entry from before it (`rollback` restores them).
 * A transaction that began on empty tables (a cold start) keeps nothing: its rollback empties them.
 */
export class PodFacts<R extends PodFact> {
  private pods = new TombstoneMap<string, R>();
  private ips = new TombstoneMap<IpKey, R>();
  private open = false;
  /** The entries from before the transaction of the keys it wrote (undefined: absent); null when none is kept. */
  private podsBefore: Map<string, R | undefined> | null = null;
  private ipsBefore: Map<IpKey, R | undefined> | null = null;
  private beganEmpty = false;

  get inTransaction(): boolean {
    return this.open;
  }

  get podCount(): number {
    return this.pods.size;
  }

  pod(key: string): R | undefined {
    return this.pods.get(key);
  }

  /** The pod owning an IP in the ipcache: the last one written with it, until it leaves. */
  ownerOf(ip: string): R | undefined {
    return this.ips.get(ipKeyOfText(ip) ?? ip);
  }

  podEntries(): IterableIterator<[string, R]> {
    return this.pods.entries();
  }

  records(): IterableIterator<R> {
    return this.pods.values();
  }

  *ipOwners(): IterableIterator<[string, R]> {
    for (const [key, rec] of this.ips) yield [ipTextOfKey(key), rec];
  }

  begin(): void {
    this.open = true;
    this.beganEmpty = this.pods.size === 0 && this.ips.size === 0;
  }

  setPod(key: string, rec: R): void {
    if (this.open && !this.beganEmpty) keep((this.podsBefore ??= new Map()), this.pods, key);
    this.pods.set(key, rec);
  }

  deletePod(key: string): void {
    if (this.open && !this.beganEmpty) keep((this.podsBefore ??= new Map()), this.pods, key);
    this.pods.delete(key);
  }

  setOwner(ip: string, rec: R): void {
    const key = ipKeyOfText(ip) ?? ip;
    if (this.open && !this.beganEmpty) keep((this.ipsBefore ??= new Map()), this.ips, key);
    this.ips.set(key, rec);
  }

  deleteOwner(ip: string): void {
    const key = ipKeyOfText(ip) ?? ip;
    if (this.open && !this.beganEmpty) keep((this.ipsBefore ??= new Map()), this.ips, key);
    this.ips.delete(key);
  }

  /** The transaction went through: its writes are the committed facts. */
  commit(): void {
    this.close();
  }

  /**
   * After an undo log ran: whether every key the transaction wrote holds its pod as before (the
   * same pod and locality; for an IP, the same owning pod), i.e. the undo gave back the committed
   * facts (their records may be new ones). Either way the transaction is closed, but on false the
   * caller must `rollback`-and-rebuild: the kept entries are still there until `rollback` or `begin`.
   */
  undone(): boolean {
    const same =
      this.beganEmpty
        ? this.pods.size === 0 && this.ips.size === 0
        : sameFacts(this.podsBefore, this.pods, (a, b) => a.pod === b.pod && a.local === b.local) && sameFacts(this.ipsBefore, this.ips, (a, b) => a.pod === b.pod);
    if (same) this.close();
    return same;
  }

  /** Back to the committed facts (the records from before the transaction), after an internal error. */
  rollback(): void {
    if (this.beganEmpty) {
      this.pods = new TombstoneMap();
      this.ips = new TombstoneMap();
    } else {
      restore(this.podsBefore, this.pods);
      restore(this.ipsBefore, this.ips);
    }
    this.close();
  }

  /** Empty tables for a rebuild to fill (its caller read the committed facts first). */
  clear(): void {
    this.close();
    this.pods = new TombstoneMap();
    this.ips = new TombstoneMap();
  }

  private close(): void {
    this.open = false;
    this.beganEmpty = false;
    this.podsBefore = null;
    this.ipsBefore = null;
  }
}

function keep<K, R extends object>(before: Map<K, R | undefined>, table: TombstoneMap<K, R>, key: K): void {
  if (!before.has(key)) before.set(key, table.get(key));
}

function restore<K, R extends object>(before: Map<K, R | undefined> | null, table: TombstoneMap<K, R>): void {
  if (before === null) return;
  for (const [key, rec] of before) {
    if (rec === undefined) table.delete(key);
    else table.set(key, rec);
  }
}

function sameFacts<K, R extends object>(before: Map<K, R | undefined> | null, table: TombstoneMap<K, R>, same: (a: R, b: R) => boolean): boolean {
  if (before === null) return true;
  for (const [key, was] of before) {
    const now = table.get(key);
    if (was === undefined ? now !== undefined : now === undefined || !same(was, now)) return false;
  }
  return true;
}
