import { describe, expect, it } from 'vitest';
import { cli, tmpFile } from './cli-helpers.js';

// Review 26t (docs/attack-findings-26t.md): one manifest file read alike by validate, trace -f and plan -f.

const SCENARIO = `pods:
  - {name: default/deathstar, labels: {class: deathstar}}
  - {name: default/xwing, labels: {class: xwing}}
externals:
  - {name: partner, ip: 198.51.100.7}
  - {name: stranger, ip: 192.0.2.7}
steps:
  - probes: [{port: 80}]
`;
const GROUP = `apiVersion: cilium.io/v2
kind: CiliumCIDRGroup
metadata: {name: partners}
spec: {externalCIDRs: ["198.51.100.0/24"]}
`;
const POLICY = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: partners-in, namespace: default}
spec:
  endpointSelector: {matchLabels: {class: deathstar}}
  ingress: [{fromCIDRSet: [{cidrGroupRef: partners}]}]
`;

describe('2174. a file with a CiliumCIDRGroup and a policy naming it: validate, trace -f and plan -f read it alike', () => {
  const file = (): string => tmpFile('groups.yaml', `${GROUP}---\n${POLICY}`);
  it('validate takes it (1 policy, 1 CIDR group)', () => {
    const r = cli('validate', file());
    expect(r.code, r.err).toBe(0);
    expect(r.out).toContain('1 policies, 1 rules, 1 CIDR groups, valid');
  });
  it('trace -f applies the group and the policy (on 531fa9ca: exit 2, "CiliumCIDRGroup" is not a supported kind)', () => {
    const s = tmpFile('s.yaml', SCENARIO);
    const f = file();
    const partner = cli('trace', '--scenario', s, '-f', f, '--from', 'partner', '--to', 'default/deathstar', '--port', '80/TCP');
    expect(partner.code, partner.err).toBe(0);
    expect(partner.out.split('\n')[0]).toBe('partner -> default/deathstar 80/TCP: FORWARDED');
    const stranger = cli('trace', '--scenario', s, '-f', f, '--from', 'stranger', '--to', 'default/deathstar', '--port', '80/TCP');
    expect(stranger.out.split('\n')[0]).toBe('stranger -> default/deathstar 80/TCP: DROPPED');
  });
  it('the policy alone: its group is missing, so its peer selects nothing (semantics.md "CIDR groups")', () => {
    const s = tmpFile('s.yaml', SCENARIO);
    const r = cli('trace', '--scenario', s, '-f', tmpFile('p.yaml', POLICY), '--from', 'partner', '--to', 'default/deathstar', '--port', '80/TCP');
    expect(r.code, r.err).toBe(0);
    expect(r.out.split('\n')[0]).toBe('partner -> default/deathstar 80/TCP: DROPPED');
  });
  it('plan -f takes it (on 531fa9ca: exit 2)', () => {
    const r = cli('plan', '--scenario', tmpFile('s.yaml', SCENARIO), '-f', file(), '-o', 'json');
    expect(r.code, r.err).toBe(0);
    expect(r.err).toBe('');
  });
});
