import { describe, expect, it } from 'vitest';
import { parseManifestFile } from '../src/policy/manifest.js';
import { loadYamlDocuments } from '../src/policy/yaml.js';
import { parseScenario } from '../src/scenario/format.js';
import { cli, tmpDir, tmpFile } from './cli-helpers.js';

/*
 * Round 21p (docs/attack-findings-21p.md): manifest, scenario and CLI inputs against kubectl's
 * sigs.k8s.io/yaml, the API server and Cilium 1.19.
 */

const denyFrom = (labels: string): string => `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: p, namespace: x}
spec:
  endpointSelector: {}
  ingress: [{fromEntities: [all]}]
  ingressDeny:
  - fromEndpoints: [{matchLabels: ${labels}}]
`;

describe('1540. keys that sigs.k8s.io/yaml writes to one JSON key (1 and "1", true and "true") were read as the last one', () => {
  // go-yaml v2 keys its map[interface{}]interface{} by type: int 1 and string "1" are two entries;
  // sigs.k8s.io/yaml convertToJSONableObject (yaml.go) then writes both to strMap["1"] while ranging
  // over the Go map, so the stored value is whichever Go's random order writes last ("Duplicate fields
  // are case-sensitively ignored in an undefined order"). On cd44777 distill read the last written
  // (a deny of 1=good where the cluster may hold a deny of 1=evil).
  const refused: [string, string][] = [
    ['a number key and its string', '{1: evil, "1": good}'],
    ['a string key and its number', '{"1": evil, 1: good}'],
    ['a !!str key and a number', '{1: evil, !!str 1: good}'],
    ['a boolean key and its string', '{true: evil, "true": good}'],
    ['a YAML 1.1 boolean (on) and "true"', '{on: evil, "true": good}'],
  ];
  for (const [name, labels] of refused) {
    it(`refuses ${name}`, () => {
      expect(() => parseManifestFile(denyFrom(labels), 'f')).toThrow(/are one key to kubectl, which keeps one of the two values at random/);
    });
  }

  it('refuses the same through a merge key and through a merge list', () => {
    expect(() => loadYamlDocuments(`a: &b {"1": evil}\nb: {<<: *b, 1: good}\n`, 'f')).toThrow(/one key to kubectl/);
    expect(() => loadYamlDocuments(`a: &b {"1": evil}\nc: &c {1: good}\nb: {<<: [*b, *c]}\n`, 'f')).toThrow(/one key to kubectl/);
  });

  it('refuses it in a scenario file too (the same key check)', () => {
    const text = 'namespaces: [{name: x, labels: {1: a, "1": b}}]\n';
    expect(() => parseScenario(text, 's')).toThrow(/one key to kubectl/);
  });

  it('keeps reading keys of one type: a key once, a written key after a merge of the same key (go-yaml: the written one wins)', () => {
    const [p] = parseManifestFile(denyFrom('{1: evil, "2": good}'), 'f');
    expect(p!.rules.length).toBeGreaterThan(0);
    expect(loadYamlDocuments(`a: &b {"1": evil}\nb: {<<: *b, "1": good}\n`, 'f')[0]!.value).toEqual({ a: { 1: 'evil' }, b: { 1: 'good' } });
  });
});

describe('1541. verify said "agree on all" (and disagreements: 0) for a scenario it could not read', () => {
  // On cd44777 the summary counted the file as a scenario and printed "engine and naive evaluator agree
  // on all" on stdout, only the exit status (2) and stderr telling that nothing was verified.
  const bad = 'namespaces: [{name: x}]\npods: [{name: x/a, labels: {-bad: x}}]\nsteps: [{probes: [{port: 80}]}]\n';
  const good = 'namespaces: [{name: x}]\npods: [{name: x/a}, {name: x/b}]\nsteps: [{probes: [{port: 80}]}]\n';

  it('the text line says how many were not read, and no longer "agree on all"', () => {
    const dir = tmpDir();
    const r = cli('verify', '--scenario', tmpFile('bad.yaml', bad, dir), '--scenario', tmpFile('good.yaml', good, dir));
    expect(r.code).toBe(2);
    expect(r.out).toBe('2 scenarios, 2 results, engine and naive evaluator agree on the scenarios read; 1 NOT READ (errors on stderr)\n');
    expect(r.err).toMatch(/bad\.yaml.*labels/);
  });

  it('the JSON summary counts them in unread', () => {
    const r = cli('verify', '--json', '--scenario', tmpFile('bad.yaml', bad));
    expect(r.code).toBe(2);
    expect(JSON.parse(r.out)).toEqual({ scenarios: 1, results: 0, disagreements: 0, unread: 1 });
  });

  it('still says "agree on all" when every scenario was read', () => {
    const r = cli('verify', '--scenario', tmpFile('good.yaml', good));
    expect(r.code).toBe(0);
    expect(r.out).toBe('1 scenarios, 2 results, engine and naive evaluator agree on all\n');
  });
});

describe('1542. a scenario pod with an invalid serviceAccount was refused only if the engine ran', () => {
  // Kubernetes ValidatePodSpec -> ValidateServiceAccountName (a DNS subdomain); the engine's event check
  // (src/engine/validate.ts) refuses it, but on cd44777 the scenario reader took it, so a scenario whose
  // probes never reached the engine (one pod: no pairs) exited 0.
  it('refuses it when reading the scenario', () => {
    const text = 'namespaces: [{name: x}]\npods: [{name: x/a, serviceAccount: "not,a,name"}]\nsteps: [{probes: [{port: 80}]}]\n';
    expect(() => parseScenario(text, 's')).toThrow(/pods\[0\]\.serviceAccount: "not,a,name" is not a valid object name/);
    expect(cli('reach', '--scenario', tmpFile('s.yaml', text)).code).toBe(2);
  });

  it('reads a valid one', () => {
    expect(() => parseScenario('namespaces: [{name: x}]\npods: [{name: x/a, serviceAccount: build-bot.v2}]\n', 's')).not.toThrow();
  });
});
