import { ManifestError } from '../policy/errors.js';
import { checkInputDepth } from '../policy/depth.js';

/** The event types of a Kubernetes watch. */
export type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';

const WATCH_TYPES: readonly string[] = ['ADDED', 'MODIFIED', 'DELETED', 'BOOKMARK', 'ERROR'];

/**
 * One item of a watch stream: a watch event, or a full `List` (a relist: what the stream holds
 * now, to be diffed against what was held). `kind` of a list is the items' kind (`PodList`: `Pod`;
 * a plain `List`'s items carry their own).
 */
export type WatchItem =
  | { readonly type: WatchEventType; readonly object: Readonly<Record<string, unknown>> }
  | { readonly type: 'LIST'; readonly itemKind: string | undefined; readonly apiVersion: string; readonly items: readonly Readonly<Record<string, unknown>>[]; readonly resourceVersion: string | undefined };

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * A parsed JSON value of a stream as a watch item; `source` names it in errors. Throws
 * ManifestError for anything else.
 */
export function parseWatchItem(v: unknown, source: string): WatchItem {
  if (!isRecord(v)) throw new ManifestError(source, '', 'is not a watch event or a List (a JSON object)');
  if (typeof v.kind === 'string' && v.kind.endsWith('List') && Array.isArray(v.items)) {
    const itemKind = v.kind === 'List' ? undefined : v.kind.slice(0, -'List'.length);
    const items = v.items.map((it, i) => {
      if (!isRecord(it)) throw new ManifestError(source, `items[${i}]`, 'is not an object');
      return it;
    });
    const rv = isRecord(v.metadata) && typeof v.metadata.resourceVersion === 'string' && v.metadata.resourceVersion !== '' ? v.metadata.resourceVersion : undefined;
    return { type: 'LIST', itemKind, apiVersion: typeof v.apiVersion === 'string' ? v.apiVersion : '', items, resourceVersion: rv };
  }
  if (typeof v.type !== 'string' || !WATCH_TYPES.includes(v.type)) throw new ManifestError(source, 'type', `${JSON.stringify(v.type)} is not a watch event type (${WATCH_TYPES.join(', ')})`);
  if (!isRecord(v.object)) throw new ManifestError(source, 'object', 'must be an object');
  return { type: v.type as WatchEventType, object: v.object };
}

/**
 * Splits a byte stream of concatenated JSON values (what `kubectl get --watch
 * --output-watch-events -o json` prints, or newline-delimited JSON as the API server's watch
 * sends) into values, across chunk boundaries. Bounded: one value may not exceed `maxValueBytes`.
 */
export class WatchStreamParser {
  private depth = 0;
  private inString = false;
  private escape = false;
  /** The earlier chunks' pieces of the value being scanned (joined once, when it completes). */
  private parts: string[] = [];
  private partsLength = 0;
  /** True while a value is being scanned. */
  private inValue = false;
  private count = 0;

  constructor(
    private readonly source: string,
    private readonly maxValueBytes = 64 * 1024 * 1024,
  ) {}

  /**
   * Feeds a chunk; returns the items it completed, in order. Throws ManifestError on bad input.
   * `each` gets every item as it completes, so the items before bad input in the same chunk are
   * delivered before the throw (as client-go's stream watcher delivers each decoded event).
   * Each character is scanned once: a value spread over many chunks costs its length, not its
   * length times the number of chunks.
   */
  push(chunk: string, each?: (item: WatchItem) => void): WatchItem[] {
    const out: WatchItem[] = [];
    let start = 0;
    for (let i = 0; i < chunk.length; i++) {
      const c = chunk[i]!;
      if (!this.inValue) {
        if (c === ' ' || c === '\n' || c === '\r' || c === '\t') continue;
        if (c !== '{') throw new ManifestError(`${this.source}#${this.count + 1}`, '', `unexpected ${JSON.stringify(c)}: a watch stream is a sequence of JSON objects`);
        this.inValue = true;
        start = i;
      }
      if (!this.step(c)) continue;
      const text = this.parts.length === 0 ? chunk.slice(start, i + 1) : this.parts.join('') + chunk.slice(start, i + 1);
      this.parts = [];
      this.partsLength = 0;
      this.inValue = false;
      const item = this.complete(text);
      each?.(item);
      out.push(item);
    }
    if (this.inValue) this.keep(chunk.slice(start));
    return out;
  }

  private keep(piece: string): void {
    this.parts.push(piece);
    this.partsLength += piece.length;
    if (this.partsLength > this.maxValueBytes) {
      throw new ManifestError(`${this.source}#${this.count + 1}`, '', `one JSON value is over ${this.maxValueBytes} bytes`);
    }
  }

  /** At the end of the stream: throws if a value was cut off. */
  end(): void {
    if (this.inValue) throw new ManifestError(`${this.source}#${this.count + 1}`, '', 'the stream ended inside a JSON value');
  }

  /** Advances the scanner by one character; true when it closed the top-level object. */
  private step(c: string): boolean {
    if (this.inString) {
      if (this.escape) this.escape = false;
      else if (c === '\\') this.escape = true;
      else if (c === '"') this.inString = false;
      return false;
    }
    if (c === '"') this.inString = true;
    else if (c === '{' || c === '[') this.depth++;
    else if (c === '}' || c === ']') return --this.depth === 0;
    return false;
  }

  private complete(text: string): WatchItem {
    this.count++;
    const source = `${this.source}#${this.count}`;
    let v: unknown;
    try {
      v = JSON.parse(text);
    } catch (e) {
      throw new ManifestError(source, '', `not JSON: ${(e as Error).message}`);
    }
    checkInputDepth(v, source);
    return parseWatchItem(v, source);
  }
}
