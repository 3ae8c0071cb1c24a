import { describe, expect, it } from 'vitest';
import { ciliumExtendedKey, ciliumSelectorKey } from '../src/model/labels.js';
import { parseManifest } from '../src/policy/manifest.js';
import { failClosedStandIn } from '../src/policy/stand-in.js';
import type { Policy } from '../src/model/rules.js';
import { cnp, errorOf } from './policy/helpers.js';

/*
 * Round 19s (docs/attack-findings-19s.md): how Cilium 1.19 reads a selector key. Source read at the
 * v1.19 branch point (cilium/cilium 2ba24a2a, 2026-01-14): EndpointSelector.Sanitize extends every
 * key with labels.DefaultKeyExtender = GetExtendedKeyFrom (pkg/labels/labels.go), the rules are then
 * matched through ParseSelectDotLabel (pkg/policy/types/requirements.go), and getEndpointSelector /
 * ParseToCiliumRule (pkg/k8s/apis/cilium.io/utils/utils.go) test HasKey/GetMatch on extended keys.
 */

/** The agent's policy for `doc`: the policy, or its fail-closed stand-in (src/k8s/held.ts `policyOf`). */
function agentPolicy(doc: unknown): Policy | undefined {
  try {
    return parseManifest(doc, 'f');
  } catch (e) {
    return failClosedStandIn(doc, 'f', e);
  }
}

/** What a policy enforces, without the paths its rules came from. */
function meaning(doc: unknown): unknown {
  const p = parseManifest(doc, 'f');
  return { rules: p.rules.map(({ origin: _o, ...rule }) => rule), enforcements: p.enforcements.map(({ origin: _o, ...e }) => e) };
}

const server = { matchLabels: { app: 'server' } };
const denyFrom = (peer: Record<string, unknown>) => cnp({ endpointSelector: server, ingressDeny: [{ fromEndpoints: [peer] }] });

describe('the key table (labels_test.go TestLabelParseKey and parseSource)', () => {
  it('extends keys as GetExtendedKeyFrom', () => {
    const table: [string, string][] = [
      ['source0:key0=value1', 'source0.key0'],
      ['source4:key1==value1', 'source4.key1'],
      ['source2.key1=value1', 'any.source2.key1'],
      [':3foo=', 'any.3foo'],
      ['7foo=bar', 'any.7foo'],
      ['$world=value1', 'reserved.world'],
      ['k8s:foo=bar:', 'k8s.foo'],
      ['reserved.world', 'reserved.world'],
      ['reserved.init', 'reserved.init'],
      ['k8s.app', 'any.k8s.app'],
      ['any.app', 'any.any.app'],
      ['xreserved.x', 'any.xreserved.x'],
      ['k8s:reserved.x', 'k8s.reserved.x'],
    ];
    for (const [raw, extended] of table) expect(ciliumExtendedKey(raw), raw).toBe(extended);
  });

  it('matches the extended key split at its first dot (ParseSelectDotLabel)', () => {
    expect(ciliumSelectorKey('reserved.world')).toEqual({ source: 'reserved', key: 'world' });
    expect(ciliumSelectorKey('k8s:app=x')).toEqual({ source: 'k8s', key: 'app' });
    expect(ciliumSelectorKey('k8s.io:app')).toEqual({ source: 'k8s', key: 'io.app' });
    expect(ciliumSelectorKey('k8s.app')).toEqual({ source: 'any', key: 'k8s.app' });
    expect(ciliumSelectorKey('unspec:app')).toEqual({ source: 'any', key: 'app' });
  });
});

describe('1240. a key without ":" that starts with "reserved." is the reserved label (was the fail-closed stand-in)', () => {
  it('a deny of reserved.world is a deny of world, unscoped, as reserved:world', () => {
    expect(meaning(denyFrom({ matchLabels: { 'reserved.world': '' } }))).toEqual(meaning(denyFrom({ matchLabels: { 'reserved:world': '' } })));
  });

  it('an allow of reserved.host admits the host (the stand-in dropped it), as $host', () => {
    const allow = (key: string) => cnp({ endpointSelector: server, ingress: [{ fromEndpoints: [{ matchExpressions: [{ key, operator: 'Exists' }] }] }] });
    expect(meaning(allow('reserved.host'))).toEqual(meaning(allow('$host')));
  });

  it('a clusterwide policy whose subject is reserved.init is enforced (it was skipped: no stand-in names a subject)', () => {
    const init = (key: string) => ({
      apiVersion: 'cilium.io/v2',
      kind: 'CiliumClusterwideNetworkPolicy',
      metadata: { name: 'init' },
      specs: [{ endpointSelector: { matchLabels: { [key]: '' } }, egress: [{ toEndpoints: [{ matchLabels: { app: 'dns' } }], toPorts: [{ ports: [{ port: '53', protocol: 'UDP' }] }] }] }],
    });
    expect(agentPolicy(init('reserved.init'))).toBeDefined();
    // HasKey("reserved.init") holds, so its peers are not limited to pods (matchesPodInit).
    expect(meaning(init('reserved.init'))).toEqual(meaning(init('reserved:init')));
  });
});

describe("1241. a key with '=' is cut there (was refused in a subject, the stand-in in a peer)", () => {
  it('a subject `app=x: server` selects app=server pods and isolates them (the policy was skipped)', () => {
    const doc = (key: string) => cnp({ endpointSelector: { matchLabels: { [key]: 'server' } }, ingress: [{ fromEndpoints: [{ matchLabels: { app: 'client' } }] }] });
    expect(agentPolicy(doc('app=x'))).toBeDefined();
    expect(meaning(doc('app=x'))).toEqual(meaning(doc('app')));
  });

  it('a peer `k8s:app=x` in a deny is k8s:app (the stand-in denied every peer)', () => {
    const doc = (key: string) => cnp({ endpointSelector: server, ingressDeny: [{ fromEndpoints: [{ matchExpressions: [{ key, operator: 'In', values: ['evil'] }] }] }], ingress: [{ fromEndpoints: [{}] }] });
    expect(meaning(doc('k8s:app=x'))).toEqual(meaning(doc('k8s:app')));
  });

  it('`app` and `app=x` with different values are one Go map entry (finding 764): not supported', () => {
    expect(errorOf(() => parseManifest(denyFrom({ matchLabels: { app: 'a', 'app=x': 'b' } }), 'f')).message).toMatch(/same key for Cilium \("any.app"\).*not supported by distill/);
  });

  it('what the extended key makes invalid is still refused (k8s:k8s:app, 4blah=:foo)', () => {
    for (const key of ['k8s:k8s:app', '4blah=:foo', 'k8s:=x']) {
      expect(errorOf(() => parseManifest(denyFrom({ matchLabels: { [key]: '' } }), 'f')).message, key).toMatch(/Cilium validates it as/);
    }
  });
});

describe('1242. a source with a dot is cut at the dot when Cilium matches the extended key', () => {
  it('`k8s.io:app` denies pods labelled io.app (distill read source "k8s.io", which no label has: a deny of nothing)', () => {
    expect(meaning(denyFrom({ matchLabels: { 'k8s.io:app': 'evil' } }))).toEqual(meaning(denyFrom({ matchLabels: { 'k8s:io.app': 'evil' } })));
  });
});

describe('1243. the namespace and init keys are found by their extended key (HasKey, GetMatch, AddMatch)', () => {
  it('a peer `k8s.io:kubernetes.pod.namespace: other` names the namespace: a deny of the pods of `other`, not scoped to the policy namespace', () => {
    const ns = 'k8s:io.kubernetes.pod.namespace';
    expect(meaning(denyFrom({ matchLabels: { 'k8s.io:kubernetes.pod.namespace': 'other' } }))).toEqual(meaning(denyFrom({ matchLabels: { [ns]: 'other' } })));
  });

  it("a subject `k8s:io.kubernetes.pod.namespace=x: other` is replaced by the policy's namespace, with a warning", () => {
    const doc = (ml: Record<string, string>) => cnp({ endpointSelector: { matchLabels: ml }, ingress: [{ fromEndpoints: [{}] }] });
    const p = parseManifest(doc({ app: 'server', 'k8s:io.kubernetes.pod.namespace=x': 'other' }), 'f');
    expect((p.warnings ?? []).map((w) => w.detail)).toEqual([expect.stringMatching(/names namespace "other"; Cilium replaces it/)]);
    expect(meaning(doc({ app: 'server', 'k8s:io.kubernetes.pod.namespace=x': 'other' }))).toEqual(meaning(doc({ app: 'server' })));
  });
});

describe('held: what 1.19 reads as distill already did', () => {
  it('`k8s.app` is the key k8s.app of any source, not k8s:app; `any.app` is any:any.app', () => {
    expect(meaning(denyFrom({ matchLabels: { 'k8s.app': 'x' } }))).toEqual(meaning(denyFrom({ matchLabels: { 'any:k8s.app': 'x' } })));
    expect(meaning(denyFrom({ matchLabels: { 'k8s.app': 'x' } }))).not.toEqual(meaning(denyFrom({ matchLabels: { 'k8s:app': 'x' } })));
  });

  it('an operator other than In, NotIn, Exists, DoesNotExist (`in`) is refused: the CRD enum and ValidateLabelSelectorRequirement', () => {
    const doc = denyFrom({ matchExpressions: [{ key: 'k8s:io.kubernetes.pod.namespace', operator: 'in', values: ['production'] }] });
    expect(errorOf(() => parseManifest(doc, 'f')).fieldPath).toBe('spec.ingressDeny[0].fromEndpoints[0].matchExpressions[0].operator');
  });
});
