import { describe, expect, it } from 'vitest';
import type { EngineEvent } from '../../src/engine/events.js';
import { Engine } from '../../src/engine/engine.js';
import { ClusterMirror } from '../../src/k8s/mirror.js';
import { WatchStreamParser } from '../../src/k8s/watch.js';

/**
 * Finding 1522 (docs/attack-findings-21w.md): `ClusterMirror.flush` computes a batch against what
 * the engine holds as of the last committed batch; the docs said "commit or roll back the batch
 * before the next flush" but nothing checked it. An embedder that writes the maps asynchronously
 * (flush, apply, await the write, commit) and flushes again meanwhile got a batch computed against
 * stale state: an allow added by the open batch and deleted before the next flush gave no event
 * (the mirror believed the engine never had it), and the open batch's commit then recorded it as
 * held while the cluster has none. No later event deleted it: allowed for good (fail-open).
 */
type Obj = Record<string, unknown>;
const ev = (type: string, object: Obj): string => JSON.stringify({ type, object });
const ns: Obj = { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'x', resourceVersion: '1' } };
const pod = (name: string, rv: number, node: string, ip: string): Obj => ({ apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: 'x', resourceVersion: String(rv), labels: { app: name } }, spec: { nodeName: node, containers: [] }, status: { phase: 'Running', podIP: ip } });
const cnp = (name: string, rv: number, spec: Obj): Obj => ({ apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name, namespace: 'x', resourceVersion: String(rv) }, spec: { endpointSelector: { matchLabels: { app: 'server' } }, ...spec } });
const isolate = cnp('isolate', 4, { ingress: [{}] });
const allow = (rv: number): Obj => cnp('allow', rv, { ingress: [{ fromEndpoints: [{ matchLabels: { app: 'client' } }] }] });

function setup() {
  const mirror = new ClusterMirror({ nodeName: 'n1' });
  const engine = new Engine();
  const parser = new WatchStreamParser('w');
  const feed = (...lines: string[]): void => {
    for (const item of parser.push(`${lines.join('\n')}\n`)) mirror.observe(item, 'w');
  };
  const verdict = (): string => {
    const id = engine.identityOfPod('x/client');
    const hit = id === undefined ? undefined : engine.lookup('x/server', id, 'ingress', 6, 80);
    return hit === undefined ? 'none' : hit.entry.deny ? 'deny' : 'allow';
  };
  feed(ev('ADDED', ns), ev('ADDED', pod('server', 2, 'n1', '10.0.0.1')), ev('ADDED', pod('client', 3, 'n2', '10.0.0.2')), ev('ADDED', isolate));
  const b = mirror.flush();
  engine.apply(b.events as EngineEvent[]);
  b.commit();
  return { mirror, engine, feed, verdict };
}

describe('1522. mirror: a batch is settled before the next flush', () => {
  it('a flush while a batch is open throws and changes nothing; the allow deleted meanwhile is deleted', () => {
    const { mirror, engine, feed, verdict } = setup();
    expect(verdict()).toBe('none');
    feed(ev('ADDED', allow(5)));
    const open = mirror.flush();
    engine.apply(open.events as EngineEvent[]);
    expect(verdict()).toBe('allow');
    // While the embedder awaits its map write, the allow is deleted and another flush runs.
    feed(ev('DELETED', allow(6)));
    let refused = false;
    try {
      const early = mirror.flush();
      engine.apply(early.events as EngineEvent[]);
      early.commit();
    } catch {
      refused = true;
    }
    open.commit();
    const next = mirror.flush();
    engine.apply(next.events as EngineEvent[]);
    next.commit();
    expect(verdict(), 'the cluster has no allow: the server is isolated').toBe('none');
    expect(mirror.idle).toBe(true);
    expect(refused).toBe(true);
  });

  it('a batch settled twice throws; an empty batch needs no settling', () => {
    const { mirror, engine, feed } = setup();
    feed(ev('ADDED', allow(5)));
    const b = mirror.flush();
    engine.apply(b.events as EngineEvent[]);
    b.commit();
    expect(() => b.rollback()).toThrow(/already committed or rolled back/);
    expect(() => b.commit()).toThrow(/already committed or rolled back/);
    expect(mirror.flush().events).toEqual([]);
    expect(mirror.flush().events).toEqual([]);
  });
});
