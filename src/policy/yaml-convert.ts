import { isAlias, isCollection, isMap, isNode, isPair, isScalar, isSeq, type Document, type Node, type Pair } from 'yaml';
import { isMergeKey, type AliasTargets } from './go-yaml-aliases.js';

/*
 * A parsed document as JavaScript values, as yaml 2.9.1's `doc.toJS({ maxAliasCount: 1000 })` made them
 * (nodes/toJS.js, Alias.js, addPairToJSMap.js, schema/yaml-1.1/merge.js), with each alias's target taken from
 * `aliasTargets` (one pass). The package's `Alias.resolve` scans its list of anchors and aliases up to the
 * alias on every use, so its conversion is quadratic in the number of aliases (attack finding 3102). Kept
 * as the package had them: an alias is the anchor's value itself (shared: the readers only read), a merge
 * converts its source map again, and the package's per-anchor alias budget refuses the same documents.
 */

const MAX_ALIAS_COUNT = 1000;

/** A converted anchor (toJS.js `ctx.anchors` data): its value, its uses, its aliases' weight. */
interface Anchor {
  res: unknown;
  count: number;
  aliasCount: number;
}

type Target = Record<string, unknown> | Map<unknown, unknown>;

/** Work done by conversions (nodes converted, entries merged, nodes weighed), for tests that bound it. */
export const conversionWork = { visits: 0 };

class Converter {
  private readonly anchors = new Map<Node, Anchor>();

  constructor(private readonly targets: AliasTargets) {}

  /** toJS.js `toJS`: an anchored node records its value as soon as it exists (a collection before its items). */
  value(v: unknown): unknown {
    conversionWork.visits++;
    if (!isNode(v) && !isPair(v)) return v;
    if (!(isScalar(v) || isCollection(v)) || !v.anchor) return this.content(v);
    const data: Anchor = { res: undefined, count: 1, aliasCount: 0 };
    this.anchors.set(v, data);
    const res = this.content(v, data);
    if (isScalar(v)) data.res = res;
    return res;
  }

  private content(v: Node | Pair, data?: Anchor): unknown {
    if (isScalar(v)) return v.value;
    if (isAlias(v)) return this.alias(v);
    if (isSeq(v)) {
      const seq: unknown[] = [];
      if (data) data.res = seq;
      for (const item of v.items) seq.push(this.value(item));
      return seq;
    }
    const map: Record<string, unknown> = {};
    if (data) data.res = map;
    for (const pair of isMap(v) ? v.items : isPair(v) ? [v] : []) this.addPair(map, pair);
    return map;
  }

  /** Alias.js `toJSON`. */
  private alias(a: Node): unknown {
    const found = this.resolve(a);
    if (found === undefined) throw new ReferenceError(`Unresolved alias (the anchor must be set before the alias): ${String((a as { source?: unknown }).source)}`);
    return this.anchors.get(found)?.res;
  }

  /** Alias.js `resolve` with a context: the target, counted against the anchor's budget. */
  private resolve(a: Node): Node | undefined {
    const found = this.targets.get(a);
    if (found === undefined) return undefined;
    let data = this.anchors.get(found);
    if (data === undefined) {
      this.value(found);
      data = this.anchors.get(found);
    }
    if (data?.res === undefined) throw new ReferenceError('This should not happen: Alias anchor was not resolved?');
    data.count += 1;
    if (data.aliasCount === 0) data.aliasCount = this.aliasCount(found);
    if (data.count * data.aliasCount > MAX_ALIAS_COUNT) throw new ReferenceError('Excessive alias count indicates a resource exhaustion attack');
    return found;
  }

  /** Alias.js `getAliasCount`: the heaviest alias under a node, weighed by its anchor's uses so far. */
  private aliasCount(n: unknown): number {
    conversionWork.visits++;
    if (isAlias(n)) {
      const target = this.targets.get(n);
      const anchor = target && this.anchors.get(target);
      return anchor ? anchor.count * anchor.aliasCount : 0;
    }
    if (isCollection(n)) {
      let count = 0;
      for (const item of n.items) count = Math.max(count, this.aliasCount(item));
      return count;
    }
    if (isPair(n)) return Math.max(this.aliasCount(n.key), this.aliasCount(n.value));
    return 1;
  }

  /**
   * addPairToJSMap.js: a key's JSON text (a key the map has, `__proto__` included, redefined as own data). Only
   * a `<<` the parser resolved as a merge merges: the package also merged `!!str <<`, which go-yaml v2
   * reads as a key (decode.go `isMerge`: an implicit `<<` or one tagged `!!merge`; finding 3240).
   */
  private addPair(map: Target, pair: Pair): void {
    if (isMergeKey(pair.key)) return this.merge(map, pair.value);
    const key = this.value(pair.key);
    if (map instanceof Map) {
      map.set(key, this.value(pair.value));
      return;
    }
    const text = keyText(key);
    define(map, text, this.value(pair.value));
  }

  /** merge.js `addMergeToJSMap`: a map, or each map of a list, adds the keys the target does not have yet. */
  private merge(map: Target, value: unknown): void {
    const source = isAlias(value) ? this.resolve(value) : value;
    for (const item of isSeq(source) ? source.items : [source]) {
      const from = isAlias(item) ? this.resolve(item) : item;
      if (!isMap(from)) throw new Error('Merge sources must be maps or map aliases');
      const entries = new Map<unknown, unknown>();
      for (const pair of from.items) this.addPair(entries, pair);
      for (const [key, v] of entries) {
        conversionWork.visits++;
        if (map instanceof Map) {
          if (!map.has(key)) map.set(key, v);
        } else if (!Object.hasOwn(map, propertyKey(key))) define(map, propertyKey(key), v);
      }
    }
  }
}

function define(map: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(map, key, { value, writable: true, enumerable: true, configurable: true });
}

/** What `Object.defineProperty` makes of a merged key (ToPropertyKey; merge keys, the only symbols, never get here). */
function propertyKey(key: unknown): string {
  return String(key);
}

/**
 * addPairToJSMap.js `stringifyKey`. A list or map key, which the package writes as flow YAML, never gets here:
 * `checkYamlKeys` refuses it first (`checkKeyText`), so this refuses it too rather than write it differently.
 */
function keyText(key: unknown): string {
  if (key === null) return '';
  if (typeof key !== 'object') return String(key);
  throw new Error('a list or map as a map key is not supported');
}

/** The document's value (`null` for an empty one). */
export function convertDocument(doc: Document.Parsed, targets: AliasTargets): unknown {
  return new Converter(targets).value(doc.contents);
}
