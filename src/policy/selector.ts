import { ciliumExtendedKey, ciliumSelectorKey, LabelKey, labelKeyProblem, LabelSource, labelValueProblem } from '../model/labels.js';
import { makeSelector, Requirement, Selector, SelectorOperator } from '../model/selector.js';
import { at, join, Reader } from './reader.js';

export function checkLabels(r: Reader, labels: Record<string, string>, path: string): void {
  for (const [k, v] of Object.entries(labels)) {
    const kp = labelKeyProblem(k);
    if (kp) r.fail(join(path, k), `invalid label key "${k}": ${kp}`);
    const vp = labelValueProblem(v);
    if (vp) r.fail(join(path, k), `invalid label value "${v}": ${vp}`);
  }
}

export interface SelectorOptions {
  /** Source given to keys without a `source:` prefix (`k8s` for NetworkPolicy, `any` for Cilium). */
  readonly defaultSource: LabelSource;
  /** Whether keys are read as Cilium reads them (`source:` prefix, `$`, `reserved.`, cut at '='; the default source `any`). */
  readonly allowSourcePrefix: boolean;
  /** Rewrites each key, e.g. a namespaceSelector key into the namespace-labels key. */
  readonly mapKey?: (key: LabelKey) => LabelKey;
  /** Without `allowSourcePrefix`: the key as Cilium validates it, when that is not the key as written. */
  readonly validatedKey?: (raw: string) => string;
}

const OPERATORS: readonly SelectorOperator[] = ['In', 'NotIn', 'Exists', 'DoesNotExist'];

function parseKey(r: Reader, raw: string, path: string, opts: SelectorOptions): LabelKey {
  if (!opts.allowSourcePrefix) {
    const validated = opts.validatedKey?.(raw) ?? raw;
    const kp = labelKeyProblem(validated);
    if (kp) r.fail(path, `invalid label key "${raw}": ${validated === raw ? '' : `Cilium validates it as "${validated}", whose `}${kp}`);
    const key = { source: opts.defaultSource, key: raw };
    return opts.mapKey ? opts.mapKey(key) : key;
  }
  // Cilium validates and matches the extended key, source included (attack findings 760, 1240-1242).
  const extended = ciliumExtendedKey(raw);
  const kp = labelKeyProblem(extended);
  if (kp) r.fail(path, `invalid label key "${raw}": Cilium validates it as "${extended}" (source.key), whose ${kp}`);
  const parsed = ciliumSelectorKey(raw);
  return opts.mapKey ? opts.mapKey(parsed) : parsed;
}

/**
 * Parsed selectors by options and input text. Manifests repeat the same few selectors thousands
 * of times (cilium-ci: 6,000 distinct in 60,000), and each parse allocated ~15 objects, most of
 * them dropped when a trace shares equal selectors; V8 pretenures such allocation sites, so that
 * garbage filled the old space. Only successful parses are cached, of inputs made of plain objects,
 * arrays and strings alone, as data properties (`plainText`), whose JSON text then determines the
 * result, and that made no deferred error (`Reader.unsupported`). Bounded: a full cache is emptied.
 */
let parsedSelectors = new WeakMap<SelectorOptions, Map<string, Selector>>();
const MAX_CACHED_SELECTORS = 16384;
/** Longer inputs are parsed every time: the cache must not hold up to 16,384 huge texts (an agent's churn of hostile policies). */
export const MAX_CACHED_TEXT = 4096;

/** The JSON text of `v` when it holds nothing but plain objects, arrays and strings (a selector's depth), else null. */
function plainText(v: unknown): string | null {
  return isPlain(v, 4) ? JSON.stringify(v) : null;
}

function isPlain(v: unknown, depth: number): boolean {
  if (typeof v === 'string') return true;
  if (typeof v !== 'object' || v === null || depth === 0) return false;
  const array = Array.isArray(v);
  const proto: unknown = Object.getPrototypeOf(v);
  if (proto !== (array ? Array.prototype : Object.prototype) && proto !== null) return false;
  const keys = Reflect.ownKeys(v);
  // No holes, no extra array fields; every property an enumerable data property (what JSON writes is what the parser reads).
  if (array && keys.length !== (v as unknown[]).length + 1) return false;
  for (const k of keys) {
    if (array && k === 'length') continue;
    const d = Object.getOwnPropertyDescriptor(v, k);
    if (typeof k !== 'string' || d === undefined || !d.enumerable || !('value' in d) || !isPlain(d.value, depth - 1)) return false;
  }
  return true;
}

/** Parses a Kubernetes LabelSelector (`matchLabels`, `matchExpressions`); equal plain inputs give the same (immutable) Selector. */
export function parseLabelSelector(r: Reader, v: unknown, path: string, opts: SelectorOptions): Selector {
  const text = plainText(v);
  let cache = parsedSelectors.get(opts);
  const hit = text === null ? undefined : cache?.get(text);
  if (hit !== undefined) return hit;
  const deferrals = r.deferralCount();
  const sel = parseSelectorObject(r, v, path, opts);
  // A parse that deferred an error (Reader.unsupported) is not kept: a cache hit would skip the error.
  if (text === null || text.length > MAX_CACHED_TEXT || r.deferralCount() !== deferrals) return sel;
  if (!cache) parsedSelectors.set(opts, (cache = new Map()));
  if (cache.size >= MAX_CACHED_SELECTORS) cache.clear();
  cache.set(text, sel);
  return sel;
}

/** Empties the cache of parsed selectors (a trace's parse is over: what it built is kept by its policies). */
export function forgetParsedSelectors(): void {
  parsedSelectors = new WeakMap();
}

function parseSelectorObject(r: Reader, v: unknown, path: string, opts: SelectorOptions): Selector {
  const obj = r.object(v, path, ['matchLabels', 'matchExpressions']);
  const reqs: Requirement[] = [];
  const ml = r.stringMap(obj.matchLabels, join(path, 'matchLabels'));
  // Cilium rebuilds matchLabels as a Go map of extended keys, so `app` and `:app` (both `any.app`)
  // collapse into one entry, whose value is whichever Go's random map order writes last (finding 764).
  const byExtended = opts.allowSourcePrefix ? new Map<string, [string, string]>() : undefined;
  for (const [k, val] of Object.entries(ml)) {
    const kpath = join(join(path, 'matchLabels'), k);
    const key = parseKey(r, k, kpath, opts);
    const ext = byExtended && ciliumExtendedKey(k);
    const other = ext === undefined ? undefined : byExtended?.get(ext);
    // Deferred (Cilium takes the policy, so an invalid field after it is the error: attack finding 1831).
    if (other && other[1] !== val) r.unsupported(kpath, `"${k}" and "${other[0]}" are the same key for Cilium ("${ext}") with different values: Cilium keeps one of them, chosen by Go's map order, which is not supported by distill`);
    if (ext !== undefined) byExtended?.set(ext, [k, val]);
    const vp = labelValueProblem(val);
    if (vp) r.fail(kpath, `invalid label value "${val}": ${vp}`);
    reqs.push({ key, operator: 'In', values: [val] });
  }
  const exprs = r.optArray(obj.matchExpressions, join(path, 'matchExpressions')) ?? [];
  exprs.forEach((e, i) => {
    const epath = at(join(path, 'matchExpressions'), i);
    const eo = r.object(e, epath, ['key', 'operator', 'values']);
    const key = parseKey(r, r.nonEmptyString(eo.key, join(epath, 'key')), join(epath, 'key'), opts);
    const operator = r.oneOf(eo.operator, join(epath, 'operator'), OPERATORS);
    const valuesRaw = r.optArray(eo.values, join(epath, 'values')) ?? [];
    const values = valuesRaw.map((x, j) => {
      const s = r.string(x, at(join(epath, 'values'), j));
      const vp = labelValueProblem(s);
      if (vp) r.fail(at(join(epath, 'values'), j), `invalid label value "${s}": ${vp}`);
      return s;
    });
    if ((operator === 'In' || operator === 'NotIn') && values.length === 0) {
      r.fail(join(epath, 'values'), `must be non-empty when operator is ${operator}`);
    }
    if ((operator === 'Exists' || operator === 'DoesNotExist') && values.length > 0) {
      r.fail(join(epath, 'values'), `must be empty when operator is ${operator}`);
    }
    reqs.push({ key, operator, values });
  });
  return makeSelector(reqs);
}
