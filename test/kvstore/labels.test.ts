import { describe, expect, it } from 'vitest';
import { LabelFormatError, labelSetKey, parseLabelSetKey } from '../../src/kvstore/labels.js';

describe("Cilium's kvstore label-set key", () => {
  it('is source:key=value; per label, sorted by key, ending in ;', () => {
    expect(labelSetKey(['k8s:io.kubernetes.pod.namespace=prod', 'k8s:app=web'])).toBe(
      'k8s:app=web;k8s:io.kubernetes.pod.namespace=prod;',
    );
  });
  it('keeps / in keys (k8s label prefixes) and round-trips', () => {
    const key = labelSetKey(['k8s:app.kubernetes.io/name=db', 'k8s:a=1']);
    expect(key).toBe('k8s:a=1;k8s:app.kubernetes.io/name=db;');
    expect(parseLabelSetKey(key)).toEqual(['k8s:a=1', 'k8s:app.kubernetes.io/name=db']);
  });
  it('refuses labels it could not round-trip, naming the label', () => {
    expect(() => labelSetKey(['app=web'])).toThrow(LabelFormatError);
    expect(() => labelSetKey(['k8s:a=1;k8s:b=2'])).toThrow(/k8s:a=1;k8s:b=2.*;/);
    expect(() => labelSetKey(['k8s:a=1', 'k8s:a=2'])).toThrow(/appears twice/);
    expect(() => labelSetKey([])).toThrow(/empty/);
  });
});
