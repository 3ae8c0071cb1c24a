import { describe, expect, it } from 'vitest';
import { loadYamlDocuments } from '../../src/policy/yaml.js';

/**
 * Attack finding 2531: go-yaml v2 reads `.inf`, `-.inf`, `.nan` (any case, tagged `!!float` or not) as a float64
 * that sigs.k8s.io/yaml's YAMLToJSON passes to encoding/json, which refuses it, so kubectl fails the whole file;
 * as a map key it is the string ".inf" (convertToJSONableObject), which the key check handles.
 */
const load = (text: string): unknown => loadYamlDocuments(text, 'f')[0]!.value;

describe('2531: non-finite floats fail the file as kubectl fails it', () => {
  it.each(['a: .inf', 'a: -.Inf', 'a: +.INF', 'a: .NaN', 'a: !!float .nan', 'a: {b: [1, .inf]}', 'x: &n .inf\na: 1'])('%j is refused', (text) => {
    expect(() => load(`${text}\n`)).toThrow(/is not finite/);
  });
  it('finite and string values stay read', () => {
    expect(load('a: 1e2\nb: "inf"\nc: .5\nd: inf\ne: 1e400\n')).toEqual({ a: 100, b: 'inf', c: 0.5, d: 'inf', e: '1e400' });
  });
});
