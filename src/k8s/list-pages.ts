import type { Held, LogFn } from './held.js';
import type { ListHeader, WatchItem } from './watch.js';

/** One object a List (or a page of it) listed, read when it arrived and applied when the List completes. */
export interface Listed {
  readonly rv: string | undefined;
  readonly uid: string | undefined;
  readonly desired: Held | undefined;
  /** The object could not be read: it stands for what `keptOnUnreadable` keeps when the List completes (`desired`: a pod held fail-closed at the addresses that parse, finding 2462). */
  readonly unreadable: boolean;
  /** The item's own `kind` (a typed List keeps only its kind's). */
  readonly rawKind: unknown;
  readonly source: string;
}

/**
 * A List being read: its items so far, over one or more pages. Nothing of it reaches the objects
 * (nor a flush) before its last page's closing brace: a transaction never sees half a relist.
 */
interface PendingList {
  /** The first page's header, once known (all pages must share it). */
  header: ListHeader | undefined;
  readonly listed: Map<string, Listed>;
  /** Pages read so far (each with a `continue`), and the first page's resourceVersion. */
  pages: number;
  resourceVersion: string | undefined;
  /**
   * The page sequence broke (a page of another List): pages are dropped up to one of the broken
   * List's kind without a `continue` (a page of another kind is dropped whatever it says). A page
   * does not say which page it is, so the broken List's tail taken for a whole List would make a
   * relist that deletes what the dropped pages listed.
   */
  discard: boolean;
}

type ListPage = Extract<WatchItem, { type: 'LIST' }>;

/** What the List reader asks of the mirror. */
export interface ListHooks {
  /** An item's key, resourceVersion and meaning; undefined for a kind distill does not read. */
  read(obj: Readonly<Record<string, unknown>>, source: string): { key: string; rv: string | undefined; uid: string | undefined; desired: Held | undefined; unreadable: boolean } | undefined;
  /** The List's last page was read: what it listed, as one relist. */
  complete(listed: Map<string, Listed>, header: ListHeader, resourceVersion: string | undefined, source: string): void;
  /** The List was cut short: the stream needs a relist. */
  cutShort(source: string): void;
  readonly debug: LogFn;
  readonly warn: LogFn;
}

/** Lists being read, by stream: each applied as one relist once its last page is read (`ListHooks.complete`). */
export class ListPages {
  private readonly pending = new Map<string, PendingList>();

  constructor(private readonly hooks: ListHooks) {}

  /** Streams reading a List (paged or not) that is not complete yet (sorted). */
  inProgress(): string[] {
    return [...this.pending.keys()].sort();
  }

  /**
   * A List cut short: what its pages listed is dropped, nothing is deleted, and the stream waits
   * for a relist (/healthz reports it): what happened since the last complete relist may be lost.
   */
  abort(source: string, reason: string, discardRest = false): void {
    const p = this.pending.get(source);
    if (p === undefined) return;
    if (discardRest) this.pending.set(source, { header: p.header, listed: new Map(), pages: 0, resourceVersion: undefined, discard: true });
    else this.pending.delete(source);
    if (p.discard) return;
    this.hooks.cutShort(source);
    this.hooks.warn('List cut short: nothing of it is applied (a relist is needed)', { source, reason, pages: p.pages, items: p.listed.size });
  }

  private pendingOf(source: string, header: ListHeader | undefined): PendingList {
    let p = this.pending.get(source);
    if (p === undefined) this.pending.set(source, (p = { header, listed: new Map(), pages: 0, resourceVersion: undefined, discard: false }));
    return p;
  }

  /** One item of a List read item by item (`WatchStreamParser`). */
  item(item: Extract<WatchItem, { type: 'LIST_ITEM' }>, source: string): void {
    const p = this.pendingOf(source, item.list);
    if (p.discard) return;
    if (item.list !== undefined && p.header !== undefined && !sameHeader(item.list, p.header)) {
      return this.abort(source, `a page of ${headerText(item.list)} in a List of ${headerText(p.header)}`, true);
    }
    p.header ??= item.list;
    this.listObject(p, item.object, `${source}.items[${item.index}]`);
  }

  /**
   * One item of a List, read now (what it means) and kept until the List completes. A typed
   * list (`PodList`) speaks for its kind only: an item claiming another kind is skipped (its Go
   * type holds only the list's kind; client-go's reflector skips a watch event of another type).
   * An object listed twice counts once, as its last listing (client-go's store Replace keys the items).
   */
  private listObject(p: PendingList, raw: Readonly<Record<string, unknown>>, source: string): void {
    const itemKind = p.header?.itemKind;
    if (otherKindSkipped(itemKind, raw.kind, source, this.hooks.warn)) return;
    const obj = itemKind !== undefined && raw.kind === undefined ? { ...raw, kind: itemKind, apiVersion: p.header!.apiVersion } : raw;
    const read = this.hooks.read(obj, source);
    if (read === undefined) return;
    const { key, rv, uid, desired, unreadable } = read;
    if (p.listed.delete(key)) this.hooks.debug('object listed twice: its last listing counts', { source, key });
    p.listed.set(key, { rv, uid, desired, unreadable, rawKind: raw.kind, source });
  }

  /**
   * A List, or one page of a paged List (Kubernetes API concepts, "Retrieving large results sets
   * in chunks": `metadata.continue` on every page but the last, empty or absent on the last;
   * client-go tools/pager ListPager.list reads pages until `continue` is empty and only then hands
   * the whole list to the reflector's store Replace). A page must have the first page's kind,
   * apiVersion and resourceVersion (same page: "the resourceVersion of the collection remains
   * constant across each request"), else the List is broken. `remainingItemCount` is not read:
   * "its intended use is estimating the size of a collection", and a page claiming 0 with a
   * `continue` is not the last.
   */
  page(item: ListPage, source: string): void {
    const header: ListHeader = { itemKind: item.itemKind, apiVersion: item.apiVersion };
    let p = this.pending.get(source);
    const mismatch = p === undefined || p.discard ? undefined : pageMismatch(p, header, item);
    if (mismatch !== undefined) this.abort(source, mismatch, true);
    p = this.pendingOf(source, header);
    if (p.discard) {
      if (item.continue === undefined && (p.header === undefined || sameHeader(header, p.header))) this.pending.delete(source);
      return this.hooks.debug('List page dropped: its page sequence broke', { source });
    }
    p.header = header;
    if (p.pages === 0) p.resourceVersion = item.resourceVersion;
    item.items.forEach((raw, i) => this.listObject(p, raw, `${source}.items[${item.indexes?.[i] ?? i}]`));
    if (item.continue !== undefined) {
      p.pages++;
      return this.hooks.debug('List page read; waiting for the next', { source, pages: p.pages, items: p.listed.size, remainingItemCount: item.remainingItemCount });
    }
    this.pending.delete(source);
    this.hooks.complete(p.listed, header, item.resourceVersion ?? p.resourceVersion, source);
  }
}

/** Why a page does not continue the List being read, if it does not. */
function pageMismatch(p: PendingList, header: ListHeader, item: ListPage): string | undefined {
  if (p.header !== undefined && !sameHeader(header, p.header)) return `a page of ${headerText(header)} in a List of ${headerText(p.header)}`;
  // Without a resourceVersion a next page cannot be told from a List started over: the union would keep what the new List omits.
  if (p.pages > 0 && item.resourceVersion === undefined) return 'a next page without a resourceVersion';
  if (p.pages > 0 && item.resourceVersion !== p.resourceVersion) return `a page at resourceVersion ${String(item.resourceVersion)} in a List at ${String(p.resourceVersion)}`;
  return undefined;
}

/** A typed List's item that names another kind: skipped, with a warning. */
export function otherKindSkipped(itemKind: string | undefined, rawKind: unknown, source: string, warn: LogFn): boolean {
  if (itemKind === undefined || rawKind === undefined || rawKind === itemKind) return false;
  warn(`a ${itemKind}List item of another kind is skipped: a typed list holds its kind only`, { source, kind: rawKind });
  return true;
}

function sameHeader(a: ListHeader, b: ListHeader): boolean {
  return a.itemKind === b.itemKind && a.apiVersion === b.apiVersion;
}

const headerText = (h: ListHeader): string => `${h.itemKind ?? ''}List ${h.apiVersion}`;
