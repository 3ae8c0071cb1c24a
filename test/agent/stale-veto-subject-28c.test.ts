import { pino } from 'pino';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { Agent } from '../../src/agent/agent.js';
import { MemoryBackend } from '../../src/backend/memory.js';
import type { EngineEvent } from '../../src/engine/events.js';
import type { WatchItem } from '../../src/k8s/watch.js';
import { DEFAULT_MAP_CAPACITY } from '../../src/model/policy-map.js';
import { ciliumIdentity, cnp, labels, pod, shop, Source, wide } from './standin-fixtures.js';

/**
 * Review 28c of the stale veto (27x `staleVeto`, 27s `MirrorBatch.stale`), findings 2450 and 2451
 * (docs/attack-findings-28c.md). While a narrowing identity event waits (a stand-in refused for capacity elsewhere),
 * the veto refused only deltas keyed on the waiting number or identity 0. Two more ways admit what both the old and
 * the new inputs deny:
 * - 2450: a local endpoint whose own identity is the waiting number. Under the new inputs its map is a stand-in's
 *   (pending: empty, deny both ways, shared-maps.ts `addLocalIdentity`); a policy that arrives meanwhile and selects
 *   its last readable labels widened its map with an entry keyed on another peer.
 * - 2451: the L7 tables. A new HTTP rule for the waiting number on a port it already reached through the proxy adds
 *   no map delta (same redirect), only an L7 row: the proxy then let the new request through.
 */
const logger = pino({ level: 'silent' });
/** Each case fills web's map (16,384 entries) and flushes it several times: slow on a shared machine. */
/** `app`'s ingress: only from `from`, on TCP/80, with HTTP `paths` when given. */
const ingressFrom = (name: string, app: string, from: string, paths?: string[]): WatchItem =>
  cnp(name, {
    endpointSelector: { matchLabels: { app } },
    ingress: [{ fromEndpoints: [{ matchLabels: { app: from } }], toPorts: [{ ports: [{ port: '80', protocol: 'TCP' }], ...(paths ? { rules: { http: paths.map((path) => ({ method: 'GET', path })) } } : {}) }] }],
  });
const deleted = (item: WatchItem): WatchItem => {
  if (item.type !== 'ADDED') throw new Error('an ADDED item');
  return { type: 'DELETED', object: item.object };
};

/** The agent in either identity mode, fed and flushed until idle; `narrow` turns 303 unreadable. */
function harness(mode: 'etcd' | 'crd', dbNode: string, first: WatchItem[]): { a: Agent; feed: (...items: WatchItem[]) => void; narrow: () => void; waiting: () => boolean } {
  const source = new Source();
  const a = new Agent({ node: 'n1', watch: [], backend: new MemoryBackend(), logger, registry: new Registry(), ...(mode === 'etcd' ? { identitySource: source } : { identities: 'external' as const }) });
  const feed = (...items: WatchItem[]): void => {
    for (const item of items) a.mirror.observe(item, 'test');
    for (let i = 0; i < 20; i++) {
      a.flush();
      if (a.mirror.idle) break;
    }
    a.flush();
  };
  const ids: [number, string][] = [[300, 'web'], [301, 'client'], [303, 'db']];
  if (mode === 'etcd') source.pending.push(...ids.map(([id, app]): EngineEvent => ({ type: 'upsertIdentity', id, labels: labels(app) })));
  const crd = mode === 'crd' ? ids.map(([id, app]) => ciliumIdentity(id, app, 'ADDED')) : [];
  feed(shop, pod('web', 'n1', '10.0.0.2'), pod('client', 'n1', '10.0.0.3'), pod('db', dbNode, dbNode === 'n1' ? '10.0.0.4' : '10.0.1.4'), ...first, ...crd);
  // web's map full (its egress default allow gives way to the wide ports): the stand-in's deny has no room there.
  feed(wide(DEFAULT_MAP_CAPACITY - a.engine.mapState('shop/web').size + 1));
  expect(a.engine.mapState('shop/web').size).toBe(DEFAULT_MAP_CAPACITY);
  const narrow = (): void => {
    if (mode === 'etcd') source.pending.push({ type: 'upsertIdentity', id: 303, labels: labels('db'), unreadable: true });
    feed(...(mode === 'crd' ? [ciliumIdentity(303, null, 'MODIFIED')] : []));
  };
  const waiting = (): boolean => (mode === 'etcd' ? source.pending.length > 0 : a.mirror.refusedObjects().includes('CiliumIdentity//303'));
  return { a, feed, narrow, waiting };
}

describe('28c: the stale veto and the waiting number as a subject (2450)', () => {
  for (const mode of ['etcd', 'crd'] as const) {
    it(`${mode}: a local db (303) isolated to web; 303's stand-in waits; a policy letting client reach db must wait too`, () => {
      const { a, feed, narrow, waiting } = harness(mode, 'n1', [ingressFrom('db-from-web', 'db', 'web')]);
      expect(a.engine.identityOfPod('shop/db')).toBe(303);
      expect(a.engine.lookup('shop/db', 301, 'ingress', 6, 80)?.entry.deny ?? true).toBe(true);
      narrow();
      expect(a.summary.refusals).toBeGreaterThan(0);
      expect(waiting()).toBe(true);
      // Old inputs: db's ingress only from web. New inputs: db's number unreadable, its endpoint denies both ways.
      feed(ingressFrom('db-from-client', 'db', 'client'));
      expect(a.engine.lookup('shop/db', 301, 'ingress', 6, 80)?.entry.deny ?? true).toBe(true);
      // Once the stand-in fits, both commit: db's endpoint is the stand-in's (deny both ways).
      feed(deleted(wide(1)));
      expect(waiting()).toBe(false);
      expect(a.engine.lookup('shop/db', 301, 'ingress', 6, 80)?.entry.deny ?? true).toBe(true);
      expect(a.engine.lookup('shop/db', 300, 'ingress', 6, 80)?.entry.deny ?? true).toBe(true);
    }, 240_000);
  }
});

describe('28c: the stale veto and the L7 tables (2451)', () => {
  for (const mode of ['etcd', 'crd'] as const) {
    it(`${mode}: web lets db (303) GET /a; 303's stand-in waits; a rule adding GET /b for db must wait too`, () => {
      // web also takes anyone on 9999 (an identity-0 ingress allow): the stand-in needs a deny both ways in its full map.
      const any = cnp('web-any', { endpointSelector: { matchLabels: { app: 'web' } }, ingress: [{ fromEntities: ['all'], toPorts: [{ ports: [{ port: '9999', protocol: 'TCP' }] }] }] });
      const { a, feed, narrow, waiting } = harness(mode, 'n2', [ingressFrom('web-a', 'web', 'db', ['/a']), any]);
      const verdict = (path: string): boolean => {
        const e = a.engine.lookup('shop/web', 303, 'ingress', 6, 80)?.entry;
        if (e === undefined || e.deny) return false;
        if (e.proxyPort === 0) return true;
        return a.engine.l7Verdict('shop/web', e.proxyPort, 303, { http: { method: 'GET', path } }, 80)?.allowed ?? false;
      };
      expect(verdict('/a')).toBe(true);
      expect(verdict('/b')).toBe(false);
      narrow();
      expect(a.summary.refusals).toBeGreaterThan(0);
      expect(waiting()).toBe(true);
      // Old inputs: /b denied by the proxy. New inputs: 303 unreadable, denied by web's map.
      feed(ingressFrom('web-b', 'web', 'db', ['/b']));
      expect(verdict('/b')).toBe(false);
      feed(deleted(wide(1)));
      expect(waiting()).toBe(false);
      expect(verdict('/a')).toBe(false);
      expect(verdict('/b')).toBe(false);
    }, 240_000);
  }
});
