import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { cidrContainsCidr, parseCidr, PrefixSet } from '../src/model/cidr.js';
import { Engine } from '../src/engine/engine.js';
import { EngineDecider } from '../src/harness/engine-decider.js';
import { parseManifest } from '../src/policy/manifest.js';
import { parseScenario } from '../src/scenario/format.js';
import { runScenario } from '../src/scenario/run.js';
import { np } from './policy/helpers.js';

/*
 * Round 20p (docs/attack-findings-20p.md): manifest readers against Kubernetes' and Cilium 1.19's parsers.
 */

/** What a policy enforces, without the paths its rules came from. */
function meaning(doc: unknown): unknown {
  const p = parseManifest(doc, 'f');
  return { rules: p.rules.map(({ origin: _o, ...rule }) => rule), enforcements: p.enforcements.map(({ origin: _o, ...e }) => e) };
}

const NS = 'io.kubernetes.pod.namespace';

describe("1300. a NetworkPolicy podSelector entry io.kubernetes.pod.namespace is replaced by the policy's namespace", () => {
  // cilium/cilium pkg/k8s/network_policy.go parsePodSelector (v1.19 branch point 2ba24a2a): maps.Copy(matchLabels), then
  // matchLabels["io.kubernetes.pod.namespace"] = namespace, for the subject and for a peer podSelector without namespaceSelector.
  it('a subject naming another namespace isolates every pod of the policy namespace (isolated nothing before)', () => {
    const doc = (ml: Record<string, string>) => np({ podSelector: { matchLabels: ml }, policyTypes: ['Ingress'] });
    expect(meaning(doc({ [NS]: 'other' }))).toEqual(meaning(doc({})));
    expect(meaning(doc({ [NS]: 'other', app: 'a' }))).toEqual(meaning(doc({ app: 'a' })));
    const p = parseManifest(doc({ [NS]: 'other' }), 'f');
    expect((p.warnings ?? []).map((w) => w.detail)).toEqual([expect.stringMatching(/names namespace "other"; Cilium replaces it with the policy's namespace "x"/)]);
  });

  it('a peer podSelector without namespaceSelector selects pods of the policy namespace (selected nothing before)', () => {
    const doc = (peer: Record<string, unknown>) => np({ podSelector: {}, ingress: [{ from: [peer] }] });
    expect(meaning(doc({ podSelector: { matchLabels: { [NS]: 'other', app: 'b' } } }))).toEqual(meaning(doc({ podSelector: { matchLabels: { app: 'b' } } })));
  });

  it('with a namespaceSelector, and in matchExpressions, the key is kept and ANDed (as Cilium: no parsePodSelector there)', () => {
    const doc = (peer: Record<string, unknown>) => np({ podSelector: {}, ingress: [{ from: [peer] }] });
    expect(meaning(doc({ podSelector: { matchLabels: { [NS]: 'other' } }, namespaceSelector: {} }))).not.toEqual(meaning(doc({ podSelector: {}, namespaceSelector: {} })));
    const expr = { matchExpressions: [{ key: NS, operator: 'In', values: ['other'] }] };
    expect(meaning(doc({ podSelector: expr }))).not.toEqual(meaning(doc({ podSelector: {} })));
  });

  it('the entry is still validated as written', () => {
    expect(() => parseManifest(np({ podSelector: { matchLabels: { [NS]: 'Not Valid' } } }), 'f')).toThrow(/invalid label value/);
  });
});

describe('1301. an icmps entry without fields is a rule with no L4 filter, not a refusal', () => {
  // pkg/policy/api/icmp.go ICMPRule.Fields: +kubebuilder:validation:Optional; pkg/policy/utils/parserules.go icmpRules appends
  // GetPortRule(), a PortRule with no ports: the rule is not L3-only and adds no filter (its direction is default-deny).
  const doc = (icmps: unknown[]) => ({
    apiVersion: 'cilium.io/v2',
    kind: 'CiliumNetworkPolicy',
    metadata: { name: 'p', namespace: 'x' },
    spec: { endpointSelector: { matchLabels: { app: 'a' } }, ingressDeny: [{ fromEntities: ['world'], icmps }], ingress: [{ fromEndpoints: [{}], icmps }] },
  });
  it('`icmps: [{}]` reads as `icmps: [{fields: []}]`: the direction isolated, nothing allowed or denied by the rules (refused before)', () => {
    expect(meaning(doc([{}]))).toEqual(meaning(doc([{ fields: [] }])));
    const p = parseManifest(doc([{}]), 'f');
    expect(p.rules.map((r) => r.ports)).toEqual([[], []]);
    expect(p.enforcements.map((e) => e.direction)).toEqual(['ingress']);
  });

  it('a field without type is still refused (the CRD requires type)', () => {
    expect(() => parseManifest(doc([{ fields: [{ family: 'IPv4' }] }]), 'f')).toThrow(/type/);
  });
});

describe("1302. `log.value` is checked as the CRD checks it (the API server never stores a policy that fails)", () => {
  // pkg/policy/api/rule.go LogConfig.Value: +kubebuilder:validation:MaxLength=32, Pattern=`^\PC*$` (ciliumnetworkpolicies.yaml).
  const doc = (log: unknown) => ({
    apiVersion: 'cilium.io/v2',
    kind: 'CiliumNetworkPolicy',
    metadata: { name: 'p', namespace: 'x' },
    spec: { endpointSelector: {}, log, ingress: [{ fromEndpoints: [{}] }] },
  });
  it('refuses a value of 33 characters, a number, a control or format character (enforced before)', () => {
    expect(() => parseManifest(doc({ value: 'a'.repeat(33) }), 'f')).toThrow(/at most 32/);
    expect(() => parseManifest(doc({ value: 5 }), 'f')).toThrow(/expected a string/);
    expect(() => parseManifest(doc({ value: 'a\u0007b' }), 'f')).toThrow(/control or format/);
    expect(() => parseManifest(doc({ value: 'a\u200Bb' }), 'f')).toThrow(/control or format/);
  });

  it('reads 32 characters (runes, not UTF-16 units), spaces and other scripts', () => {
    expect(() => parseManifest(doc({ value: 'a'.repeat(32) }), 'f')).not.toThrow();
    expect(() => parseManifest(doc({ value: '\u{1F600}'.repeat(32) }), 'f')).not.toThrow();
    expect(() => parseManifest(doc({ value: 'deny by ops, ünïcode' }), 'f')).not.toThrow();
    expect(() => parseManifest(doc({}), 'f')).not.toThrow();
  });
});

describe('1303. `fromRequires: []` / `toRequires: []` are absent, as in Cilium 1.19 (MaxItems=0, omitempty)', () => {
  // pkg/policy/api/ingress.go, egress.go (v1.19 branch point 2ba24a2a): FromRequires/ToRequires []string, "Deprecated",
  // +kubebuilder:validation:MaxItems=0. An empty list is nothing; the stand-in dropped the allow / denied every peer before.
  const doc = (rule: Record<string, unknown>, field: 'ingress' | 'ingressDeny' | 'egress' | 'egressDeny') => ({
    apiVersion: 'cilium.io/v2',
    kind: 'CiliumNetworkPolicy',
    metadata: { name: 'p', namespace: 'x' },
    spec: { endpointSelector: { matchLabels: { app: 'a' } }, [field]: [rule] },
  });
  it('an empty list reads as the rule without it (refused as "not supported" before)', () => {
    expect(meaning(doc({ fromEntities: ['world'], fromRequires: [] }, 'ingressDeny'))).toEqual(meaning(doc({ fromEntities: ['world'] }, 'ingressDeny')));
    expect(meaning(doc({ fromEndpoints: [{}], fromRequires: [] }, 'ingress'))).toEqual(meaning(doc({ fromEndpoints: [{}] }, 'ingress')));
    expect(meaning(doc({ toEntities: ['world'], toRequires: [] }, 'egressDeny'))).toEqual(meaning(doc({ toEntities: ['world'] }, 'egressDeny')));
    expect(meaning(doc({ toEndpoints: [{}], toRequires: null }, 'egress'))).toEqual(meaning(doc({ toEndpoints: [{}] }, 'egress')));
  });

  it('so are empty toServices, toGroups, fromGroups (omitempty; RequiresDerivative is len > 0): a rule with ports alone applies to every peer', () => {
    const ports = { toPorts: [{ ports: [{ port: '80' }] }] };
    expect(meaning(doc({ toServices: [], ...ports }, 'egress'))).toEqual(meaning(doc(ports, 'egress')));
    expect(meaning(doc({ toGroups: [], toEntities: ['world'] }, 'egressDeny'))).toEqual(meaning(doc({ toEntities: ['world'] }, 'egressDeny')));
    expect(meaning(doc({ fromGroups: [], fromEntities: ['world'] }, 'ingressDeny'))).toEqual(meaning(doc({ fromEntities: ['world'] }, 'ingressDeny')));
    expect(() => parseManifest(doc({ toServices: [{}] }, 'egressDeny'), 'f')).toThrow(/toServices: is not supported by distill/);
  });

  it('an item stays "not supported" (the API server refuses it; the agent would enforce the stand-in)', () => {
    expect(() => parseManifest(doc({ fromEndpoints: [{}], fromRequires: ['x'] }, 'ingress'), 'f')).toThrow(/fromRequires: is not supported by distill/);
    expect(() => parseManifest(doc({ toEndpoints: [{}], toRequires: {} }, 'egress'), 'f')).toThrow(/expected a list/);
  });
});

describe('1305. a CIDR peer with tens of thousands of exceptions is evaluated in time linear in them', () => {
  // Each `except` is a CIDR identity, and each CIDR identity was checked against every exception (quadratic: 60,000
  // NetworkPolicy ipBlock exceptions, a 1 MB object the API server stores, took minutes of agent CPU).
  const prefix = fc.tuple(fc.constantFrom<'ipv4' | 'ipv6'>('ipv4', 'ipv6'), fc.bigInt({ min: 0n, max: 2n ** 128n - 1n }), fc.nat(128)).map(([family, v, len]) => {
    const bits = family === 'ipv4' ? 32 : 128;
    const value = v & ((1n << BigInt(bits)) - 1n);
    const text = family === 'ipv4' ? [24, 16, 8, 0].map((s) => Number((value >> BigInt(s)) & 255n)).join('.') : Array.from({ length: 8 }, (_, i) => ((value >> BigInt(112 - 16 * i)) & 0xffffn).toString(16)).join(':');
    return parseCidr(`${text}/${len % (bits + 1)}`);
  });

  it('PrefixSet.containsCidr is "some prefix contains it" (cidrContainsCidr)', () => {
    fc.assert(
      fc.property(fc.array(prefix, { maxLength: 30 }), fc.array(prefix, { maxLength: 30 }), (set, probes) => {
        const s = new PrefixSet(set);
        for (const c of [...probes, ...set]) expect(s.containsCidr(c)).toBe(set.some((e) => cidrContainsCidr(e, c)));
      }),
      { numRuns: 300 },
    );
  });

  it('the engine decides an ipBlock with 50,000 exceptions (minutes of CPU before: past this test timeout)', { timeout: 120_000 }, () => {
    const except = Array.from({ length: 50_000 }, (_, i) => `10.${(i >> 8) & 255}.${i & 255}.0/24`);
    const scenario = parseScenario(
      JSON.stringify({
        pods: [{ name: 'x/a', labels: { app: 'a' }, ip: '10.250.1.10' }],
        externals: [
          { name: 'inside', ip: '10.250.2.3' },
          { name: 'excepted', ip: '10.1.2.3' },
        ],
        policies: [np({ podSelector: {}, ingress: [{ from: [{ ipBlock: { cidr: '10.0.0.0/8', except } }] }] })],
        steps: [{ probes: [{ from: 'inside', to: 'x/a', port: 80 }, { from: 'excepted', to: 'x/a', port: 80 }], expect: [{ probe: 0, deny: [] }, { probe: 1, allow: [] }] }],
      }),
      'big-except',
    );
    expect(runScenario(scenario, new EngineDecider(new Engine()).decide).steps.flatMap((s) => s.mismatches)).toEqual([]);
  });
});
