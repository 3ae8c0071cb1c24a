import { expect } from 'vitest';
import { Engine } from '../../src/engine/engine.js';
import { MapCapacityError, type EngineEvent } from '../../src/engine/events.js';
import { initialEvents } from '../../src/harness/cluster-sync.js';
import type { MirrorOptions } from '../../src/k8s/mirror.js';
import type { WatchItem } from '../../src/k8s/watch.js';
import { parseIp } from '../../src/model/cidr.js';
import type { ClusterState } from '../../src/model/cluster.js';
import { decideFlow } from '../../src/naive/evaluator.js';
import { rollingMirrorAgent } from './mirror-agent.js';

/** A flow of x/server with a peer (a name the reference evaluator knows, at `ip`), on TCP `port`. */
export interface Probe {
  readonly peer: string;
  readonly ip: string;
  readonly dir: 'ingress' | 'egress';
  readonly port: number;
}

/**
 * Feeds `start`, then each step's items, through a mirror and an engine of `mapCapacity`-entry maps (a refused batch
 * rolled back as the agent does). After every committed batch of a step, no probe the maps allow may be denied by both
 * the input before the step and the input after it (`input`: the reference evaluator's reading). Returns how many
 * steps left `refusedKey` refused. `refuse`: batches of the steps the engine refuses besides those its maps cannot hold.
 * `fitting`: a step is judged only when its input before fits maps of `mapCapacity` (a fresh engine holds it); `judged`
 * counts those judged. An input no map can hold may have no fail-closed form short of isolating the endpoint (32a's
 * 3323, 32v's 3622): the engine then waits before it, and the step after it cannot be held to that input. A step
 * into such an input is judged (the engine is at the input before, or at a held form of the step).
 */
export function judgeHistory(o: { mapCapacity: number; mirrorOptions?: Partial<MirrorOptions>; start: readonly WatchItem[]; steps: readonly (() => WatchItem[])[]; input: () => ClusterState; probes: readonly Probe[]; refusedKey: (key: string) => boolean; refuse?: (events: readonly EngineEvent[]) => boolean; fitting?: boolean; judged?: { n: number } }): number {
  let allowed: Probe[] | undefined;
  const { feed, engine, mirror } = rollingMirrorAgent(
    { mapCapacity: o.mapCapacity },
    o.mirrorOptions ?? {},
    () => {
      if (allowed) for (const p of o.probes) {
        const hit = engine.lookup('x/server', engine.identityOfIp(parseIp(p.ip)), p.dir, 6, p.port);
        if (hit !== undefined && !hit.entry.deny) allowed?.push(p);
      }
    },
    (events) => allowed !== undefined && (o.refuse?.(events) ?? false),
  );
  const lines = (items: readonly WatchItem[]): string[] => items.map((i) => JSON.stringify(i));
  feed(...lines(o.start));
  let before = o.input();
  let beforeFits = !o.fitting || fits(before, o.mapCapacity);
  let refused = 0;
  for (const step of o.steps) {
    allowed = [];
    feed(...lines(step()));
    const after = o.input();
    if (mirror.refusedObjects().some(o.refusedKey)) refused++;
    const afterFits = !o.fitting || fits(after, o.mapCapacity);
    const [prior, judge] = [before, beforeFits];
    [before, beforeFits] = [after, afterFits];
    if (!judge) continue;
    if (o.judged) o.judged.n++;
    const open = new Set<string>();
    for (const p of allowed) {
      const flow = p.dir === 'ingress' ? { from: p.peer, to: 'x/server' } : { from: 'x/server', to: p.peer };
      const allows = (s: ClusterState): boolean => decideFlow(s, { ...flow, port: p.port, protocol: 'TCP' })[p.dir]?.allowed ?? true;
      if (!allows(prior) && !allows(after)) open.add(`${p.peer} ${p.dir} ${p.port}`);
    }
    expect([...open]).toEqual([]);
  }
  return refused;
}

/** Whether a fresh engine of `mapCapacity`-entry maps holds `state` (its pods local as the state records). */
function fits(state: ClusterState, mapCapacity: number): boolean {
  try {
    new Engine({ mapCapacity }).apply(initialEvents(state, (p) => state.remotePods?.has(`${p.namespace}/${p.name}`) !== true));
    return true;
  } catch (e) {
    if (e instanceof MapCapacityError) return false;
    throw e;
  }
}

/** Namespace x and x/server on n1 (10.0.0.1), the objects every judged history starts with. */
export function serverObjects(): Map<string, Record<string, unknown>> {
  const objects = new Map<string, Record<string, unknown>>();
  objects.set('ns/x', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'x' } });
  objects.set('server', { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'server', namespace: 'x', labels: { app: 'server' } }, spec: { nodeName: 'n1', containers: [] }, status: { phase: 'Running', podIP: '10.0.0.1' } });
  return objects;
}
