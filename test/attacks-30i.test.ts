import { describe, expect, it } from 'vitest';
import type { EngineEvent } from '../src/engine/events.js';
import { mirrorAgent } from './k8s/mirror-agent.js';
import { allowGood, ev, expired, pod, podList } from './k8s/replay-objects.js';

type Obj = Record<string, unknown>;
const ns = (name: string, rv: number): Obj => ({ apiVersion: 'v1', kind: 'Namespace', metadata: { name, resourceVersion: String(rv) } });
/** A pod of a completed Job (phase Succeeded): no endpoint, so it means nothing to the engine. */
const donePod = (name: string, rv: number): Obj => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name, namespace: 'jobs', resourceVersion: String(rv), labels: { job: 'nightly' } },
  spec: { nodeName: 'node-b', containers: [{ name: 'c', image: 'i' }] },
  status: { phase: 'Succeeded', podIP: `10.1.${(rv >> 8) & 255}.${rv & 255}` },
});

describe('2840. objects that mean nothing to the engine and vanish in a watch gap are not kept forever', () => {
  it('completed Job pods deleted while the watch was down, then omitted by the relist, leave at most maxTombstones states', () => {
    const h = mirrorAgent('n1', { maxTombstones: 10 });
    h.step('pods', ev('ADDED', ns('jobs', 1)));
    let rv = 2;
    // 50 gaps (a 410, then a List): each time 20 completed pods were deleted meanwhile and the List omits them.
    for (let gap = 0; gap < 50; gap++) {
      for (let i = 0; i < 20; i++) h.step('pods', ev('ADDED', donePod(`nightly-${gap}-${i}`, rv++)));
      h.step('pods', podList(rv++, []));
    }
    // The namespace and at most 10 tombstones (before: 1,001, one per completed pod ever seen).
    expect(h.mirror.size).toBeLessThanOrEqual(1 + 10);
  });
  it('an omitted one still drops a replayed older event, and a listed one stays', () => {
    const h = mirrorAgent('n1', { maxTombstones: 10 });
    h.step('pods', ev('ADDED', ns('jobs', 1)), ev('ADDED', donePod('a', 2)), ev('ADDED', donePod('b', 3)));
    h.step('pods', podList(10, [donePod('b', 3)]));
    const stale = h.mirror.counts.stale;
    h.step('pods', ev('MODIFIED', donePod('a', 5)));
    expect(h.mirror.counts.stale).toBe(stale + 1);
    expect(h.mirror.size).toBe(3);
  });
});

describe('2841. a relist that omits a pod held as no endpoint raises its version, as it does for an endpoint (1644)', () => {
  it('a Pending pod that ran and was deleted in a watch gap: its replayed Running event stays dropped', () => {
    const a = mirrorAgent('n1');
    a.step('pods', ev('ADDED', pod('server', 1, 'n1', 'server', '10.0.0.1')), ev('ADDED', pod('old', 2, 'n2', 'good')));
    a.step('policies', ev('ADDED', allowGood));
    // In the gap: old ran at 10.0.0.9 (4), was deleted (5), and evil took the address (6). The List at 10 shows that.
    a.step('pods', expired, podList(10, [pod('server', 1, 'n1', 'server', '10.0.0.1'), pod('evil', 6, 'n2', 'bad', '10.0.0.9')]));
    expect(a.verdict('10.0.0.9')).toBe('none');
    // A replay of old's Running event (version 4, older than the List): before, its state kept version 2 and it came back at evil's address.
    a.step('pods', ev('MODIFIED', pod('old', 4, 'n2', 'good', '10.0.0.9')));
    expect(a.verdict('10.0.0.9')).toBe('none');
    expect(a.mirror.counts.stale).toBeGreaterThan(0);
  });
});

describe('2841. the same through a watch-list', () => {
  it('initial events ending at 10 without old: its replayed Running event at 4 stays dropped', () => {
    const a = mirrorAgent('n1');
    a.step('pods', ev('ADDED', pod('server', 1, 'n1', 'server', '10.0.0.1')), ev('ADDED', pod('old', 2, 'n2', 'good')));
    a.step('policies', ev('ADDED', allowGood));
    const end = ev('BOOKMARK', { apiVersion: 'v1', kind: 'Pod', metadata: { resourceVersion: '10', annotations: { 'k8s.io/initial-events-end': 'true' } } });
    a.step('pods', expired, ev('ADDED', pod('server', 1, 'n1', 'server', '10.0.0.1')), ev('ADDED', pod('evil', 6, 'n2', 'bad', '10.0.0.9')), end);
    a.step('pods', ev('MODIFIED', pod('old', 4, 'n2', 'good', '10.0.0.9')));
    expect(a.verdict('10.0.0.9')).toBe('none');
  });
});

describe('2842. a watch-list\'s initial events keep the objects they list that mean nothing to the engine', () => {
  it('a Pending pod listed by the initial events is not buried at their end: a replay older than its listing stays dropped', () => {
    const a = mirrorAgent('n1', { maxTombstones: 1 });
    a.step('pods', ev('ADDED', pod('server', 1, 'n1', 'server', '10.0.0.1')));
    a.step('policies', ev('ADDED', allowGood));
    const end = ev('BOOKMARK', { apiVersion: 'v1', kind: 'Pod', metadata: { resourceVersion: '10', annotations: { 'k8s.io/initial-events-end': 'true' } } });
    a.step('pods', expired, ev('ADDED', pod('server', 1, 'n1', 'server', '10.0.0.1')), ev('ADDED', pod('p', 7, 'n2', 'good')), ev('ADDED', pod('gone', 8, 'n2', 'bad', '10.0.0.7')), end);
    // One real delete after: with p counted as a tombstone it was forgotten (the bound is 1).
    a.step('pods', ev('DELETED', pod('gone', 11, 'n2', 'bad', '10.0.0.7')));
    a.step('pods', ev('MODIFIED', pod('p', 5, 'n2', 'good', '10.0.0.9')));
    expect(a.verdict('10.0.0.9')).toBe('none');
  });
});

describe('2843. a remote pod past its deletionTimestamp and not deleted is held fail-closed, not dropped to world', () => {
  const T0 = Date.parse('2026-01-01T00:00:00Z');
  const at = (name: string, node: string, ip: string, app: string, deleteAt?: number): Obj => {
    const p = pod(name, 2, node, app, ip);
    const md = p.metadata as Obj;
    return deleteAt === undefined ? p : { ...p, metadata: { ...md, deletionTimestamp: new Date(deleteAt).toISOString(), deletionGracePeriodSeconds: 30 } };
  };
  const denyEvilAllowCidr = { apiVersion: 'cilium.io/v2', kind: 'CiliumClusterwideNetworkPolicy', metadata: { name: 'p', resourceVersion: '3' }, spec: { endpointSelector: { matchLabels: { app: 'server' } }, ingressDeny: [{ fromEndpoints: [{ matchLabels: { app: 'evil' } }] }], ingress: [{ fromCIDR: ['10.0.0.0/8'] }] } };
  /** The verdict for `ip` as the datapath resolves it: its /32 entry, else the CIDR identity of 10.0.0.0/8. */
  function verdictAt(a: ReturnType<typeof mirrorAgent>, ip: string): string {
    const cache = a.engine.ipcache();
    const id = cache.find((e) => e.prefix === `${ip}/32`)?.identity ?? cache.find((e) => e.prefix === '10.0.0.0/8')?.identity;
    const hit = id === undefined ? undefined : a.engine.lookup('x/server', id, 'ingress', 6, 80);
    return hit === undefined ? 'none' : hit.entry.deny ? 'deny' : 'allow';
  }
  /** The flush the agent's deadline timer makes. */
  function tick(a: ReturnType<typeof mirrorAgent>): void {
    const b = a.mirror.flush();
    a.engine.apply(b.events as EngineEvent[]);
    b.commit();
  }
  it('its node unreachable (an eviction never carried out): the deny of its labels is not traded for the CIDR allow', () => {
    let t = T0;
    const a = mirrorAgent('n1', { now: () => t, elapsed: () => t });
    a.step('w', ev('ADDED', pod('server', 1, 'n1', 'server', '10.0.0.1')), ev('ADDED', at('evil', 'n2', '10.0.0.9', 'evil', T0 + 30_000)), ev('ADDED', denyEvilAllowCidr));
    expect(verdictAt(a, '10.0.0.9')).toBe('deny');
    t += 31_000;
    tick(a);
    // Before: the pod was dropped at its deadline and 10.0.0.9 read as the CIDR's identity, which the allow admits.
    // Now it is at the unallocated number, which no entry admits (no identity-0 allow here, so no deny entry either).
    expect(verdictAt(a, '10.0.0.9')).not.toBe('allow');
    expect(a.engine.ipcache().find((e) => e.prefix === '10.0.0.9/32')?.identity).toBe(255);
    // A fresh agent reading the same pod past its deadline agrees; its DELETED ends the hold.
    const b = mirrorAgent('n1', { now: () => t, elapsed: () => t });
    b.step('w', ev('ADDED', pod('server', 1, 'n1', 'server', '10.0.0.1')), ev('ADDED', at('evil', 'n2', '10.0.0.9', 'evil', T0 + 30_000)), ev('ADDED', denyEvilAllowCidr));
    expect(b.engine.ipcache().find((e) => e.prefix === '10.0.0.9/32')?.identity).toBe(a.engine.ipcache().find((e) => e.prefix === '10.0.0.9/32')?.identity);
    a.step('w', ev('DELETED', { ...at('evil', 'n2', '10.0.0.9', 'evil', T0 + 30_000), metadata: { name: 'evil', namespace: 'x', resourceVersion: '9' } }));
    expect(a.engine.ipcache().find((e) => e.prefix === '10.0.0.9/32')).toBeUndefined();
  });
  it('a local pod past its deadline still stops being an endpoint (its kubelet is this node\'s)', () => {
    let t = T0;
    const a = mirrorAgent('n1', { now: () => t, elapsed: () => t });
    a.step('w', ev('ADDED', at('server', 'n1', '10.0.0.1', 'server', T0 + 30_000)));
    expect(a.mirror.localEndpoints()).toEqual(['x/server']);
    t += 31_000;
    tick(a);
    expect(a.mirror.localEndpoints()).toEqual([]);
  });
});
