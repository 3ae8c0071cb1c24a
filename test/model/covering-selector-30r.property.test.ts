import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { makeLabelSet, SOURCE_ANY, type Label } from '../../src/model/labels.js';
import { coveringSelector, makeSelector, selectorMatches, type Requirement } from '../../src/model/selector.js';

/** Finding 2800: the subject of a ClusterNetworkPolicy's deny side beside the version in force covers both versions'. */
const source = fc.constantFrom('k8s', 'container');
const key = fc.constantFrom('app', 'tier', 'x');
const value = fc.constantFrom('', 'a', 'b', 'c');
const label: fc.Arbitrary<Label> = fc.record({ source, key, value });
const requirement: fc.Arbitrary<Requirement> = fc.record({
  key: fc.record({ source: fc.oneof(source, fc.constant(SOURCE_ANY)), key }),
  operator: fc.constantFrom('In', 'In', 'NotIn', 'Exists', 'DoesNotExist'),
  values: fc.array(value, { minLength: 1, maxLength: 2 }),
});
const selector = fc.array(requirement, { maxLength: 4 }).map(makeSelector);
const labels = fc.uniqueArray(label, { maxLength: 5, selector: (l) => `${l.source}:${l.key}` }).map(makeLabelSet);

describe('coveringSelector', () => {
  it('matches every label set either selector matches', () => {
    fc.assert(
      fc.property(selector, selector, labels, (a, b, ls) => {
        const cover = coveringSelector(a, b);
        if (selectorMatches(a, ls) || selectorMatches(b, ls)) expect(selectorMatches(cover, ls)).toBe(true);
      }),
      { numRuns: 3000 },
    );
  });
  it('is the selector itself when both are the same, and keeps what both ask (In values joined)', () => {
    const a = makeSelector([{ key: { source: 'k8s', key: 'app' }, operator: 'In', values: ['client'] }, { key: { source: 'k8s', key: 'ns' }, operator: 'In', values: ['shop'] }]);
    const b = makeSelector([{ key: { source: 'k8s', key: 'app' }, operator: 'In', values: ['client2'] }, { key: { source: 'k8s', key: 'ns' }, operator: 'In', values: ['shop'] }, { key: { source: 'k8s', key: 't' }, operator: 'Exists', values: [] }]);
    expect(coveringSelector(a, makeSelector(a.requirements))).toBe(a);
    expect(coveringSelector(a, b).key).toBe('k8s:app in (client,client2) && k8s:ns=shop');
    expect(coveringSelector(b, a).key).toBe('k8s:app in (client,client2) && k8s:ns=shop');
  });
});
