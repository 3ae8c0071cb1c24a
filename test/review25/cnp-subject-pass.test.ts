import { describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.js';
import type { EngineEvent } from '../../src/engine/events.js';
import { ClusterMirror } from '../../src/k8s/mirror.js';
import { WatchStreamParser } from '../../src/k8s/watch.js';

/*
 * review25 (1915 / 712): a ClusterNetworkPolicy whose subject holds a field distill does not know gets a
 * stand-in keeping its Deny rules only; its Pass rules are dropped. A dropped Pass lets a lower-priority
 * Admin Accept decide what the Pass would have handed to the NetworkPolicy tier
 * (network-policy-api apis/v1alpha2 clusternetworkpolicy_types.go: Pass "skips all lower-priority Admin
 * tier rules" and goes to the NetworkPolicy tier). With the installed CRD (which prunes the field, as
 * 1915 says) the NetworkPolicy isolating x/server's egress denies x/server -> x/client; the stand-in
 * allows it. A Pass read as a Deny would deny it under any reading of the unknown field.
 */
type Obj = Record<string, unknown>;
const ev = (type: string, object: Obj): string => JSON.stringify({ type, object });
const pod = (name: string, rv: number, node: string, ip: string): Obj => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name, namespace: 'x', resourceVersion: String(rv), labels: { app: name } },
  spec: { nodeName: node, containers: [{ name: 'c' }] },
  status: { phase: 'Running', podIP: ip },
});
const toPod = (app: string): Obj => ({ pods: { namespaceSelector: {}, podSelector: { matchLabels: { app } } } });
const cnp = (name: string, rv: number, priority: number, subject: Obj, egress: Obj[]): Obj => ({
  apiVersion: 'policy.networking.k8s.io/v1alpha2',
  kind: 'ClusterNetworkPolicy',
  metadata: { name, resourceVersion: String(rv) },
  spec: { tier: 'Admin', priority, subject, egress },
});
const isolate: Obj = { apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { name: 'iso', namespace: 'x', resourceVersion: '9' }, spec: { podSelector: { matchLabels: { app: 'server' } }, policyTypes: ['Egress'] } };

function verdict(passSubject: Obj): { warn: string[]; client: 'allow' | 'deny' } {
  const warn: string[] = [];
  const mirror = new ClusterMirror({ nodeName: 'n1', warn: (m) => warn.push(m) });
  const engine = new Engine();
  const parser = new WatchStreamParser('w');
  const server = { pods: { podSelector: { matchLabels: { app: 'server' } } } };
  const objects = [
    { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'x', resourceVersion: '1' } },
    pod('server', 2, 'n1', '10.0.0.1'),
    pod('client', 3, 'n2', '10.0.0.2'),
    isolate,
    cnp('pass', 10, 5, passSubject, [{ action: 'Pass', to: [toPod('client')] }]),
    cnp('accept', 11, 10, server, [{ action: 'Accept', to: [toPod('client')] }]),
  ];
  for (const item of parser.push(objects.map((o) => ev('ADDED', o)).join('\n'))) mirror.observe(item, 'w');
  const batch = mirror.flush();
  engine.apply(batch.events as EngineEvent[]);
  batch.commit();
  const hit = engine.lookup('x/server', engine.identityOfPod('x/client') as number, 'egress', 6, 80);
  return { warn, client: hit === undefined || hit.entry.deny ? 'deny' : 'allow' };
}

describe('review25: a stand-in for a ClusterNetworkPolicy with an unknown subject field drops its Pass rules', () => {
  it('control: the subject without the field: Pass hands the flow to the NetworkPolicy tier, which isolates: deny', () => {
    expect(verdict({ pods: { podSelector: { matchLabels: { app: 'server' } } } }).client).toBe('deny');
  });
  it('the subject with an unknown field: still denied (the installed CRD prunes it; the stand-in must not open it)', () => {
    const r = verdict({ pods: { podSelector: { matchLabels: { app: 'server' } } }, newField: 1 });
    expect(r.warn.length).toBeGreaterThan(0);
    expect(r.client).toBe('deny');
  });
});
