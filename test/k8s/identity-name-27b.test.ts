import { pino } from 'pino';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { Agent } from '../../src/agent/agent.js';
import { backendLookup } from '../../src/backend/lookup.js';
import { MemoryBackend } from '../../src/backend/memory.js';
import { identityNumber } from '../../src/k8s/objects.js';
import type { WatchItem } from '../../src/k8s/watch.js';
import { parseIp } from '../../src/model/cidr.js';
import type { Direction } from '../../src/model/rules.js';

/**
 * Attack finding 2003 (docs/attack-findings-26a.md, fixed in 27b): a CiliumIdentity whose name `strconv.ParseUint`
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

describe('2003. a CiliumIdentity named as ParseUint reads it but the allocator never writes it', () => {
  it.each(['0303', '00000303'])('%s: the pods of its labels are on 303, which web denies both ways', (name) => {
    const { feed, idOf, web, webForId } = agent();
    feed(identity('ADDED', name, podLabels('db')));
    // Every Cilium node reads the object as 303: the db pod's packets carry 303, which web must deny.
    expect(webForId(303)).toEqual(['ingress deny', 'egress deny']);
    expect(idOf(DB)).toBe(303);
    expect(web(DB)).toEqual(['ingress deny', 'egress deny']);
    // Deleted: the number goes (Cilium's DeleteFunc parses the name alike), the pod has none again.
    feed(identity('DELETED', name, podLabels('db')));
    expect(idOf(DB)).not.toBe(303);
  });

  it('control: the canonical name is read as before', () => {
    const { feed, idOf, web } = agent();
    feed(identity('ADDED', '303', podLabels('db')));
    expect(idOf(DB)).toBe(303);
    expect(web(DB)).toEqual(['ingress deny', 'egress deny']);
  });

  it('identityNumber reads names as strconv.ParseUint(name, 10, 64) does', () => {
    expect(['300', '0300', '000', '18446744073709551615'].map(identityNumber)).toEqual([300, 300, 0, 18446744073709551615]);
    expect(['', '+300', '-1', '3_00', ' 300', '0x12c', '18446744073709551616', '300a'].map(identityNumber).every(Number.isNaN)).toBe(true);
  });
});
