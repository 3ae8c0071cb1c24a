import { describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.js';
import type { EngineEvent } from '../../src/engine/events.js';
import { namespaceWithDefaults, type Pod } from '../../src/model/cluster.js';
import { parseIp } from '../../src/model/cidr.js';
import { podIdentityLabels, securityLabels } from '../../src/model/identity.js';
import { parseManifest } from '../../src/policy/manifest.js';

/*
 * Review 27v of cep27 (docs/attack-findings-27v.md, findings 2320–2329): endpoint, identity and pod events
 * in one transaction in every order, deletes, a number reused after deletion, a readable → unreadable flip,
 * against a fresh engine fed the final state; the pod's address never keeps a stale number.
 */
const NS = 'shop';
const POD_IP = '10.0.1.3';
const pod = (labels: Record<string, string>, namespace = NS, serviceAccount = 'default'): Pod => ({ namespace, name: 'client', labels, ip: parseIp(POD_IP), serviceAccount, ports: [] });
const upPod = (labels: Record<string, string>): EngineEvent => ({ type: 'upsertPod', pod: pod(labels), local: false });
const idFor = (id: number, labels: Record<string, string>, namespace = NS, serviceAccount = 'default'): EngineEvent => ({
  type: 'upsertIdentity',
  id,
  labels: securityLabels(podIdentityLabels(pod(labels, namespace, serviceAccount), namespaceWithDefaults(namespace, {}).labels)),
});
const cep = (id: number): EngineEvent => ({ type: 'upsertEndpoint', namespace: NS, name: 'client', identity: id, ips: [parseIp(POD_IP)] });
const delCep: EngineEvent = { type: 'deleteEndpoint', namespace: NS, name: 'client' };
const ns = (name: string): EngineEvent => ({ type: 'upsertNamespace', name, labels: {} });
const webPolicy: EngineEvent = {
  type: 'upsertPolicy',
  policy: parseManifest({ apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name: 'web', namespace: NS }, spec: { endpointSelector: { matchLabels: { app: 'web' } }, ingress: [{ fromEndpoints: [{ matchLabels: { role: 'a' } }] }] } }, 'review27v#1'),
};
const web: EngineEvent = { type: 'upsertPod', pod: { namespace: NS, name: 'web', labels: { app: 'web' }, ip: parseIp('10.0.0.2'), serviceAccount: 'default', ports: [] }, local: true };

const at = (e: Engine): number | undefined => e.ipcache().find((x) => x.prefix === `${POD_IP}/32`)?.identity;
function permutations<T>(xs: readonly T[]): T[][] {
  if (xs.length <= 1) return [xs.slice()];
  return xs.flatMap((x, i) => permutations([...xs.slice(0, i), ...xs.slice(i + 1)]).map((p) => [x, ...p]));
}
/** A fresh engine fed `events`, its kernel-facing view. */
function view(e: Engine): unknown {
  return { ipcache: e.ipcache(), ids: e.identities().map((i) => [i, e.identityLabels(i)]) };
}

describe('review 27v: CiliumEndpoint events in one transaction, every order (2320)', () => {
  // The pod's labels role=a have id 300, its endpoint names 300; then the pod moves to role=b (no id),
  // its endpoint to 301 (role=c, same namespace), and 300 is deleted: in every order, the same answer
  // as an engine fed the final state, and 301 at the pod's address (a readable id of its namespace).
  const setup = [ns(NS), web, webPolicy, idFor(300, { role: 'a' }), idFor(301, { role: 'c' }), upPod({ role: 'a' }), cep(300)];
  const change: EngineEvent[] = [upPod({ role: 'b' }), cep(301), { type: 'deleteIdentity', id: 300 }];
  const fresh = new Engine({ identitySource: 'external' });
  fresh.apply([ns(NS), web, webPolicy, idFor(301, { role: 'c' }), upPod({ role: 'b' }), cep(301)]);
  for (const order of permutations(change)) {
    it(`order ${order.map((e) => e.type).join(', ')}`, () => {
      const e = new Engine({ identitySource: 'external' });
      e.apply(setup);
      expect(at(e)).toBe(300);
      e.apply(order);
      expect(at(e)).toBe(301);
      expect(view(e)).toEqual(view(fresh));
    });
  }
  // Each event of `change` alone in its own transaction, in every order: after the last, the same.
  for (const order of permutations(change)) {
    it(`one transaction each: ${order.map((e) => e.type).join(', ')}`, () => {
      const e = new Engine({ identitySource: 'external' });
      e.apply(setup);
      for (const ev of order) {
        e.apply([ev]);
        const n = at(e);
        // Never a number the pod's endpoint does not name now, nor a deleted one.
        expect(n === 255 || n === 300 || n === 301).toBe(true);
        if (n !== 255) expect(e.identities()).toContain(n);
      }
      expect(view(e)).toEqual(view(fresh));
    });
  }
});

describe('review 27v: the pod address after the endpoint or its number goes (2321)', () => {
  const base = [ns(NS), web, webPolicy, idFor(300, { role: 'a' }), upPod({ role: 'b' }), cep(300)];
  it('the endpoint deleted: 255, not the stale 300', () => {
    const e = new Engine({ identitySource: 'external' });
    e.apply(base);
    expect(at(e)).toBe(300);
    e.apply([delCep]);
    expect(at(e)).toBe(255);
  });
  it('the number deleted: 255; re-created for another namespace\'s labels: still 255; for the namespace again: 300', () => {
    const e = new Engine({ identitySource: 'external' });
    e.apply(base);
    e.apply([{ type: 'deleteIdentity', id: 300 }]);
    expect(at(e)).toBe(255);
    e.apply([ns('kube-system'), idFor(300, { role: 'a' }, 'kube-system')]);
    expect(at(e)).toBe(255);
    e.apply([{ type: 'deleteIdentity', id: 300 }, idFor(300, { role: 'a' })]);
    expect(at(e)).toBe(300);
  });
  it('the number re-labelled in place to another service account (one upsert): 255', () => {
    const e = new Engine({ identitySource: 'external' });
    e.apply(base);
    e.apply([idFor(300, { role: 'a' }, NS, 'admin')]);
    expect(at(e)).toBe(255);
  });
  it('the number turns unreadable while the endpoint names it: 255; readable again: 300', () => {
    const e = new Engine({ identitySource: 'external' });
    e.apply(base);
    e.apply([{ type: 'upsertIdentity', id: 300, labels: {}, unreadable: true }]);
    expect(at(e)).toBe(255);
    e.apply([idFor(300, { role: 'a' })]);
    expect(at(e)).toBe(300);
  });
  it('the pod turns local, then remote again, the endpoint unchanged: 255, then 300', () => {
    const e = new Engine({ identitySource: 'external' });
    e.apply(base);
    e.apply([{ type: 'upsertPod', pod: pod({ role: 'b' }), local: true }]);
    expect(at(e)).toBe(255);
    e.apply([upPod({ role: 'b' })]);
    expect(at(e)).toBe(300);
  });
  it('the pod gets an id of its own: its own number, whatever the endpoint names', () => {
    const e = new Engine({ identitySource: 'external' });
    e.apply(base);
    e.apply([idFor(302, { role: 'b' })]);
    expect(at(e)).toBe(302);
    e.apply([{ type: 'deleteIdentity', id: 302 }]);
    expect(at(e)).toBe(300);
  });
  it('a refused transaction (an endpoint event, then an invalid event) leaves the address as it was', () => {
    const e = new Engine({ identitySource: 'external' });
    e.apply(base);
    expect(() => e.apply([delCep, { type: 'upsertEndpoint', namespace: NS, name: 'client', identity: -1, ips: [] } as EngineEvent])).toThrow();
    expect(at(e)).toBe(300);
    expect(() => e.apply([cep(301), { type: 'deleteIdentity', id: 300 }, { type: 'upsertEndpoint', namespace: NS, name: 'client', identity: -1, ips: [] } as EngineEvent])).toThrow();
    expect(at(e)).toBe(300);
  });
});

describe('review 27v: an identity naming the fixed keys twice, under two sources (2322)', () => {
  // The identity holds k8s:io.kubernetes.pod.namespace=shop (the pod's) and a second label of that key under
  // another source naming kube-system: an `any:` selector (a clusterwide policy's key without a source) reads it
  // as a kube-system pod. The check of finding 2223 must compare every label of a fixed key, not the first found.
  for (const source of ['unspec', 'container']) {
    it(`a second io.kubernetes.pod.namespace under ${source}: the endpoint's number is not taken`, () => {
      const e = new Engine({ identitySource: 'external' });
      const own = idFor(300, { role: 'a' });
      if (own.type !== 'upsertIdentity') throw new Error('idFor');
      e.apply([ns(NS), web, webPolicy, { ...own, labels: { ...own.labels, [`${source}:io.kubernetes.pod.namespace`]: 'kube-system' } }, upPod({ role: 'b' }), cep(300)]);
      expect(at(e)).toBe(255);
    });
  }
});
