import { pino } from 'pino';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { Agent } from '../../src/agent/agent.js';
import { MemoryBackend } from '../../src/backend/memory.js';
import type { EngineEvent } from '../../src/engine/events.js';
import type { WatchItem } from '../../src/k8s/watch.js';
import { DEFAULT_MAP_CAPACITY } from '../../src/model/policy-map.js';

/**
 * Finding 2132 (docs/attack-findings-26r.md, fixed in 27a): a fail-closed stand-in (2000/2001) costs a deny entry in
 * each direction of a local map that has an identity-0 allow (here web's: its ingress default allow, its egress
 * `toEntities: [all]`). A map within one entry of its capacity makes the engine refuse the transaction that brings the
 * stand-in. With `--identities etcd` the source's identity events head every transaction until one commits (agent.ts
 * `applyPending`: `source.peek()` first, `ack` only on success), so on the base every later transaction was refused
 * too: no policy change (a new deny included), no pod, no address change reached the maps. Now the Kubernetes events
 * go alone after such a refusal and the identity event waits, retried at each flush, until it fits. An identity
 * source stands in for etcd.
 */
const logger = pino({ level: 'silent' });
let rv = 1;
const meta = (name: string, extra: Record<string, unknown> = {}) => ({ name, resourceVersion: String(rv++), ...extra });
const shop: WatchItem = { type: 'ADDED', object: { apiVersion: 'v1', kind: 'Namespace', metadata: meta('shop') } };
const pod = (name: string, node: string, ip: string): WatchItem => ({
  type: 'ADDED',
  object: { apiVersion: 'v1', kind: 'Pod', metadata: meta(name, { namespace: 'shop', labels: { app: name } }), spec: { nodeName: node, containers: [] }, status: { phase: 'Running', podIP: ip } },
});
const labels = (app: string): Record<string, string> => ({
  'k8s:app': app,
  'k8s:io.kubernetes.pod.namespace': 'shop',
  'k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name': 'shop',
  'k8s:io.cilium.k8s.policy.cluster': 'default',
  'k8s:io.cilium.k8s.policy.serviceaccount': 'default',
});

/** An identity source as the etcd one behaves toward the agent: its events wait until a transaction acks them. */
class Source {
  readonly pending: EngineEvent[] = [];
  onChange: () => void = () => undefined;
  readonly ready = true;
  observe(): void {}
  peek(): readonly EngineEvent[] {
    return this.pending;
  }
  ack(n: number): void {
    this.pending.splice(0, n);
  }
}

/** web's egress: `toEntities: [all]` on `n` distinct TCP ports (40 a rule, Cilium's limit), one map entry each. */
function wide(n: number): WatchItem {
  const egress: unknown[] = [];
  for (let p = 1; p <= n; p += 40) {
    const ports = [];
    for (let q = p; q < Math.min(p + 40, n + 1); q++) ports.push({ port: String(q), protocol: 'TCP' });
    egress.push({ toEntities: ['all'], toPorts: [{ ports }] });
  }
  return { type: 'ADDED', object: { apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: meta('wide', { namespace: 'shop' }), spec: { endpointSelector: { matchLabels: { app: 'web' } }, egress } } };
}
const denyClient: WatchItem = {
  type: 'ADDED',
  object: { apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: meta('client', { namespace: 'shop' }), spec: { endpointSelector: { matchLabels: { app: 'client' } }, egressDeny: [{ toEndpoints: [{ matchLabels: { app: 'db' } }] }] } },
};

describe('2132: a stand-in that does not fit a map', () => {
  it('with an etcd-like identity source, a later deny still reaches the maps; the stand-in commits once it fits', () => {
    const source = new Source();
    const backend = new MemoryBackend();
    const a = new Agent({ node: 'n1', watch: [], backend, logger, registry: new Registry(), identitySource: source });
    const feed = (...items: WatchItem[]): void => {
      for (const item of items) a.mirror.observe(item, 'test');
      a.flush();
    };
    source.pending.push({ type: 'upsertIdentity', id: 300, labels: labels('web') }, { type: 'upsertIdentity', id: 301, labels: labels('client') }, { type: 'upsertIdentity', id: 303, labels: labels('db') });
    feed(shop, pod('web', 'n1', '10.0.0.2'), pod('client', 'n1', '10.0.0.3'), pod('db', 'n2', '10.0.1.4'));
    // web's map: ingress default allow, allow-localhost, and the wide egress: one entry short of full.
    feed(wide(DEFAULT_MAP_CAPACITY - 3));
    expect(a.summary.refusals).toBe(0);
    expect(backend.dump('shop/web').length).toBe(DEFAULT_MAP_CAPACITY - 1);
    expect(a.engine.lookup('shop/client', 303, 'egress', 6, 80)?.entry.deny).toBe(false);
    // db's master key turns unreadable (2001): the stand-in needs two more entries in web's map.
    source.pending.push({ type: 'upsertIdentity', id: 303, labels: labels('db'), unreadable: true });
    a.flush();
    expect(a.summary.refusals).toBe(1);
    expect(source.pending.length).toBe(1);
    // Meanwhile 303 keeps its last readable reading (db): web's wide egress admits it as before, no wider.
    expect(a.engine.lookup('shop/web', 303, 'egress', 6, 80)?.entry.deny).toBe(false);
    expect(a.engine.lookup('shop/web', 303, 'egress', 6, DEFAULT_MAP_CAPACITY)).toBeUndefined();
    // An unrelated deny for client: on the base refused with the stand-in at its head, again and again.
    feed(denyClient);
    expect(a.engine.lookup('shop/client', 303, 'egress', 6, 80)?.entry.deny).toBe(true);
    expect(backend.dump('shop/client').some((e) => e.key.identity === 303 && e.entry.deny)).toBe(true);
    expect(source.pending.length).toBe(1);
    // The wide policy goes: the stand-in fits now and commits with the next flush; every local map denies 303.
    const gone = wide(DEFAULT_MAP_CAPACITY - 3);
    if (gone.type !== 'ADDED') throw new Error('wide() gives an ADDED item');
    feed({ type: 'DELETED', object: gone.object });
    expect(source.pending.length).toBe(0);
    for (const ep of ['shop/web', 'shop/client']) for (const d of ['ingress', 'egress'] as const) expect(a.engine.lookup(ep, 303, d, 6, 80)?.entry.deny ?? true).toBe(true);
    expect(a.engine.lookup('shop/web', 303, 'egress', 6, 80)?.entry.deny).toBe(true);
  });

  it('the first transaction (a restart reconciles the pinned maps with it) is never split', () => {
    const source = new Source();
    const backend = new MemoryBackend();
    const a = new Agent({ node: 'n1', watch: [], backend, logger, registry: new Registry(), identitySource: source });
    source.pending.push(
      { type: 'upsertIdentity', id: 300, labels: labels('web') },
      { type: 'upsertIdentity', id: 301, labels: labels('client') },
      { type: 'upsertIdentity', id: 303, labels: labels('db'), unreadable: true },
    );
    for (const item of [shop, pod('web', 'n1', '10.0.0.2'), pod('client', 'n1', '10.0.0.3'), pod('db', 'n2', '10.0.1.4'), wide(DEFAULT_MAP_CAPACITY - 3)]) a.mirror.observe(item, 'test');
    a.flush();
    // Refused whole: the Kubernetes events without the identities (web and client without their numbers, empty
    // maps) would have been reconciled into the pinned maps.
    expect(a.summary.refusals).toBe(1);
    expect(a.summary.transactions).toBe(0);
    expect(backend.endpoints()).toEqual([]);
    expect(source.pending.length).toBe(3);
  });
});
