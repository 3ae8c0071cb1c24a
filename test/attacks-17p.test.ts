import { describe, expect, it } from 'vitest';
import { parseManifest, parseManifestFile } from '../src/policy/manifest.js';
import { parseScenario } from '../src/scenario/format.js';
import { cnp, errorOf } from './policy/helpers.js';

/*
 * Round 17p (docs/attack-findings-17p.md): the manifest readers' YAML against kubectl's go-yaml v2
 * (sigs.k8s.io/yaml -> go.yaml.in/yaml/v2 v2.4.2, decode.go).
 */

const manifest = (ingress: string, directive = ''): string => `${directive}apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: p, namespace: x}
spec:
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - fromEndpoints: [${ingress}]
`;

describe('875. a YAML tag that makes a JavaScript Set, Map, Buffer or Date was read as an empty selector (every pod)', () => {
  // go-yaml ignores a tag on a collection (`!!omap [app: x]` is a list, which the API server refuses
  // as a selector), decodes !!binary from base64 and writes !!timestamp back as RFC 3339: no reading
  // is an empty selector. On 12b4e44 each of these parsed into an allow from every pod of x.
  const cases: [string, string, string?][] = [
    ['`matchLabels: !!omap [app: client]` (a Map)', '{matchLabels: !!omap [app: client]}'],
    ['`!!omap [app: client]` as a peer (a Map)', '!!omap [app: client]'],
    ['`matchLabels: !!binary ""` (an empty Buffer)', '{matchLabels: !!binary ""}'],
    ['`!!timestamp 2001-12-14` as a peer (a Date)', '!!timestamp 2001-12-14'],
    ['a plain date under `%YAML 1.1` (a Date in the 1.1 schema)', '{matchLabels: 2001-12-14}', '%YAML 1.1\n---\n'],
    ['a plain date peer under `%YAML 1.1`', '2001-12-14', '%YAML 1.1\n---\n'],
  ];
  it.each(cases)('refuses %s (accepted as every pod before)', (_, ingress, directive) => {
    expect(() => parseManifestFile(manifest(ingress, directive), 'm.yaml')).toThrow();
  });

  it('refuses the same in a scenario file (the scenario loader shares the schema)', () => {
    const text = `pods: []\npolicies:\n- apiVersion: cilium.io/v2\n  kind: CiliumNetworkPolicy\n  metadata: {name: p, namespace: x}\n  spec:\n    endpointSelector: {}\n    ingress: [{fromEndpoints: [{matchLabels: !!omap [app: client]}]}]\nsteps: []\n`;
    expect(() => parseScenario(text, 's.yaml')).toThrow(/matchLabels|omap|list/);
  });

  it('refuses a Map, Set or Date handed to parseManifest by an embedder', () => {
    for (const odd of [new Map([['app', 'client']]), new Set(['app']), new Date(0), new Uint8Array(0)]) {
      const e = errorOf(() => parseManifest(cnp({ endpointSelector: { matchLabels: { app: 'web' } }, ingress: [{ fromEndpoints: [{ matchLabels: odd }] }] }), 'f'));
      expect(e.fieldPath).toBe('spec.ingress[0].fromEndpoints[0].matchLabels');
      expect(() => parseManifest(cnp({ endpointSelector: { matchLabels: { app: 'web' } }, ingress: [{ fromEndpoints: [odd] }] }), 'f')).toThrow();
    }
  });

  it('still reads what go-yaml reads the same: `!!set {}`, `!!str`, `!!int "80"`, a `%YAML 1.1` document with core scalars', () => {
    expect(parseManifestFile(manifest('!!set {}'), 'm.yaml')[0]!.rules).toHaveLength(1);
    const [p] = parseManifestFile(manifest('{matchLabels: {app: !!str client}}', '%YAML 1.1\n---\n'), 'm.yaml');
    expect(p!.rules[0]!.peers[0]).toMatchObject({ kind: 'selector' });
    expect(JSON.stringify(p!.rules[0]!.peers)).toContain('app=client');
  });
});

const withBase = (body: string): string => `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: p, namespace: x}
spec:
  endpointSelector: {matchLabels: {app: web}}
  ingressDeny:
  - &base {fromEntities: [world], toPorts: [{ports: [{port: "80", protocol: TCP}]}]}
${body}`;

describe('876. a merge key `<<` after a key it also sets: go-yaml v2 lets the merge win, the yaml package the key', () => {
  // go-yaml v2 decode.go `mapping` calls `merge` in place, which SetMapIndex-es over the keys set
  // before it (strict decoding: "key already set in map"). On 12b4e44 distill kept the earlier key:
  // here it denied port 443 where kubectl's object denies port 80 (and 443 stays open).
  it('refuses `toPorts: 443` written before `<<: *base` (read as 443 before; kubectl reads 80)', () => {
    const text = withBase('  - toPorts: [{ports: [{port: "443", protocol: TCP}]}]\n    <<: *base\n');
    expect(() => parseManifestFile(text, 'm.yaml')).toThrow(/merge key "<<" sets "toPorts"/);
  });

  it('refuses a later merge over an earlier one (`<<: *a` then `<<: *b`, both setting a key)', () => {
    const text = withBase('  - <<: *base\n    <<: {toPorts: [{ports: [{port: "443", protocol: TCP}]}]}\n');
    expect(() => parseManifestFile(text, 'm.yaml')).toThrow(/merge key/);
  });

  it('refuses it through a merged mapping that itself merges', () => {
    const text = withBase('  - &mid {<<: *base, fromEntities: [cluster]}\n  - toPorts: [{ports: [{port: "443", protocol: TCP}]}]\n    <<: *mid\n');
    expect(() => parseManifestFile(text, 'm.yaml')).toThrow(/merge key "<<" sets "toPorts"/);
  });

  it('keeps reading a key written after `<<` over the merged one, and a merge list earliest first (go-yaml agrees)', () => {
    const [p] = parseManifestFile(withBase('  - <<: *base\n    toPorts: [{ports: [{port: "443", protocol: TCP}]}]\n  - <<: [{fromEntities: [cluster]}, *base]\n'), 'm.yaml');
    expect(p!.rules).toHaveLength(3);
    expect(JSON.stringify(p!.rules[1]!.ports)).toContain('443');
    expect(JSON.stringify(p!.rules[2]!.ports)).toContain('"from":80');
    expect(JSON.stringify(p!.rules[2]!.peers)).not.toEqual(JSON.stringify(p!.rules[0]!.peers));
  });

  it('keeps refusing a key written twice', () => {
    expect(() => parseManifestFile(withBase('  - {fromEntities: [world], fromEntities: [cluster]}\n'), 'm.yaml')).toThrow();
  });
});

describe('877. duplicate keys were checked in time quadratic in a mapping\'s size', () => {
  // The yaml package's `uniqueKeys` compares each key with every earlier one (mapIncludes): on
  // 12b4e44 a 1.2 MB mapping of 100,000 keys took 11 minutes of CPU on this machine (40,000 keys:
  // 12 s), 50,000 keys far past this test's timeout; now one Set per mapping.
  it('parses a mapping of 50,000 keys and still refuses a duplicate at its end', () => {
    const keys = Array.from({ length: 50_000 }, (_, i) => `  k${i}: v\n`).join('');
    const text = `apiVersion: v1\nkind: Namespace\nmetadata:\n  name: big\n  annotations:\n${keys.replace(/^ {2}/gm, '    ')}`;
    expect(() => parseManifestFile(`${text}    k0: again\n`, 'm.yaml')).toThrow(/"k0" appears twice/);
  }, 30_000);
});

describe('878. a number map key was written as JavaScript writes it, not as sigs.k8s.io/yaml does', () => {
  // convertToJSONableObject (sigs.k8s.io/yaml yaml.go): float keys `FormatFloat(k, 'g', -1, 32)`,
  // null/list/map keys refused. On 12b4e44 `3.14159265358979` selected label key
  // "3.14159265358979" where kubectl's object has "3.1415927" (both valid label keys), `1e7` was
  // "10000000" (kubectl: "1e+07", refused as a key), and 2^53 + 1 was rounded.
  const peer = (key: string): string => manifest(`{matchLabels: {${key}: a}}`);
  it.each(['3.14159265358979', '1e7', '9007199254740993', '010', '.inf'])('refuses the unquoted key %s (read before)', (key) => {
    expect(() => parseManifestFile(peer(key), 'm.yaml')).toThrow(/map key .* quote it/);
  });
  it.each(['~', '[a]'])('refuses the key %s naming the key (refused before as the label key "" or "[ a ]")', (key) => {
    expect(() => parseManifestFile(peer(key), 'm.yaml')).toThrow(/map key .* quote it/);
  });
  it.each([['80', '80'], ['"3.14159265358979"', '3.14159265358979'], ['-0', '0']])('reads %s as the key %j, as kubectl does', (key, text) => {
    const [p] = parseManifestFile(peer(key), 'm.yaml');
    expect(JSON.stringify(p!.rules[0]!.peers)).toContain(`${text}=a`);
  });
});

describe('879. a merge key naming an alias of a list', () => {
  // go-yaml v2 decode.go `merge`: `case aliasNode: if n.alias.kind != mappingNode { failWantMap() }`,
  // so kubectl refuses `<<: *list`; the yaml package merged each mapping of the list, and on 12b4e44
  // distill enforced a rule the cluster never holds.
  it('refuses `<<: *list` where list is a list of mappings (read before)', () => {
    // The anchor sits in `status`, which the reader does not read; the alias is the second deny rule.
    const text = withBase('  - <<: *list\n').replace('metadata: {name: p, namespace: x}', 'metadata: {name: p, namespace: x}\nstatus: {seen: &list [{fromEntities: [cluster]}]}');
    expect(() => parseManifestFile(text, 'm.yaml')).toThrow(/alias of a list/);
  });
  it('keeps reading a merge list `<<: [*a]` of mapping aliases', () => {
    expect(parseManifestFile(withBase('  - <<: [*base]\n'), 'm.yaml')[0]!.rules).toHaveLength(2);
  });
});
