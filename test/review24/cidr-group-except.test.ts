import { describe, expect, it } from 'vitest';
import { ManifestError } from '../../src/policy/errors.js';
import { parseManifest } from '../../src/policy/manifest.js';
import { failClosedStandIn } from '../../src/policy/stand-in.js';

/*
 * Review of 1837 (cilium-peers.ts readCidrSetPeer: a cidrGroupRef item's except items read with readCidr).
 * Cilium: CIDRRule.Validate (pkg/policy/api/rule_validation.go) returns before the except items of a group
 * ("these are selectors"). The API server: the CRD types except items as api.CIDR, `format: cidr`, which
 * kube-openapi checks with `IsCIDR` = Go net.ParseCIDR; its prefix length is read by net's `dtoi`, which
 * takes leading zeros ("/024" is /24). distill's readCidr refuses "/024" (netip.ParsePrefix's rule, right
 * for a `cidr` field that CIDRRule.Validate parses, not for a group's except the agent never parses).
 * So such an object is stored and enforced by Cilium; distill refuses it whole: no stand-in, its deny and
 * the isolation of its subject are lost.
 */
const doc = (except: string[]): Record<string, unknown> => ({
  apiVersion: 'cilium.io/v2',
  kind: 'CiliumNetworkPolicy',
  metadata: { name: 'p', namespace: 'a' },
  spec: { endpointSelector: { matchLabels: { app: 'db' } }, ingressDeny: [{ fromEntities: ['world'] }], egress: [{ toCIDRSet: [{ cidrGroupRef: 'g', except }] }] },
});

function errorOf(d: unknown): unknown {
  try {
    parseManifest(d, 't.yaml');
    return undefined;
  } catch (e) {
    return e;
  }
}

describe('review24: a cidrGroupRef except item the CRD format takes', () => {
  it('10.0.0.0/8 (control): "not supported", the agent enforces a stand-in', () => {
    const d = doc(['10.0.0.0/8']);
    const e = errorOf(d);
    expect(e).toBeInstanceOf(ManifestError);
    expect(failClosedStandIn(d, 't.yaml', e)).toBeDefined();
  });

  it('1890. 10.0.0.0/024 (net.ParseCIDR takes it): still the stand-in, not a refusal of the whole object', () => {
    const d = doc(['10.0.0.0/024']);
    const e = errorOf(d);
    expect((e as ManifestError).detail).toMatch(/not supported by distill/);
    expect(failClosedStandIn(d, 't.yaml', e)).toBeDefined();
  });
});
