import { describe, expect, it } from 'vitest';
import { liveHeapReader } from '../live-heap.js';
import { Engine } from '../../src/engine/engine.js';
import type { EngineEvent } from '../../src/engine/events.js';
import type { Pod } from '../../src/model/cluster.js';
import { isParsedPolicy, type Policy } from '../../src/model/rules.js';
import { generateTrace } from '../../src/churn/profiles.js';
import { parseTrace, type Trace } from '../../src/churn/trace.js';
import { parseManifest } from '../../src/policy/manifest.js';

const header = '{"distillTrace": 1}';
const ns = '{"type": "upsertNamespace", "name": "a"}';
const podLine = (name: string, labels: string, ip: string): string =>
  `{"type": "upsertPod", "pod": {"namespace": "a", "name": "${name}", "labels": ${labels}, "ip": "${ip}", "ports": [{"name": "http", "port": 80}]}}`;

function events(t: Trace): EngineEvent[] {
  return t.items.flatMap((i) => (i.kind === 'event' ? [i.event] : []));
}
const podsOf = (t: Trace): Pod[] => events(t).flatMap((e) => (e.type === 'upsertPod' ? [e.pod] : []));
const policiesOf = (t: Trace): Policy[] => events(t).flatMap((e) => (e.type === 'upsertPolicy' ? [e.policy] : []));
const withoutManifest = ({ manifest: _, warnings, ...rest }: Policy): object => ({ ...rest, warnings: warnings ?? [] });

describe('a parsed trace holds its objects compactly (issue 18)', () => {
  it('a policy gives back its manifest as given and the rules parseManifest makes, warnings included', () => {
    const manifests = [
      { apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { namespace: 'a', name: 'w' }, spec: { endpointSelector: { matchLabels: { 'k8s:io.kubernetes.pod.namespace': 'b', app: 'x' } }, ingress: [{ fromEndpoints: [{ matchLabels: { app: 'y', '2': 'n' } }], toPorts: [{ ports: [{ port: '80', protocol: 'TCP' }] }] }] } },
      { apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { namespace: 'a', name: 'np' }, spec: { podSelector: {}, ingress: [{ from: [{ ipBlock: { cidr: '10.0.0.0/8', except: ['10.1.0.0/16'] } }], ports: [{ port: 443, endPort: 450 }] }] } },
      { apiVersion: 'policy.networking.k8s.io/v1alpha2', kind: 'ClusterNetworkPolicy', metadata: { name: 'c' }, spec: { tier: 'Admin', priority: 3, subject: { namespaces: {} }, ingress: [{ name: 'r', action: 'Deny', from: [{ namespaces: {} }] }] } },
    ];
    const t = parseTrace([header, ns, ...manifests.map((manifest) => JSON.stringify({ type: 'upsertPolicy', manifest }))].join('\n'), 't.jsonl');
    const got = policiesOf(t);
    expect(got.map((p) => p.manifest)).toEqual(manifests);
    expect(got.map(withoutManifest)).toEqual(manifests.map((m, i) => withoutManifest(parseManifest(m, `t.jsonl:${i + 3} manifest`))));
    expect(got[0]?.warnings?.length).toBe(1);
    expect(got.every(isParsedPolicy)).toBe(true);
  });

  it('policies of a trace share one selector object per selector key; each rule keeps its own origin', () => {
    const cnp = (name: string, peer: string): string =>
      JSON.stringify({ type: 'upsertPolicy', manifest: { apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { namespace: 'a', name }, spec: { endpointSelector: { matchLabels: { app: 'x' } }, ingress: [{ fromEndpoints: [{ matchLabels: { app: peer } }] }] } } });
    const [p1, p2, p3] = policiesOf(parseTrace([header, ns, cnp('one', 'y'), cnp('two', 'y'), cnp('three', 'z')].join('\n'), 't.jsonl'));
    const peerSelector = (p: Policy | undefined): unknown => { const peer = p?.rules[0]?.peers[0]; return peer?.kind === 'selector' ? peer.selector : undefined; };
    expect(peerSelector(p1)).toBeDefined();
    expect(peerSelector(p2)).toBe(peerSelector(p1));
    expect(peerSelector(p3)).not.toBe(peerSelector(p1));
    expect(p2?.rules[0]?.subject).toBe(p1?.rules[0]?.subject);
    expect(p3?.enforcements[0]?.subject).toBe(p1?.enforcements[0]?.subject);
    expect(p2?.rules[0]?.origin.policy.name).toBe('two');
    expect(p2?.rules.map((r) => r.origin)).toEqual(parseManifest(JSON.parse(cnp('two', 'y')).manifest, 't').rules.map((r) => r.origin));
  });

  it('rules of a trace share one peer list and one port list per key; a different peer, entity, CIDR exception or port does not', () => {
    const np = (name: string, from: unknown, ports: unknown): string =>
      JSON.stringify({ type: 'upsertPolicy', manifest: { apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { namespace: 'a', name }, spec: { podSelector: {}, ingress: [{ from, ports }] } } });
    const block = (except: string[]): unknown => [{ ipBlock: { cidr: '10.0.0.0/8', except } }];
    const tcp = (port: number): unknown => [{ port, protocol: 'TCP' }];
    const lines = [np('p1', block(['10.1.0.0/16']), tcp(80)), np('p2', block(['10.1.0.0/16']), tcp(80)), np('p3', block(['10.2.0.0/16']), tcp(81)), np('p4', [{ podSelector: { matchLabels: { app: 'y' } } }], tcp(80)), np('p5', [{ podSelector: { matchLabels: { app: 'z' } } }], tcp(80))];
    const [p1, p2, p3, p4, p5] = policiesOf(parseTrace([header, ns, ...lines].join('\n'), 't.jsonl')).map((p) => p.rules[0]);
    expect(p2?.peers).toBe(p1?.peers);
    expect(p2?.ports).toBe(p1?.ports);
    expect(p3?.peers).not.toBe(p1?.peers);
    expect(p3?.ports).not.toBe(p1?.ports);
    expect(p4?.ports).toBe(p1?.ports);
    expect(p5?.peers).not.toBe(p4?.peers);
    expect(p3?.peers).toEqual(parseManifest(JSON.parse(lines[2] as string).manifest, 't').rules[0]?.peers);
    expect(p2?.origin.policy.name).toBe('p2');
  });

  it('read with manifests: false, a policy keeps no manifest and says so when asked; its rules are the same', () => {
    const line = JSON.stringify({ type: 'upsertPolicy', manifest: { apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { namespace: 'a', name: 'np' }, spec: { podSelector: {}, ingress: [{}] } } });
    const [kept] = policiesOf(parseTrace([header, ns, line].join('\n'), 't.jsonl'));
    const [dropped] = policiesOf(parseTrace([header, ns, line].join('\n'), 't.jsonl', { manifests: false }));
    expect(() => dropped?.manifest).toThrow(/the manifest of NetworkPolicy\/a\/np was not kept \(t\.jsonl read with manifests: false\)/);
    expect(kept?.manifest).toEqual(JSON.parse(line).manifest);
    const parts = (p: Policy | undefined): unknown => p && [p.ref, p.rules, p.enforcements, p.warnings, p.tiered];
    expect(parts(dropped)).toEqual(parts(kept));
    expect(dropped && isParsedPolicy(dropped)).toBe(true);
  });

  it('pods with equal labels share one frozen label map (fast properties, no prototype), and one port list', () => {
    const t = parseTrace([header, ns, podLine('p1', '{"app": "web"}', '10.0.0.1'), podLine('p2', '{"app": "web"}', '10.0.0.2'), podLine('p3', '{"app": "db", "constructor": "x"}', '10.0.0.3')].join('\n'), 't.jsonl');
    const [p1, p2, p3] = podsOf(t);
    expect(p1?.labels).toBe(p2?.labels);
    expect(p1?.ports).toBe(p2?.ports);
    expect(p1?.ports).toBe(p3?.ports);
    expect(p1?.labels).not.toBe(p3?.labels);
    expect(Object.isFrozen(p1?.labels) && Object.isFrozen(p1?.ports) && Object.isFrozen(p1?.ports[0])).toBe(true);
    // No prototype: a label key never meets an inherited property.
    expect(Object.getPrototypeOf(p3?.labels)).toBeNull();
    expect(Object.getPrototypeOf(p1?.labels)).toBeNull();
    expect(Object.entries(p3?.labels ?? {})).toEqual([['app', 'db'], ['constructor', 'x']]);
  });

  it('the replicas of a workload get one identity, and a namespace relabel between two of them is seen', () => {
    const relabel = '{"type": "upsertNamespace", "name": "a", "labels": {"team": "t"}}';
    const t = parseTrace([header, ns, podLine('p1', '{"app": "web"}', '10.0.0.1'), podLine('p2', '{"app": "web"}', '10.0.0.2'), relabel, podLine('p3', '{"app": "web"}', '10.0.0.3')].join('\n'), 't.jsonl');
    const e = new Engine();
    for (const ev of events(t)) e.apply([ev]);
    const ids = ['10.0.0.1', '10.0.0.2', '10.0.0.3'].map((ip) => e.ipcache().find((x) => x.prefix === `${ip}/32`)?.identity);
    expect(ids[0]).toBeDefined();
    expect(ids[1]).toBe(ids[0]);
    expect(ids[2]).toBe(ids[0]); // the relabel re-identified p1 and p2 with p3's labels
    expect(e.identityLabels(ids[2] as number)).toContainEqual({ source: 'k8s', key: 'io.cilium.k8s.namespace.labels.team', value: 't' });
  });

  it('heap per parsed pod event and per policy event stays small (cilium-ci shape, 3,000 pods and policies)', () => {
    const heap = liveHeapReader();
    const text = generateTrace({ profile: 'cilium-ci', seed: 7, scale: 0.1, churnEvents: 0 });
    const h0 = heap();
    const t = parseTrace(text, 'ci.jsonl');
    const h1 = heap();
    const pods = t.items.filter((i) => i.kind === 'event' && i.event.type === 'upsertPod');
    const policies = t.items.filter((i) => i.kind === 'event' && i.event.type === 'upsertPolicy');
    for (const i of pods) (i as { event: unknown }).event = null;
    const h2 = heap();
    for (const i of policies) (i as { event: unknown }).event = null;
    const h3 = heap();
    expect(h1).toBeGreaterThan(h0);
    expect([pods.length, policies.length]).toEqual([3_000, 3_000]);
    // Before: ~740 B a pod event (labels as a dictionary, a hidden class per port), ~2.2 KB a policy event (the parsed manifest).
    expect((h1 - h2) / pods.length).toBeLessThan(450);
    expect((h2 - h3) / policies.length).toBeLessThan(2_050);
  });
});
