import { describe, expect, it } from 'vitest';
import { makeLabelSet, parseLabelKey } from '../../src/model/labels.js';
import { makeSelector, selectorMatches, WILDCARD_SELECTOR } from '../../src/model/selector.js';

const labels = makeLabelSet([
  { source: 'k8s', key: 'app', value: 'web' },
  { source: 'k8s', key: 'tier', value: 'front' },
  { source: 'reserved', key: 'world', value: '' },
]);

describe('label keys', () => {
  it('splits a known source prefix and defaults otherwise', () => {
    expect(parseLabelKey('k8s:app')).toEqual({ source: 'k8s', key: 'app' });
    expect(parseLabelKey('app')).toEqual({ source: 'any', key: 'app' });
    expect(parseLabelKey('app', 'k8s')).toEqual({ source: 'k8s', key: 'app' });
    expect(parseLabelKey('example.com/app')).toEqual({ source: 'any', key: 'example.com/app' });
  });
});

describe('selectors', () => {
  const key = (raw: string) => parseLabelKey(raw);
  it('implements In, NotIn, Exists and DoesNotExist', () => {
    expect(selectorMatches(makeSelector([{ key: key('app'), operator: 'In', values: ['web', 'db'] }]), labels)).toBe(true);
    expect(selectorMatches(makeSelector([{ key: key('app'), operator: 'In', values: ['db'] }]), labels)).toBe(false);
    expect(selectorMatches(makeSelector([{ key: key('app'), operator: 'NotIn', values: ['db'] }]), labels)).toBe(true);
    expect(selectorMatches(makeSelector([{ key: key('missing'), operator: 'NotIn', values: ['x'] }]), labels)).toBe(true);
    expect(selectorMatches(makeSelector([{ key: key('tier'), operator: 'Exists', values: [] }]), labels)).toBe(true);
    expect(selectorMatches(makeSelector([{ key: key('tier'), operator: 'DoesNotExist', values: [] }]), labels)).toBe(false);
  });
  it('a source-qualified key only matches labels of that source', () => {
    expect(selectorMatches(makeSelector([{ key: key('k8s:app'), operator: 'Exists', values: [] }]), labels)).toBe(true);
    expect(selectorMatches(makeSelector([{ key: key('reserved:app'), operator: 'Exists', values: [] }]), labels)).toBe(false);
    expect(selectorMatches(makeSelector([{ key: key('reserved:world'), operator: 'In', values: [''] }]), labels)).toBe(true);
  });
  it('the empty selector selects everything', () => {
    expect(selectorMatches(WILDCARD_SELECTOR, labels)).toBe(true);
    expect(selectorMatches(WILDCARD_SELECTOR, [])).toBe(true);
  });
  it('normalises: same requirements in any order give the same key', () => {
    const a = makeSelector([
      { key: key('app'), operator: 'In', values: ['b', 'a', 'a'] },
      { key: key('tier'), operator: 'Exists', values: [] },
    ]);
    const b = makeSelector([
      { key: key('tier'), operator: 'Exists', values: [] },
      { key: key('app'), operator: 'In', values: ['a', 'b'] },
    ]);
    expect(a.key).toBe(b.key);
  });
});
