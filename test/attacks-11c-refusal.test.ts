import { describe, expect, it } from 'vitest';
import { Engine } from '../src/engine/engine.js';
import type { EngineEvent } from '../src/engine/events.js';
import { ClusterMirror } from '../src/k8s/mirror.js';

/** Attack round 11c: a refused batch that holds a deletion (docs/attack-findings-11c.md, 341). */
type Obj = Record<string, unknown>;
const ns: Obj = { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop', resourceVersion: '1' } };
const pod = (name: string, ip: string, rv: number): Obj => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name, namespace: 'shop', resourceVersion: String(rv), labels: { app: name } },
  spec: { nodeName: 'node-a', containers: [{ name: 'c', image: 'i' }] },
  status: { phase: 'Running', podIP: ip, podIPs: [{ ip }] },
});
const allowAll: Obj = { apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name: 'p', namespace: 'shop', resourceVersion: '2' }, spec: { endpointSelector: { matchLabels: { app: 'web' } }, ingress: [{ fromEndpoints: [{}] }] } };

/** The agent's loop (applyPending): flush, apply, commit or roll back, again while work waits. */
function drain(mirror: ClusterMirror, engine: Engine): { refusals: number; deletes: string[] } {
  let refusals = 0;
  const deletes: string[] = [];
  for (let i = 0; i < 50; i++) {
    const batch = mirror.flush();
    const events = batch.events as EngineEvent[];
    if (events.length === 0) {
      batch.commit();
      if (mirror.idle) break;
      continue;
    }
    try {
      engine.apply(events);
      batch.commit();
      for (const e of events) if (e.type === 'deletePod') deletes.push(e.name);
    } catch {
      refusals++;
      batch.rollback();
    }
    if (mirror.idle) break;
  }
  return { refusals, deletes };
}

describe('341: a deletion in a batch the engine refuses (MapCapacityError) is retried, not lost', () => {
  it('the deleted pod loses its identity and IP while the overflowing pods wait', () => {
    // web's map: one entry per identity allowed in; a few more than fit once two pods arrive.
    const engine = new Engine({ mapCapacity: 12 });
    const mirror = new ClusterMirror({ nodeName: 'node-a', now: () => 0 });
    const names = ['web', ...Array.from({ length: 6 }, (_, i) => `a${i}`)];
    mirror.observe({ type: 'ADDED', object: ns }, 't');
    mirror.observe({ type: 'ADDED', object: allowAll }, 't');
    names.forEach((n, i) => mirror.observe({ type: 'ADDED', object: pod(n, `10.0.0.${i + 2}`, 10 + i) }, 't'));
    expect(drain(mirror, engine).refusals).toBe(0);
    let extra = 0;
    // Fill web's map to the brim: one more identity would overflow it.
    for (; extra < 20; extra++) {
      const name = `fill${extra}`;
      mirror.observe({ type: 'ADDED', object: pod(name, `10.0.1.${extra + 1}`, 100 + extra) }, 't');
      const r = drain(mirror, engine);
      if (r.refusals > 0) break;
    }
    expect(extra).toBeLessThan(20);
    // The refused pod waits; now one batch: two more new pods (refused) and a1's deletion.
    const a1Ip = '10.0.0.4';
    expect(engine.identityOfPod('shop/a1')).toBeDefined();
    mirror.observe({ type: 'ADDED', object: pod('late1', '10.0.2.1', 300) }, 't');
    mirror.observe({ type: 'ADDED', object: pod('late2', '10.0.2.2', 301) }, 't');
    mirror.observe({ type: 'DELETED', object: pod('a1', a1Ip, 302) }, 't');
    const r = drain(mirror, engine);
    expect(r.refusals).toBeGreaterThan(0);
    expect(r.deletes).toContain('a1');
    expect(engine.identityOfPod('shop/a1')).toBeUndefined();
    expect(engine.ipcache().some((x) => x.prefix === `${a1Ip}/32`)).toBe(false);
    // Nothing is left dirty: the pods that do not fit wait in the refused set, retried after the next commit.
    expect(mirror.idle).toBe(true);
  });
});
