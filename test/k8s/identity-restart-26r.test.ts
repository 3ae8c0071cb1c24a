import { pino } from 'pino';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { Agent } from '../../src/agent/agent.js';
import { backendLookup } from '../../src/backend/lookup.js';
import { MemoryBackend } from '../../src/backend/memory.js';
import type { WatchItem } from '../../src/k8s/watch.js';
import { parseIp } from '../../src/model/cidr.js';

/**
 * Finding 2130 (docs/attack-findings-26r.md; closed by 2002's unallocated-pod deny, docs/attack-findings-26b.md): 2000's stand-in holds the number under its *last
 * readable* labels, which only the running process knows (the mirror's previous `Held`, the etcd source's
 * `admittedIds`). An agent that starts (a restart, a new node) while a CiliumIdentity is already unreadable holds the
 * stand-in with no labels, so the pods of its labels have no id here and their addresses carry identity 0 (800/802's
 * history-free reading), which `fromEntities: [all]` admits past the deny the running agent kept: on a restart over
 * pinned maps the kernel goes from deny to allow for a flow both readings deny (the old labels' deny; the unknown new
 * labels, fail closed). 1936's hole, through a restart. Cilium's reading of the pods' number is their CiliumEndpoint
 * (`status.identity.id`), which distill does not read (as 2002).
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
const identity = (type: 'ADDED' | 'MODIFIED', id: number, labels: unknown): WatchItem => ({
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
    spec: { endpointSelector: { matchLabels: { app: 'web' } }, ingress: [{ fromEntities: ['all'] }], ingressDeny: [{ fromEndpoints: [{ matchLabels: { app: 'db' } }] }] },
  },
};
const UNREADABLE = { ...podLabels('db'), 'k8s:note': 'x'.repeat(600) };
const DB = '10.0.1.4';

function agent(backend: MemoryBackend) {
  const a = new Agent({ node: 'n1', watch: [], backend, logger, registry: new Registry(), identities: 'external' });
  const feed = (...items: WatchItem[]): void => {
    for (const item of items) a.mirror.observe(item, 'test');
    a.flush();
  };
  /** web's kernel-facing ingress verdict on TCP/80 for db's address (its number from the ipcache). */
  const fromDb = (): 'allow' | 'deny' => {
    const hit = backendLookup(backend, 'shop/web', a.engine.identityOfIp(parseIp(DB)), 'ingress', 6, 80);
    return hit === undefined || hit.entry.deny ? 'deny' : 'allow';
  };
  return { feed, fromDb, engine: a.engine };
}

describe('2130: a stand-in first seen by a starting agent', () => {
  it('the running agent denies db once its identity turns unreadable (2000, the reference)', () => {
    const running = agent(new MemoryBackend());
    running.feed(shop, identity('ADDED', 300, podLabels('web')), identity('ADDED', 303, podLabels('db')), pod('web', 'n1', '10.0.0.2'), pod('db', 'n2', DB), policy);
    expect(running.fromDb()).toBe('deny');
    running.feed(identity('MODIFIED', 303, UNREADABLE));
    expect(running.engine.identityOfIp(parseIp(DB))).toBe(303);
    expect(running.fromDb()).toBe('deny');
  });

  // Closed by 2002 (B): the pods of labels without an id carry identity 255, which every local map denies.
  it('an agent restarted over the same pinned maps keeps denying db (its identity already unreadable)', () => {
    const backend = new MemoryBackend();
    const running = agent(backend);
    running.feed(shop, identity('ADDED', 300, podLabels('web')), identity('ADDED', 303, podLabels('db')), pod('web', 'n1', '10.0.0.2'), pod('db', 'n2', DB), policy);
    running.feed(identity('MODIFIED', 303, UNREADABLE));
    expect(running.fromDb()).toBe('deny');
    // The restart: a new process lists the same objects (303 already unreadable) and reconciles the pinned maps.
    const restarted = agent(backend);
    restarted.feed(shop, identity('ADDED', 300, podLabels('web')), identity('ADDED', 303, UNREADABLE), pod('web', 'n1', '10.0.0.2'), pod('db', 'n2', DB), policy);
    // Fails: db's address is 0 here (no readable id has its labels), which web's `fromEntities: [all]` admits.
    expect(restarted.fromDb()).toBe('deny');
  });
});
