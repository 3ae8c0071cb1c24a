import { describe, expect, it } from 'vitest';
import { cli, tmpFile } from './cli-helpers.js';

// Round 18u (docs/attack-findings-18u.md): a new operator's scenarios through the documented commands.

const NAMESPACE_DENY = `namespaces: [{name: prod}]
pods:
  - {name: prod/api, labels: {app: api}}
  - {name: prod/b, labels: {app: b}}
policies:
  - apiVersion: networking.k8s.io/v1
    kind: NetworkPolicy
    metadata: {name: default-deny, namespace: prod}
    spec: {podSelector: {}, policyTypes: [Ingress]}
`;

function dumpEntries(file: string, ...more: string[]): { code: number; err: string; entries: { identity: number; direction: string; verdict: string }[] } {
  const r = cli('maps', 'dump', '--scenario', file, '--endpoint', 'prod/api', '-o', 'json', ...more);
  const entries = r.code === 0 ? (JSON.parse(r.out) as { entries: { identity: number; direction: string; verdict: string }[] }).entries : [];
  return { code: r.code, err: r.err, entries };
}

const ingressAny = { identity: 0, direction: 'ingress', verdict: 'allow' };

describe('1080. maps dump: the final state, whatever the steps probe', () => {
  it('a scenario without steps: the map of its setup (was: no local endpoint)', () => {
    const r = dumpEntries(tmpFile('np.yaml', NAMESPACE_DENY));
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(r.entries.map((e) => e.identity)).toEqual([0, 1]); // egress any, ingress from host: default deny
  });
  it('a last step with changes and no probes: its changes are in the map, as maps list shows (was: the step before)', () => {
    const file = tmpFile('np.yaml', `${NAMESPACE_DENY}steps:
  - probes: [{port: 80}]
  - changes:
      - {delete: {kind: NetworkPolicy, namespace: prod, name: default-deny}}
`);
    const r = dumpEntries(file);
    expect(r.code).toBe(0);
    expect(r.entries).toContainEqual(expect.objectContaining(ingressAny));
    const list = cli('maps', 'list', '--scenario', file, '-o', 'json');
    const listed = (JSON.parse(list.out) as { endpoint: string; entries: number }[]).find((x) => x.endpoint === 'prod/api');
    expect(r.entries.length).toBe(listed?.entries);
  });
});

describe('1081. maps dump: the scenario\'s allowLocalhost', () => {
  it('allowLocalhost: policy: the map without the host allow (was: internal error, exit 70)', () => {
    const file = tmpFile('lh.yaml', `allowLocalhost: policy\n${NAMESPACE_DENY}steps:\n  - probes: [{port: 80}]\n`);
    const r = dumpEntries(file);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(r.entries.map((e) => e.identity)).toEqual([0]); // egress any only: the host is left to policy
  });
});

describe('1082. maps dump --step, as maps list, trace, plan, selectors and identities have it', () => {
  it('--step 0 dumps the map before step 1 deleted the default deny; a missing step names the range', () => {
    const file = tmpFile('np.yaml', `${NAMESPACE_DENY}steps:
  - probes: [{port: 80}]
  - changes:
      - {delete: {kind: NetworkPolicy, namespace: prod, name: default-deny}}
    probes: [{port: 80}]
`);
    const before = dumpEntries(file, '--step', '0');
    expect(before.err).toBe('');
    expect(before.entries).not.toContainEqual(expect.objectContaining(ingressAny));
    expect(dumpEntries(file, '--step', '1').entries).toContainEqual(expect.objectContaining(ingressAny));
    const missing = cli('maps', 'dump', '--scenario', file, '--all', '--step', '2');
    expect(missing.code).toBe(2);
    expect(missing.err).toBe(`error: ${file} steps: has 2 steps: --step 2 is not one of them (0 to 1)\n`);
  });
});

// A policy that selects the endpoint without isolating it: Cilium's enableDefaultDeny {ingress: false}
// (pkg/policy/api/rule.go `DefaultDenyConfig`) with a deny rule that does not match the flow.
const AUDIT = `namespaces: [{name: prod}, {name: dev}, {name: other}]
pods:
  - {name: prod/api, labels: {app: api}}
  - {name: dev/client, labels: {app: client}}
  - {name: other/x, labels: {app: x}}
policies:
  - apiVersion: cilium.io/v2
    kind: CiliumNetworkPolicy
    metadata: {name: audit, namespace: prod}
    spec:
      endpointSelector: {matchLabels: {app: api}}
      enableDefaultDeny: {ingress: false}
      ingressDeny:
        - fromEndpoints: [{matchLabels: {k8s:io.kubernetes.pod.namespace: dev}}]
steps:
  - probes: [{from: other/x, to: prod/api, port: 80}]
`;

describe('1083. explain and trace: a direction no policy isolates is not "no policy selects it"', () => {
  it('a CiliumNetworkPolicy with enableDefaultDeny false selects prod/api: the explanation does not deny it', () => {
    const file = tmpFile('audit.yaml', AUDIT);
    const reach = cli('reach', '--scenario', file, '--explain');
    expect(reach.code).toBe(0);
    expect(reach.out).toContain('    ingress of prod/api: no policy isolates it, allowed\n');
    expect(reach.out).not.toContain('no policy selects');
    const trace = cli('trace', '--scenario', file, '--from', 'other/x', '--to', 'prod/api', '--port', '80/TCP');
    expect(trace.code).toBe(0);
    expect(trace.out).toContain('  default deny: no (no policy isolates this direction)\n');
    expect(trace.out).not.toContain('no policy selects');
  });
});
