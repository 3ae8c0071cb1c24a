import { describe, expect, it } from 'vitest';
import { loadYamlDocuments } from '../../src/policy/yaml.js';
import { parseManifestFile } from '../../src/policy/manifest.js';

/**
 * Attack finding 2470: a scalar with an explicit `!!int`, `!!float`, `!!bool` or `!!null` tag, read as
 * kubectl's go-yaml v2 reads it (sigs.k8s.io/yaml goyaml.v2/resolve.go `resolve`): the text resolved,
 * an integer under `!!float` a float, any other type a failure of the whole file.
 */
const value = (text: string): unknown => (loadYamlDocuments(`a: ${text}\n`, 'f')[0]!.value as { a: unknown }).a;

describe('2470: explicit scalar tags as go-yaml v2 resolves them', () => {
  it.each([
    ['!!float 80', 80],
    ['!!float 0x50', 80],
    ['!!float "1e3"', 1000],
    ['!!float 1_0.5', 10.5],
    ['!!float .5', 0.5],
    ['!!int "80"', 80],
    ['!!int 0o17', 15],
    ['!!int 0b101', 5],
    ['!!bool yes', true],
    ['!!bool "Off"', false],
    ['!!null ~', null],
    ['!!null ""', null],
    ['!!str 80', '80'],
    ['!foo 80', '80'],
  ])('%s is %j', (text, want) => {
    expect(value(text)).toEqual(want);
  });

  it.each([
    ['!!int web', '!!str `web` as a !!int'],
    ['!!int 1.5', '!!float `1.5` as a !!int'],
    ['!!int 1e3', '!!float `1e3` as a !!int'],
    ['!!int yes', '!!bool `yes` as a !!int'],
    ['!!int 2001-12-14', '!!str `2001-12-14` as a !!int'],
    ['!!bool 1', '!!int `1` as a !!bool'],
    ['!!bool', '!!null `` as a !!bool'],
    ['!!null x', '!!str `x` as a !!null'],
    ['!!float 1e400', '!!str `1e400` as a !!float'],
  ])('%s is refused', (text, words) => {
    expect(() => value(text)).toThrow(`cannot decode ${words}`);
  });

  it('refuses a float-tagged key (sigs.k8s.io/yaml writes it in float format)', () => {
    expect(() => loadYamlDocuments('!!float 10000000: x\n', 'f')).toThrow(/quote it/);
  });

  it('reads a NetworkPolicy port `!!float 80` as port 80', () => {
    const text = 'apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: x}\nspec:\n  podSelector: {}\n  ingress: [{ports: [{port: !!float 80}]}]\n';
    expect(JSON.stringify(parseManifestFile(text, 'np.yaml'))).toMatch(/"port":80\b/);
  });
});

describe('2473: items of a typed list without kind and apiVersion take the list\'s', () => {
  const list = (kind: string, apiVersion: string, item: string): string => `{"apiVersion":"${apiVersion}","kind":"${kind}","metadata":{"resourceVersion":"1"},"items":[${item}]}`;
  const np = '{"metadata":{"name":"a","namespace":"x"},"spec":{"podSelector":{},"policyTypes":["Ingress"]}}';
  it('reads a NetworkPolicyList as the API serves it (items without kind)', () => {
    const policies = parseManifestFile(list('NetworkPolicyList', 'networking.k8s.io/v1', np), 'l.json');
    expect(policies.map((p) => `${p.ref.kind}/${p.ref.namespace}/${p.ref.name}`)).toEqual(['NetworkPolicy/x/a']);
  });
  it('leaves a `kind: List` item without kind refused (apimachinery infers the kind "")', () => {
    expect(() => parseManifestFile(list('List', 'v1', np), 'l.json')).toThrow(/kind: expected a string/);
  });
  it('leaves an item with only one of kind and apiVersion as written', () => {
    const item = '{"kind":"NetworkPolicy","metadata":{"name":"a","namespace":"x"},"spec":{"podSelector":{}}}';
    expect(() => parseManifestFile(list('NetworkPolicyList', 'networking.k8s.io/v1', item), 'l.json')).toThrow(/apiVersion: expected a string/);
  });
});

describe('2474: documents as kubectl splits a YAML file', () => {
  const np = (name: string): string => `apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: ${name}, namespace: x}\nspec: {podSelector: {}}\n`;
  it('refuses a document that follows "..." without "---" (kubectl drops it)', () => {
    expect(() => loadYamlDocuments(`${np('a')}...\n${np('b')}`, 'f')).toThrow(/after "\.\.\." without "---"/);
  });
  it.each(['--- ~', '--- {a: 1}', '--- |', '----', '---x'])('refuses the separator line %j', (line) => {
    expect(() => loadYamlDocuments(`${np('a')}${line}\n${np('b')}`, 'f')).toThrow(/invalid Yaml document separator/);
  });
  it('reads "---" lines with spaces or a comment, "..." at the end, and "..." before "---"', () => {
    const text = `--- # first\n${np('a')}...\n---  \r\n${np('b')}...\n# end\n`;
    expect(loadYamlDocuments(text, 'f').map((d) => (d.value as { metadata: { name: string } }).metadata.name)).toEqual(['a', 'b']);
  });
});

describe('2475: anchor and alias names as go-yaml v2 scans them', () => {
  it.each(['x: &a.b 1\ny: *a.b', 'x: &ä 1\ny: *ä', 'x: &a:b 1', 'x: &a/b {p: 1}\ny: {<<: *a/b}'])('refuses %j', (text) => {
    expect(() => loadYamlDocuments(`${text}\n`, 'f')).toThrow(/anchor or alias name/);
  });
  it('reads names of letters, digits, "_" and "-"', () => {
    expect(loadYamlDocuments('x: &a-b_C9 {p: 1}\nw: *a-b_C9\nz: {<<: *a-b_C9}\n', 'f')[0]!.value).toEqual({ x: { p: 1 }, w: { p: 1 }, z: { p: 1 } });
  });
});

describe('2476: plain scalars in flow collections that go-yaml v2 splits', () => {
  it.each(['a: {path: /v1/users/?}', 'a: [x?y]', 'a: {b: :c}', 'a: [{b: [c, {d: e?f}]}]'])('refuses %j', (text) => {
    expect(() => loadYamlDocuments(`${text}\n`, 'f')).toThrow(/read differently by kubectl's go-yaml/);
  });
  it.each([
    ['a: /x?y', { a: '/x?y' }],
    ['a: {p: "/x?y"}', { a: { p: '/x?y' } }],
    ['a: {url: http://x:80/}', { a: { url: 'http://x:80/' } }],
    ['a:\n  - x?y\n  - {p: q}', { a: ['x?y', { p: 'q' }] }],
  ])('reads %j', (text, want) => {
    expect(loadYamlDocuments(`${text}\n`, 'f')[0]!.value).toEqual(want);
  });
});

describe('2477: "\\/" in a double-quoted YAML scalar', () => {
  it.each(['a: "x\\/y"', 'a: ["\\\\\\/"]'])('refuses %j (go-yaml has no such escape)', (text) => {
    expect(() => loadYamlDocuments(`${text}\n`, 'f')).toThrow(/is no escape to kubectl's go-yaml/);
  });
  it.each([
    ['a: "x\\\\/y"', { a: 'x\\/y' }],
    ["a: 'x\\/y'", { a: 'x\\/y' }],
    ['{"a": "x\\/y"}', { a: 'x/y' }],
  ])('reads %j (an escaped backslash, single quotes, a JSON object)', (text, want) => {
    expect(loadYamlDocuments(`${text}\n`, 'f')[0]!.value).toEqual(want);
  });
});

describe('2478: tabs where go-yaml v2 does not skip them', () => {
  it.each(['a:\tb', 'a: \tb', '- \tb', 'k: v\n\t\nz: 1', '\t# c\na: 1', 'a:\t\n  b: 1'])('refuses %j', (text) => {
    expect(() => loadYamlDocuments(`${text}\n`, 'f')).toThrow(/a tab where kubectl's go-yaml fails/);
  });
  it.each([
    ['a: b\t# c', { a: 'b' }],
    ['x: |\n  a\tb', { x: 'a\tb\n' }],
    ['a: [1,\t2]', { a: [1, 2] }],
    ['a: "x\ty"', { a: 'x\ty' }],
    ['a: &x\tb', { a: 'b' }],
    ['{"a":\t1}', { a: 1 }],
  ])('reads %j (a tab after a value, in a scalar, in a flow collection, in JSON)', (text, want) => {
    expect(loadYamlDocuments(`${text}\n`, 'f')[0]!.value).toEqual(want);
  });
});
