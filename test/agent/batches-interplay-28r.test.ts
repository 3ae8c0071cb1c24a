import { pino } from 'pino';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { Agent } from '../../src/agent/agent.js';
import { MemoryBackend } from '../../src/backend/memory.js';
import type { WatchItem } from '../../src/k8s/watch.js';
import { parseIp } from '../../src/model/cidr.js';
import { UNALLOCATED_POD_IDENTITY } from '../../src/model/identity.js';
import { DEFAULT_MAP_CAPACITY } from '../../src/model/policy-map.js';
import { cnp, identity, meta as crdMeta, pod, shop } from './crd-fixtures.js';
import { settledAgent } from './settled-agent.js';

/** Review 28r (docs/attack-findings-28r.md): the interplay of 28a's relabel and deny side with 28b's veto retry. */
let rv = 1;
const meta = (name: string, extra: Record<string, unknown> = {}) => ({ name, resourceVersion: String(rv++), ...extra });
const namespace = (type: 'ADDED' | 'MODIFIED', name: string, labels: Record<string, string>): WatchItem => ({ type, object: { apiVersion: 'v1', kind: 'Namespace', metadata: meta(name, { labels }) } });
const nsPod = (ns: string, name: string, ip: string, node: string): WatchItem => ({
  type: 'ADDED',
  object: { apiVersion: 'v1', kind: 'Pod', metadata: meta(name, { namespace: ns, labels: { app: name } }), spec: { nodeName: node, containers: [] }, status: { phase: 'Running', podIP: ip } },
});
const ccnp = (name: string, spec: Record<string, unknown>): WatchItem => ({ type: 'ADDED', object: { apiVersion: 'cilium.io/v2', kind: 'CiliumClusterwideNetworkPolicy', metadata: meta(name), spec } });
const team = (t: string) => ({ matchLabels: { 'k8s:io.cilium.k8s.namespace.labels.team': t } });
const l7 = (name: string, selector: Record<string, unknown>, rules: Record<string, unknown>) =>
  ccnp(name, { endpointSelector: selector, ingress: [{ fromEntities: ['all'], toPorts: [{ ports: [{ port: '80', protocol: 'TCP' }], rules }] }] });

describe('2520: a namespace relabel refused alone and then changed back to the labels the engine holds', () => {
  it('its pods are read again (not held fail-closed for good, uncounted)', () => {
    const { agent, settle } = settledAgent();
    settle([
      namespace('ADDED', 'c', { team: 'a' }),
      nsPod('c', 'client', '10.0.0.2', 'n2'),
      nsPod('c', 'other', '10.0.0.3', 'n1'),
      l7('http-other', { matchLabels: { app: 'other' } }, { http: [{ method: 'GET' }] }),
      l7('kafka-team-b', team('b'), { kafka: [{ topic: 't' }] }),
    ]);
    const before = agent.engine.identityOfPod('c/client');
    agent.mirror.observe(namespace('MODIFIED', 'c', { team: 'b' }), 'test');
    agent.flush();
    expect(agent.summary.refusals).toBe(1);
    // Back to team=a before the resend with the pods fail-closed was flushed.
    agent.mirror.observe(namespace('MODIFIED', 'c', { team: 'a' }), 'test');
    settle([]);
    settle([namespace('ADDED', 'unrelated', {})]);
    expect(agent.engine.identityOfIp(parseIp('10.0.0.3'))).not.toBe(UNALLOCATED_POD_IDENTITY);
    expect(agent.engine.identityOfIp(parseIp('10.0.0.2'))).toBe(before);
    expect(agent.mirror.refusedObjects()).toEqual([]);
  });
});

/**
 * 2521: CRD identities. 303 (db) turns unreadable and waits (client's map has no room for its deny). `out` lets client
 * reach web; its update lets client reach db instead: it opens 303, is vetoed alone, sent again with 303 joined, and
 * that joined batch is refused for capacity. The old version stayed in force: client → web allowed at every later
 * change, though the update (with or without that change) denies it; the 2433 class on the veto's path.
 */
/** client's egress to every peer on `n` distinct TCP ports from 1000 (40 a rule: Cilium's limit), one entry each; 0 deletes it. */
function wide(n: number, subject = 'client'): WatchItem {
  const egress: unknown[] = [];
  for (let p = 0; p < n; p += 40) egress.push({ toEntities: ['all'], toPorts: [{ ports: Array.from({ length: Math.min(40, n - p) }, (_, i) => ({ port: String(1000 + p + i), protocol: 'TCP' })) }] });
  return n === 0 ? cnp('full', subject, [], 'DELETED') : cnp('full', subject, egress);
}

/** An agent on n1 with CRD identities: web (300) and db (303) remote, client (301) local, client's egress to web allowed. */
function crdAgent(full: WatchItem = wide(DEFAULT_MAP_CAPACITY - 3), first: readonly WatchItem[] = []) {
  const a = new Agent({ node: 'n1', watch: [], backend: new MemoryBackend(), logger: pino({ level: 'silent' }), registry: new Registry(), identities: 'external' });
  const settle = (items: readonly WatchItem[]): void => {
    for (const item of items) a.mirror.observe(item, 'test');
    for (let i = 0; i < 50 && !a.mirror.idle; i++) a.flush();
    a.flush();
  };
  settle([shop(), pod('web', 'web', 'n2', '10.0.1.2'), pod('client', 'client', 'n1', '10.0.0.3'), pod('db', 'db', 'n2', '10.0.1.4'), identity(300, 'web', 'ADDED'), identity(301, 'client', 'ADDED'), identity(303, 'db', 'ADDED'), ...first]);
  // client's map full: its egress to web, its ingress, and `full`.
  settle([clientTo('web'), full]);
  const egress = (peer: number, port = 80): 'allow' | 'deny' => (a.engine.lookup('shop/client', peer, 'egress', 6, port)?.entry.deny ?? true ? 'deny' : 'allow');
  /** 303 turns unreadable and waits (no room for its deny), `out` is updated to let client reach db, then a remote web pod commits. */
  const updateWhileWaiting = (): void => {
    settle([identity(303, null, 'MODIFIED')]);
    expect(a.mirror.refusedObjects()).toEqual(['CiliumIdentity//303']);
    settle([clientTo('db')]);
    settle([pod('web2', 'web', 'n2', '10.0.1.9')]);
    expect(a.engine.identityOfPod('shop/web2')).toBe(300);
  };
  return { a, settle, egress, updateWhileWaiting };
}
const clientTo = (app: string): WatchItem => cnp('out', 'client', [{ toEndpoints: [{ matchLabels: { app } }] }]);

describe('2521: a policy update vetoed while an identity waits, then refused with it', () => {
  it('is held at its deny side, not at its old version', () => {
    const { a, settle, egress, updateWhileWaiting } = crdAgent();
    expect(egress(300)).toBe('allow');
    updateWhileWaiting();
    expect(egress(300)).toBe('deny');
    expect(egress(303)).toBe('deny');
    expect(a.mirror.refusedObjects()).toEqual(['CiliumIdentity//303', 'CiliumNetworkPolicy/shop/out']);
    settle([wide(0)]);
    expect(a.mirror.refusedObjects()).toEqual([]);
    expect(egress(300)).toBe('deny');
  });
});

/**
 * 2522: `p` (client may reach db; client denied web on port 81) does not fit client's map, nor does its deny side; it
 * waits in `refused` and joins the delete of `full` (finding 743), which commits with p's deny side. That commit was
 * read as p's own refusal just now, so p was never read again: its deny side stayed (client → db denied, p counted as
 * refused) until some later commit.
 */
describe('2522: a deny side committed beside a policy delete', () => {
  it('is read again once that commit is through', () => {
    const { a, settle, egress } = crdAgent();
    const sel = (app: string) => ({ matchLabels: { app } });
    const spec = { endpointSelector: sel('client'), egress: [{ toEndpoints: [sel('db')] }], egressDeny: [{ toEndpoints: [sel('web')], toPorts: [{ ports: [{ port: '81', protocol: 'TCP' }] }] }] };
    const p: WatchItem = { type: 'ADDED', object: { apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: crdMeta('p', { namespace: 'shop' }), spec } };
    settle([p]);
    expect(a.mirror.refusedObjects()).toEqual(['CiliumNetworkPolicy/shop/p']);
    expect(egress(303)).toBe('deny');
    settle([wide(0)]);
    expect(egress(300, 81)).toBe('deny');
    expect(egress(303)).toBe('allow');
    expect(a.mirror.refusedObjects()).toEqual([]);
  });
});

/**
 * 2523: as 2521, but the map that has no room for 303's deny is another local endpoint's (filler), and the old version
 * of `out` also denies every peer on port 9 (an identity-0 deny) which the update drops: its deny side deletes a deny
 * keyed on identity 0 while 303 waits, so the veto refuses it too, and `out` kept its old version (client → web
 * allowed, which the update and every later input deny). Its deny side now keeps the old version's denies.
 */
describe('2523: the deny side of a policy update that would delete a deny while an identity waits', () => {
  it('keeps the old denies and drops the old allows', () => {
    const { a, settle, egress, updateWhileWaiting } = crdAgent(wide(DEFAULT_MAP_CAPACITY - 2, 'filler'));
    settle([pod('filler', 'filler', 'n1', '10.0.0.5'), identity(304, 'filler', 'ADDED')]);
    const allDenied9 = { toEntities: ['all'], toPorts: [{ ports: [{ port: '9', protocol: 'TCP' }] }] };
    const old: WatchItem = { type: 'ADDED', object: { apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: crdMeta('out', { namespace: 'shop' }), spec: { endpointSelector: { matchLabels: { app: 'client' } }, egress: [{ toEndpoints: [{ matchLabels: { app: 'web' } }] }], egressDeny: [allDenied9] } } };
    settle([old, cnp('any9', 'client', [allDenied9])]);
    expect(a.mirror.refusedObjects()).toEqual([]);
    expect(egress(300)).toBe('allow');
    updateWhileWaiting();
    expect(egress(300)).toBe('deny');
    expect(egress(303, 9)).toBe('deny');
    expect(a.mirror.refusedObjects()).toEqual(['CiliumIdentity//303', 'CiliumNetworkPolicy/shop/out']);
    settle([wide(0, 'filler')]);
    expect(a.mirror.refusedObjects()).toEqual([]);
    expect(egress(300)).toBe('deny');
    expect(a.engine.unreadableIdentities()).toEqual([303]);
  });
});

/**
 * 2524: the same for a pod. A remote pod web3 (300) is relabelled app=db while 303 waits: its address would move to
 * 303, so the veto refuses it, and refused with 303 it kept 300, which client's ingress admits. Both inputs put it at
 * 303, the stand-in every local map denies. Now held fail-closed (255), as a pod refused alone (finding 2352; 255's deny
 * is in place here, ghost), and retried with 303 joined, within 28b's cost (docs/attack-findings-29a.md).
 */
describe('2524: a pod update vetoed while an identity waits, then refused with it', () => {
  it('is held fail-closed, not at its old identity', () => {
    // ghost has no CiliumIdentity: at 255 from the start, so 255's deny is in every map before it is full.
    const { a, settle } = crdAgent(wide(DEFAULT_MAP_CAPACITY - 4), [pod('ghost', 'ghost', 'n2', '10.0.1.66')]);
    const ingress = (ip: string): 'allow' | 'deny' => (a.engine.lookup('shop/client', a.engine.identityOfIp(parseIp(ip)), 'ingress', 6, 80)?.entry.deny ?? true ? 'deny' : 'allow');
    settle([pod('web3', 'web', 'n2', '10.0.1.7')]);
    const fromWeb: WatchItem = { type: 'ADDED', object: { apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: crdMeta('from-web', { namespace: 'shop' }), spec: { endpointSelector: { matchLabels: { app: 'client' } }, ingress: [{ fromEndpoints: [{ matchLabels: { app: 'web' } }] }] } } };
    settle([fromWeb]);
    expect(ingress('10.0.1.7')).toBe('allow');
    settle([identity(303, null, 'MODIFIED')]);
    expect(a.mirror.refusedObjects()).toEqual(['CiliumIdentity//303']);
    settle([pod('web3', 'db', 'n2', '10.0.1.7')]);
    settle([pod('web2', 'web', 'n2', '10.0.1.9')]);
    expect(a.engine.identityOfPod('shop/web2')).toBe(300);
    expect(ingress('10.0.1.7')).toBe('deny');
    expect(a.mirror.refusedObjects()).toEqual(['CiliumIdentity//303', 'Pod/shop/web3']);
    settle([wide(0)]);
    expect(a.mirror.refusedObjects()).toEqual([]);
    expect(ingress('10.0.1.7')).toBe('deny');
  }, 180_000); // 22 s alone on a quiet machine; 100 s and more at a load of 6 (session 32)
});
