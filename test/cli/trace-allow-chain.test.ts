import { describe, expect, it } from 'vitest';
import { cli, tmpFile } from '../cli-helpers.js';

/*
 * Finding 2550 (docs/attack-findings-29c.md, 2630): `trace` names every policy a flow passes on, in
 * tier order, the deciding rule first: an Admin Accept, then what would decide without it, and so on.
 */

const FIXTURE = 'fixtures/conformance/npapi-blind15/admin-action-accept-pass-deny-by-updates.yaml';

interface Side {
  direction: string;
  allowedBy: string[];
  alsoAllowedBy: string[];
  tierRules?: { reason: string; tier: string; priority: number; action: string }[];
}

function ingress(args: string[]): Side {
  const r = cli('trace', ...args, '-o', 'json');
  expect(r.code, r.err).toBe(0);
  const t = JSON.parse(r.out) as { sides: Side[] };
  return t.sides.find((s) => s.direction === 'ingress') as Side;
}

const cnp = (name: string, tier: string, priority: number, action: string, port?: number): string =>
  `  - {apiVersion: policy.networking.k8s.io/v1alpha2, kind: ClusterNetworkPolicy, metadata: {name: ${name}}, spec: {tier: ${tier}, priority: ${priority}, subject: {namespaces: {matchLabels: {team: x}}}, ingress: [{action: ${action}, from: [{namespaces: {matchLabels: {team: y}}}]${port === undefined ? '' : `, protocols: [{tcp: {destinationPort: {number: ${port}}}}]`}}]}}`;

const NP = '  - {apiVersion: networking.k8s.io/v1, kind: NetworkPolicy, metadata: {name: a80, namespace: x}, spec: {podSelector: {matchLabels: {pod: a}}, policyTypes: [Ingress], ingress: [{from: [{namespaceSelector: {matchLabels: {team: y}}}], ports: [{port: 80}]}]}}';

function scenario(policies: string[]): string {
  return [
    'namespaces: [{name: x, labels: {team: x}}, {name: y, labels: {team: y}}]',
    'pods:',
    '  - {name: x/a, labels: {pod: a}, ip: 10.244.29.40}',
    '  - {name: y/b, labels: {pod: b}, ip: 10.244.29.42}',
    'policies:',
    ...policies,
    'steps: [{probes: []}]',
    '',
  ].join('\n');
}

describe('trace: every policy that allows the flow, in tier order (finding 2550)', () => {
  it('an Admin Accept over a NetworkPolicy allow names both (it named only the Accept)', () => {
    const s = ingress(['--scenario', FIXTURE, '--step', '0', '--from', 'y/b', '--to', 'x/a', '--port', '80/TCP']);
    expect(s.allowedBy).toEqual(['ClusterNetworkPolicy/adm spec.ingress[0]']);
    expect(s.alsoAllowedBy).toEqual(['NetworkPolicy/x/a80 spec.ingress[0]']);
    // 81: the NetworkPolicy isolates x/a and allows 80 only; without the Accept the flow drops.
    expect(ingress(['--scenario', FIXTURE, '--step', '0', '--from', 'y/b', '--to', 'x/a', '--port', '81/TCP']).alsoAllowedBy).toEqual([]);
    const text = cli('trace', '--scenario', FIXTURE, '--step', '0', '--from', 'y/b', '--to', 'x/a', '--port', '80/TCP');
    expect(text.out).toContain('also allowed by (entries the matched one shadows or covers): NetworkPolicy/x/a80 spec.ingress[0]');
  });

  it('Admin by priority, then the NetworkPolicy tier, then Baseline, with their tier rules', () => {
    const file = tmpFile('chain.yaml', scenario([cnp('base', 'Baseline', 1, 'Accept'), NP, cnp('adm2', 'Admin', 20, 'Accept', 80), cnp('adm1', 'Admin', 5, 'Accept')]));
    const s = ingress(['--scenario', file, '--from', 'y/b', '--to', 'x/a', '--port', '80/TCP']);
    expect(s.allowedBy).toEqual(['ClusterNetworkPolicy/adm1 spec.ingress[0]']);
    expect(s.alsoAllowedBy).toEqual(['ClusterNetworkPolicy/adm2 spec.ingress[0]', 'NetworkPolicy/x/a80 spec.ingress[0]', 'ClusterNetworkPolicy/base spec.ingress[0]']);
    expect(s.tierRules?.map((t) => `${t.tier} ${t.priority} ${t.action}`)).toEqual(['Admin 5 Accept', 'Admin 20 Accept', 'Baseline 1 Accept']);
    // 81: adm2 and the NetworkPolicy do not allow it; without adm1 the NetworkPolicy isolates x/a and drops it.
    expect(ingress(['--scenario', file, '--from', 'y/b', '--to', 'x/a', '--port', '81/TCP']).alsoAllowedBy).toEqual([]);
  });

  it('an allow below a Deny that would decide without the Accept is not named', () => {
    const file = tmpFile('deny.yaml', scenario([NP, cnp('adm1', 'Admin', 5, 'Accept'), cnp('adm2', 'Admin', 20, 'Deny')]));
    const s = ingress(['--scenario', file, '--from', 'y/b', '--to', 'x/a', '--port', '80/TCP']);
    expect(s.allowedBy).toEqual(['ClusterNetworkPolicy/adm1 spec.ingress[0]']);
    expect(s.alsoAllowedBy).toEqual([]);
  });

  it('2631: a tier rule the flow never reaches is not named (it was, from its map entry)', () => {
    // An Accept after the same policy's Pass of 8000-8999: the Pass decides (nothing below allows or denies: default allow).
    const blind13 = 'fixtures/conformance/npapi-blind13/admin-pass-range-baseline-deny-named-port-np-churn.yaml';
    const egress = (args: string[]): Side => {
      const r = cli('trace', ...args, '-o', 'json');
      expect(r.code, r.err).toBe(0);
      return (JSON.parse(r.out) as { sides: Side[] }).sides.find((x) => x.direction === 'egress') as Side;
    };
    expect(egress(['--scenario', blind13, '--step', '0', '--from', 'x/a', '--to', 'y/a', '--port', '8001/TCP']).alsoAllowedBy).toEqual([]);
    // A NetworkPolicy allow below an Admin Deny (protect-draco, priority 5) that would decide without the Accept (priority 4).
    const s = ingress(['--scenario', 'fixtures/scenarios/tiers-engine/admin-accept-deny.yaml', '--step', '3', '--from', 'hufflepuff/cedric', '--to', 'slytherin/draco', '--port', '80/TCP']);
    expect(s.allowedBy).toEqual(['ClusterNetworkPolicy/let-cedric-in spec.ingress[0]']);
    expect(s.alsoAllowedBy).toEqual([]);
  });
});
