import { isAlias, isMap, isPair, isScalar, isSeq, visit, type Document, type Node } from 'yaml';
import { ManifestError } from './errors.js';

/*
 * go-yaml v2's bound on alias expansion (decode.go `unmarshal`, `allowedAliasRatio`; kubectl decodes
 * every YAML document with it through sigs.k8s.io/yaml). Each node the decoder visits counts once,
 * each node visited inside an alias's expansion also counts as aliased, and once more than 100 nodes
 * are aliased among more than 1,000 the decoder fails ("document contains excessive aliasing") as soon
 * as the aliased share passes 99% (up to 400,000 nodes), falling to 10% at 4,000,000. The yaml package
 * shares one value per anchor, so an anchor used 999 times cost nothing to parse, but the readers then
 * walked every use: a 58 kB policy read as 2 million selectors (attack finding 3100).
 */

const RATIO_LOW = 400_000;
const RATIO_HIGH = 4_000_000;

function allowedAliasRatio(decoded: number): number {
  if (decoded <= RATIO_LOW) return 0.99;
  if (decoded >= RATIO_HIGH) return 0.1;
  return 0.99 - (0.89 * (decoded - RATIO_LOW)) / (RATIO_HIGH - RATIO_LOW);
}

/** A merge key `<<` (resolved as a symbol when merge keys are on). */
export function isMergeKey(key: unknown): boolean {
  return isScalar(key) && typeof key.value === 'symbol' && key.value.description === '<<';
}

class AliasCounter {
  private decoded = 0;
  private aliased = 0;
  private depth = 0;
  private readonly expanding = new Set<Node>();

  constructor(
    private readonly doc: Document.Parsed,
    private readonly targets: AliasTargets,
    private readonly source: string,
  ) {}

  /** The document node, then its content, as decode.go's `unmarshal` of the parsed document. */
  document(): void {
    this.decoded++;
    this.node(this.doc.contents);
  }

  /** go-yaml's `unmarshal` of one node (a null item counts as the empty scalar go-yaml makes of it). */
  private node(n: unknown): void {
    this.decoded++;
    if (this.depth > 0) this.aliased++;
    if (this.aliased > 100 && this.decoded > 1000 && this.aliased / this.decoded > allowedAliasRatio(this.decoded)) {
      throw new ManifestError(this.source, '', `document contains excessive aliasing: its aliases expand it to more than ${Math.floor(allowedAliasRatio(this.decoded) * 100)}% of the ${this.decoded} nodes decoded so far, which kubectl's go-yaml refuses (decode.go allowedAliasRatio)`);
    }
    if (isAlias(n)) return this.alias(n);
    if (isMap(n)) return this.mapping(n.items);
    if (isSeq(n)) for (const item of n.items) this.node(item);
    else if (isPair(n)) this.mapping([n]); // `[a: b]`: a single-pair mapping inside a flow sequence
  }

  private alias(n: Node): void {
    const target = this.targets.get(n);
    if (target === undefined) return;
    if (this.expanding.has(target)) throw new ManifestError(this.source, '', 'an anchor\'s value contains an alias of itself, which kubectl\'s go-yaml refuses');
    this.expanding.add(target);
    this.depth++;
    this.node(target);
    this.depth--;
    this.expanding.delete(target);
  }

  /** decode.go `mapping`: each key, then its value; a merge key merges its value in place (`merge`). */
  private mapping(pairs: readonly unknown[]): void {
    for (const p of pairs) {
      if (!isPair(p)) continue;
      if (isMergeKey(p.key)) {
        this.merge(p.value);
        continue;
      }
      this.node(p.key);
      this.node(p.value);
    }
  }

  /** v2's `merge`: a list of maps is decoded from its last item back, the list itself uncounted. */
  private merge(v: unknown): void {
    if (!isSeq(v)) return this.node(v);
    for (let i = v.items.length - 1; i >= 0; i--) this.node(v.items[i]);
  }
}

/** Each alias node's target (undefined for an alias of no anchor, which the yaml package reports as an error). */
export type AliasTargets = ReadonlyMap<Node, Node | undefined>;

/**
 * Each alias's node: the last node before it with its anchor, an ancestor included (`&x [*x]`, which go-yaml
 * refuses). Built in one pass: the yaml package's `Alias.resolve` searches the whole document on every call.
 */
export function aliasTargets(doc: Document.Parsed): AliasTargets {
  const anchors = new Map<string, Node>();
  const targets = new Map<Node, Node | undefined>();
  visit(doc, {
    Node(_, node) {
      if (isAlias(node)) targets.set(node, anchors.get(node.source));
      else if (node.anchor !== undefined) anchors.set(node.anchor, node);
    },
  });
  return targets;
}

/** Refuses a document whose aliases go-yaml v2 would call excessive (counts only when it has one). */
export function checkAliasing(doc: Document.Parsed, targets: AliasTargets, source: string): void {
  if (targets.size === 0) return;
  new AliasCounter(doc, targets, source).document();
}
