import { pino } from 'pino';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { Agent } from '../../src/agent/agent.js';
import { backendLookup } from '../../src/backend/lookup.js';
import { MemoryBackend } from '../../src/backend/memory.js';
import type { WatchItem } from '../../src/k8s/watch.js';
import { parseIp } from '../../src/model/cidr.js';

/**
 * review25b on 1935: a CiliumIdentity rewritten to labels distill cannot read (here: the same labels plus one label
 * whose value is longer than distill reads, 600 characters) deletes its id. Its pods' addresses then carry the unknown
 * identity (0), which every wildcard allow admits and no deny of the old labels matches. Old reading (303 = app=db) and
 * Cilium's reading of the new labels (303 = app=db plus k8s:note=...; crdBackend.ListAndWatch, KeyFunc never fails)
 * both select 303 with `ingressDeny fromEndpoints app=db`: both deny db's packets to web.
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
const identity = (type: 'ADDED' | 'MODIFIED', id: number, labels: Record<string, string>): WatchItem => ({
  type,
  object: { apiVersion: 'cilium.io/v2', kind: 'CiliumIdentity', metadata: meta(String(id)), 'security-labels': labels },
});
/** web admits everything but app=db. */
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
    },
  },
};

describe('1936 (review of 1935; fixed in 26a, finding 2000): an unreadable identity is a fail-closed stand-in, not deleted', () => {
  // Pinned with it.fails in session 25: distill refuses a label value Cilium reads (here 600 characters), so the
  // id was deleted and its pods fell to identity 0, which a wildcard allow admits past the deny both readings
  // apply (docs/attack-findings-25a.md, 1936). Fixed in 26a: the id is held as a fail-closed stand-in
  // (docs/attack-findings-26a.md, 2000; more cases in identity-standin-26a.test.ts).
  it('a pod of a deleted id is not admitted past a deny both readings of the id apply', () => {
    const backend = new MemoryBackend();
    const a = new Agent({ node: 'n1', watch: [], backend, logger, registry: new Registry(), identities: 'external' });
    const feed = (...items: WatchItem[]): void => {
      for (const item of items) a.mirror.observe(item, 'test');
      a.flush();
    };
    const of = (id: number): 'allow' | 'deny' => {
      const hit = backendLookup(backend, 'shop/web', id, 'ingress', 6, 80);
      return hit === undefined || hit.entry.deny ? 'deny' : 'allow';
    };
    const from = (ip: string): 'allow' | 'deny' => of(a.engine.identityOfIp(parseIp(ip)));
    feed(shop, identity('ADDED', 300, podLabels('web')), identity('ADDED', 303, podLabels('db')), pod('web', 'n1', '10.0.0.2'), pod('db', 'n2', '10.0.1.4'), policy);
    expect(from('10.0.1.4')).toBe('deny');
    feed(identity('MODIFIED', 303, { ...podLabels('db'), 'k8s:note': 'x'.repeat(600) }));
    // Both readings of 303 are app=db (the new one with one more label): denied by either.
    expect(from('10.0.1.4')).toBe('deny');
    // A packet carrying 303 (from a tunnel): every Cilium node reads it as app=db plus k8s:note, which the deny selects.
    expect(of(303)).toBe('deny');
  });
});
