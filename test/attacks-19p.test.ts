import { describe, expect, it } from 'vitest';
import { parseManifest, parseManifestFile } from '../src/policy/manifest.js';
import { loadYamlDocuments } from '../src/policy/yaml.js';
import { parseScenario } from '../src/scenario/format.js';
import type { Peer, Policy } from '../src/model/rules.js';
import { cnp } from './policy/helpers.js';

/*
 * Round 19p (docs/attack-findings-19p.md): manifest readers against go-yaml v2's scalars and Cilium 1.19's
 * endpoint-selector scoping.
 */

/** A CNP allowing ingress from pods whose label `build` is the plain YAML scalar `v`. */
const cnpWithLabelValue = (v: string) => `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: p, namespace: x}
spec:
  endpointSelector: {matchLabels: {app: web}}
  ingress:
    - fromEndpoints: [{matchLabels: {build: ${v}}}]
`;
const npWithPort = (v: string) => `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: x}
spec:
  podSelector: {}
  ingress:
    - ports: [{port: ${v}}]
`;

describe('1100. plain scalars that go-yaml v2 reads as numbers and YAML 1.2 as strings', () => {
  // sigs.k8s.io/yaml goyaml.v2/resolve.go `resolve`: hint 'D'/'S' drops every "_", then strconv.ParseInt(plain, 0, 64)
  // (0x/0X, 0o/0O, 0b/0B, leading-0 octal), then yamlStyleFloat; hint '.' is strconv.ParseFloat.
  it.each([
    ['0X50', 80],
    ['0x_50', 80],
    ['0O17', 15],
    ['0B11', 3],
    ['-0x5', -5],
    ['+0x5', 5],
    ['1_0.5', 10.5],
    ['.5_0', 0.5],
    ['0_8', 8],
    ['1_e5', 100000],
    ['0_x1', 1],
  ])('reads %s as the number %d (a string before)', (text, n) => {
    expect(loadYamlDocuments(`a: ${text}\n`, 'f')[0]!.value).toEqual({ a: n });
  });

  it('so a label value written that way is refused, as the API server refuses a number there (enforced before)', () => {
    for (const v of ['0X50', '1_0.5', '0_8', '0x_50', '1_e5']) {
      expect(() => parseManifestFile(cnpWithLabelValue(v), 'f'), v).toThrow(/expected a string value, got number/);
    }
  });

  it('and a NetworkPolicy port written that way is the port kubectl sends (refused as a port name before)', () => {
    const port = (p: Policy) => p.rules[0]!.ports[0]!.l4;
    expect(port(parseManifestFile(npWithPort('0X50'), 'f')[0]!)).toMatchObject({ from: 80, to: 80 });
    expect(port(parseManifestFile(npWithPort('0x_50'), 'f')[0]!)).toMatchObject({ from: 80, to: 80 });
  });

  it('a float out of range stays text, as ParseFloat fails and go-yaml keeps the string (refused as Infinity before)', () => {
    expect(loadYamlDocuments('a: 1e400\nb: .5e400\n', 'f')[0]!.value).toEqual({ a: '1e400', b: '.5e400' });
    expect(() => parseManifestFile(cnpWithLabelValue('1e400'), 'f')).not.toThrow();
  });

  it('keeps reading what both read alike', () => {
    const v = loadYamlDocuments('a: [010, 0o17, 0x1F, 1_000, 0b101, 1e3, 08, 10.0.0.1, 2001-12-14, 0x, ., "0X50"]\n', 'f')[0]!.value as { a: unknown[] };
    expect(v.a).toEqual([8, 15, 31, 1000, 5, 1000, 8, '10.0.0.1', '2001-12-14', '0x', '.', '0X50']);
    // go-yaml reads .inf and -.inf as ±Inf, which kubectl's JSON conversion then refuses: the file fails (finding 2531).
    for (const inf of ['.inf', '-.inf']) expect(() => loadYamlDocuments(`a: [${inf}]\n`, 'f')).toThrow(/not finite/);
  });
});

describe('1101. a deny peer naming the namespace only negatively keeps Cilium 1.19\'s wider reading', () => {
  // pkg/k8s/apis/cilium.io/utils/utils.go getEndpointSelector: a selector that HasKey io.kubernetes.pod.namespace (or, in a
  // namespaced policy, HasKeyPrefix io.cilium.k8s.namespace.labels.) gets no namespace requirement, so NotIn/DoesNotExist
  // alone also select world, host and nodes (cilium#46949, affects v1.19; cilium#46996 adds one).
  const podsOnly = { key: { source: 'k8s', key: 'io.kubernetes.pod.namespace' }, operator: 'Exists' };
  const selectorOf = (p: Policy, verdict: 'allow' | 'deny'): Peer => p.rules.find((x) => x.verdict === verdict)!.peers[0]!;
  const requirements = (peer: Peer) => (peer.kind === 'selector' ? peer.selector.requirements : []);
  const notIn = { matchExpressions: [{ key: 'io.kubernetes.pod.namespace', operator: 'NotIn', values: ['b'] }] };
  const noTeam = { matchExpressions: [{ key: 'io.cilium.k8s.namespace.labels.team', operator: 'DoesNotExist' }] };

  it('a namespaced deny is left unscoped (pods only before), the allow of the same selector still pods only', () => {
    for (const sel of [notIn, noTeam]) {
      const p = parseManifest(cnp({ endpointSelector: {}, egress: [{ toEndpoints: [sel] }], egressDeny: [{ toEndpoints: [sel] }] }), 'f');
      expect(requirements(selectorOf(p, 'deny'))).not.toContainEqual(expect.objectContaining(podsOnly));
      expect(requirements(selectorOf(p, 'allow'))).toContainEqual(expect.objectContaining(podsOnly));
    }
  });

  it('in a clusterwide policy only the pod-namespace key lifts the Exists requirement', () => {
    const ccnp = (sel: unknown) => ({ apiVersion: 'cilium.io/v2', kind: 'CiliumClusterwideNetworkPolicy', metadata: { name: 'p' }, spec: { endpointSelector: {}, ingressDeny: [{ fromEndpoints: [sel] }] } });
    expect(requirements(selectorOf(parseManifest(ccnp(notIn), 'f'), 'deny'))).not.toContainEqual(expect.objectContaining(podsOnly));
    expect(requirements(selectorOf(parseManifest(ccnp(noTeam), 'f'), 'deny'))).toContainEqual(expect.objectContaining(podsOnly));
  });
});

describe('1102. a line break only go-yaml sees (CR alone, NEL, LS, PS)', () => {
  // go-yaml v2 yamlprivateh.go is_break: CR, LF, NEL (#x85), LS (#x2028), PS (#x2029); comments end at is_breakz.
  const hidden = (br: string) => `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: x}
spec:
  podSelector: {}
  policyTypes: [Ingress]
  # note${br}  ingress: [{}]
`;

  it.each([['CR', '\r'], ['NEL', '\u0085'], ['LS', '\u2028'], ['PS', '\u2029']])('%s ending a comment is refused (before: the allow-all rule kubectl reads was a comment, a deny-all policy)', (_, br) => {
    expect(() => parseManifestFile(hidden(br), 'f')).toThrow(/line 7: .* line break to kubectl's go-yaml/);
  });

  it('in a scenario file too', () => {
    expect(() => loadYamlDocuments('a: 1\u2028b: 2\n', 'f')).toThrow(/U\+2028/);
    expect(() => parseScenario('description: x\r# c\rpods: []\n', 's')).toThrow(/CR without LF/);
  });

  it('keeps reading LF and CRLF files', () => {
    expect(parseManifestFile(hidden('\n'), 'f')[0]!.rules).toHaveLength(1);
    expect(parseManifestFile(hidden('\n').replace(/\n/g, '\r\n'), 'f')[0]!.rules).toHaveLength(1);
  });
});
