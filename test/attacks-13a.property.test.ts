import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Engine } from '../src/engine/engine.js';
import type { EngineEvent } from '../src/engine/events.js';
import { ClusterMirror } from '../src/k8s/mirror.js';
import { WatchStreamParser } from '../src/k8s/watch.js';

/**
 * Attack round 13a (docs/attack-findings-13a.md): pod lifecycle over a recorded watch stream. Pods
 * reuse two addresses, turn Succeeded/Failed, get a deletionTimestamp, lose their address, are
 * deleted, and the stream breaks (ERROR 410) and relists. After every step the engine's ipcache
 * must equal that of a fresh engine fed one List of the objects the API server holds.
 */
type Obj = Record<string, unknown>;
const T0 = Date.parse('2026-11-30T10:00:00Z');
const iso = (ms: number): string => new Date(ms).toISOString().replace('.000Z', 'Z');
const NAMES = ['a', 'b', 'c'] as const;
const IPS = ['10.0.0.9', '10.0.0.10', undefined] as const;
const PHASES = ['Running', 'Pending', 'Succeeded', 'Failed', 'Unknown'] as const;

const ns: Obj = { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop', resourceVersion: '1' } };
interface PodSpec { name: string; ip: string | undefined; phase: string; node: string; app: string; deleteIn: number | undefined }
const podObj = (p: PodSpec, rv: number, now: number): Obj => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name: p.name, namespace: 'shop', resourceVersion: String(rv), labels: { app: p.app }, ...(p.deleteIn !== undefined ? { deletionTimestamp: iso(now + p.deleteIn), deletionGracePeriodSeconds: 30 } : {}) },
  spec: { nodeName: p.node, containers: [{ name: 'c', image: 'i' }] },
  status: { phase: p.phase, ...(p.ip !== undefined ? { podIP: p.ip } : {}) },
});

const podArb = fc.record({
  name: fc.constantFrom(...NAMES),
  ip: fc.constantFrom(...IPS),
  phase: fc.constantFrom(...PHASES),
  node: fc.constantFrom('node-a', 'node-b'),
  app: fc.constantFrom('web', 'db'),
  deleteIn: fc.option(fc.constantFrom(0, 30_000), { nil: undefined }),
});
type Step = { op: 'put'; pod: PodSpec } | { op: 'delete'; name: string } | { op: 'tick'; ms: number } | { op: 'relist' };
const stepArb: fc.Arbitrary<Step> = fc.oneof(
  { weight: 5, arbitrary: podArb.map((pod): Step => ({ op: 'put', pod })) },
  { weight: 2, arbitrary: fc.constantFrom(...NAMES).map((name): Step => ({ op: 'delete', name })) },
  { weight: 1, arbitrary: fc.constantFrom(1_000, 40_000).map((ms): Step => ({ op: 'tick', ms })) },
  { weight: 1, arbitrary: fc.constant<Step>({ op: 'relist' }) },
);

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

describe('13a: pod lifecycle over a watch stream, engine vs a fresh engine fed one List', () => {
  it('holds after every step', () => {
    let checked = 0;
    fc.assert(
      fc.property(fc.array(stepArb, { minLength: 1, maxLength: 25 }), (steps) => {
        let now = T0;
        const mirror = new ClusterMirror({ nodeName: 'node-a', now: () => now });
        const parser = new WatchStreamParser('t');
        const engine = new Engine();
        const server = new Map<string, Obj>();
        let rv = 1;
        let contested = false;
        feed(mirror, parser, engine, [JSON.stringify({ type: 'ADDED', object: ns })]);
        for (const s of steps) {
          const lines: string[] = [];
          if (s.op === 'put') {
            const prev = server.get(s.pod.name);
            // Kubernetes: a terminal phase and a deletionTimestamp are never taken back.
            const prevPhase = prev ? String((prev.status as Obj).phase) : '';
            const pod = { ...s.pod, ...(prevPhase === 'Succeeded' || prevPhase === 'Failed' ? { phase: prevPhase } : {}) };
            const prevDelete = prev ? (prev.metadata as Obj).deletionTimestamp : undefined;
            const obj = podObj(pod, ++rv, now);
            if (typeof prevDelete === 'string') (obj.metadata as Obj).deletionTimestamp = prevDelete;
            // Two pods claiming one address: the last writer owns it and deleting it leaves the address world
            // (docs/semantics.md, as Cilium's DeleteOnMetadataMatch), which a fresh List cannot reproduce.
            if (pod.ip !== undefined && [...server.values()].some((o) => (o.metadata as Obj).name !== pod.name && (o.status as Obj).podIP === pod.ip)) contested = true;
            lines.push(JSON.stringify({ type: server.has(s.pod.name) ? 'MODIFIED' : 'ADDED', object: obj }));
            server.set(s.pod.name, obj);
          } else if (s.op === 'delete') {
            const old = server.get(s.name);
            if (old === undefined) continue;
            server.delete(s.name);
            lines.push(JSON.stringify({ type: 'DELETED', object: { ...old, metadata: { ...(old.metadata as Obj), resourceVersion: String(++rv) } } }));
          } else if (s.op === 'tick') now += s.ms;
          else {
            lines.push(JSON.stringify({ type: 'ERROR', object: { kind: 'Status', code: 410, reason: 'Expired' } }));
            lines.push(JSON.stringify({ apiVersion: 'v1', kind: 'PodList', metadata: { resourceVersion: String(++rv) }, items: [...server.values()] }));
          }
          feed(mirror, parser, engine, lines);
          if (contested) continue;
          const fresh = new Engine();
          const freshMirror = new ClusterMirror({ nodeName: 'node-a', now: () => now });
          const freshList = { apiVersion: 'v1', kind: 'PodList', metadata: { resourceVersion: String(rv) }, items: [...server.values()] };
          feed(freshMirror, new WatchStreamParser('f'), fresh, [JSON.stringify({ type: 'ADDED', object: ns }), JSON.stringify(freshList)]);
          expect(view(engine)).toEqual(view(fresh));
          checked++;
        }
      }),
      { numRuns: 300, ...(process.env.DISTILL_SEED ? { seed: Number(process.env.DISTILL_SEED) } : {}) },
    );
    expect(checked).toBeGreaterThan(500);
  });
});
