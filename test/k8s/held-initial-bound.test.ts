import { describe, expect, it } from 'vitest';
import { ClusterMirror } from '../../src/k8s/mirror.js';
import { mirrorAgent } from './mirror-agent.js';

/**
 * Finding 1640 (docs/attack-findings-22w.md): after an ERROR a stream's ADDED events are held until
 * it is known whether they are a watch-list's initial events (1340). client-go holds them in
 * `temporaryStore`, a Store keyed by `DeletionHandlingMetaNamespaceKeyFunc`
 * (tools/cache/reflector.go `watchList`): one object per key, so what it holds is bounded by the
 * objects named. distill held every event in an array: a server (or a recorder) that repeats the
 * ADDED of one object and never sends the end bookmark grew the agent's memory without bound.
 */
type Obj = Record<string, unknown>;
const ev = (type: string, object: Obj): string => JSON.stringify({ type, object });
const ccnp = (name: string, rv: number, app: string): Obj => ({
  apiVersion: 'cilium.io/v2',
  kind: 'CiliumClusterwideNetworkPolicy',
  metadata: { name, resourceVersion: String(rv) },
  spec: { endpointSelector: { matchLabels: { app: 'server' } }, ingress: [{ fromEndpoints: [{ matchLabels: { app } }] }] },
});
const pod = (name: string, rv: number, node: string, ip: string, app: string): Obj => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name, namespace: 'x', resourceVersion: String(rv), labels: { app } },
  spec: { nodeName: node, containers: [] },
  status: { phase: 'Running', podIP: ip },
});
const expired = { type: 'ERROR', object: { kind: 'Status', apiVersion: 'v1', status: 'Failure', reason: 'Expired', code: 410 } } as const;
const endBookmark = (rv: number): string =>
  ev('BOOKMARK', { apiVersion: 'cilium.io/v2', kind: 'CiliumClusterwideNetworkPolicy', metadata: { resourceVersion: String(rv), annotations: { 'k8s.io/initial-events-end': 'true' } } });

describe('held initial events are bounded by the objects they name (1640)', () => {
  it('1640. 20,000 ADDEDs of one object after an ERROR hold one event, not 20,000', () => {
    const warnings: Obj[] = [];
    const mirror = new ClusterMirror({ nodeName: 'n1', warn: (_msg, fields) => warnings.push({ ...fields }) });
    mirror.observe(expired, 'policies');
    for (let rv = 1; rv <= 20_000; rv++) mirror.observe({ type: 'ADDED', object: ccnp('allow', 100 + (rv % 7), 'b') }, 'policies');
    mirror.endStream('policies');
    expect(warnings.at(-1)).toMatchObject({ source: 'policies', events: 1 });
  });

  /** Of two ADDEDs of one object, the one in-order application leaves counts: the newer, whatever came last. */
  it('1640. of two held ADDEDs of one object, an older one read later does not win', () => {
    const a = mirrorAgent();
    a.step('pods', ev('ADDED', pod('server', 1, 'n1', '10.0.0.1', 'server')), ev('ADDED', pod('client', 2, 'n2', '10.0.0.9', 'b')));
    a.step('policies', ev('ADDED', ccnp('allow', 3, 'zzz')));
    a.step('policies', JSON.stringify(expired), ev('ADDED', ccnp('allow', 30, 'b')), ev('ADDED', ccnp('allow', 20, 'zzz')), endBookmark(31));
    expect(a.verdict('10.0.0.9')).toBe('allow');
    a.step('policies', JSON.stringify(expired), ev('ADDED', ccnp('allow', 40, 'zzz')), ev('ADDED', ccnp('allow', 41, 'b')), ev('ADDED', ccnp('allow', 42, 'zzz')), endBookmark(43));
    expect(a.verdict('10.0.0.9')).toBe('none');
  });

  /**
   * Not bounded in time (docs/attack-findings-23a.md, brief item 3): client-go only warns while the
   * end bookmark is late (reflector.go `handleAnyWatch`'s `initialEventsEndBookmarkWarningTicker`)
   * and starts over when the server ends the watch at its `timeoutSeconds`. While held, nothing of
   * it applies whatever else happens and however long, and the stream stays awaiting a relist
   * (/healthz 503). A guard: passes on 94c6f52 too.
   */
  it('held initial events without their end bookmark never apply: a day of other streams\' churn, progress bookmarks, flushes', () => {
    let now = Date.parse('2026-12-01T00:00:00Z');
    const mirror = new ClusterMirror({ nodeName: 'n1', now: () => now, elapsed: () => now });
    const flushed: string[] = [];
    const flush = (): void => {
      const b = mirror.flush();
      for (const e of b.events) if (e.type === 'upsertPolicy') flushed.push(e.policy.ref.name);
      b.commit();
    };
    mirror.observe({ type: 'ADDED', object: ccnp('allow', 3, 'zzz') }, 'policies');
    flush();
    mirror.observe(expired, 'policies');
    mirror.observe({ type: 'ADDED', object: ccnp('allow', 30, 'b') }, 'policies');
    for (let i = 0; i < 24; i++) {
      now += 3_600_000;
      mirror.observe({ type: 'BOOKMARK', object: { apiVersion: 'cilium.io/v2', kind: 'CiliumClusterwideNetworkPolicy', metadata: { resourceVersion: String(40 + i) } } }, 'policies');
      mirror.observe({ type: 'ADDED', object: pod(`p${i}`, 100 + i, 'n1', `10.0.1.${i}`, 'server') }, 'pods');
      flush();
    }
    expect(flushed).toEqual(['allow']);
    expect(mirror.streamsAwaitingRelist()).toEqual(['policies']);
  });
});
