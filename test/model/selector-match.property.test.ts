import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { makeLabelSet, SOURCE_ANY, type Label, type LabelSet } from '../../src/model/labels.js';
import { makeSelector, selectorMatches, type Requirement } from '../../src/model/selector.js';

/** The Kubernetes rules written out plainly (a label's values per key, then the operator), against the engine's loop. */
function reference(reqs: readonly Requirement[], labels: LabelSet): boolean {
  return reqs.every((r) => {
    const values = labels.filter((l) => l.key === r.key.key && (r.key.source === SOURCE_ANY || l.source === r.key.source)).map((l) => l.value);
    if (r.operator === 'In') return values.some((v) => r.values.includes(v));
    if (r.operator === 'NotIn') return !values.some((v) => r.values.includes(v));
    if (r.operator === 'Exists') return values.length > 0;
    return values.length === 0;
  });
}

const source = fc.constantFrom('k8s', 'reserved', 'container');
const key = fc.constantFrom('app', 'tier', 'x');
const value = fc.constantFrom('', 'a', 'b', 'c');
const label: fc.Arbitrary<Label> = fc.record({ source, key, value });
const requirement: fc.Arbitrary<Requirement> = fc.record({
  key: fc.record({ source: fc.oneof(source, fc.constant(SOURCE_ANY)), key }),
  operator: fc.constantFrom('In', 'NotIn', 'Exists', 'DoesNotExist'),
  values: fc.array(value, { maxLength: 3 }),
});

describe('selectorMatches', () => {
  it('agrees with the plain reading of In, NotIn, Exists and DoesNotExist, any source included', () => {
    const seed = process.env.DISTILL_SEED === undefined ? undefined : Number(process.env.DISTILL_SEED);
    fc.assert(
      fc.property(fc.array(requirement, { maxLength: 4 }), fc.uniqueArray(label, { maxLength: 6, selector: (l) => `${l.source}:${l.key}` }), (reqs, ls) => {
        const sel = makeSelector(reqs);
        const labels = makeLabelSet(ls);
        expect(selectorMatches(sel, labels)).toBe(reference(sel.requirements, labels));
      }),
      { numRuns: 2000, ...(seed === undefined ? {} : { seed }) },
    );
  });
});
