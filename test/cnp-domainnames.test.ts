import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { fqdnSelectorMatches } from '../src/model/fqdn.js';
import type { TierPeer } from '../src/model/tiers.js';
import { parseManifest } from '../src/policy/manifest.js';
import { failClosedStandIn } from '../src/policy/stand-in.js';

/*
 * ClusterNetworkPolicy `domainNames` (kubernetes-sigs/network-policy-api apis/v1alpha2
 * clusternetworkpolicy_types.go at 0eec1b0, `DomainName`): the reader takes exactly the names the
 * CRD's pattern takes, and a name selects what the type's doc comment says.
 */
const CRD_PATTERN = /^(\*\.)?([a-zA-z0-9]([-a-zA-Z0-9_]*[a-zA-Z0-9])?\.)+[a-zA-z0-9]([-a-zA-Z0-9_]*[a-zA-Z0-9])?\.?$/;

function policy(names: readonly string[]): unknown {
  return {
    apiVersion: 'policy.networking.k8s.io/v1alpha2',
    kind: 'ClusterNetworkPolicy',
    metadata: { name: 'p' },
    spec: { tier: 'Admin', priority: 1, subject: { namespaces: {} }, egress: [{ action: 'Accept', to: [{ domainNames: names }] }] },
  };
}

function peerOf(name: string): TierPeer | undefined {
  return parseManifest(policy([name]), 't.yaml').tiered?.rules[0]?.peers[0];
}

function accepts(name: string): boolean {
  try {
    peerOf(name);
    return true;
  } catch {
    return false;
  }
}

const selects = (domain: string, name: string): boolean => {
  const peer = peerOf(domain);
  if (peer?.kind !== 'domainNames') throw new Error(`no domainNames peer for ${domain}`);
  return peer.fqdns.some((s) => fqdnSelectorMatches(s, name));
};

describe('ClusterNetworkPolicy domainNames', () => {
  it('takes exactly the names the CRD pattern takes', () => {
    const alphabet = fc.constantFrom('a', 'Z', '0', '-', '_', '.', '*', '[', 'é');
    fc.assert(
      fc.property(fc.array(alphabet, { maxLength: 14 }).map((cs) => cs.join('')), (name) => {
        expect(accepts(name)).toBe(name !== '' && CRD_PATTERN.test(name));
      }),
      { numRuns: 3000, seed: Number(process.env.DISTILL_SEED ?? 7) },
    );
  });

  it.each([
    // The DomainName doc comment's examples.
    ['kubernetes.io', 'kubernetes.io', true],
    ['kubernetes.io', 'www.kubernetes.io', false],
    ['kubernetes.io', 'my-kubernetes.io', false],
    ['blog.kubernetes.io', 'kubernetes.io', false],
    ['*.kubernetes.io', 'www.kubernetes.io', true],
    ['*.kubernetes.io', 'latest.blog.kubernetes.io', true],
    ['*.kubernetes.io', 'kubernetes.io', false],
    ['*.kubernetes.io', 'wikipedia.org', false],
    // DNS names compare case-insensitively, the root dot optional on either side.
    ['Kubernetes.IO.', 'kubernetes.io', true],
    ['kubernetes.io', 'KUBERNETES.io.', true],
  ])('%s selects %s: %s', (domain, name, expected) => {
    expect(selects(domain, name)).toBe(expected);
  });

  it('is an Accept-only, egress-only peer', () => {
    const deny = { ...(policy(['a.io']) as Record<string, Record<string, unknown>>) };
    deny.spec = { ...deny.spec, egress: [{ action: 'Deny', to: [{ domainNames: ['a.io'] }] }] };
    expect(() => parseManifest(deny, 't.yaml')).toThrow('spec.egress[0].action: is Deny: a domainNames peer in a Deny rule is not supported by distill');
  });

  it('a stored Deny rule with domainNames fails closed in the agent: the stand-in denies all', () => {
    const doc = policy(['a.io']) as Record<string, Record<string, unknown>>;
    doc.spec = { ...doc.spec, egress: [{ action: 'Deny', to: [{ domainNames: ['a.io'] }] }, { action: 'Deny', to: [{ networks: ['10.0.0.0/8'] }] }] };
    let error: unknown;
    try {
      parseManifest(doc, 't.yaml');
    } catch (e) {
      error = e;
    }
    const standIn = failClosedStandIn(doc, 't.yaml', error);
    expect(standIn?.tiered?.rules.map((r) => [r.action, r.peers[0]?.kind])).toEqual([
      ['Deny', 'unknown'],
      ['Deny', 'networks'],
    ]);
  });
});
