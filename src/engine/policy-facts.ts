import type { Policy } from '../model/rules.js';
import { TombstoneMap } from './tombstone-map.js';

/** What the committed model reads of a policy's record: the policy as its event gave it (API server stand-ins and all). */
export interface PolicyFact {
  given: Policy;
}

/** A record as a transaction found it, with the policy it held then (a record's `given` changes in place). */
interface Kept<R> {
  readonly rec: R;
  readonly given: Policy;
}

/**
 * The stored policies by key: one table, which the resolver writes as a transaction runs and the
 * committed model (ModelStore) reads between transactions. A policy made two fresh inserts into
 * 30,000-entry string-keyed tables, the resolver's and the model's (docs/benchmarks.md, perf23 and
 * perf24): now it makes one. As PodFacts does for the pods, every write while a transaction is open
 * first keeps the key's record and policy from before it, so the committed model stays readable
 * after a transaction that did not go through (`rollback`); a transaction that began on an empty
 * table (a cold start) keeps nothing and rolls back to empty.
 */
export class PolicyFacts<R extends PolicyFact> {
  private table = new TombstoneMap<string, R>();
  private open = false;
  private beganEmpty = false;
  /** The records from before the transaction of the keys it wrote (undefined: absent); null when none is kept. */
  private before: Map<string, Kept<R> | undefined> | null = null;

  get inTransaction(): boolean {
    return this.open;
  }

  get size(): number {
    return this.table.size;
  }

  get(key: string): R | undefined {
    return this.table.get(key);
  }

  entries(): IterableIterator<[string, R]> {
    return this.table.entries();
  }

  records(): IterableIterator<R> {
    return this.table.values();
  }

  begin(): void {
    this.open = true;
    this.beganEmpty = this.table.size === 0;
  }

  /** A key without a record gets one. */
  add(key: string, rec: R): void {
    // keep's own first test, inline: a cold start (a transaction on an empty table) keeps nothing, so makes no call.
    if (this.open && !this.beganEmpty) this.keep(key);
    this.table.set(key, rec);
  }

  /** The key's record now stands for `given` (its resolver state is the caller's). */
  setGiven(key: string, rec: R, given: Policy): void {
    this.keep(key);
    rec.given = given;
  }

  delete(key: string): void {
    this.keep(key);
    this.table.delete(key);
  }

  /** The transaction went through: its writes are the committed policies. */
  commit(): void {
    this.close();
  }

  /**
   * After an undo log ran: whether every key the transaction wrote holds the policy it held before
   * (the same object; the record may be a new one), i.e. the undo gave back the committed policies.
   * On true the transaction is closed; on false the caller must `rollback`-and-rebuild.
   */
  undone(): boolean {
    const same = this.beganEmpty ? this.table.size === 0 : this.sameAsBefore();
    if (same) this.close();
    return same;
  }

  /** Back to the committed policies (the records from before the transaction), after an internal error. */
  rollback(): void {
    if (this.beganEmpty) this.table = new TombstoneMap();
    else if (this.before !== null) {
      for (const [key, was] of this.before) {
        if (was === undefined) this.table.delete(key);
        else {
          was.rec.given = was.given;
          this.table.set(key, was.rec);
        }
      }
    }
    this.close();
  }

  /** An empty table for a rebuild to fill (its caller read the committed policies first). */
  clear(): void {
    this.close();
    this.table = new TombstoneMap();
  }

  private keep(key: string): void {
    if (!this.open || this.beganEmpty) return;
    const before = (this.before ??= new Map());
    if (before.has(key)) return;
    const rec = this.table.get(key);
    before.set(key, rec === undefined ? undefined : { rec, given: rec.given });
  }

  private sameAsBefore(): boolean {
    if (this.before === null) return true;
    for (const [key, was] of this.before) {
      const now = this.table.get(key);
      if (was === undefined ? now !== undefined : now === undefined || now.given !== was.given) return false;
    }
    return true;
  }

  private close(): void {
    this.open = false;
    this.beganEmpty = false;
    this.before = null;
  }
}
