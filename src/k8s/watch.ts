import { ManifestError } from '../policy/errors.js';
import { checkInputDepth, MAX_INPUT_DEPTH, tooDeep } from '../policy/depth.js';

/** The event types of a Kubernetes watch. */
export type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';

const WATCH_TYPES: readonly string[] = ['ADDED', 'MODIFIED', 'DELETED', 'BOOKMARK', 'ERROR'];

/** What a List says of its items: their kind (`PodList`: `Pod`; a plain `List`: undefined) and apiVersion. */
export interface ListHeader {
  readonly itemKind: string | undefined;
  readonly apiVersion: string;
}

/**
 * One item of a watch stream: a watch event, a full `List` or one page of a paged `List` (a
 * relist: what the stream holds now, to be diffed against what was held), or one item of a List
 * read item by item (`LIST_ITEM`, before the List's `LIST`). `itemKind` of a list is the items'
 * kind (`PodList`: `Pod`; a plain `List`'s items carry their own). `continue` is set on every page
 * of a paged List but the last (apimachinery ListMeta.Continue); `streamed` counts the items that
 * came before as `LIST_ITEM`s (`items` then holds only those that could not: kind-less items read
 * before the List's `kind`).
 */
export type WatchItem =
  | { readonly type: WatchEventType; readonly object: Readonly<Record<string, unknown>> }
  | { readonly type: 'LIST_ITEM'; readonly object: Readonly<Record<string, unknown>>; readonly index: number; readonly list: ListHeader | undefined }
  | {
      readonly type: 'LIST';
      readonly itemKind: string | undefined;
      readonly apiVersion: string;
      readonly items: readonly Readonly<Record<string, unknown>>[];
      readonly resourceVersion: string | undefined;
      readonly continue?: string | undefined;
      readonly remainingItemCount?: number | undefined;
      readonly streamed?: number;
      /** The index in the List of each of `items` when items were streamed (else 0, 1, ...). */
      readonly indexes?: readonly number[];
    };

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The header of a List (`kind` ending in `List`), or undefined for anything else. */
function listHeaderOf(v: Record<string, unknown>): ListHeader | undefined {
  if (typeof v.kind !== 'string' || !v.kind.endsWith('List')) return undefined;
  return { itemKind: v.kind === 'List' ? undefined : v.kind.slice(0, -'List'.length), apiVersion: typeof v.apiVersion === 'string' ? v.apiVersion : '' };
}

/**
 * A parsed JSON value of a stream as a watch item; `source` names it in errors. Throws
 * ManifestError for anything else.
 */
export function parseWatchItem(v: unknown, source: string): WatchItem {
  if (!isRecord(v)) throw new ManifestError(source, '', 'is not a watch event or a List (a JSON object)');
  const header = listHeaderOf(v);
  if (header !== undefined && Array.isArray(v.items)) {
    const items = v.items.map((it, i) => {
      if (!isRecord(it)) throw new ManifestError(source, `items[${i}]`, 'is not an object');
      return it;
    });
    const md = isRecord(v.metadata) ? v.metadata : {};
    const rv = typeof md.resourceVersion === 'string' && md.resourceVersion !== '' ? md.resourceVersion : undefined;
    const cont = typeof md.continue === 'string' && md.continue !== '' ? md.continue : undefined;
    const remaining = typeof md.remainingItemCount === 'number' ? md.remainingItemCount : undefined;
    return { type: 'LIST', ...header, items, resourceVersion: rv, continue: cont, remainingItemCount: remaining };
  }
  if (typeof v.type !== 'string' || !WATCH_TYPES.includes(v.type)) throw new ManifestError(source, 'type', `${JSON.stringify(v.type)} is not a watch event type (${WATCH_TYPES.join(', ')})`);
  if (!isRecord(v.object)) throw new ManifestError(source, 'object', 'must be an object');
  return { type: v.type as WatchEventType, object: v.object };
}

/** The pieces of one unfinished value, joined once when it completes; bounded. */
class Pieces {
  private parts: string[] = [];
  private length = 0;

  constructor(
    private readonly max: number,
    private readonly overflow: () => ManifestError,
  ) {}

  push(piece: string): void {
    if (piece.length === 0) return;
    this.parts.push(piece);
    this.length += piece.length;
    if (this.length > this.max) throw this.overflow();
  }

  /** The text so far (kept joined, so asking again costs nothing more). */
  text(): string {
    if (this.parts.length > 1) this.parts = [this.parts.join('')];
    return this.parts[0] ?? '';
  }

  take(last: string): string {
    const text = this.parts.length === 0 ? last : this.parts.join('') + last;
    this.parts = [];
    this.length = 0;
    return text;
  }
}

const WS = new Set([' ', '\n', '\r', '\t']);
/** Longer keys are not `items` (an escaped `items` is 30 characters). */
const MAX_KEY = 256;

function keyText(raw: string): string {
  if (raw.length >= MAX_KEY) return '';
  try {
    const k: unknown = JSON.parse(raw);
    return typeof k === 'string' ? k : '';
  } catch {
    return '';
  }
}

/**
 * A character for an error message: printable ASCII quoted, anything else by its code point, so an
 * invisible one is seen (a byte order mark a Windows editor wrote: attack finding 2128).
 */
function shownChar(c: string): string {
  if (/^[\x21-\x7e]$/.test(c)) return JSON.stringify(c);
  const code = `U+${(c.codePointAt(0) ?? 0).toString(16).toUpperCase().padStart(4, '0')}`;
  return c === '\uFEFF' ? `${code} (a byte order mark: save the file without one)` : code;
}

/**
 * Splits a byte stream of concatenated JSON values (what `kubectl get --watch
 * --output-watch-events -o json` prints, or newline-delimited JSON as the API server's watch
 * sends) into values, across chunk boundaries. The `items` of a top-level object are read one at
 * a time: each becomes a `LIST_ITEM` as soon as it is read, and the List a `LIST` (its other
 * fields) once its closing `}` is read, so a List of any size is read with one item in memory.
 * Bounded: one item, and a value without its items, may not exceed `maxValueBytes`.
 */
export class WatchStreamParser {
  private depth = 0;
  private inString = false;
  private escape = false;
  /** True while a value is being scanned. */
  private inValue = false;
  private count = 0;
  /** Which pieces the characters from `segStart` on belong to: the value without its items, the item being read, or none (between items). */
  private target: 'skel' | 'elem' | 'none' = 'none';
  private segStart = 0;
  private readonly skel: Pieces;
  private readonly elem: Pieces;
  /** The raw text (quotes included) of a top-level key being read, and the last key read. */
  private key: string | undefined;
  private lastKey = '';
  private expectKey = true;
  private items: 'no' | 'open' | 'done' = 'no';
  private itemsExpect: 'first' | 'elem' | 'sep' = 'first';
  private itemIndex = 0;
  private streamed = 0;
  private header: ListHeader | undefined;
  /** Kind-less items read before the List's `kind` (kubectl sorts `items` before `kind`): they come with the `LIST`. */
  private deferred: { object: Record<string, unknown>; index: number }[] = [];
  private deferredBytes = 0;

  constructor(
    private readonly source: string,
    private readonly maxValueBytes = 64 * 1024 * 1024,
  ) {
    this.skel = new Pieces(maxValueBytes, () => new ManifestError(this.valueSource(), '', `one JSON value is over ${maxValueBytes} bytes`));
    this.elem = new Pieces(maxValueBytes, () => new ManifestError(this.valueSource(), `items[${this.itemIndex}]`, `one List item is over ${maxValueBytes} bytes`));
  }

  private valueSource(): string {
    return `${this.source}#${this.count + 1}`;
  }

  /**
   * Feeds a chunk; returns the items it completed, in order. Throws ManifestError on bad input.
   * `each` gets every item as it completes, so the items before bad input in the same chunk are
   * delivered before the throw (as client-go's stream watcher delivers each decoded event).
   * Each character is scanned once: a value spread over many chunks costs its length, not its
   * length times the number of chunks.
   */
  push(chunk: string, each?: (item: WatchItem) => void): WatchItem[] {
    const out: WatchItem[] = [];
    const emit = (item: WatchItem): void => {
      each?.(item);
      out.push(item);
    };
    this.segStart = 0;
    for (let i = 0; i < chunk.length; i++) {
      const c = chunk[i]!;
      if (!this.inValue) {
        if (WS.has(c)) continue;
        if (c !== '{') throw new ManifestError(this.valueSource(), '', `unexpected ${shownChar(c)}: a watch stream is a sequence of JSON objects`);
        this.begin(i);
      }
      if (!this.step(c, chunk, i, emit)) continue;
      const text = this.skel.take(chunk.slice(this.segStart, i + 1));
      this.inValue = false;
      this.target = 'none';
      emit(this.complete(text));
    }
    if (this.target === 'skel') this.skel.push(chunk.slice(this.segStart));
    else if (this.target === 'elem') this.elem.push(chunk.slice(this.segStart));
    return out;
  }

  private begin(i: number): void {
    this.inValue = true;
    this.depth = 0;
    this.target = 'skel';
    this.segStart = i;
    this.expectKey = true;
    this.lastKey = '';
    this.items = 'no';
    this.itemIndex = 0;
    this.streamed = 0;
    this.header = undefined;
    this.deferred = [];
    this.deferredBytes = 0;
  }

  /** At the end of the stream: throws if a value was cut off. */
  end(): void {
    if (this.inValue) throw new ManifestError(this.valueSource(), '', 'the stream ended inside a JSON value');
  }

  /** Advances the scanner by one character; true when it closed the top-level object. */
  private step(c: string, chunk: string, i: number, emit: (item: WatchItem) => void): boolean {
    if (this.inString) {
      if (this.key !== undefined && this.key.length < MAX_KEY) this.key += c;
      if (this.escape) this.escape = false;
      else if (c === '\\') this.escape = true;
      else if (c === '"') this.closeString();
      return false;
    }
    if (this.depth === 0) return (this.depth = 1), false;
    if (this.depth === 1) return this.atTop(c, chunk, i);
    if (this.depth === 2 && this.items === 'open') return this.betweenItems(c, chunk, i), false;
    if (c === '"') this.inString = true;
    else if (c === '{' || c === '[') this.deeper();
    else if ((c === '}' || c === ']') && --this.depth === 2 && this.items === 'open') this.endItem(chunk, i, emit);
    return false;
  }

  /**
   * One level deeper; refused past what checkInputDepth would refuse once the value is parsed (a List item's own depth
   * starts 2 levels down). A 20 MB `[[[…` cost 17 s and 1.6 GB in JSON.parse and the walk before (attack finding 3821).
   */
  private deeper(): void {
    if (++this.depth <= MAX_INPUT_DEPTH + 2) return;
    const where = this.target === 'elem' ? `items[${this.itemIndex}]` : '';
    throw tooDeep(this.valueSource(), where);
  }

  private closeString(): void {
    this.inString = false;
    if (this.key === undefined) return;
    this.lastKey = keyText(this.key);
    this.key = undefined;
  }

  /** A character of the top-level object (not in a string, not nested). */
  private atTop(c: string, chunk: string, i: number): boolean {
    if (WS.has(c)) return false;
    if (c === '}' || c === ']') return (this.depth = 0), true;
    if (c === ',') this.expectKey = true;
    else if (c === '"') {
      this.inString = true;
      if (this.expectKey) (this.key = '"'), (this.expectKey = false);
    } else if (c === '[' && this.lastKey === 'items') this.openItems(chunk, i);
    else if (c === '{' || c === '[') this.depth++;
    if (c !== ',' && c !== '"' && c !== ':') this.lastKey = '';
    return false;
  }

  private openItems(chunk: string, i: number): void {
    if (this.items !== 'no') throw new ManifestError(this.valueSource(), 'items', 'appears twice');
    this.skel.push(chunk.slice(this.segStart, i + 1));
    this.header = this.headerSoFar();
    this.target = 'none';
    this.segStart = i + 1;
    this.items = 'open';
    this.itemsExpect = 'first';
    this.depth = 2;
  }

  /** The List's kind and apiVersion when they come before its items (as the API server writes them). */
  private headerSoFar(): ListHeader | undefined {
    try {
      const v: unknown = JSON.parse(`${this.skel.text()}]}`);
      return isRecord(v) ? listHeaderOf(v) : undefined;
    } catch {
      return undefined;
    }
  }

  /** A character between the items of `items` (not in an item). */
  private betweenItems(c: string, chunk: string, i: number): void {
    if (WS.has(c)) return;
    if (c === '{' && this.itemsExpect !== 'sep') {
      this.target = 'elem';
      this.segStart = i;
      this.depth = 3;
    } else if (c === ',' && this.itemsExpect === 'sep') this.itemsExpect = 'elem';
    else if (c === ']' && this.itemsExpect !== 'elem') {
      this.items = 'done';
      this.depth = 1;
      this.target = 'skel';
      this.segStart = i;
    } else throw new ManifestError(this.valueSource(), `items[${this.itemIndex}]`, this.itemsExpect === 'sep' ? `unexpected ${JSON.stringify(c)} after an item` : 'is not an object');
  }

  private endItem(chunk: string, i: number, emit: (item: WatchItem) => void): void {
    const text = this.elem.take(chunk.slice(this.segStart, i + 1));
    this.target = 'none';
    this.segStart = i + 1;
    this.itemsExpect = 'sep';
    const index = this.itemIndex++;
    const where = `items[${index}]`;
    let v: unknown;
    try {
      v = JSON.parse(text);
    } catch (e) {
      throw new ManifestError(this.valueSource(), where, `not JSON: ${(e as Error).message}`);
    }
    checkInputDepth(v, `${this.valueSource()} ${where}`);
    if (!isRecord(v)) throw new ManifestError(this.valueSource(), where, 'is not an object');
    if (typeof v.kind === 'string' || this.header !== undefined) {
      this.streamed++;
      return emit({ type: 'LIST_ITEM', object: v, index, list: this.header });
    }
    this.deferredBytes += text.length;
    if (this.deferredBytes > this.maxValueBytes) throw new ManifestError(this.valueSource(), where, `items without a kind before the List's kind are over ${this.maxValueBytes} bytes`);
    this.deferred.push({ object: v, index });
  }

  private complete(text: string): WatchItem {
    const source = this.valueSource();
    this.count++;
    let v: unknown;
    try {
      v = JSON.parse(text);
    } catch (e) {
      throw new ManifestError(source, '', `not JSON: ${(e as Error).message}`);
    }
    checkInputDepth(v, source);
    if (this.items === 'no') return parseWatchItem(v, source);
    if (!isRecord(v) || listHeaderOf(v) === undefined) throw new ManifestError(source, 'kind', 'an object with an `items` array must be a List (its kind ending in List)');
    const item = parseWatchItem({ ...v, items: this.deferred.map((d) => d.object) }, source);
    const indexes = this.deferred.map((d) => d.index);
    this.deferred = [];
    return item.type === 'LIST' ? { ...item, streamed: this.streamed, indexes } : item;
  }
}
