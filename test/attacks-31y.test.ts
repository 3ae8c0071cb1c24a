import { Alias, parseDocument, visit, type Document } from 'yaml';
import { describe, expect, it, vi } from 'vitest';
import { loadYamlDocuments } from '../src/policy/yaml.js';
import { cli, tmpFile } from './cli-helpers.js';

// Imported dynamically so that this file runs (and fails on its bound) where the module does not exist yet.
const work = await import('../src/policy/yaml-convert.js').then(
  (m) => m.conversionWork,
  () => ({ visits: 0 }),
);

/** `literal` plain items, then `anchors` anchored maps, each used `uses` times as an alias and `uses` times as a merge. */
function manyAliases(literal: number, anchors: number, uses: number): string {
  const lines = [`lit: [${Array(literal).fill('1').join(',')}]`];
  for (let a = 0; a < anchors; a++) lines.push(`a${a}: &a${a} {k: v${a}}`);
  for (let a = 0; a < anchors; a++) lines.push(`u${a}: [${Array(uses).fill(`*a${a}`).join(',')}]`);
  for (let a = 0; a < anchors; a++) lines.push(`m${a}: [${Array.from({ length: uses }, (_, i) => `{<<: *a${a}, i: ${i}}`).join(',')}]`);
  return `${lines.join('\n')}\n`;
}

/** Every node of the parsed document (pairs included). */
function documentNodes(doc: Document): number {
  let n = 0;
  visit(doc, {
    Node: () => void n++,
    Pair: () => void n++,
  });
  return n;
}

/** Every value of the read document, each use of a shared one counted again. */
function outputSize(v: unknown): number {
  if (typeof v !== 'object' || v === null) return 1;
  return 1 + (Array.isArray(v) ? v : Object.values(v)).reduce((s: number, c) => s + outputSize(c), 0);
}

describe('3102. reading a document costs its size plus what its aliases expand to', () => {
  it('10,000 aliases and 10,000 merges over 25 anchors: work within 2 x (document nodes + values read)', () => {
    // yaml 2.9.1's toJS scanned its list of anchors and aliases up to each alias (Alias.resolve): quadratic in
    // the aliases (a 296 kB file with 40 anchors x 500 uses: 7 s; 24-33 s on this shared machine).
    const text = manyAliases(20_000, 25, 400);
    const original = Alias.prototype.resolve;
    let scanned = 0;
    const resolve = vi.spyOn(Alias.prototype, 'resolve').mockImplementation(function (this: Alias, doc, ctx) {
      const cache = (ctx as { aliasResolveCache?: unknown[] } | undefined)?.aliasResolveCache;
      scanned += cache ? cache.indexOf(this) + 1 : 0;
      return original.call(this, doc, ctx);
    });
    const visitsBefore = work.visits;
    let value: unknown;
    try {
      value = loadYamlDocuments(text, 'f')[0]?.value;
    } finally {
      resolve.mockRestore();
    }
    const v = value as Record<string, { k: string; i?: number }[]>;
    expect(v.u24?.[399]).toEqual({ k: 'v24' });
    expect(v.m24?.[399]).toEqual({ k: 'v24', i: 399 });
    const size = documentNodes(parseDocument(text)) + outputSize(value);
    expect(scanned + work.visits - visitsBefore).toBeLessThanOrEqual(2 * size);
  });
});

describe('3240. a `<<` key tagged as a string is a key, as go-yaml v2 reads it', () => {
  it('`!!str <<` and `! <<` are keys; `<<` and `!!merge <<` merge', () => {
    expect(loadYamlDocuments('a: 1\n!!str <<: {b: 1}\n', 'f')[0]?.value).toEqual({ a: 1, '<<': { b: 1 } });
    expect(loadYamlDocuments('! <<: {b: 1}\n', 'f')[0]?.value).toEqual({ '<<': { b: 1 } });
    expect(loadYamlDocuments('<<: {b: 1}\n', 'f')[0]?.value).toEqual({ b: 1 });
    expect(loadYamlDocuments('!!merge <<: {b: 1}\n', 'f')[0]?.value).toEqual({ b: 1 });
    const value = loadYamlDocuments('__proto__: 1\nx: {!!str <<: {a: 1}}\n', 'f')[0]?.value as Record<string, unknown>;
    expect(Object.getPrototypeOf(value)).toBe(Object.prototype);
    expect(Object.hasOwn(value, '__proto__')).toBe(true);
  });

  it('a policy whose rules sit under `!!str <<` has no rules (kubectl never merges them): refused, not read as allowing world', () => {
    const policy = [
      'apiVersion: cilium.io/v2',
      'kind: CiliumNetworkPolicy',
      'metadata: {name: p, namespace: x}',
      'spec:',
      '  endpointSelector: {}',
      '  !!str <<: {ingress: [{fromEntities: [world]}]}',
      '',
    ].join('\n');
    const r = cli('validate', tmpFile('strmerge.yaml', policy));
    expect(r.err).toMatch(/strmerge\.yaml#1 .*rule must have at least one of Ingress/);
    expect(r.code).toBe(2);
  });
});
