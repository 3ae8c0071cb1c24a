import { describe, expect, it } from 'vitest';
import type { EngineEvent } from '../../src/engine/events.js';
import { refusingAgent } from './refusing-agent.js';
import { line, md, namespace, other, server, type Obj } from './refused-objects.js';

/*
 * 32r, finding 3540: a ClusterNetworkPolicy moved from the Admin tier to Baseline in a split step is held at its deny
 * side beside the version in force, which sat in the Admin tier (the higher precedence of the two versions). The Pass
 * added in the same step, committed at its own form first, skipped it, while the Baseline version, met after the
 * Pass, denies: the part admitted a flow the inputs before and after the step both deny. So did a Pass added in a later
 * event while the form stayed held.
 */
const P = '10.0.1.1';
const nsY: Obj = { apiVersion: 'v1', kind: 'Namespace', metadata: md('y', 4) };
const podP: Obj = { apiVersion: 'v1', kind: 'Pod', metadata: md('p', 5, { namespace: 'y', labels: { app: 'p' } }), spec: { nodeName: 'n2', containers: [] }, status: { phase: 'Running', podIP: P } };
const tiered = (name: string, rv: number, tier: string, priority: number, action: string): Obj => ({
  apiVersion: 'policy.networking.k8s.io/v1beta1',
  kind: 'ClusterNetworkPolicy',
  metadata: md(name, rv),
  spec: { tier, priority, subject: { namespaces: {} }, egress: [{ action, to: [{ pods: { namespaceSelector: {}, podSelector: { matchLabels: { app: 'p' } } } }] }] },
});

describe('3540: a tiered deny side held across an Admin to Baseline move, with a Pass above it', () => {
  it('a split step adding the Pass and moving p to Baseline never admits x/server -> y/p', () => {
    const { feed, step, verdict } = refusingAgent((events) => events.length > 1, { ip: P });
    feed(line('ADDED', namespace), line('ADDED', server), line('ADDED', nsY), line('ADDED', podP), line('ADDED', tiered('p', 6, 'Admin', 2, 'Deny')));
    expect(verdict()).toBe('deny');
    // Before: p (Admin 2) denies. After: the Pass (Admin 1) skips the Admin tier, p (Baseline 2) denies.
    step(line('ADDED', tiered('pass', 7, 'Admin', 1, 'Pass')), line('MODIFIED', tiered('p', 8, 'Baseline', 2, 'Deny')));
    expect(verdict()).toBe('deny');
  });

  it('the form held after a split step keeps denying it when a Pass is added in a later event', () => {
    const baselineP = (events: readonly EngineEvent[]): boolean => events.some((e) => e.type === 'upsertPolicy' && e.policy.ref.name === 'p' && e.policy.tiered?.tier === 'Baseline');
    const { feed, step, verdict, mirror } = refusingAgent(baselineP, { ip: P });
    feed(line('ADDED', namespace), line('ADDED', server), line('ADDED', nsY), line('ADDED', podP), line('ADDED', tiered('p', 6, 'Admin', 2, 'Deny')));
    // With an unrelated namespace the step is split: p commits at its form beside the version in force (Admin), and is
    // refused at its own version and at its forms without it (Baseline), so the form stays.
    step(line('MODIFIED', tiered('p', 7, 'Baseline', 2, 'Deny')), line('ADDED', other));
    expect(mirror.refusedObjects()).toEqual(['ClusterNetworkPolicy//p']);
    // Before and after this event: p (Baseline 2) denies, after the Pass too.
    step(line('ADDED', tiered('pass', 8, 'Admin', 1, 'Pass')));
    expect(verdict()).toBe('deny');
  });
});
