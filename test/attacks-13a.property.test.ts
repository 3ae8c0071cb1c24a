import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { iso, podLifecycle, type LifecycleStep, type Obj } from './k8s/pod-lifecycle.js';

/**
 * Attack round 13a (docs/attack-findings-13a.md): pod lifecycle over a recorded watch stream. Pods
 * reuse two addresses, turn Succeeded/Failed, get a deletionTimestamp, lose their address, are
 * deleted, and the stream breaks (ERROR 410) and relists. After every step the engine's ipcache
 * must equal that of a fresh engine fed one List of the objects the API server holds.
 */
const NAMES = ['a', 'b', 'c'] as const;
const IPS = ['10.0.0.9', '10.0.0.10', undefined] as const;
const PHASES = ['Running', 'Pending', 'Succeeded', 'Failed', 'Unknown'] as const;

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
const stepArb: fc.Arbitrary<LifecycleStep> = fc.oneof(
  { weight: 5, arbitrary: podArb.map((pod): LifecycleStep => ({ op: 'put', name: pod.name, build: (rv, now) => podObj(pod, rv, now) })) },
  { weight: 2, arbitrary: fc.constantFrom(...NAMES).map((name): LifecycleStep => ({ op: 'delete', name })) },
  { weight: 1, arbitrary: fc.constantFrom(1_000, 40_000).map((ms): LifecycleStep => ({ op: 'tick', ms })) },
  { weight: 1, arbitrary: fc.constant<LifecycleStep>({ op: 'relist' }) },
);

/**
 * Two pods claiming one address: the last writer owns it and deleting it leaves the address world (docs/semantics.md,
 * as Cilium's DeleteOnMetadataMatch), which a fresh List cannot reproduce.
 */
function shared(server: ReadonlyMap<string, Obj>): boolean {
  const ips = [...server.values()].map((o) => (o.status as Obj).podIP).filter((ip) => ip !== undefined);
  return new Set(ips).size < ips.length;
}

describe('13a: pod lifecycle over a watch stream, engine vs a fresh engine fed one List', () => {
  it('holds after every step', () => {
    let checked = 0;
    fc.assert(
      fc.property(fc.array(stepArb, { minLength: 1, maxLength: 25 }), (steps) => {
        checked += podLifecycle(steps, shared);
      }),
      { numRuns: 300, ...(process.env.DISTILL_SEED ? { seed: Number(process.env.DISTILL_SEED) } : {}) },
    );
    expect(checked).toBeGreaterThan(500);
  });
});
