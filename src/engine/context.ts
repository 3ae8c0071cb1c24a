import type { Cidr, IpAddress } from '../model/cidr.js';
import type { IdentityId } from '../model/identity.js';
import type { IdentityRecord } from './identities.js';
import type { IpcacheView } from './ipcache-view.js';
import { type NamedEgress, RESOLVES_NOTHING } from './contribution.js';
import { failClosedNodeCover, type NodeCover } from './tiers.js';
import type { LocalIdentity, SharedMapState } from './shared-maps.js';
import type { EngineStats } from './stats.js';

/**
 * An ipcache prefix touched in a transaction: a host prefix (`host`) or a shorter one (`cidr`).
 * `key`: the address text for host prefixes (a pod IP's text is kept with the pod, so no prefix is
 * built per event), the prefix text for the others.
 */
type IpcacheTouch =
  | { readonly key: string; readonly host: IpAddress; readonly cidr: null; readonly before: IdentityId | undefined }
  | { readonly key: string; readonly host: null; readonly cidr: Cidr; readonly before: IdentityId | undefined };

/**
 * The ipcache prefixes one transaction touched, each once, in touch order. Most transactions touch
 * one or two: a scan of a reused array is cheaper for them than a Map (whose `clear` allocates a
 * new table each time); past `SCAN_LIMIT` a Map indexes them.
 */
class IpcacheJournal {
  private static readonly SCAN_LIMIT = 16;
  private readonly touches: IpcacheTouch[] = [];
  private n = 0;
  private index: Map<string, IpcacheTouch> | null = null;

  /**
   * Set for a cold start (a transaction on an empty model): every prefix had no identity before it,
   * so no `before` is looked up and touches are not deduplicated here (`has` says no, no index is
   * built); commit drops the repeats. Saves three lookups in 30,000-entry tables per pod IP.
   */
  bulk = false;

  get size(): number {
    return this.n;
  }

  has(key: string): boolean {
    if (this.bulk) return false;
    if (this.index) return this.index.has(key);
    for (let i = 0; i < this.n; i++) if ((this.touches[i] as IpcacheTouch).key === key) return true;
    return false;
  }

  /** Records a touch whose key `has` just said is new. */
  add(t: IpcacheTouch): void {
    this.touches[this.n++] = t;
    if (this.index) this.index.set(t.key, t);
    else if (this.n > IpcacheJournal.SCAN_LIMIT && !this.bulk) this.index = new Map(this.touches.slice(0, this.n).map((x) => [x.key, x]));
  }

  at(i: number): IpcacheTouch {
    return this.touches[i] as IpcacheTouch;
  }

  clear(): void {
    if (this.n > IpcacheJournal.SCAN_LIMIT) this.touches.length = 0;
    else this.touches.fill(NO_TOUCH, 0, this.n);
    this.n = 0;
    this.index = null;
  }
}

/** What a journal slot holds once cleared (so it keeps no address alive). */
const NO_TOUCH: IpcacheTouch = { key: '', host: null, cidr: { family: 'ipv4', network: 0n, prefixLength: 0, text: '' }, before: undefined };

/**
 * What every stage of one engine shares: the work counters, the fault-injection hook, and the
 * bookkeeping of the running transaction (what commit must look at, and how to undo it).
 */
export class EngineContext {
  /** Undo closures of the running transaction, newest last; null outside `apply` (and while rebuilding). */
  undoLog: (() => void)[] | null = null;
  /** Identities whose last user left in this transaction: freed at commit unless someone takes them back. */
  readonly pendingRelease = new Set<IdentityRecord>();
  /** Identities freed by this transaction's commit (by label-set key), revived if it is rolled back. */
  readonly freed = new Map<string, IdentityRecord>();
  /** Map states touched in this transaction: commit settles exactly these. */
  readonly dirtyMaps = new Set<SharedMapState>();
  /** Endpoints whose map state changed in this transaction → their map state before it (null: none). */
  readonly movedEndpoints = new Map<string, SharedMapState | null>();
  /** Local identities that adopted a rule with L7 rules in this transaction (checked for parser conflicts). */
  readonly adoptedL7 = new Set<LocalIdentity>();
  /** ipcache prefixes touched in this transaction, with the identity each had before. */
  readonly ipcacheTouched = new IpcacheJournal();
  /** Where the ipcache's current identities are read (wired by the engine with each set of stages; null before). */
  ipcache: IpcacheView | null = null;
  /** Which node roles' addresses `cidrs` hold, all or some (tiers.ts `NodeCover`; unwired: fail closed). */
  nodeCover: NodeCover = failClosedNodeCover;
  /** Where an egress named filter's port is (named-ports.ts `resolveNamedNodeWide`, whatever the peer; unwired: nowhere). */
  namedEgress: NamedEgress = RESOLVES_NOTHING;
  /** While rebuilding after an internal error, identities keep the numbers the allocator holds. */
  adopting = false;

  constructor(
    readonly stats: EngineStats,
    /** Test-only: called at points inside a transaction, to inject faults. */
    readonly faultHook: ((point: string) => void) | undefined,
  ) {}

  /**
   * A fault-injection point; while rebuilding, points are named `rebuild:<point>`. Call sites test
   * `faultHook` first: they sit on the per-event path, where a call per contribution shows.
   */
  fault(point: string): void {
    this.faultHook?.(this.adopting ? `rebuild:${point}` : point);
  }

  /** Records how to undo a mutation (outside a transaction, nothing is recorded). */
  onUndo(fn: () => void): void {
    this.undoLog?.push(fn);
  }

  /** The ipcache's current identity for an address's host prefix (ipcache-view.ts `hostAt`). */
  ipcacheHostAt(ip: IpAddress): IdentityId | undefined {
    return this.ipcache?.hostAt(ip);
  }

  /** The ipcache's current identity for an exact prefix shorter than a host prefix (CIDR identities). */
  ipcachePrefixAt(prefix: Cidr): IdentityId | undefined {
    return this.ipcache?.prefixAt(prefix);
  }

  /** Called before an ipcache prefix changes (a CIDR identity): commit diffs it. */
  touchIpcache(prefix: Cidr): void {
    if (prefix.prefixLength === (prefix.family === 'ipv4' ? 32 : 128)) {
      const text = prefix.text.slice(0, prefix.text.lastIndexOf('/'));
      return this.touchIpcacheHost({ family: prefix.family, value: prefix.network, text });
    }
    const j = this.ipcacheTouched;
    if (!j.has(prefix.text)) j.add({ key: prefix.text, host: null, cidr: prefix, before: j.bulk ? undefined : this.ipcachePrefixAt(prefix) });
  }

  /** Called before an address's host prefix changes (a pod IP, a learnt IP). */
  touchIpcacheHost(ip: IpAddress): void {
    const j = this.ipcacheTouched;
    if (!j.has(ip.text)) j.add({ key: ip.text, host: ip, cidr: null, before: j.bulk ? undefined : this.ipcacheHostAt(ip) });
  }

  /** Forgets the transaction's bookkeeping (after commit or rollback). */
  endTransaction(): void {
    this.undoLog = null;
    // Clearing an empty Map or Set is not free, and most of these are empty here.
    if (this.pendingRelease.size > 0) this.pendingRelease.clear();
    if (this.freed.size > 0) this.freed.clear();
    if (this.dirtyMaps.size > 0) this.dirtyMaps.clear();
    if (this.movedEndpoints.size > 0) this.movedEndpoints.clear();
    if (this.adoptedL7.size > 0) this.adoptedL7.clear();
    if (this.ipcacheTouched.size > 0) this.ipcacheTouched.clear();
    this.ipcacheTouched.bulk = false;
  }
}
