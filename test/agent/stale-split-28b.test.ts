import { pino } from 'pino';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { Agent } from '../../src/agent/agent.js';
import { MemoryBackend } from '../../src/backend/memory.js';
import type { EngineEvent } from '../../src/engine/events.js';
import type { WatchItem } from '../../src/k8s/watch.js';
import { cnp, identity, labels, meta, pod, shop } from './crd-fixtures.js';
import { DEFAULT_MAP_CAPACITY } from '../../src/model/policy-map.js';

/**
 * Finding 2440 (docs/attack-findings-28b.md): while a narrowing identity waits (303 turned unreadable, refused: web's
 * map has no room for its deny), one batch brings a local pod no policy selects (its default allow admits every
 * number: it opens 303), a policy letting client reach `app=db` (opens 303) and a remote web pod (opens nothing).
 * Only the openers may wait. In CRD mode the base vetoed the whole batch and sent it again with the identity joined,
 * so the remote pod waited in `refused` with it; the etcd source's split already retried a vetoed batch in halves.
 */
const logger = pino({ level: 'silent' });
/** A pod labelled `app=app` (its name by default). */
const podOf = (name: string, node: string, ip: string, app = name): WatchItem => pod(name, app, node, ip);
/** web's egress: `toEntities: [all]` on `n` distinct TCP ports (40 a rule), one map entry each. */
function wide(n: number, type: 'ADDED' | 'DELETED' = 'ADDED'): WatchItem {
  const egress: unknown[] = [];
  for (let p = 1; p <= n; p += 40) {
    const ports = [];
    for (let q = p; q < Math.min(p + 40, n + 1); q++) ports.push({ port: String(q), protocol: 'TCP' });
    egress.push({ toEntities: ['all'], toPorts: [{ ports }] });
  }
  return { type, object: { apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: meta('wide', { namespace: 'shop' }), spec: { endpointSelector: { matchLabels: { app: 'web' } }, egress } } };
}
const clientTo = (name: string, app: string): WatchItem => cnp(name, 'client', [{ toEndpoints: [{ matchLabels: { app } }] }]);
const openers = (): WatchItem[] => [podOf('lonely', 'n1', '10.0.0.9'), clientTo('client-db', 'db'), podOf('web2', 'n2', '10.0.1.9', 'web')];

/**
 * The agent's apply, counted; every committed state checked while 303 is held: each local endpoint denies 303 in each
 * direction where it denied it when this was called (the narrowing was read; an endpoint made since counts as denying).
 */
function watch(a: Agent): { tried: number; committed: number } {
  const count = { tried: 0, committed: 0 };
  const verdicts = (): Map<string, boolean> => {
    const out = new Map<string, boolean>();
    for (const ep of a.engine.endpoints()) for (const d of ['ingress', 'egress'] as const) out.set(`${ep} ${d}`, a.engine.lookup(ep, 303, d, 6, 80)?.entry.deny ?? true);
    return out;
  };
  const then = verdicts();
  expect(then.get('shop/client egress')).toBe(true);
  const apply = a.instrumented.apply.bind(a.instrumented);
  a.instrumented.apply = (events, veto) => {
    const out = apply(events, veto);
    count.tried++;
    if (!out.ok) return out;
    count.committed++;
    if (a.engine.identityLabels(303) !== undefined) for (const [at, denied] of verdicts()) if (then.get(at) !== false) expect(denied, `${at} admits 303`).toBe(true);
    return out;
  };
  return count;
}

function settle(a: Agent, items: readonly WatchItem[]): void {
  for (const item of items) a.mirror.observe(item, 'test');
  for (let i = 0; i < 50; i++) {
    a.flush();
    if (a.mirror.idle) break;
  }
  a.flush();
}

describe('28b: while a narrowing identity waits, a batch commits all but the objects that open its number', { timeout: 240_000 }, () => {
  it('2440 (CRD): the remote pod commits, the local pod with its default allow and the policy naming db wait, and all commit once the stand-in fits', () => {
    const a = new Agent({ node: 'n1', watch: [], backend: new MemoryBackend(), logger, registry: new Registry(), identities: 'external' });
    settle(a, [shop(), podOf('web', 'n1', '10.0.0.2'), podOf('client', 'n1', '10.0.0.3'), podOf('db', 'n2', '10.0.1.4'), clientTo('client-web', 'web'), identity(300, 'web', 'ADDED'), identity(301, 'client', 'ADDED'), identity(303, 'db', 'ADDED'), identity(307, 'lonely', 'ADDED')]);
    settle(a, [wide(DEFAULT_MAP_CAPACITY - 3)]);
    settle(a, [identity(303, null, 'MODIFIED')]);
    expect(a.mirror.refusedObjects()).toEqual(['CiliumIdentity//303']);
    const count = watch(a);
    settle(a, openers());
    expect(a.engine.identityOfPod('shop/web2')).toBe(300);
    expect(a.engine.endpoints()).not.toContain('shop/lonely');
    expect(a.mirror.refusedObjects()).toEqual(['CiliumIdentity//303', 'CiliumNetworkPolicy/shop/client-db', 'Pod/shop/lonely']);
    // The batch is vetoed, so it is held first (finding 3360, 32c): client-db's deny side commits at its narrowing form
    // (lonely and web2 fail-closed do not fit: 255's deny has no room), then web2's own part. client-db, vetoed alone and
    // refused with 303, is held at the deny side already in force (finding 2521): no commit. The base committed the deny
    // side twice more (at its first refusal with 303 and at the retry), 4 in all.
    expect(count.committed).toBe(2);
    // The transactions this took: the split of n = 3 objects with k = 2 openers, at most k(2⌈log2 n⌉ + 4) + 2, then the
    // retry of what waits after that commit, at most 3k + 2 (docs/architecture.md, CRD identities: 2 for the pod, its
    // batch with 303 joined and its fail-closed version, 3 for the policy, tried alone first, and the commit).
    // Plus the held phase of the vetoed batch (31b, 32c's 3360): its narrowing forms whole, then in halves (n = 3: 3).
    expect(count.tried).toBeLessThanOrEqual(2 * (2 * 2 + 4) + 2 + 3 * 2 + 2 + 3);
    settle(a, [wide(DEFAULT_MAP_CAPACITY - 3, 'DELETED')]);
    expect(a.mirror.refusedObjects()).toEqual([]);
    expect(a.engine.unreadableIdentities()).toEqual([303]);
    expect(a.engine.endpoints()).toContain('shop/lonely');
  });

  it('2440 (etcd source): the same batch; the split of the etcd path retries the vetoed Kubernetes events in halves (held on the base too)', () => {
    const pending: EngineEvent[] = [];
    const source = { onChange: (): void => undefined, ready: true, observe: (): void => undefined, peek: (): readonly EngineEvent[] => pending, ack: (n: number): void => void pending.splice(0, n) };
    const a = new Agent({ node: 'n1', watch: [], backend: new MemoryBackend(), logger, registry: new Registry(), identitySource: source });
    pending.push({ type: 'upsertIdentity', id: 300, labels: labels('web') }, { type: 'upsertIdentity', id: 301, labels: labels('client') }, { type: 'upsertIdentity', id: 303, labels: labels('db') }, { type: 'upsertIdentity', id: 307, labels: labels('lonely') });
    settle(a, [shop(), podOf('web', 'n1', '10.0.0.2'), podOf('client', 'n1', '10.0.0.3'), podOf('db', 'n2', '10.0.1.4'), clientTo('client-web', 'web'), wide(DEFAULT_MAP_CAPACITY - 3)]);
    pending.push({ type: 'upsertIdentity', id: 303, labels: labels('db'), unreadable: true });
    settle(a, []);
    expect(pending.length).toBe(1);
    watch(a);
    settle(a, openers());
    expect(a.engine.identityOfPod('shop/web2')).toBe(300);
    expect(a.engine.endpoints()).not.toContain('shop/lonely');
    expect(a.mirror.refusedObjects()).toEqual(['CiliumNetworkPolicy/shop/client-db', 'Pod/shop/lonely']);
    settle(a, [wide(DEFAULT_MAP_CAPACITY - 3, 'DELETED')]);
    expect(pending.length).toBe(0);
    expect(a.mirror.refusedObjects()).toEqual([]);
    expect(a.engine.endpoints()).toContain('shop/lonely');
  });
});
