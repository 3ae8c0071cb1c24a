import { pino } from 'pino';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { Agent } from '../../src/agent/agent.js';
import { backendLookup } from '../../src/backend/lookup.js';
import { MemoryBackend } from '../../src/backend/memory.js';
import type { WatchItem } from '../../src/k8s/watch.js';
import { parseIp } from '../../src/model/cidr.js';

/**
 * Finding 1935 (docs/attack-findings-25a.md; 24w's "Left" item): with identities from CiliumIdentity objects
 * (`--identities external`), a CiliumIdentity rewritten to `security-labels` distill cannot read kept the id's last
 * labels, watched or listed. Cilium reads any `security-labels` map: pkg/k8s/identitybackend/identity.go
 * `crdBackend.ListAndWatch` hands `c.KeyFunc(newIdentity.SecurityLabels)` to `OnUpsert` on every update (the key
 * function, pkg/identity/key `GlobalIdentity.PutKeyFromMap`, is `labels.Map2Labels`: it never fails), so on every
 * Cilium node the number now stands for the new labels. The etcd watcher deletes such an id (finding 1820); the
 * CiliumIdentity stream now does the same: no entry keeps allowing the number as its old labels.
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
const identityObject = (id: number, labels: Record<string, string>) => ({ apiVersion: 'cilium.io/v2', kind: 'CiliumIdentity', metadata: meta(String(id)), 'security-labels': labels });
const identity = (type: 'ADDED' | 'MODIFIED', id: number, labels: Record<string, string>): WatchItem => ({ type, object: identityObject(id, labels) });
/** Cilium reads it as app=evil with a reserved label; distill refuses the `reserved` source in a cluster identity. */
const evil = { ...podLabels('evil'), 'reserved:world': '' };
/** web admits app=db only. */
const policy: WatchItem = {
  type: 'ADDED',
  object: {
    apiVersion: 'cilium.io/v2',
    kind: 'CiliumNetworkPolicy',
    metadata: meta('web', { namespace: 'shop' }),
    spec: { endpointSelector: { matchLabels: { app: 'web' } }, ingress: [{ fromEndpoints: [{ matchLabels: { app: 'db' } }] }] },
  },
};

function agent() {
  const backend = new MemoryBackend();
  const a = new Agent({ node: 'n1', watch: [], backend, logger, registry: new Registry(), identities: 'external' });
  const feed = (...items: WatchItem[]): void => {
    for (const item of items) a.mirror.observe(item, 'test');
    a.flush();
  };
  /** web's TCP/80 verdict for a packet of identity `id` (the map entry), and for one from `ip` (the ipcache first). */
  const of = (id: number): 'allow' | 'deny' => {
    const hit = backendLookup(backend, 'shop/web', id, 'ingress', 6, 80);
    return hit === undefined || hit.entry.deny ? 'deny' : 'allow';
  };
  const from = (ip: string): 'allow' | 'deny' => of(a.engine.identityOfIp(parseIp(ip)));
  return { feed, of, from };
}

describe('1935. a CiliumIdentity rewritten to labels distill cannot read', () => {
  it('watched (MODIFIED): the number is no longer allowed as its old labels', () => {
    const { feed, of, from } = agent();
    feed(shop, identity('ADDED', 300, podLabels('web')), identity('ADDED', 303, podLabels('db')), pod('web', 'n1', '10.0.0.2'), pod('db', 'n2', '10.0.1.4'), policy);
    expect(of(303)).toBe('allow');
    expect(from('10.0.1.4')).toBe('allow');
    feed(identity('MODIFIED', 303, evil));
    expect(of(303)).toBe('deny');
    // db has no identity now (its labels have none): unknown, as a Cilium node reading 303 as app=evil denies it too.
    expect(from('10.0.1.4')).toBe('deny');
    // A readable value brings the number back with it.
    feed(identity('MODIFIED', 303, podLabels('db')));
    expect(of(303)).toBe('allow');
  });

  it('listed (a relist after a 410): the same', () => {
    const { feed, of } = agent();
    feed(shop, identity('ADDED', 300, podLabels('web')), identity('ADDED', 303, podLabels('db')), pod('web', 'n1', '10.0.0.2'), policy);
    expect(of(303)).toBe('allow');
    const list: WatchItem = {
      type: 'LIST',
      itemKind: 'CiliumIdentity',
      apiVersion: 'cilium.io/v2',
      resourceVersion: String(rv++),
      items: [identityObject(300, podLabels('web')), identityObject(303, evil)],
    };
    feed({ type: 'ERROR', object: { kind: 'Status', apiVersion: 'v1', status: 'Failure', reason: 'Expired', code: 410 } }, list);
    expect(of(303)).toBe('deny');
  });
});
