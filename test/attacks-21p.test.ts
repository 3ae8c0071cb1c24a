import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
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

describe('1543. trace and plan applied nothing, silently, when -f read no object (stdin given twice, an empty folder)', () => {
  // kubectl apply -f on an input without objects: "error: no objects passed to apply". On cd44777
  // `trace --scenario - -f -` read the scenario from stdin and then an empty stdin for -f, and traced
  // the flow without the piped policy (FORWARDED, exit 0); `plan -f EMPTYDIR` planned no change.
  const scenario = 'namespaces: [{name: x}]\npods: [{name: x/a}, {name: x/b}]\nsteps: [{probes: [{port: 80}]}]\n';
  const DENY = 'apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny, namespace: x}\nspec: {podSelector: {}, policyTypes: [Ingress]}\n';

  it('refuses stdin given twice (trace, plan, validate; the built CLI, fed stdin)', () => {
    const run = (args: string[], input: string) => spawnSync(process.execPath, [join(process.cwd(), 'dist/cli/main.js'), ...args], { encoding: 'utf8', input });
    const s = tmpFile('s.yaml', scenario);
    const trace = run(['trace', '--scenario', '-', '-f', '-', '--from', 'x/b', '--to', 'x/a', '--port', '80/TCP'], scenario);
    expect(trace.status).toBe(2);
    expect(trace.stderr).toMatch(/stdin\) is given 2 times/);
    expect(run(['plan', '--scenario', s, '-f', '-', '-f', '-'], DENY).stderr).toMatch(/stdin\) is given 2 times/);
    expect(run(['validate', '-', '-f', '-'], DENY).stderr).toMatch(/stdin\) is given 2 times/);
  });

  it('refuses -f inputs without an object', () => {
    const dir = tmpDir();
    const s = tmpFile('s.yaml', scenario, dir);
    const empty = tmpFile('empty.yaml', '# nothing here\n', dir);
    const plan = cli('plan', '--scenario', s, '-f', empty);
    expect(plan.code).toBe(2);
    expect(plan.err).toMatch(/no objects passed to apply/);
    expect(cli('trace', '--scenario', s, '-f', empty, '--from', 'x/b', '--to', 'x/a', '--port', '80/TCP').err).toMatch(/no objects passed to apply/);
  });

  it('still applies an input with objects, also one with no policy (a Deployment: skipped with a warning)', () => {
    const dir = tmpDir();
    const s = tmpFile('s.yaml', scenario, dir);
    const deploy = tmpFile('d.yaml', 'apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d, namespace: x}\n', dir);
    const r = cli('trace', '--scenario', s, '-f', deploy, '--from', 'x/b', '--to', 'x/a', '--port', '80/TCP');
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/FORWARDED/);
  });
});
