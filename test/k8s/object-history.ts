import type { EngineEvent } from '../../src/engine/events.js';
import { applyEventToCluster } from '../../src/harness/cluster-sync.js';
import { ClusterMirror, type MirrorOptions } from '../../src/k8s/mirror.js';
import type { WatchItem } from '../../src/k8s/watch.js';
import type { ClusterState } from '../../src/model/cluster.js';

/** The objects of a cluster by a test's own key, as the property tests over watch histories keep them. */
export type Objects = Map<string, Record<string, unknown>>;

/** Watch items with increasing resourceVersions, and the change of one object of `Objects` as such an item. */
export function objectHistory() {
  let rv = 1;
  const item = (type: 'ADDED' | 'MODIFIED' | 'DELETED', object: Record<string, unknown>): WatchItem => ({ type, object: { ...object, metadata: { ...(object.metadata as object), resourceVersion: String(rv++) } } }) as WatchItem;
  /** `key` set to `object` (null: deleted; `gone` is what a delete of an absent object names). */
  const set = (objects: Objects, key: string, object: Record<string, unknown> | null, gone: () => Record<string, unknown>): WatchItem => {
    const had = objects.get(key);
    if (object === null) {
      objects.delete(key);
      return item('DELETED', had ?? gone());
    }
    objects.set(key, object);
    return item(had ? 'MODIFIED' : 'ADDED', object);
  };
  /** The input as the reference evaluator reads it: a fresh mirror's events folded into `start`. */
  const inputState = (objects: Objects, start: ClusterState, options: Partial<MirrorOptions> = {}): ClusterState => {
    const mirror = new ClusterMirror({ nodeName: 'n1', ...options });
    for (const o of objects.values()) mirror.observe(item('ADDED', o), 'oracle');
    let s = start;
    for (let i = 0; i < 10 && !mirror.idle; i++) {
      const b = mirror.flush();
      for (const e of b.events as EngineEvent[]) s = applyEventToCluster(s, e);
      b.commit();
    }
    return s;
  };
  return { item, set, inputState };
}
