import { expect } from 'vitest';
import { Engine } from '../../src/engine/engine.js';
import type { EngineEvent } from '../../src/engine/events.js';
import { ClusterMirror } from '../../src/k8s/mirror.js';
import { WatchStreamParser } from '../../src/k8s/watch.js';

/**
 * Pod lifecycle properties over a recorded watch stream (attack rounds 13a, 30t): after every step the engine's ipcache
 * must equal that of a fresh mirror and engine fed `Namespace` shop and one PodList of what the API server holds.
 */
export type Obj = Record<string, unknown>;
const T0 = Date.parse('2026-11-30T10:00:00Z');
export const iso = (ms: number): string => new Date(ms).toISOString().replace('.000Z', 'Z');
/** `put`: `build` makes the pod at a resourceVersion and time (a terminal phase and a deletionTimestamp are kept). */
export type LifecycleStep = { op: 'put'; name: string; build: (rv: number, now: number) => Obj } | { op: 'delete'; name: string } | { op: 'tick'; ms: number } | { op: 'relist' };
/** Whether the API server's pods, at `now` (`before`: the time before the step), leave the comparison for good. */
export type Contest = (server: ReadonlyMap<string, Obj>, now: number, before: number) => boolean;

const ns: Obj = { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop', resourceVersion: '1' } };

function feed(mirror: ClusterMirror, parser: WatchStreamParser, engine: Engine, lines: string[]): void {
  for (const item of parser.push(lines.map((l) => l + '\n').join(''))) mirror.observe(item, 't');
  const batch = mirror.flush();
  engine.apply(batch.events as EngineEvent[]);
  batch.commit();
}

/** The ipcache as address → the app label of its identity (numbers differ between engines). */
function view(engine: Engine): Map<string, string> {
  const app = (id: number): string => engine.identityLabels(id)?.find((l) => l.key === 'app')?.value ?? `#${id}`;
  return new Map(engine.ipcache().map((e) => [e.prefix, app(e.identity)]));
}

/** The line of one `put`, with Kubernetes' rule: a terminal phase and a deletionTimestamp are never taken back. */
function putLine(server: Map<string, Obj>, s: Extract<LifecycleStep, { op: 'put' }>, rv: number, now: number): string {
  const prev = server.get(s.name);
  const obj = s.build(rv, now);
  const prevPhase = prev ? String((prev.status as Obj).phase) : '';
  if (prevPhase === 'Succeeded' || prevPhase === 'Failed') obj.status = { ...(obj.status as Obj), phase: prevPhase };
  const prevDelete = prev ? (prev.metadata as Obj).deletionTimestamp : undefined;
  if (typeof prevDelete === 'string') (obj.metadata as Obj).deletionTimestamp = prevDelete;
  server.set(s.name, obj);
  return JSON.stringify({ type: prev ? 'MODIFIED' : 'ADDED', object: obj });
}

/** Runs `steps` on node-a; returns how many steps were compared (none after `contest` said so once). */
export function podLifecycle(steps: readonly LifecycleStep[], contest: Contest): number {
  let now = T0;
  let checked = 0;
  const mirror = new ClusterMirror({ nodeName: 'node-a', now: () => now });
  const parser = new WatchStreamParser('t');
  const engine = new Engine();
  const server = new Map<string, Obj>();
  let rv = 1;
  let contested = false;
  feed(mirror, parser, engine, [JSON.stringify({ type: 'ADDED', object: ns })]);
  for (const s of steps) {
    const lines: string[] = [];
    const before = now;
    if (s.op === 'put') lines.push(putLine(server, s, ++rv, now));
    else if (s.op === 'delete') {
      const old = server.get(s.name);
      if (old === undefined) continue;
      server.delete(s.name);
      lines.push(JSON.stringify({ type: 'DELETED', object: { ...old, metadata: { ...(old.metadata as Obj), resourceVersion: String(++rv) } } }));
    } else if (s.op === 'tick') now += s.ms;
    else {
      lines.push(JSON.stringify({ type: 'ERROR', object: { kind: 'Status', code: 410, reason: 'Expired' } }));
      lines.push(JSON.stringify({ apiVersion: 'v1', kind: 'PodList', metadata: { resourceVersion: String(++rv) }, items: [...server.values()] }));
    }
    contested ||= contest(server, now, before);
    feed(mirror, parser, engine, lines);
    if (contested) continue;
    const fresh = new Engine();
    const freshMirror = new ClusterMirror({ nodeName: 'node-a', now: () => now });
    const freshList = { apiVersion: 'v1', kind: 'PodList', metadata: { resourceVersion: String(rv) }, items: [...server.values()] };
    feed(freshMirror, new WatchStreamParser('f'), fresh, [JSON.stringify({ type: 'ADDED', object: ns }), JSON.stringify(freshList)]);
    expect(view(engine)).toEqual(view(fresh));
    checked++;
  }
  return checked;
}
