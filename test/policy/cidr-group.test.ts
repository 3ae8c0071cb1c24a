import { describe, expect, it } from 'vitest';
import { parseCidrGroup } from '../../src/policy/cidr-group.js';
import { parseManifest } from '../../src/policy/manifest.js';
import { failClosedStandIn } from '../../src/policy/stand-in.js';

/*
 * The CiliumCIDRGroup reader and cidrGroupRef / cidrGroupSelector peers (docs/semantics.md "CIDR groups";
 * pkg/policy/k8s/cilium_cidr_group.go applyCIDRGroup, pkg/policy/types/selector.go newCIDRRuleSelector).
 * All fail on a7460f3 (no reader; the peers were "not supported" everywhere).
 */
const group = (metadata: Record<string, unknown>, externalCIDRs: unknown, apiVersion = 'cilium.io/v2'): unknown => ({ apiVersion, kind: 'CiliumCIDRGroup', metadata, spec: { externalCIDRs } });
const policy = (item: unknown, deny = false): Record<string, unknown> => ({
  apiVersion: 'cilium.io/v2',
  kind: 'CiliumNetworkPolicy',
  metadata: { name: 'p', namespace: 'x' },
  spec: { endpointSelector: {}, [deny ? 'egressDeny' : 'egress']: [{ toCIDRSet: [item] }] },
});

describe('CiliumCIDRGroup reader', () => {
  it('labels: own labels (io.cilium.k8s* dropped) and the name label; prefixes canonical, once', () => {
    const g = parseCidrGroup(group({ name: 'vpn', labels: { role: 'vpn', 'io.cilium.k8s.policy.x': 'y' } }, ['10.48.0.0/24', '10.48.0.0/24', '2001:db8::/32']), 't');
    expect([...g.labels]).toEqual([['role', 'vpn'], ['io.cilium.policy.cidrgroupname/vpn', '']]);
    expect(g.cidrs.map((c) => c.text)).toEqual(['10.48.0.0/24', '2001:db8::/32']);
  });

  it('an item the API takes but netip refuses is skipped (Cilium: "CIDRGroup has invalid CIDR"); one the API refuses is an error', () => {
    expect(parseCidrGroup(group({ name: 'g' }, ['10.0.0.0/024', '10.1.0.0/16']), 't').cidrs.map((c) => c.text)).toEqual(['10.1.0.0/16']);
    expect(() => parseCidrGroup(group({ name: 'g' }, ['10.0.0.0']), 't')).toThrow(/format: cidr/);
    expect(() => parseCidrGroup(group({ name: 'g' }, ['10.0.0.0/33']), 't')).toThrow(/format: cidr/);
  });

  it('hostile input: __proto__ label keys, bad names, other kinds and versions are refused', () => {
    expect(() => parseCidrGroup(group(JSON.parse('{"name":"g","labels":{"__proto__":"x"}}'), []), 't')).toThrow();
    expect(() => parseCidrGroup(group({ name: 'Bad_Name' }, []), 't')).toThrow(/DNS subdomain/);
    expect(() => parseCidrGroup(group({ name: 'g' }, [], 'cilium.io/v3'), 't')).toThrow(/apiVersion/);
    expect(() => parseCidrGroup({ ...(group({ name: 'g' }, []) as object), kind: 'CiliumNetworkPolicy' }, 't')).toThrow(/CiliumCIDRGroup/);
    expect(() => parseCidrGroup({ ...(group({ name: 'g' }, []) as object), extra: 1 }, 't')).toThrow();
  });
});

describe('cidrGroupRef / cidrGroupSelector peers', () => {
  it('read with cidrGroups: a ref is Exists on the name label; allow reads disagreements strictly, deny loosely', () => {
    const allow = parseManifest(policy({ cidrGroupRef: 'vpn', except: ['10.48.0.128/25'] }), 't', { cidrGroups: true });
    expect(allow.rules[0]?.peers).toMatchObject([{ kind: 'cidrGroup', mode: 'all', selector: { key: 'cidrgroup:io.cilium.policy.cidrgroupname/vpn' }, except: [{ text: '10.48.0.128/25' }] }]);
    const deny = parseManifest(policy({ cidrGroupSelector: { matchLabels: { role: 'vpn' } } }, true), 't', { cidrGroups: true });
    expect(deny.rules[0]?.peers).toMatchObject([{ kind: 'cidrGroup', mode: 'any', selector: { key: 'cidrgroup:role=vpn' } }]);
  });

  it('a selector without a positive requirement is not supported; a key with a source and a bad ref name are invalid (1913, 1914)', () => {
    expect(() => parseManifest(policy({ cidrGroupSelector: { matchExpressions: [{ key: 'role', operator: 'DoesNotExist' }] } }), 't', { cidrGroups: true })).toThrow(/selects every identity/);
    expect(() => parseManifest(policy({ cidrGroupSelector: { matchLabels: { 'k8s:role': 'vpn' } } }), 't', { cidrGroups: true })).toThrow(/validates it as "cidrgroup\.k8s:role"/);
    expect(() => parseManifest(policy({ cidrGroupRef: 'Bad_Name' }), 't', { cidrGroups: true })).toThrow(/DNS subdomain/);
  });

  it('the agent (no cidrGroups option) keeps the fail-closed stand-in', () => {
    const doc = policy({ cidrGroupRef: 'vpn' }, true);
    let error: unknown;
    try {
      parseManifest(doc, 't');
    } catch (e) {
      error = e;
    }
    expect(String(error)).toMatch(/not supported by distill/);
    expect(failClosedStandIn(doc, 't', error)).toBeDefined();
  });
});
