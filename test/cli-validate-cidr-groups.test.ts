import { describe, expect, it } from 'vitest';
import { cli, expectBadInput, tmpFile } from './cli-helpers.js';

/**
 * `distill validate` reads CiliumCIDRGroup objects and group peers as `distill agent` reads them once it
 * watches the groups (26g). On the base a group was "not a supported kind" and a `cidrGroupRef` "not
 * supported by distill here (CiliumCIDRGroup objects are not watched)", exit 2.
 */
const GROUP = (apiVersion: string, spec: string): string => `apiVersion: ${apiVersion}\nkind: CiliumCIDRGroup\nmetadata:\n  name: partners\n  labels: {team: a}\nspec: ${spec}\n`;
const POLICY = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: p, namespace: shop}
spec:
  endpointSelector: {}
  ingress:
  - fromCIDRSet: [{cidrGroupRef: partners}, {cidrGroupSelector: {matchLabels: {team: a}}}]
`;

describe('validate: CiliumCIDRGroup objects and group peers', () => {
  it('a group (v2 and v2alpha1) and a policy naming it are valid', () => {
    const file = tmpFile('groups.yaml', [GROUP('cilium.io/v2', '{externalCIDRs: ["198.51.100.0/24"]}'), GROUP('cilium.io/v2alpha1', '{externalCIDRs: ["2001:db8::/32"]}'), POLICY].join('---\n'));
    const r = cli('validate', file);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toBe(`${file}: 1 policies, 1 rules, 2 CIDR groups, valid\n`);
    const j = cli('validate', '-o', 'json', file);
    expect(JSON.parse(j.out)).toMatchObject([{ valid: true, policies: 1, cidrGroups: 2 }]);
  });

  it('a typed CiliumCIDRGroupList (as kubectl get ciliumcidrgroups -o yaml prints one kind) reads its groups', () => {
    const file = tmpFile('list.yaml', 'apiVersion: cilium.io/v2\nkind: CiliumCIDRGroupList\nitems:\n- metadata: {name: a}\n  spec: {externalCIDRs: ["10.0.0.0/8"]}\n- metadata: {name: b}\n  spec: {externalCIDRs: []}\n');
    const r = cli('validate', file);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toBe(`${file}: 0 policies, 0 rules, 2 CIDR groups, valid\n`);
  });

  it('a group the CRD refuses is refused, naming the field', () => {
    const file = tmpFile('bad.yaml', GROUP('cilium.io/v2', '{externalCIDRs: ["10.0.0.0/33"]}'));
    expectBadInput(cli('validate', file), `${file}#1 (CiliumCIDRGroup partners) spec.externalCIDRs[0]:`);
  });
});
