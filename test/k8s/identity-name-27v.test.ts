import { pino } from 'pino';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { Agent } from '../../src/agent/agent.js';
import { backendLookup } from '../../src/backend/lookup.js';
import { MemoryBackend } from '../../src/backend/memory.js';
import type { WatchItem } from '../../src/k8s/watch.js';
import { parseIp } from '../../src/model/cidr.js';
import type { Direction } from '../../src/model/rules.js';

/**
 * (Set-up from identity-name-27b.test.ts, finding 2003.)
 * reads but Cilium's allocator never writes (`0303`). Cilium 1.19 pkg/k8s/identitybackend/identity.go
 * `crdBackend.ListAndWatch` calls `handler.OnUpsert(idpool.ID(id), c.KeyFunc(identity.SecurityLabels))` for every
 * name `strconv.ParseUint(identity.Name, 10, 64)` reads, so `0303` is identity 303 and the pods of its labels are on
 * 303 (`crdBackend.Get` parses the name the same way). distill skipped it: its pods' addresses were on the
 * unallocated stand-in (26b), but a packet carrying 303 itself (the number the pod's node gives it) met no entry
 * but `fromEntities: [all]`'s, which admitted it past the deny on app=db. Now the number holds them, as a stand-in denied by
 * every local map (another object may claim 303; Cilium's cache keeps the last event).
 */
const logger = pino({ level: 'silent' });
let rv = 1;
const meta = (name: string, extra: Record<string, unknown> = {}) => ({ name, resourceVersion: String(rv++), ...extra });
const shop: WatchItem = { type: 'ADDED', object: { apiVersion: 'v1', kind: 'Namespace', metadata: meta('shop') } };
const pod = (name: string, node: string, ip: string): WatchItem => ({
  type: 'ADDED',
  object: { apiVersion: 'v1', kind: 'Pod', metadata: meta(name, { namespace: 'shop', labels: { app: name } }), spec: { nodeName: node, containers: [] }, status: { phase: 'Running', podIP: ip } },
});
const podLabels = (app: string): Record<string, string> => ({
  'k8s:app': app,
  'k8s:io.kubernetes.pod.namespace': 'shop',
  'k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name': 'shop',
  'k8s:io.cilium.k8s.policy.cluster': 'default',
  'k8s:io.cilium.k8s.policy.serviceaccount': 'default',
});
const identity = (type: 'ADDED' | 'MODIFIED' | 'DELETED', name: string, labels: unknown): WatchItem => ({ type, object: { apiVersion: 'cilium.io/v2', kind: 'CiliumIdentity', metadata: meta(name), 'security-labels': labels } });
const policy: WatchItem = {
  type: 'ADDED',
  object: {
    apiVersion: 'cilium.io/v2',
    kind: 'CiliumNetworkPolicy',
    metadata: meta('web', { namespace: 'shop' }),
    spec: {
      endpointSelector: { matchLabels: { app: 'web' } },
      ingress: [{ fromEntities: ['all'] }],
      ingressDeny: [{ fromEndpoints: [{ matchLabels: { app: 'db' } }] }],
      egress: [{ toEntities: ['all'] }],
      egressDeny: [{ toEndpoints: [{ matchLabels: { app: 'db' } }] }],
    },
  },
};
const DB = '10.0.1.4';

function agent() {
  const backend = new MemoryBackend();
  const a = new Agent({ node: 'n1', watch: [], backend, logger, registry: new Registry(), identities: 'external' });
  const feed = (...items: WatchItem[]): void => {
    for (const item of items) a.mirror.observe(item, 'test');
    a.flush();
  };
  const verdict = (ep: string, id: number, d: Direction): 'allow' | 'deny' => {
    const hit = backendLookup(backend, ep, id, d, 6, 80);
    return hit === undefined || hit.entry.deny ? 'deny' : 'allow';
  };
  const idOf = (ip: string): number => a.engine.identityOfIp(parseIp(ip));
  const web = (ip: string): string[] => (['ingress', 'egress'] as const).map((d) => `${d} ${verdict('shop/web', idOf(ip), d)}`);
  /** web's verdicts for a packet carrying `id` itself (from a tunnel: the db pod's node put it there). */
  const webForId = (id: number): string[] => (['ingress', 'egress'] as const).map((d) => `${d} ${verdict('shop/web', id, d)}`);
  feed(shop, identity('ADDED', '300', podLabels('web')), identity('ADDED', '301', podLabels('client')), pod('web', 'n1', '10.0.0.2'), pod('client', 'n1', '10.0.0.3'), pod('db', 'n2', DB), policy);
  return { feed, idOf, web, webForId };
}


/*
 * Review 27v (docs/attack-findings-27v.md, finding 2325): two CiliumIdentity objects naming one number. Cilium's
 * cache drops the number on either's delete (pkg/allocator/cache.go OnDelete deletes by id); distill deleted it too,
 * so a packet carrying 303 met only `fromEntities: [all]`'s wildcard entries while the remaining object names db,
 * which web denies (as the base, which ignored `0303`, and a fresh agent fed the remaining object do).
 */
describe('review 27v (2325): `0303` and `303` together, deletes of either', () => {
  const orders: [string, WatchItem[]][] = [
    ['303 (db), 0303 (zz), delete 0303', [identity('ADDED', '303', podLabels('db')), identity('ADDED', '0303', podLabels('zz')), identity('DELETED', '0303', podLabels('zz'))]],
    ['0303 (zz), 303 (db), delete 0303', [identity('ADDED', '0303', podLabels('zz')), identity('ADDED', '303', podLabels('db')), identity('DELETED', '0303', podLabels('zz'))]],
    ['0303 (db), 303 (zz), delete 303', [identity('ADDED', '0303', podLabels('db')), identity('ADDED', '303', podLabels('zz')), identity('DELETED', '303', podLabels('zz'))]],
    ['303 (zz), 0303 (db), delete 303', [identity('ADDED', '303', podLabels('zz')), identity('ADDED', '0303', podLabels('db')), identity('DELETED', '303', podLabels('zz'))]],
  ];
  for (const [what, items] of orders) {
    it(`${what}: a packet carrying 303 is denied by web whenever some remaining object names db for it`, () => {
      const { feed, webForId, idOf } = agent();
      feed(pod('db', 'n2', DB));
      for (const item of items) feed(item);
      // The db object remains: every Cilium node that saw it last, or alone, holds 303 = db.
      expect(webForId(303)).toEqual(['ingress deny', 'egress deny']);
      // The db pod's address: on 303 (the remaining object's stand-in), denied both ways.
      expect(idOf(DB)).toBe(303);
    });
  }
  it('both deleted: the number goes', () => {
    const { feed, webForId } = agent();
    feed(identity('ADDED', '303', podLabels('db')), identity('ADDED', '0303', podLabels('zz')));
    feed(identity('DELETED', '303', podLabels('db')), identity('DELETED', '0303', podLabels('zz')));
    expect(webForId(303)).toEqual(['ingress allow', 'egress allow']);
  });
});
