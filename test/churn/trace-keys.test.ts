import { describe, expect, it } from 'vitest';
import { parseTrace } from '../../src/churn/trace.js';
import { compilePolicy, shareKey } from '../../src/engine/rule-units.js';
import { KeyedPod, podKey } from '../../src/model/cluster.js';
import { isParsedPolicy, KeyedPolicyRef, policyRefKey, type Policy } from '../../src/model/rules.js';
import { readManifest } from '../../src/policy/manifest.js';

// Issue 18 (cold9): a parsed policy's ref and a trace's pod build their lookup key once, and rules
// with equal peer lists (a trace shares them) share their units' peer selectors and share-key parts.
const header = '{"distillTrace": 1}';
const cnp = (name: string, group: string, port: number): string =>
  JSON.stringify({
    type: 'upsertPolicy',
    manifest: {
      apiVersion: 'cilium.io/v2',
      kind: 'CiliumNetworkPolicy',
      metadata: { namespace: 'bench', name },
      spec: { endpointSelector: { matchLabels: { app: 'target' } }, ingress: [{ fromEndpoints: [{ matchLabels: { group } }], toPorts: [{ ports: [{ port: String(port), protocol: 'TCP' }] }] }] },
    },
  });
const pod = '{"type": "upsertPod", "pod": {"namespace": "bench", "name": "p", "labels": {"app": "x"}, "ip": "10.0.0.1", "ips": ["10.0.0.1", "fd00::1"]}}';

function policies(lines: string[]): Policy[] {
  return parseTrace([header, ...lines].join('\n'), 't.jsonl').items.flatMap((i) => (i.kind === 'event' && i.event.type === 'upsertPolicy' ? [i.event.policy] : []));
}

describe('keys built once', () => {
  it('a parsed ref is keyed, and looks like a plain ref to every reader', () => {
    const namespaced = readManifest({ apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { namespace: 'n', name: 'p' }, spec: { endpointSelector: {}, ingress: [{}] } }, 'm').ref;
    const clusterwide = readManifest({ apiVersion: 'cilium.io/v2', kind: 'CiliumClusterwideNetworkPolicy', metadata: { name: 'c' }, spec: { endpointSelector: {}, ingress: [{}] } }, 'm').ref;
    expect(namespaced).toBeInstanceOf(KeyedPolicyRef);
    expect(policyRefKey(namespaced)).toBe('CiliumNetworkPolicy/n/p');
    expect(policyRefKey(clusterwide)).toBe('CiliumClusterwideNetworkPolicy/c');
    expect(JSON.stringify(namespaced)).toBe('{"kind":"CiliumNetworkPolicy","namespace":"n","name":"p"}');
    expect(JSON.stringify(clusterwide)).toBe('{"kind":"CiliumClusterwideNetworkPolicy","name":"c"}');
    expect(Object.keys({ ...namespaced })).toEqual(['kind', 'namespace', 'name']);
    expect('namespace' in clusterwide).toBe(false);
  });

  it("a trace's pod is keyed, with a plain pod's fields in their order", () => {
    const [item] = parseTrace([header, pod].join('\n'), 't.jsonl').items;
    const p = item?.kind === 'event' && item.event.type === 'upsertPod' ? item.event.pod : undefined;
    expect(p).toBeInstanceOf(KeyedPod);
    expect(podKey(p as KeyedPod)).toBe('bench/p');
    expect(podKey({ ...(p as KeyedPod) })).toBe('bench/p');
    expect(Object.keys(p as KeyedPod)).toEqual(['namespace', 'name', 'labels', 'ip', 'ips', 'serviceAccount', 'ports']);
  });
});

describe('rules with equal peer lists', () => {
  it('share one peer-selector list; share keys stay equal exactly when contents are', () => {
    const [a, b, c] = policies([cnp('a', 'g-0', 8000), cnp('b', 'g-0', 8000), cnp('c', 'g-0', 8001)]).map((p) => compilePolicy(p).units[0]);
    if (!a || !b || !c) throw new Error('a unit per policy');
    expect(b.peers).toBe(a.peers);
    expect(c.peers).toBe(a.peers);
    expect(shareKey(b)).toBe(shareKey(a));
    expect(shareKey(c)).not.toBe(shareKey(a));
    expect(shareKey(a)).toBe(`ingress\0allow\0p\x001\0${a.subject.key}\0${a.peers[0]?.key}\0TCP:8000-8000`);
  });
});

describe("a trace's policies", () => {
  it('count as parsed without a weak-set entry; a copy does not', () => {
    const [p] = policies([cnp('a', 'g-0', 8000)]);
    expect(isParsedPolicy(p)).toBe(true);
    expect(isParsedPolicy({ ...p })).toBe(false);
    expect(isParsedPolicy(Object.create(Object.getPrototypeOf(p) as object))).toBe(false);
  });
});
