import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { cli, expectBadInput, tmpDir, tmpFile } from './cli-helpers.js';

// Round 26u (docs/attack-findings-26u.md): an operator's manifests from the wild (Cilium's
// examples/policies, kubectl output) through validate, trace -f, plan and reach.

const SCENARIO = `pods:
  - {name: default/deathstar, labels: {org: empire, class: deathstar}}
  - {name: default/tiefighter, labels: {org: empire, class: tiefighter}}
  - {name: default/xwing, labels: {org: alliance, class: xwing}}
steps:
  - probes: [{port: 80}]
`;

const NP = {
  apiVersion: 'networking.k8s.io/v1',
  kind: 'NetworkPolicy',
  metadata: { name: 'api-allow', namespace: 'default', resourceVersion: '1', managedFields: [{ manager: 'kubectl' }] },
  spec: { podSelector: { matchLabels: { class: 'deathstar' } }, ingress: [{ from: [{ podSelector: { matchLabels: { org: 'empire' } } }] }] },
};
const CNP = {
  apiVersion: 'cilium.io/v2',
  kind: 'CiliumNetworkPolicy',
  metadata: { name: 'rule1', namespace: 'default' },
  spec: { endpointSelector: { matchLabels: { class: 'deathstar' } }, ingress: [{ fromEndpoints: [{ matchLabels: { org: 'empire' } }], toPorts: [{ ports: [{ port: '80', protocol: 'TCP' }] }] }] },
  status: { conditions: [{ type: 'Valid', status: 'True' }] },
};

describe('2120. a file of concatenated JSON objects is read object by object, as kubectl apply -f reads it', () => {
  // `kubectl get netpol a -o json >> f; kubectl get cnp b -o json >> f`: kubectl's YAMLOrJSONDecoder
  // reads a stream starting with `{` with Go's json.Decoder, one object per Decode.
  const text = `${JSON.stringify(NP, null, 4)}\n${JSON.stringify(CNP, null, 4)}\n`;
  it('validate: both objects, each named by its place (was: invalid YAML, Unexpected flow-map-start)', () => {
    const f = tmpFile('two.json', text);
    const r = cli('validate', '-o', 'json', f);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(JSON.parse(r.out)).toEqual([{ file: f, valid: true, policies: 2, rules: 2, podsAndNamespaces: 0, skipped: 0, names: ['NetworkPolicy/default/api-allow', 'CiliumNetworkPolicy/default/rule1'] }]);
  });
  it('trace -f: the policies of the stream apply (xwing is no longer admitted)', () => {
    const f = tmpFile('two.json', text);
    const s = tmpFile('s.yaml', SCENARIO);
    const r = cli('trace', '--scenario', s, '-f', f, '--from', 'default/xwing', '--to', 'default/deathstar', '--port', '80/TCP');
    expect(r.code, r.err).toBe(0);
    expect(r.out.split('\n')[0]).toBe('default/xwing -> default/deathstar 80/TCP: DROPPED');
  });
  it('an error in the second object names #2', () => {
    const bad = structuredClone(CNP);
    bad.spec.ingress[0]!.toPorts[0]!.ports[0]!.port = '70000';
    const f = tmpFile('two.json', `${JSON.stringify(NP)}\n${JSON.stringify(bad)}`);
    const r = cli('validate', f);
    expectBadInput(r, `${f}#2 (CiliumNetworkPolicy default/rule1) spec.ingress[0].toPorts[0].ports[0].port: 70000 is above 65535`);
  });
  it('one JSON object, a YAML flow mapping and YAML documents read as before', () => {
    expect(cli('validate', tmpFile('one.json', JSON.stringify(NP))).code).toBe(0);
    // Not JSON (single quotes): YAML, one document, as before, not split at the braces inside the string.
    const r = cli('validate', tmpFile('flow.yaml', `{apiVersion: networking.k8s.io/v1, kind: NetworkPolicy, metadata: {name: 'a}{b', namespace: x}, spec: {podSelector: {}}}`));
    expect(r.err).toContain('metadata.name');
    expect(r.err).not.toContain('#2');
  });
});

describe('2121. Cilium\'s own rule JSON (examples/policies/*.json) is refused with what to do', () => {
  // cilium/cilium examples/policies/l3/entities/world.json: the rule list `cilium-dbg policy import` reads.
  const WORLD = '[{\n    "endpointSelector": {"matchLabels": {"role":"public"}},\n    "ingress": [{\n        "fromEntities": ["world"]\n    }]\n}]\n';
  it('validate world.json: the list is named as Cilium rules, and how to wrap them (was: "expected an object, got a list")', () => {
    const f = tmpFile('world.json', WORLD);
    const r = cli('validate', f);
    expectBadInput(r, `${f}#1: expected an object, got a list; this is a list of Cilium rules`);
    expect(r.err).toContain('spec of a CiliumNetworkPolicy (apiVersion: cilium.io/v2, kind: CiliumNetworkPolicy');
  });
  it('a bare rule, and a bare NetworkPolicy spec, get the same kind of hint', () => {
    const rule = tmpFile('rule.yaml', 'endpointSelector: {}\ningress: [{}]\n');
    expectBadInput(cli('validate', rule), `${rule}#1 kind: expected a string, got nothing; this is a Cilium rule (a CiliumNetworkPolicy's spec)`);
    const np = tmpFile('np.yaml', 'podSelector: {}\npolicyTypes: [Ingress]\n');
    expectBadInput(cli('validate', np), `${np}#1 kind: expected a string, got nothing; this is a NetworkPolicy's spec`);
  });
  it('trace -f world.json says the same', () => {
    const f = tmpFile('world.json', WORLD);
    const r = cli('trace', '--scenario', tmpFile('s.yaml', SCENARIO), '-f', f, '--from', 'default/xwing', '--to', 'default/deathstar', '--port', '80/TCP');
    expectBadInput(r, 'this is a list of Cilium rules');
  });
});

describe('2122. a watch event given as a manifest says it is one', () => {
  it('validate of a kubectl --watch --output-watch-events file: each event named, with where it goes', () => {
    const ev = (o: object): string => JSON.stringify({ type: 'ADDED', object: o }, null, 2);
    const f = tmpFile('cnp.json', `${ev(NP)}\n${ev(CNP)}\n`);
    const r = cli('validate', f);
    expect(r.code).toBe(2);
    const lines = r.err.trim().split('\n');
    expect(lines).toHaveLength(2);
    for (const [i, line] of lines.entries()) {
      expect(line).toBe(`error: ${f}#${i + 1} kind: expected a string, got nothing; this is a watch event (\`kubectl get --watch --output-watch-events\` prints them): \`distill agent --watch FILE\` reads watch streams; a manifest is the event's \`object\``);
    }
  });
});

describe('2123. a manifest file given as a scenario says so', () => {
  it('reach --scenario on a kubectl get -o yaml List (was: "apiVersion: unknown field (expected one of: description, ...)")', () => {
    const f = tmpFile('kget.yaml', `apiVersion: v1\nkind: List\nitems:\n- ${JSON.stringify(NP)}\n`);
    const r = cli('reach', '--scenario', f);
    expectBadInput(r, `error: ${f}: this is a manifest file (List), not a distill scenario`);
    expect(r.err).toContain(`\`distill validate ${f}\``);
  });
  it('reach --scenario on a multi-document manifest (was: the yaml package\'s "please use YAML.parseAllDocuments()")', () => {
    const f = tmpFile('np.yaml', `${JSON.stringify(NP)}\n---\n${JSON.stringify(CNP)}\n`);
    const r = cli('reach', '--scenario', f);
    expectBadInput(r, `error: ${f}: this is a manifest file (NetworkPolicy, CiliumNetworkPolicy), not a distill scenario`);
    expect(r.err).not.toContain('parseAllDocuments');
  });
  it('a scenario written as two documents: the line of the second, in distill\'s words', () => {
    const f = tmpFile('s.yaml', `${SCENARIO}---\n${SCENARIO}`);
    const r = cli('maps', 'list', '--scenario', f);
    expect(r.code).toBe(2);
    expect(r.err).toBe(`error: ${f}: line 7: a second YAML document ("---"): a scenario is one document\n`);
  });
  it('a scenario with a real mistake keeps its own error', () => {
    const f = tmpFile('s.yaml', `${SCENARIO}podz: []\n`);
    const r = cli('reach', '--scenario', f);
    expectBadInput(r, `${f} podz: unknown field`);
  });
});

describe('2124. plan --delete takes ClusterNetworkPolicy/NAME, as validate names it', () => {
  const S = 'fixtures/scenarios/tiers-engine/admin-accept-deny.yaml';
  it('validate names the policy ClusterNetworkPolicy/house-rules, and plan --delete of that name runs (was: exit 2, "is not KIND/NAMESPACE/NAME")', () => {
    const r = cli('plan', '--scenario', S, '--step', '0', '--delete', 'ClusterNetworkPolicy/house-rules', '-o', 'json');
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    const plan = JSON.parse(r.out) as { endpoints: Record<string, { deletes: unknown[] }>; verdictChanges: { from: string; to: string; before: string; after: string }[] };
    // The Admin tier's Accepts go; gryffindor's NetworkPolicy default deny is what is left.
    expect(plan.endpoints['gryffindor/harry']?.deletes.length).toBeGreaterThan(0);
    expect(plan.verdictChanges.some((c) => c.from === 'hufflepuff/cedric' && c.to === 'gryffindor/harry' && c.after === 'DROPPED')).toBe(true);
  });
  it('a namespaced ref of a cluster-scoped kind is refused with the form to use', () => {
    const r = cli('plan', '--scenario', S, '--delete', 'ClusterNetworkPolicy/default/house-rules');
    expectBadInput(r, 'KIND/NAME for CiliumClusterwideNetworkPolicy and ClusterNetworkPolicy');
  });
});

describe('2125. AdminNetworkPolicy / BaselineAdminNetworkPolicy (v1alpha1) say what distill reads instead', () => {
  it('validate: each refused with the ClusterNetworkPolicy tier that takes its place', () => {
    const f = tmpFile('anp.yaml', `apiVersion: policy.networking.k8s.io/v1alpha1
kind: AdminNetworkPolicy
metadata: {name: anp}
spec: {priority: 10, subject: {namespaces: {}}, ingress: []}
---
apiVersion: policy.networking.k8s.io/v1alpha1
kind: BaselineAdminNetworkPolicy
metadata: {name: default}
spec: {subject: {namespaces: {}}, ingress: []}
`);
    const r = cli('validate', f);
    expect(r.code).toBe(2);
    const lines = r.err.trim().split('\n');
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(/^error: .*#1 \(AdminNetworkPolicy anp\) kind: .*; AdminNetworkPolicy is network-policy-api's older API \(v1alpha1\): distill reads ClusterNetworkPolicy \(policy\.networking\.k8s\.io\/v1beta1 or policy\.networking\.k8s\.io\/v1alpha2\), whose spec\.tier Admin takes its place$/);
    expect(lines[1]).toMatch(/#2 \(BaselineAdminNetworkPolicy default\) kind: .*whose spec\.tier Baseline takes its place$/);
  });
});

describe('2126. the package reads a manifest file\'s text as kubectl does (parseManifestFile)', () => {
  const TEXT = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: r, namespace: default}
spec:
  endpointSelector: {matchLabels: {exposed: yes}}
  ingress: [{}]
`;
  it('go-yaml\'s boolean `yes` is refused as kubectl refuses it, where a YAML 1.2 parse + parseManifest takes the string "yes"', async () => {
    const api = (await import('../src/index.js')) as Record<string, unknown>;
    const { parse } = await import('yaml');
    // What an embedder had: parse with a YAML 1.2 library, then parseManifest. A selector kubectl never holds.
    const viaYaml12 = (api.parseManifest as (d: unknown, s: string) => { rules: unknown[] })(parse(TEXT), 'r.yaml');
    expect(viaYaml12.rules).toHaveLength(1);
    expect(typeof api.parseManifestFile).toBe('function');
    const read = api.parseManifestFile as (t: string, f: string) => unknown[];
    expect(() => read(TEXT, 'r.yaml')).toThrow(/r\.yaml#1 .*spec\.endpointSelector\.matchLabels\.exposed: expected a string value, got boolean true/);
    expect(read(TEXT.replace('yes', '"yes"'), 'r.yaml')).toHaveLength(1);
  });
});

describe('2127. a kustomization.yaml in an app folder says how to read the folder', () => {
  it('validate DIR: the Kustomization is refused (kubectl apply -f refuses it too) with the command that renders it', () => {
    const dir = tmpDir();
    tmpFile('kustomization.yaml', 'apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [np.yaml]\n', dir);
    tmpFile('np.yaml', `${JSON.stringify(NP)}\n`, dir);
    const r = cli('validate', dir);
    expect(r.code).toBe(2);
    expect(r.out).toContain('np.yaml: 1 policies, 1 rules, valid');
    expect(r.err).toMatch(/kustomization\.yaml#1 \(Kustomization\) kind: .*; this is a kustomize file, not an object: render the folder first \(`kubectl kustomize DIR \| distill validate -`\)\n$/);
  });
});

describe('2128. a watch stream saved with a byte order mark names it (the message showed an invisible character)', () => {
  it('agent --watch FILE with a BOM: exit 2, the error says U+FEFF and what it is', () => {
    const ev = JSON.stringify({ type: 'ADDED', object: { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop', resourceVersion: '1' } } });
    const stream = tmpFile('ns.json', `\uFEFF${ev}\n`);
    const r = spawnSync('node', ['dist/cli/main.js', 'agent', '--node', 'node-a', '--watch', stream, '--exit-at-eof', '--no-warm-up'], { encoding: 'utf8', timeout: 60_000 });
    expect(r.status, r.stderr).toBe(2);
    const line = r.stderr.split('\n').find((l) => l.includes('watch stream unreadable'));
    expect(line, r.stderr).toBeDefined();
    const error = (JSON.parse(line!) as { error: string }).error;
    expect(error).toBe(`${stream}#1: unexpected U+FEFF (a byte order mark: save the file without one): a watch stream is a sequence of JSON objects`);
    expect(error).not.toContain('\uFEFF');
  }, 60_000);
});
