import { Alias } from 'yaml';
import { describe, expect, it, vi } from 'vitest';
import { loadYaml, loadYamlDocuments } from '../src/policy/yaml.js';
import { cli, tmpFile } from './cli-helpers.js';

/** A CiliumNetworkPolicy whose first ingress rule (`n` selectors) is anchored and then aliased `uses` times. */
function aliasedRules(n: number, uses: number): string {
  const selectors = Array.from({ length: n }, (_, i) => `{matchLabels: {app: a${i}}}`).join(', ');
  return [
    'apiVersion: cilium.io/v2',
    'kind: CiliumNetworkPolicy',
    'metadata: {name: p, namespace: x}',
    'spec:',
    '  endpointSelector: {}',
    `  ingress: [&r {fromEndpoints: [${selectors}]}, ${Array(uses).fill('*r').join(', ')}]`,
    '',
  ].join('\n');
}

describe('3100. aliases are expanded no further than kubectl\'s go-yaml expands them', () => {
  it('an anchored rule used 150 times is refused as go-yaml v2 refuses it (excessive aliasing)', () => {
    // 600 selectors read 150 times over: 90,000 selectors from a 13 kB text (999 uses of 2,000: 54 s, 2 million).
    expect(() => loadYamlDocuments(aliasedRules(600, 150), 'p.yaml')).toThrow(/p\.yaml#1: document contains excessive aliasing/);
  });

  it('validate refuses it (exit 2, the rule is never read)', () => {
    const r = cli('validate', tmpFile('aliased.yaml', aliasedRules(600, 150)));
    expect(r.err).toMatch(/aliased\.yaml#1: document contains excessive aliasing/);
    expect(r.code).toBe(2);
  });

  it('a scenario is held to the same bound (its policies are manifests)', () => {
    const scenario = ['namespaces: [{name: x}]', 'pods: []', 'policies:', ...aliasedRules(600, 150).split('\n').map((l, i) => (i === 0 ? `  - ${l}` : `    ${l}`))].join('\n');
    expect(() => loadYaml(scenario, 's.yaml')).toThrow(/s\.yaml: document contains excessive aliasing/);
  });

  it('held: ordinary anchors, merge keys and up to 100 aliased nodes are read as before', () => {
    expect(loadYamlDocuments(aliasedRules(600, 1), 'p.yaml')).toHaveLength(1);
    // go-yaml fails nothing with at most 100 aliased nodes, however small the document.
    const scalars = `a: &s x\nb: [${Array(100).fill('*s').join(', ')}]\n`;
    expect((loadYamlDocuments(scalars, 'f')[0]?.value as { b: string[] }).b).toHaveLength(100);
    const merged = 'base: &b {app: a, tier: fe}\nsel: {<<: *b, tier: be}\nother: *b\n';
    expect(loadYamlDocuments(merged, 'f')[0]?.value).toEqual({ base: { app: 'a', tier: 'fe' }, sel: { app: 'a', tier: 'be' }, other: { app: 'a', tier: 'fe' } });
  });

  it('held: aliases within go-yaml\'s share are read (2,200 aliased nodes among 7,200)', () => {
    const text = `lit: [${Array(5_000).fill('1').join(',')}]\na: &l [${Array(10).fill('x').join(',')}]\nb: [${Array(200).fill('*l').join(',')}]\n`;
    expect((loadYamlDocuments(text, 'f')[0]?.value as { b: unknown[] }).b).toHaveLength(200);
  });
});

describe('3101. merge keys are checked in time linear in the document', () => {
  it('900 `<<: *b` merges resolve their alias from one pass, not one search of the document each', () => {
    // On the base each merge searched the whole document (Alias.resolve without the toJS context) twice:
    // 900 merges 2.7 s, 3,000 merges (66 kB) 94 s before maxAliasCount refused them.
    const text = ['base: &b {x: 1}', 'items:', ...Array.from({ length: 900 }, (_, k) => `  - {<<: *b, k: ${k}}`)].join('\n');
    const resolve = vi.spyOn(Alias.prototype, 'resolve');
    try {
      const value = loadYamlDocuments(text, 'f')[0]?.value as { items: { x: number; k: number }[] };
      expect(value.items[899]).toEqual({ x: 1, k: 899 });
      expect(resolve.mock.calls.filter(([, ctx]) => ctx === undefined)).toHaveLength(0);
    } finally {
      resolve.mockRestore();
    }
  });
});
