import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ClusterMirror } from '../../src/k8s/mirror.js';
import { WatchStreamParser } from '../../src/k8s/watch.js';
import type { EngineEvent } from '../../src/engine/events.js';
import { Engine } from '../../src/engine/engine.js';

type Obj = Record<string, unknown>;
const ns = (name: string, rv: number, labels: Record<string, string> = {}): Obj => ({ apiVersion: 'v1', kind: 'Namespace', metadata: { name, resourceVersion: String(rv), labels: { 'kubernetes.io/metadata.name': name, ...labels } } });
const pod = (name: string, rv: number, over: Obj = {}): Obj => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name, namespace: 'shop', resourceVersion: String(rv), labels: { app: name } },
  spec: { nodeName: 'node-a', containers: [{ name: 'c', image: 'i' }] },
  status: { phase: 'Running', podIP: `10.0.0.${rv % 250}` },
  ...over,
});
const np = (name: string, rv: number, app: string): Obj => ({
  apiVersion: 'networking.k8s.io/v1',
  kind: 'NetworkPolicy',
  metadata: { name, namespace: 'shop', resourceVersion: String(rv), generation: 1, managedFields: [] },
  spec: { podSelector: { matchLabels: { app } }, policyTypes: ['Ingress'] },
});
const ev = (type: string, object: Obj): string => JSON.stringify({ type, object });

describe('watch stream parser', () => {
  const stream = [ev('ADDED', ns('shop', 1)), ev('ADDED', pod('web', 2, { metadata: { name: 'web', namespace: 'shop', resourceVersion: '2', annotations: { note: 'a "}{" in a string \\" and \\\\' } } })), ev('BOOKMARK', { kind: 'Pod', apiVersion: 'v1', metadata: { resourceVersion: '3' } })].join('\n');
  it('splits concatenated JSON objects (kubectl --output-watch-events -o json) at any chunk boundary', () => {
    const whole = new WatchStreamParser('s').push(stream);
    expect(whole.map((i) => i.type)).toEqual(['ADDED', 'ADDED', 'BOOKMARK']);
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: stream.length }), { maxLength: 8 }), (cuts) => {
        const p = new WatchStreamParser('s');
        const at = [...new Set([0, ...cuts, stream.length])].sort((a, b) => a - b);
        const items = at.slice(1).flatMap((end, i) => p.push(stream.slice(at[i], end)));
        p.end();
        expect(items).toEqual(whole);
      }),
    );
  });
  it('reads pretty-printed objects back to back, and a List', () => {
    const text = `${JSON.stringify({ type: 'DELETED', object: ns('a', 5) }, null, 2)}${JSON.stringify({ apiVersion: 'v1', kind: 'PodList', metadata: { resourceVersion: '9' }, items: [] })}`;
    const items = new WatchStreamParser('s').push(text);
    expect(items.map((i) => i.type)).toEqual(['DELETED', 'LIST']);
    expect(items[1]).toMatchObject({ itemKind: 'Pod', resourceVersion: '9' });
  });
  it('names the stream and the object number of what it cannot read', () => {
    expect(() => new WatchStreamParser('pods.json').push(`${ev('ADDED', ns('a', 1))} [1]`)).toThrow(/pods\.json#2: unexpected "\["/);
    expect(() => new WatchStreamParser('w').push(ev('UPDATED', ns('a', 1)))).toThrow(/w#1 type: "UPDATED" is not a watch event type/);
    expect(() => new WatchStreamParser('w').push('{"type": "ADDED", "object": {"a": }}')).toThrow(/w#1: not JSON/);
    const cut = new WatchStreamParser('w');
    cut.push('{"type":"ADDED"');
    expect(() => cut.end()).toThrow(/w#1: the stream ended inside a JSON value/);
  });
});

/** A mirror fed from text, flushed and committed: the events of each step. */
function harness() {
  const debug: string[] = [];
  const warn: string[] = [];
  const mirror = new ClusterMirror({ nodeName: 'node-a', debug: (m) => debug.push(m), warn: (m) => warn.push(m) });
  const parser = new WatchStreamParser('test');
  const step = (...lines: string[]): EngineEvent[] => {
    for (const item of parser.push(lines.join('\n'))) mirror.observe(item, 'test');
    const batch = mirror.flush();
    batch.commit();
    return batch.events as EngineEvent[];
  };
  const types = (...lines: string[]): string[] => step(...lines).map((e) => e.type);
  return { mirror, step, types, debug, warn };
}

describe('cluster mirror', () => {
  it('turns ADDED, MODIFIED and DELETED into upserts and deletes, in an order the engine accepts', () => {
    const h = harness();
    expect(h.types(ev('ADDED', pod('web', 3)), ev('ADDED', np('p', 4, 'web')), ev('ADDED', ns('shop', 2)))).toEqual(['upsertNamespace', 'upsertPolicy', 'upsertPod']);
    expect(h.types(ev('MODIFIED', pod('web', 5, { metadata: { name: 'web', namespace: 'shop', resourceVersion: '5', labels: { app: 'web', v: '2' } } })))).toEqual(['upsertPod']);
    expect(h.types(ev('DELETED', pod('web', 6)), ev('DELETED', np('p', 7, 'web')), ev('DELETED', ns('shop', 8)))).toEqual(['deletePod', 'deletePolicy', 'deleteNamespace']);
  });
  it('drops duplicated and older events, and status-only changes', () => {
    const h = harness();
    expect(h.types(ev('ADDED', ns('shop', 2)), ev('ADDED', pod('web', 3)))).toEqual(['upsertNamespace', 'upsertPod']);
    expect(h.types(ev('ADDED', pod('web', 3)), ev('ADDED', ns('shop', 2)))).toEqual([]);
    expect(h.mirror.counts.stale).toBe(2);
    expect(h.types(ev('DELETED', pod('web', 9)))).toEqual(['deletePod']);
    expect(h.types(ev('MODIFIED', pod('web', 4)))).toEqual([]);
    const status = pod('web2', 10);
    expect(h.types(ev('ADDED', status))).toEqual(['upsertPod']);
    expect(h.types(ev('MODIFIED', { ...status, metadata: { ...(status.metadata as Obj), resourceVersion: '11' }, status: { phase: 'Running', podIP: '10.0.0.10', conditions: [{ type: 'Ready', status: 'True' }] } }))).toEqual([]);
  });
  it('deletes a pod that stops being an endpoint, and adds it when it gets an address', () => {
    const h = harness();
    expect(h.types(ev('ADDED', ns('shop', 1)), ev('ADDED', pod('web', 2, { status: { phase: 'Pending' } })))).toEqual(['upsertNamespace']);
    expect(h.types(ev('MODIFIED', pod('web', 3)))).toEqual(['upsertPod']);
    expect(h.types(ev('MODIFIED', pod('web', 4, { status: { phase: 'Succeeded', podIP: '10.0.0.4' } })))).toEqual(['deletePod']);
    expect(h.types(ev('DELETED', pod('web', 5)))).toEqual([]);
  });
  it('diffs a relist against what it holds: only the differences', () => {
    const h = harness();
    h.step(ev('ADDED', ns('shop', 1)), ev('ADDED', pod('a', 2)), ev('ADDED', pod('b', 3)), ev('ADDED', np('p', 4, 'a')));
    const list = { apiVersion: 'v1', kind: 'PodList', metadata: { resourceVersion: '20' }, items: [pod('a', 2), pod('c', 12)].map(({ kind: _k, apiVersion: _a, ...rest }) => rest) };
    const events = h.step(JSON.stringify(list));
    expect(events.map((e) => `${e.type} ${e.type === 'upsertPod' ? e.pod.name : e.type === 'deletePod' ? e.name : ''}`)).toEqual(['upsertPod c', 'deletePod b']);
    expect(h.types(JSON.stringify({ apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicyList', metadata: { resourceVersion: '21' }, items: [] }))).toEqual(['deletePolicy']);
  });
  it('deletes a namespace\'s pods with it: a namespace re-created with its name does not bring them back; a later pod waits for it (finding 801)', () => {
    const h = harness();
    const engine = new Engine();
    const apply = (...lines: string[]): string[] => {
      const events = h.step(...lines);
      engine.apply(events);
      return events.map((e) => e.type);
    };
    apply(ev('ADDED', ns('shop', 1)), ev('ADDED', pod('web', 2)));
    // Kubernetes deletes a namespace only once its pods are gone: web's DELETED is late.
    expect(apply(ev('DELETED', ns('shop', 3)))).toEqual(['deletePod', 'deleteNamespace']);
    expect(engine.endpoints()).toEqual([]);
    expect(apply(ev('ADDED', pod('api', 4)))).toEqual([]);
    expect(apply(ev('ADDED', ns('shop', 5)))).toEqual(['upsertNamespace']);
    // Without its namespace a pod's identity would lack the namespace labels (test/k8s/namespace-first.test.ts).
    expect(apply()).toEqual(['upsertPod']);
    expect(engine.endpoints()).toEqual(['shop/api']);
    expect(apply(ev('DELETED', pod('web', 6)))).toEqual([]);
  });
  it('rolls back: a refused batch leaves the mirror holding what the engine holds', () => {
    const h = harness();
    h.step(ev('ADDED', ns('shop', 1)));
    for (const item of new WatchStreamParser('t').push(ev('ADDED', pod('web', 2)))) h.mirror.observe(item, 't');
    const refused = h.mirror.flush();
    expect(refused.events.map((e) => e.type)).toEqual(['upsertPod']);
    refused.rollback();
    expect(h.mirror.localEndpoints()).toEqual([]);
    expect(h.types(ev('MODIFIED', pod('web', 3, { metadata: { name: 'web', namespace: 'shop', resourceVersion: '3', labels: { app: 'web', v: '2' } } })))).toEqual(['upsertPod']);
    expect(h.mirror.localEndpoints()).toEqual(['shop/web']);
  });
  it('ignores unknown kinds and bookmarks with a debug log, and logs ERROR events and unreadable objects', () => {
    const h = harness();
    expect(h.types(ev('ADDED', { apiVersion: 'v1', kind: 'Service', metadata: { name: 's', namespace: 'shop' } }), ev('BOOKMARK', { apiVersion: 'v1', kind: 'Pod', metadata: { resourceVersion: '50' } }))).toEqual([]);
    expect(h.debug).toEqual(['ignored object of unknown kind', 'bookmark']);
    expect(h.types(ev('ADDED', { ...np('bad', 60, 'a'), spec: { podSelector: { matchLabels: { app: 'a' } }, ingress: [{ ports: [{ port: 70000 }] }] } }))).toEqual([]);
    expect(h.types(ev('ERROR', { kind: 'Status', apiVersion: 'v1', status: 'Failure', message: 'too old resource version', reason: 'Expired', code: 410 }))).toEqual([]);
    expect(h.warn).toHaveLength(2);
    expect(h.mirror.counts).toMatchObject({ ignored: 1, errors: 1, invalid: 1 });
  });
  it('reads CiliumIdentity objects into identity events', () => {
    const h = harness();
    const id = { apiVersion: 'cilium.io/v2', kind: 'CiliumIdentity', metadata: { name: '30001', resourceVersion: '5' }, 'security-labels': { 'k8s:app': 'web' } };
    const events = (() => {
      for (const item of new WatchStreamParser('t').push(ev('ADDED', id))) h.mirror.observe(item, 't');
      const b = h.mirror.flush();
      b.commit();
      return b.events;
    })();
    expect(events).toEqual([{ type: 'upsertIdentity', id: 30001, labels: { 'k8s:app': 'web' } }]);
    for (const item of new WatchStreamParser('t').push(ev('DELETED', { ...id, metadata: { name: '30001', resourceVersion: '6' } }))) h.mirror.observe(item, 't');
    expect(h.mirror.flush().events).toEqual([{ type: 'deleteIdentity', id: 30001 }]);
  });
});
