import { describe, expect, it } from 'vitest';
import type { EngineEvent } from '../../src/engine/events.js';
import { Engine } from '../../src/engine/engine.js';
import { ClusterMirror } from '../../src/k8s/mirror.js';
import { WatchStreamParser } from '../../src/k8s/watch.js';

/**
 * Finding 1524 (docs/attack-findings-21w.md): the mirror called its `warn` callback (the
 * embedder's code) in the middle of a relist: a typed List's item of another kind is warned about
 * while the List's objects are being set, before the relist deletes what it no longer lists. An
 * embedder whose callback flushes the mirror (a warning makes it write what it has, or a logger
 * that drives the agent loop) got a transaction with the List's upserts and none of its deletes: a
 * state the cluster never had (the kind of gap findings 1340 and 1480 closed for watch-list
 * chunks). Now the callbacks run once the item is taken.
 */
type Obj = Record<string, unknown>;
const ns: Obj = { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'x', resourceVersion: '1' } };
const pod = (name: string, app: string, rv: number, node: string, ip: string): Obj => ({ apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: 'x', resourceVersion: String(rv), labels: { app } }, spec: { nodeName: node, containers: [] }, status: { phase: 'Running', podIP: ip } });
const cnp = (name: string, rv: number, spec: Obj): Obj => ({ apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name, namespace: 'x', resourceVersion: String(rv) }, spec: { endpointSelector: { matchLabels: { app: 'server' } }, ...spec } });
const from = (app: string): Obj[] => [{ fromEndpoints: [{ matchLabels: { app } }] }];
const isolate = cnp('isolate', 3, { ingress: [{}] });
const allowB = cnp('allow-b', 4, { ingress: from('b') });
const denyB = (rv: number, app: string): Obj => cnp('deny-b', rv, { ingressDeny: from(app) });

describe('1524. mirror: log callbacks run once the item is taken', () => {
  it('a flush from a warning in the middle of a relist sees the whole relist', () => {
    const engine = new Engine();
    const verdicts: string[] = [];
    const verdict = (): string => {
      const id = engine.identityOfPod('x/client');
      const hit = id === undefined ? undefined : engine.lookup('x/server', id, 'ingress', 6, 80);
      return hit === undefined ? 'none' : hit.entry.deny ? 'deny' : 'allow';
    };
    // The embedder flushes whenever the mirror warns (and once per chunk, below).
    const flush = (): void => {
      const batch = mirror.flush();
      engine.apply(batch.events as EngineEvent[]);
      batch.commit();
      verdicts.push(verdict());
    };
    const mirror: ClusterMirror = new ClusterMirror({ nodeName: 'n1', warn: () => flush() });
    const parser = new WatchStreamParser('w');
    const feed = (text: string): void => {
      for (const item of parser.push(`${text}\n`)) mirror.observe(item, 'w');
      flush();
    };
    feed([ns, pod('server', 'server', 2, 'n1', '10.0.0.1'), pod('client', 'b', 2, 'n2', '10.0.0.2'), isolate, allowB, denyB(5, 'b')].map((object) => JSON.stringify({ type: 'ADDED', object })).join('\n'));
    expect(verdict()).toBe('deny');
    // A relist: allow-b is gone and deny-b now denies app=zzz; the server stays isolated, so the
    // client is denied before and after. The List's `kind` comes after its items (kubectl's key
    // order), and its last item is of another kind: skipped with a warning.
    verdicts.length = 0;
    feed(JSON.stringify({ apiVersion: 'cilium.io/v2', items: [isolate, denyB(20, 'zzz'), pod('stray', 'stray', 21, 'n2', '10.0.0.9')], kind: 'CiliumNetworkPolicyList', metadata: { resourceVersion: '21' } }));
    expect(verdict()).toBe('none');
    expect(verdicts.length).toBeGreaterThan(1);
    expect(verdicts.filter((v) => v === 'allow'), 'no transaction admitted the client').toEqual([]);
  });
});
