import { describe, expect, it } from 'vitest';
import { parseManifest } from '../src/policy/manifest.js';
import { failClosedStandIn } from '../src/policy/stand-in.js';
import type { Policy } from '../src/model/rules.js';
import { cnp, errorOf } from './policy/helpers.js';

/*
 * Round 18p (docs/attack-findings-18p.md): manifest readers, keys whose reading depends on Cilium's
 * key parser.
 */

function thrown(doc: unknown): unknown {
  try {
    parseManifest(doc, 'f');
  } catch (e) {
    return e;
  }
  return undefined;
}

/** The agent's policy for `doc`: the policy, or its fail-closed stand-in (src/k8s/held.ts `policyOf`). */
function agentPolicy(doc: unknown): Policy | undefined {
  const e = thrown(doc);
  return e === undefined ? parseManifest(doc, 'f') : failClosedStandIn(doc, 'f', e);
}

const denyAll = expect.objectContaining({ kind: 'selector', entity: 'all' });

// 950 and 951 (the fail-closed stand-in for `reserved.x` and `k8s:app=x` keys) are superseded by
// 1240 and 1241: Cilium 1.19's reading is settled (test/attacks-19s.test.ts).

describe('952. a `cidrgroup:` key in an endpoint selector (the labels CiliumCIDRGroup objects give CIDR identities)', () => {
  const group = 'cidrgroup:io.cilium.policy.cidrgroupname/bad';
  const deny = cnp({ endpointSelector: { matchLabels: { app: 'server' } }, ingressDeny: [{ fromEndpoints: [{ matchLabels: { 'reserved:world': '', [group]: '' } }] }] });
  const allowOutside = cnp({ endpointSelector: { matchLabels: { app: 'server' } }, ingress: [{ fromEndpoints: [{ matchLabels: { 'reserved:world': '' }, matchExpressions: [{ key: group, operator: 'DoesNotExist' }] }] }] });

  it('is not supported by distill, as a `cidr:` key (before: a deny of nothing, an allow of all of world)', () => {
    expect(errorOf(() => parseManifest(deny, 'f')).message).toMatch(/`cidrgroup:` label key .* not supported by distill/);
    expect(errorOf(() => parseManifest(allowOutside, 'f')).fieldPath).toBe('spec.ingress[0].fromEndpoints[0]');
  });

  it('so the agent denies every peer where the deny was, and drops the allow', () => {
    expect(agentPolicy(deny)!.rules.filter((x) => x.verdict === 'deny').flatMap((x) => x.peers)).toEqual([denyAll]);
    expect(agentPolicy(allowOutside)!.rules.flatMap((x) => x.peers)).toEqual([]);
  });
});
