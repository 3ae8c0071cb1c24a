import { describe, expect, it } from 'vitest';
import { parseManifestFile } from '../../src/index.js';

/**
 * Review 26t of the JSON object stream reader (src/policy/yaml.ts `jsonStreamValues`, finding 2120):
 * a text is never read as more objects than kubectl reads. kubectl (cli-runtime StreamVisitor) reads a
 * file with k8s.io/apimachinery pkg/util/yaml `YAMLOrJSONDecoder`: a text whose first non-space is `{`
 * goes to Go's json.Decoder, which skips only space, tab, CR and LF between values (encoding/json
 * scanner.go `isSpace`); on a value it cannot read after two or more objects `Decode` returns the error
 * ("this is an unambiguous JSON stream, and we should not switch to YAML"), after zero or one it reads
 * the rest as YAML. A byte order mark is dropped only at the start of the file (FileVisitor,
 * `unicode.BOMOverride`).
 */
const np = (name: string): string => JSON.stringify({ apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { name, namespace: 'x' }, spec: { podSelector: {} } });
const names = (text: string): string[] => parseManifestFile(text, 'f').map((p) => p.ref.name);

describe('2171. a byte order mark between JSON objects', () => {
  it('after two objects kubectl stops (json.Decoder: invalid character), so the third is never read as a policy', () => {
    // On 531fa9ca this read a, b and c: a policy kubectl never applies.
    expect(() => names(`${np('a')}\n${np('b')}\n\uFEFF${np('c')}\n`)).toThrow(/f#1: invalid YAML/);
  });
  it('a byte order mark at the start of the file is dropped, as kubectl drops it', () => {
    expect(names(`\uFEFF${np('a')}\r\n${np('b')}\r\n`)).toEqual(['a', 'b']);
  });
});

describe('JSON streams read as kubectl reads them (checked and held)', () => {
  it('objects separated by JSON whitespace, pretty-printed or not', () => {
    expect(names(`${np('a')}${np('b')}\t\n ${JSON.stringify(JSON.parse(np('c')), null, 2)}`)).toEqual(['a', 'b', 'c']);
  });
  it('one JSON object then YAML documents after "---": both', () => {
    expect(names(`${np('a')}\n---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: c, namespace: x}\nspec: {podSelector: {}}\n`)).toEqual(['a', 'c']);
  });
  it('texts kubectl reads only in part, or differently, are refused, never read further', () => {
    // two objects then YAML: kubectl applies a and b, then fails
    expect(() => names(`${np('a')}${np('b')}\n---\nkind: NetworkPolicy\n`)).toThrow(/invalid YAML/);
    // a value that is not JSON (single quotes) after the first: kubectl reads the rest as YAML; here refused
    expect(() => names(`${np('a')}{'kind': 'NetworkPolicy'}`)).toThrow(/invalid YAML/);
    // NaN is no JSON number
    expect(() => names(`${np('a')}${np('b').replace('{}}', '{}, "x": NaN}')}`)).toThrow(/invalid YAML/);
  });
  it('a duplicate key inside a streamed object is refused, as in a single document', () => {
    const dup = np('b').replace('"kind":"NetworkPolicy"', '"kind":"NetworkPolicy","kind":"NetworkPolicy"');
    expect(() => names(`${np('a')}${dup}`)).toThrow(/appears twice/);
  });
  it('a brace inside a string does not split an object', () => {
    expect(names(`${np('a')}${np('b').replace('"x"}', '"x","annotations":{"n":"}{"}}')}`)).toEqual(['a', 'b']);
  });
});

describe('2173. a JSON number a float64 cannot hold', () => {
  // kubectl decodes each JSON object with sigs.k8s.io/json (UnmarshalCaseSensitivePreserveInts): `1e400` fails
  // ("cannot unmarshal number 1e400 into Go value of type float64"); the API server's decoder likewise.
  const cnp = (app: string, name = 'a'): string =>
    `{"apiVersion":"cilium.io/v2","kind":"CiliumNetworkPolicy","metadata":{"name":"${name}","namespace":"x"},"spec":{"endpointSelector":{"matchLabels":{"app":${app}}},"ingress":[{}]}}`;
  it('is refused in one JSON object and in a stream (on 531fa9ca both read the label value "1e400")', () => {
    expect(() => names(cnp('1e400'))).toThrow('f#1: a JSON number (at key "app") is out of range');
    expect(() => names(cnp('"x"') + cnp('-1E+999', 'b'))).toThrow('f#2: a JSON number (at key "app") is out of range');
  });
  it('the same digits quoted, or in YAML (go-yaml reads 1e400 as a string), are the string they always were', () => {
    expect(names(cnp('"1e400"'))).toEqual(['a']);
    expect(names('apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: a, namespace: x}\nspec:\n  endpointSelector: {matchLabels: {app: 1e400}}\n  ingress: [{}]\n')).toEqual(['a']);
  });
});
