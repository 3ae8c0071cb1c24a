import { LabelKey, labelKeyProblem, LabelSource, labelValueProblem, parseLabelKey } from '../model/labels.js';
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
  /** Whether keys may carry a `source:` prefix (Cilium selectors). */
  readonly allowSourcePrefix: boolean;
  /** Rewrites each key, e.g. a namespaceSelector key into the namespace-labels key. */
  readonly mapKey?: (key: LabelKey) => LabelKey;
}

const OPERATORS: readonly SelectorOperator[] = ['In', 'NotIn', 'Exists', 'DoesNotExist'];

function parseKey(r: Reader, raw: string, path: string, opts: SelectorOptions): LabelKey {
  const parsed = opts.allowSourcePrefix ? parseLabelKey(raw, opts.defaultSource) : { source: opts.defaultSource, key: raw };
  // Cilium's own reserved keys (`reserved:host`) are not Kubernetes label keys; everything else is.
  if (parsed.source !== 'reserved') {
    const kp = labelKeyProblem(parsed.key);
    if (kp) r.fail(path, `invalid label key "${raw}": ${kp}`);
  }
  return opts.mapKey ? opts.mapKey(parsed) : parsed;
}

/** Parses a Kubernetes LabelSelector (`matchLabels`, `matchExpressions`). */
export function parseLabelSelector(r: Reader, v: unknown, path: string, opts: SelectorOptions): Selector {
  const obj = r.object(v, path, ['matchLabels', 'matchExpressions']);
  const reqs: Requirement[] = [];
  const ml = r.stringMap(obj.matchLabels, join(path, 'matchLabels'));
  for (const [k, val] of Object.entries(ml)) {
    const kpath = join(join(path, 'matchLabels'), k);
    const key = parseKey(r, k, kpath, opts);
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
