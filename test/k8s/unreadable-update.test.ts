import { describe, expect, it } from 'vitest';
import type { EngineEvent } from '../../src/engine/events.js';
import { Engine } from '../../src/engine/engine.js';
import { ClusterMirror } from '../../src/k8s/mirror.js';
import { WatchStreamParser } from '../../src/k8s/watch.js';

/**
 * An update distill cannot read must not delete what the last readable version enforced: Cilium's
 * policy watcher returns on a validation error before touching the policy repository
 * (pkg/policy/k8s/cilium_network_policy.go onUpsert, `cnp.Validate()`), so the previous rules stay.
 * Dropping the policy instead removed an ingressDeny and opened the flow it closed.
 */
type Obj = Record<string, unknown>;
const ev = (type: string, object: Obj): string => JSON.stringify({ type, object });
const ns = (rv: number): Obj => ({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'x', resourceVersion: String(rv), labels: { 'kubernetes.io/metadata.name': 'x' } } });
const pod = (name: string, rv: number, node: string, ip: string): Obj => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name, namespace: 'x', resourceVersion: String(rv), labels: { app: name } },
  spec: { nodeName: node, containers: [] },
  status: { phase: 'Running', podIP: ip },
});
const denyRule = { fromEndpoints: [{ matchLabels: { app: 'client' } }] };
const cnp = (rv: number, deny: Obj): Obj => ({
  apiVersion: 'cilium.io/v2',
  kind: 'CiliumNetworkPolicy',
  metadata: { name: 'guard', namespace: 'x', resourceVersion: String(rv) },
  spec: { endpointSelector: { matchLabels: { app: 'server' } }, ingress: [{ fromEntities: ['all'] }], ingressDeny: [deny] },
});
/** Cilium refuses two peer kinds in one rule (rule_validation.go); so does distill. */
const unreadable = { fromEndpoints: [{ matchLabels: { app: 'client' } }], fromEntities: ['world'] };

function agent() {
  const warn: string[] = [];
  const mirror = new ClusterMirror({ nodeName: 'n1', warn: (m) => warn.push(m) });
  const engine = new Engine();
  const parser = new WatchStreamParser('w');
  const step = (...lines: string[]): EngineEvent[] => {
    for (const item of parser.push(lines.join('\n'))) mirror.observe(item, 'w');
    const batch = mirror.flush();
    engine.apply(batch.events as EngineEvent[]);
    batch.commit();
    return batch.events as EngineEvent[];
  };
  const clientToServer = (): string => {
    const client = engine.identityOfPod('x/client');
    if (client === undefined) return 'no identity';
    const hit = engine.lookup('x/server', client, 'ingress', 6, 80);
    return hit === undefined ? 'deny' : hit.entry.deny ? 'deny' : 'allow';
  };
  return { step, warn, clientToServer };
}

describe('agent: an update that cannot be read', () => {
  it('keeps the last readable policy in force (watch event)', () => {
    const a = agent();
    a.step(ev('ADDED', ns(1)), ev('ADDED', pod('server', 2, 'n1', '10.0.0.1')), ev('ADDED', pod('client', 3, 'n2', '10.0.0.2')), ev('ADDED', cnp(4, denyRule)));
    expect(a.clientToServer()).toBe('deny');
    expect(a.step(ev('MODIFIED', cnp(5, unreadable)))).toEqual([]);
    expect(a.warn).toEqual(['object update skipped: it cannot be read; the last readable version stays in force']);
    expect(a.clientToServer()).toBe('deny');
    // A readable version after it is applied, and a delete still deletes.
    expect(a.step(ev('MODIFIED', cnp(6, { fromEndpoints: [{ matchLabels: { app: 'nobody' } }] }))).map((e) => e.type)).toEqual(['upsertPolicy']);
    expect(a.clientToServer()).toBe('allow');
    expect(a.step(ev('DELETED', cnp(7, denyRule))).map((e) => e.type)).toEqual(['deletePolicy']);
  });
  it('keeps the last readable policy in force (relist)', () => {
    const a = agent();
    a.step(ev('ADDED', ns(1)), ev('ADDED', pod('server', 2, 'n1', '10.0.0.1')), ev('ADDED', pod('client', 3, 'n2', '10.0.0.2')), ev('ADDED', cnp(4, denyRule)));
    const list = JSON.stringify({ apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicyList', metadata: { resourceVersion: '9' }, items: [cnp(8, unreadable)] });
    expect(a.step(list)).toEqual([]);
    expect(a.clientToServer()).toBe('deny');
  });
  it('a name or namespace that is an object (even with a toString key) is skipped, not a crash', () => {
    const a = agent();
    a.step(ev('ADDED', ns(1)), ev('ADDED', pod('server', 2, 'n1', '10.0.0.1')), ev('ADDED', pod('client', 3, 'n2', '10.0.0.2')), ev('ADDED', cnp(4, denyRule)));
    const hostile = (md: Obj): Obj => ({ ...cnp(5, { fromEndpoints: [{}] }), metadata: md });
    expect(a.step(ev('ADDED', hostile({ name: { toString: 1 }, namespace: 'x', resourceVersion: '5' })), ev('ADDED', hostile({ name: 'g', namespace: { toString: 1 }, resourceVersion: '6' })))).toEqual([]);
    expect(a.warn).toEqual(['object skipped: it cannot be read', 'object skipped: it cannot be read']);
    expect(a.clientToServer()).toBe('deny');
  });
  it('a MODIFIED version with a spec of no ingress, ingressDeny, egress or egressDeny keeps the last readable one (finding 713)', () => {
    // Cilium 1.19 Rule.Sanitize refuses the spec, CiliumNetworkPolicy.Parse the object; upsertCiliumNetworkPolicyV2
    // (pkg/policy/k8s/cilium_network_policy.go) returns before UpdatePolicy and cnpCache keeps the old object.
    const a = agent();
    a.step(ev('ADDED', ns(1)), ev('ADDED', pod('server', 2, 'n1', '10.0.0.1')), ev('ADDED', pod('client', 3, 'n2', '10.0.0.2')), ev('ADDED', cnp(4, denyRule)));
    const old = cnp(5, denyRule);
    const { spec, ...rest } = old;
    const noSections = { ...rest, specs: [spec, { endpointSelector: { matchLabels: { app: 'server' } }, ingressDeny: [], enableDefaultDeny: { ingress: true } }] };
    expect(a.step(ev('MODIFIED', noSections))).toEqual([]);
    expect(a.warn).toEqual(['object update skipped: it cannot be read; the last readable version stays in force']);
    expect(a.clientToServer()).toBe('deny');
  });
  it('still skips an object whose first version cannot be read (nothing to keep)', () => {
    const a = agent();
    a.step(ev('ADDED', ns(1)), ev('ADDED', pod('server', 2, 'n1', '10.0.0.1')), ev('ADDED', pod('client', 3, 'n2', '10.0.0.2')));
    expect(a.step(ev('ADDED', cnp(4, unreadable)))).toEqual([]);
    expect(a.warn).toEqual(['object skipped: it cannot be read']);
  });
});

describe('CiliumIdentity objects the engine cannot take', () => {
  it('are unreadable (skipped with a warning), not handed to the engine to refuse the whole batch', async () => {
    const { identityOf } = await import('../../src/k8s/objects.js');
    const id = (name: string, labels: Record<string, string>) => ({ apiVersion: 'cilium.io/v2', kind: 'CiliumIdentity', metadata: { name }, 'security-labels': labels });
    expect(() => identityOf(id('5', { 'k8s:app': 'x' }), 'ids')).toThrow(/ids metadata\.name: "5" is not an identity number of a cluster identity \(256\.\.16777215\)/);
    expect(() => identityOf(id('16777216', { 'k8s:app': 'x' }), 'ids')).toThrow(/"16777216" is not an identity number/);
    expect(() => identityOf(id('300', { 'reserved:host': '' }), 'ids')).toThrow(/ids security-labels\["reserved:host"\]: .*not a cluster identity source/);
    expect(() => identityOf(id('300', {}), 'ids')).toThrow(/security-labels: must not be empty/);
    expect(identityOf(id('300', { 'k8s:app': 'x' }), 'ids')).toEqual({ id: 300, labels: { 'k8s:app': 'x' } });
  });
});
