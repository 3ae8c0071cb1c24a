import { pino } from 'pino';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { Agent } from '../../src/agent/agent.js';
import { MemoryBackend } from '../../src/backend/memory.js';
import type { WatchItem } from '../../src/k8s/watch.js';
import { DEFAULT_MAP_CAPACITY } from '../../src/model/policy-map.js';
import { ciliumIdentity, labels, meta, pod, shop, Source, wide } from './standin-fixtures.js';

/**
 * Review 27x of fix2132, finding 2370 (docs/attack-findings-27x.md). After a refused transaction the agent applies the
 * Kubernetes events alone and leaves a refused identity event waiting (2201, agent.ts `applyIdentitiesAlone`). The
 * committed state is then (old identities, new Kubernetes events): the inputs read in another order. When the waiting
 * event narrows a number (readable labels turning unreadable: the fail-closed stand-in of 2000/2001, denied by every
 * local map), a policy that arrives meanwhile and selects the number's last readable labels admitted it, although the
 * old inputs (no such policy) and the new inputs (the number unreadable, denied everywhere) both deny it. Now such a
 * Kubernetes-only transaction is refused (agent.ts `staleVeto`) and waits with the identity event; one that admits the
 * number no more than before still goes (26r's test: client's new deny).
 */
const logger = pino({ level: 'silent' });
/** client's egress: only to `app` (enforcing, no identity-0 key). */
const clientTo = (name: string, app: string): WatchItem => ({
  type: 'ADDED',
  object: { apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: meta(name, { namespace: 'shop' }), spec: { endpointSelector: { matchLabels: { app: 'client' } }, egress: [{ toEndpoints: [{ matchLabels: { app } }] }] } },
});

function setUp(): { a: Agent; source: Source } {
  const source = new Source();
  const a = new Agent({ node: 'n1', watch: [], backend: new MemoryBackend(), logger, registry: new Registry(), identitySource: source });
  source.pending.push({ type: 'upsertIdentity', id: 300, labels: labels('web') }, { type: 'upsertIdentity', id: 301, labels: labels('client') }, { type: 'upsertIdentity', id: 303, labels: labels('db') });
  for (const item of [shop, pod('web', 'n1', '10.0.0.2'), pod('client', 'n1', '10.0.0.3'), pod('db', 'n2', '10.0.1.4'), clientTo('client-web', 'web')]) a.mirror.observe(item, 'test');
  a.flush();
  a.mirror.observe(wide(DEFAULT_MAP_CAPACITY - 3), 'test');
  a.flush();
  return { a, source };
}

describe('27x: a policy that arrives while a stand-in waits', { timeout: 240_000 }, () => {
  it('control: before the stand-in, client denies 303 (egress only to web)', () => {
    const { a, source } = setUp();
    expect(a.summary.refusals).toBe(0);
    expect(a.engine.lookup('shop/client', 303, 'egress', 6, 80)?.entry.deny ?? true).toBe(true);
    expect(source.pending.length).toBe(0);
  });

  it('2370: a stand-in refused for capacity elsewhere, then a policy naming its last labels: client still denies 303, and the policy waits with it', () => {
    const { a, source } = setUp();
    // db's key turns unreadable: refused (web's map has no room for the deny), the event waits.
    source.pending.push({ type: 'upsertIdentity', id: 303, labels: labels('db'), unreadable: true });
    a.flush();
    expect(a.summary.refusals).toBe(1);
    expect(source.pending.length).toBe(1);
    // client may now reach app=db. Old inputs: client egress only to web (303 denied). New inputs: 303 unreadable,
    // denied by every map. The base of this review committed the policy with 303 still db, and admitted it.
    a.mirror.observe(clientTo('client-db', 'db'), 'test');
    a.flush();
    expect(source.pending.length).toBe(1);
    expect(a.engine.lookup('shop/client', 303, 'egress', 6, 80)?.entry.deny ?? true).toBe(true);
    // A remote web pod meanwhile (web's number): it admits no waiting number more than before, and goes (2132's liveness).
    const before = a.summary.transactions;
    const web2 = pod('web2', 'n2', '10.0.1.9');
    if (web2.type !== 'ADDED') throw new Error('pod() gives an ADDED item');
    a.mirror.observe({ type: 'ADDED', object: { ...web2.object, metadata: { ...(web2.object.metadata as object), labels: { app: 'web' } } } }, 'test');
    a.flush();
    expect(a.engine.identityOfPod('shop/web2')).toBe(300);
    expect(a.summary.transactions).toBeGreaterThan(before);
    expect(a.engine.lookup('shop/client', 303, 'egress', 6, 80)?.entry.deny ?? true).toBe(true);
    // The wide policy goes: the stand-in fits, and commits with the policy that waited; 303 stays denied by client.
    const gone = wide(DEFAULT_MAP_CAPACITY - 3);
    if (gone.type !== 'ADDED') throw new Error('wide() gives an ADDED item');
    a.mirror.observe({ type: 'DELETED', object: gone.object }, 'test');
    a.flush();
    expect(source.pending.length).toBe(0);
    for (const ep of ['shop/web', 'shop/client']) for (const d of ['ingress', 'egress'] as const) expect(a.engine.lookup(ep, 303, d, 6, 80)?.entry.deny ?? true).toBe(true);
    // client-db is in force: a readable db pod number would be admitted.
    source.pending.push({ type: 'upsertIdentity', id: 304, labels: labels('db') });
    a.flush();
    expect(a.engine.lookup('shop/client', 304, 'egress', 6, 80)?.entry.deny).toBe(false);
  });
});

/**
 * The same steps in CRD mode (`identities: 'external'`, CiliumIdentity objects): the mirror retries a refused object
 * alone (k8s/engine-batches.ts) and lets the rest commit, so the policy is read against 303's last readable labels
 * there too. Fixed (finding 2373, docs/attack-findings-27s.md): the mirror's batch names the numbers whose identity
 * narrows outside it (`MirrorBatch.stale`), the agent vetoes a batch that would admit one (`staleVeto`) and the mirror
 * sends it again with that identity joined, so it commits with the stand-in or waits with it (base 2ba436cf and be70ef1
 * fail at the expectation after `client-db`).
 */
describe('27x: the same in CRD mode', { timeout: 240_000 }, () => {
  it('2373 (CRD): a CiliumIdentity turned unreadable is refused for capacity, then a policy naming its last labels: client must still deny 303', () => {
    const a = new Agent({ node: 'n1', watch: [], backend: new MemoryBackend(), logger, registry: new Registry(), identities: 'external' });
    const feed = (...items: WatchItem[]): void => {
      for (const item of items) a.mirror.observe(item, 'test');
      a.flush();
    };
    feed(shop, pod('web', 'n1', '10.0.0.2'), pod('client', 'n1', '10.0.0.3'), pod('db', 'n2', '10.0.1.4'), clientTo('client-web', 'web'), ciliumIdentity(300, 'web', 'ADDED'), ciliumIdentity(301, 'client', 'ADDED'), ciliumIdentity(303, 'db', 'ADDED'));
    feed(wide(DEFAULT_MAP_CAPACITY - 3));
    expect(a.summary.refusals).toBe(0);
    expect(a.engine.lookup('shop/client', 303, 'egress', 6, 80)?.entry.deny ?? true).toBe(true);
    feed(ciliumIdentity(303, null, 'MODIFIED'));
    expect(a.summary.refusals).toBeGreaterThan(0);
    feed(clientTo('client-db', 'db'));
    feed();
    expect(a.engine.lookup('shop/client', 303, 'egress', 6, 80)?.entry.deny ?? true).toBe(true);
    expect(a.mirror.refusedObjects()).toEqual(expect.arrayContaining(['CiliumIdentity//303']));
    // A remote web pod meanwhile: it admits no waiting number more than before, and goes.
    const before = a.summary.transactions;
    const web2 = pod('web2', 'n2', '10.0.1.9');
    if (web2.type !== 'ADDED') throw new Error('pod() gives an ADDED item');
    feed({ type: 'ADDED', object: { ...web2.object, metadata: { ...(web2.object.metadata as object), labels: { app: 'web' } } } }, ciliumIdentity(305, 'web', 'ADDED'));
    expect(a.summary.transactions).toBeGreaterThan(before);
    expect(a.engine.identityLabels(305)).toBeDefined();
    expect(a.engine.lookup('shop/client', 303, 'egress', 6, 80)?.entry.deny ?? true).toBe(true);
    // The wide policy goes: the stand-in fits and commits with the policy that waited; 303 stays denied by client.
    const gone = wide(DEFAULT_MAP_CAPACITY - 3);
    if (gone.type !== 'ADDED') throw new Error('wide() gives an ADDED item');
    feed({ type: 'DELETED', object: gone.object });
    feed();
    expect(a.mirror.refusedObjects()).toEqual([]);
    for (const ep of ['shop/web', 'shop/client']) for (const d of ['ingress', 'egress'] as const) expect(a.engine.lookup(ep, 303, d, 6, 80)?.entry.deny ?? true).toBe(true);
    // client-db is in force: a readable db number is admitted.
    feed(ciliumIdentity(304, 'db', 'ADDED'));
    expect(a.engine.lookup('shop/client', 304, 'egress', 6, 80)?.entry.deny).toBe(false);
  });

  it('2373 (CRD, halving): the stand-in and the policy in one refused batch: no committed state admits 303, and both commit once the stand-in fits', () => {
    const a = new Agent({ node: 'n1', watch: [], backend: new MemoryBackend(), logger, registry: new Registry(), identities: 'external' });
    // Every committed transaction is checked: client denies 303 while 303 is readable db and client-db is absent, or 303 is a stand-in.
    const apply = a.instrumented.apply.bind(a.instrumented);
    let checked = 0;
    a.instrumented.apply = (events, veto) => {
      const out = apply(events, veto);
      if (out.ok && a.engine.identityLabels(303) !== undefined) {
        checked++;
        expect(a.engine.lookup('shop/client', 303, 'egress', 6, 80)?.entry.deny ?? true).toBe(true);
      }
      return out;
    };
    const settle = (...items: WatchItem[]): void => {
      for (const item of items) a.mirror.observe(item, 'test');
      for (let i = 0; i < 50; i++) {
        a.flush();
        if (a.mirror.idle) break;
      }
      a.flush();
    };
    settle(shop, pod('web', 'n1', '10.0.0.2'), pod('client', 'n1', '10.0.0.3'), pod('db', 'n2', '10.0.1.4'), clientTo('client-web', 'web'), ciliumIdentity(300, 'web', 'ADDED'), ciliumIdentity(301, 'client', 'ADDED'), ciliumIdentity(303, 'db', 'ADDED'));
    settle(wide(DEFAULT_MAP_CAPACITY - 3));
    // One batch: 303 turns unreadable (no room in web's map) and client-db, with an unrelated remote pod. Refused as a
    // whole, retried in halves: the pod commits; client-db must not commit while 303 reads as db.
    const web2 = pod('web2', 'n2', '10.0.1.9');
    if (web2.type !== 'ADDED') throw new Error('pod() gives an ADDED item');
    settle(ciliumIdentity(303, null, 'MODIFIED'), clientTo('client-db', 'db'), { type: 'ADDED', object: { ...web2.object, metadata: { ...(web2.object.metadata as object), labels: { app: 'web' } } } });
    expect(a.summary.refusals).toBeGreaterThan(0);
    expect(a.engine.lookup('shop/client', 303, 'egress', 6, 80)?.entry.deny ?? true).toBe(true);
    expect(a.mirror.refusedObjects()).toEqual(expect.arrayContaining(['CiliumIdentity//303']));
    expect(a.engine.identityOfPod('shop/web2')).toBe(300);
    const gone = wide(DEFAULT_MAP_CAPACITY - 3);
    if (gone.type !== 'ADDED') throw new Error('wide() gives an ADDED item');
    settle({ type: 'DELETED', object: gone.object });
    expect(a.mirror.refusedObjects()).toEqual([]);
    expect(a.engine.unreadableIdentities().length).toBe(1);
    settle(ciliumIdentity(304, 'db', 'ADDED'));
    expect(a.engine.lookup('shop/client', 304, 'egress', 6, 80)?.entry.deny).toBe(false);
    expect(checked).toBeGreaterThan(3);
  });

  it('2373 (CRD, halving, delete): a CiliumIdentity delete left for a later part of a refused batch: the policy naming its labels waits for it, and both commit once it fits', () => {
    const a = new Agent({ node: 'n1', watch: [], backend: new MemoryBackend(), logger, registry: new Registry(), identities: 'external' });
    let checked = 0;
    const apply = a.instrumented.apply.bind(a.instrumented);
    a.instrumented.apply = (events, veto) => {
      const out = apply(events, veto);
      if (out.ok && a.engine.identityLabels(303) !== undefined) {
        checked++;
        expect(a.engine.lookup('shop/client', 303, 'egress', 6, 80)?.entry.deny ?? true).toBe(true);
      }
      return out;
    };
    const settle = (...items: WatchItem[]): void => {
      for (const item of items) a.mirror.observe(item, 'test');
      for (let i = 0; i < 50; i++) {
        a.flush();
        if (a.mirror.idle) break;
      }
      a.flush();
    };
    settle(shop, pod('web', 'n1', '10.0.0.2'), pod('client', 'n1', '10.0.0.3'), pod('db', 'n2', '10.0.1.4'), clientTo('client-web', 'web'), ciliumIdentity(300, 'web', 'ADDED'), ciliumIdentity(301, 'client', 'ADDED'), ciliumIdentity(303, 'db', 'ADDED'));
    settle(wide(DEFAULT_MAP_CAPACITY - 3));
    // One batch: 303 deleted (the last of a batch, `rank`), client-db, and a policy web's map has no room for. Refused
    // as a whole, retried in halves in that order: client-db comes before the delete and must wait for it.
    const over: WatchItem = {
      type: 'ADDED',
      object: { apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: meta('over', { namespace: 'shop' }), spec: { endpointSelector: { matchLabels: { app: 'web' } }, egress: [{ toEntities: ['all'], toPorts: [{ ports: [60001, 60002, 60003, 60004, 60005, 60006].map((p) => ({ port: String(p), protocol: 'TCP' })) }] }] } },
    };
    const db = ciliumIdentity(303, 'db', 'MODIFIED');
    if (!('object' in db)) throw new Error('ciliumIdentity() gives an object item');
    settle({ type: 'DELETED', object: db.object }, clientTo('client-db', 'db'), over);
    expect(a.summary.refusals).toBeGreaterThan(0);
    // The delete does not fit either (db's pod falls to the fail-closed 255, whose deny web's full map has no room
    // for): client-db waits with it, and 303 still reads as db meanwhile.
    expect(a.mirror.refusedObjects()).toEqual(['CiliumIdentity//303', 'CiliumNetworkPolicy/shop/client-db', 'CiliumNetworkPolicy/shop/over']);
    expect(a.engine.identityLabels(303)).toBeDefined();
    expect(a.engine.lookup('shop/client', 303, 'egress', 6, 80)?.entry.deny ?? true).toBe(true);
    const gone = wide(DEFAULT_MAP_CAPACITY - 3);
    if (gone.type !== 'ADDED') throw new Error('wide() gives an ADDED item');
    settle({ type: 'DELETED', object: gone.object });
    expect(a.mirror.refusedObjects()).toEqual([]);
    expect(a.engine.identityLabels(303)).toBeUndefined();
    settle(ciliumIdentity(304, 'db', 'ADDED'));
    expect(a.engine.lookup('shop/client', 304, 'egress', 6, 80)?.entry.deny).toBe(false);
    expect(checked).toBeGreaterThanOrEqual(2);
  });
});
