import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { iso, podLifecycle, type LifecycleStep, type Obj } from './k8s/pod-lifecycle.js';

/**
 * Review 30t (docs/attack-findings-30t.md, 2920/2921/2924): 13a's pod lifecycle property with dual-stack addresses,
 * compared also where an expired remote pod (past its deletionTimestamp, held fail-closed) shares an address with
 * other pods. Only two live pods at one address (the last writer's, finding 524) stay uncompared.
 */
const NAMES = ['a', 'b', 'c'] as const;
const TICK = 40_000;
interface PodSpec { name: string; ips: readonly string[]; phase: string; node: string; app: string; deleteIn: number | undefined }
const podObj = (p: PodSpec, rv: number, now: number): Obj => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name: p.name, namespace: 'shop', resourceVersion: String(rv), labels: { app: p.app }, ...(p.deleteIn !== undefined ? { deletionTimestamp: iso(now + p.deleteIn), deletionGracePeriodSeconds: 30 } : {}) },
  spec: { nodeName: p.node, containers: [{ name: 'c', image: 'i' }] },
  status: { phase: p.phase, ...(p.ips.length > 0 ? { podIP: p.ips[0], podIPs: p.ips.map((ip) => ({ ip })) } : {}) },
});
const podArb = fc.record({
  name: fc.constantFrom(...NAMES),
  ips: fc.constantFrom<readonly string[]>(['10.0.0.9'], ['10.0.0.10'], ['10.0.0.9', 'fd00::9'], ['10.0.0.10', 'fd00::9'], []),
  phase: fc.constantFrom('Running', 'Running', 'Pending', 'Succeeded'),
  node: fc.constantFrom('node-a', 'node-b', 'node-b'),
  app: fc.constantFrom('web', 'db'),
  deleteIn: fc.option(fc.constantFrom(0, 30_000), { nil: undefined }),
});
const stepArb: fc.Arbitrary<LifecycleStep> = fc.oneof(
  { weight: 5, arbitrary: podArb.map((pod): LifecycleStep => ({ op: 'put', name: pod.name, build: (rv, now) => podObj(pod, rv, now) })) },
  { weight: 2, arbitrary: fc.constantFrom(...NAMES).map((name): LifecycleStep => ({ op: 'delete', name })) },
  { weight: 2, arbitrary: fc.constant<LifecycleStep>({ op: 'tick', ms: TICK }) },
  { weight: 1, arbitrary: fc.constant<LifecycleStep>({ op: 'relist' }) },
);

/** True when two pods that are endpoints at `now` (not Succeeded, not past a deletionTimestamp) claim one address. */
function liveContest(server: ReadonlyMap<string, Obj>, now: number): boolean {
  const seen = new Set<string>();
  for (const o of server.values()) {
    const st = o.status as Obj;
    const del = (o.metadata as Obj).deletionTimestamp;
    if (st.phase === 'Succeeded' || (typeof del === 'string' && Date.parse(del) <= now)) continue;
    for (const e of (st.podIPs as Obj[] | undefined) ?? []) {
      if (seen.has(String(e.ip))) return true;
      seen.add(String(e.ip));
    }
  }
  return false;
}

describe('30t: expired remote pods sharing addresses, engine vs a fresh engine fed one List', () => {
  it('holds after every step', () => {
    let checked = 0;
    fc.assert(
      fc.property(fc.array(stepArb, { minLength: 1, maxLength: 25 }), (steps) => {
        // A live contest before or after the step's clock: the owner it left is history (524).
        checked += podLifecycle(steps, (server, now, before) => liveContest(server, now) || liveContest(server, before));
      }),
      { numRuns: 300, ...(process.env.DISTILL_SEED ? { seed: Number(process.env.DISTILL_SEED) } : {}) },
    );
    expect(checked).toBeGreaterThan(500);
  });
});
