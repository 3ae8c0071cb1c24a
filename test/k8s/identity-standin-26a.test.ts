import fc from 'fast-check';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { Agent } from '../../src/agent/agent.js';
import { backendLookup } from '../../src/backend/lookup.js';
import { MemoryBackend } from '../../src/backend/memory.js';
import type { WatchItem } from '../../src/k8s/watch.js';
import { parseIp } from '../../src/model/cidr.js';
import { UNALLOCATED_POD_IDENTITY } from '../../src/model/identity.js';
import type { Direction } from '../../src/model/rules.js';

/**
 * Finding 1936 (docs/attack-findings-25a.md, review25b; fixed in 26a): with `--identities external`, a CiliumIdentity
 * whose `security-labels` distill cannot read is held as a fail-closed stand-in. Cilium reads every such map
 * (pkg/k8s/identitybackend/identity.go `crdBackend.ListAndWatch`: AddFunc and UpdateFunc call
 * `handler.OnUpsert(id, c.KeyFunc(identity.SecurityLabels))` for every name `strconv.ParseUint` reads; the key function
 * never fails), so the number stands for labels distill does not know: its pods keep it in the ipcache, no allow
 * selects it and every local map denies it in both directions (above every tier), until a readable value arrives.
 * Deleting the object deletes the id (`DeleteFunc` → `handler.OnDelete`), as for a readable one.
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
const identityObject = (id: number, labels: unknown) => ({ apiVersion: 'cilium.io/v2', kind: 'CiliumIdentity', metadata: meta(String(id)), 'security-labels': labels });
const identity = (type: 'ADDED' | 'MODIFIED' | 'DELETED', id: number, labels: unknown): WatchItem => ({ type, object: identityObject(id, labels) });
const list = (...items: Record<string, unknown>[]): WatchItem => ({ type: 'LIST', itemKind: 'CiliumIdentity', apiVersion: 'cilium.io/v2', resourceVersion: String(rv++), items });
const gone: WatchItem = { type: 'ERROR', object: { kind: 'Status', apiVersion: 'v1', status: 'Failure', reason: 'Expired', code: 410 } };

/** web admits and reaches everything but app=db (a wildcard allow and a deny, each direction); client has no policy. */
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
const CACHE = '10.0.1.5';

function agent() {
  const backend = new MemoryBackend();
  const a = new Agent({ node: 'n1', watch: [], backend, logger, registry: new Registry(), identities: 'external' });
  const feed = (...items: WatchItem[]): void => {
    for (const item of items) a.mirror.observe(item, 'test');
    a.flush();
  };
  /** The kernel-facing verdict of endpoint `ep`'s map for identity `id` on TCP/80. */
  const verdict = (ep: string, id: number, d: Direction): 'allow' | 'deny' => {
    const hit = backendLookup(backend, ep, id, d, 6, 80);
    return hit === undefined || hit.entry.deny ? 'deny' : 'allow';
  };
  const idOf = (ip: string): number => a.engine.identityOfIp(parseIp(ip));
  /** web's and client's verdicts for the address `ip` (the ipcache first), in both directions. */
  const at = (ip: string): string[] => ['shop/web', 'shop/client'].flatMap((ep) => (['ingress', 'egress'] as const).map((d) => `${ep} ${d} ${verdict(ep, idOf(ip), d)}`));
  const start = (): void =>
    feed(
      shop,
      identity('ADDED', 300, podLabels('web')),
      identity('ADDED', 301, podLabels('client')),
      identity('ADDED', 302, podLabels('cache')),
      identity('ADDED', 303, podLabels('db')),
      pod('web', 'n1', '10.0.0.2'),
      pod('client', 'n1', '10.0.0.3'),
      pod('db', 'n2', DB),
      pod('cache', 'n2', CACHE),
      policy,
    );
  return { feed, verdict, idOf, at, start, engine: a.engine };
}

const allDenied = ['shop/web ingress deny', 'shop/web egress deny', 'shop/client ingress deny', 'shop/client egress deny'];
/** app=db readable: web denies it both ways, client (no policy) allows it. */
const dbReadable = ['shop/web ingress deny', 'shop/web egress deny', 'shop/client ingress allow', 'shop/client egress allow'];
const allAllowed = ['shop/web ingress allow', 'shop/web egress allow', 'shop/client ingress allow', 'shop/client egress allow'];

/** `security-labels` values Cilium reads (its key function never fails) and distill refuses (src/model/identity.ts identityLabelProblem, src/k8s/objects.ts identityOf). */
const UNREADABLE: readonly (readonly [string, unknown])[] = [
  ['a value longer than 512 characters (review25b)', { ...podLabels('db'), 'k8s:note': 'x'.repeat(600) }],
  ['a reserved source', { ...podLabels('db'), 'reserved:world': '' }],
  ['a cidr source', { ...podLabels('db'), 'cidr:10.0.0.0/8': '' }],
  ['a key without a source', { ...podLabels('db'), note: 'x' }],
  ['a key with "="', { ...podLabels('db'), 'k8s:a=b': 'x' }],
  ['a value with ";"', { ...podLabels('db'), 'k8s:note': 'a;b' }],
  ['a control character in a value', { ...podLabels('db'), 'k8s:note': 'a\u0001b' }],
  ['a value that is not a string', { ...podLabels('db'), 'k8s:note': 5 }],
  ['an empty map', {}],
  ['not a map', 'k8s:app=db'],
];

describe('2000. (1936) a CiliumIdentity distill cannot read is a fail-closed stand-in', () => {
  it.each(UNREADABLE)('rewritten to %s: its pod keeps the number, every local map denies it both ways; other peers unchanged', (_, labels) => {
    const { feed, idOf, at, start } = agent();
    start();
    expect(at(DB)).toEqual(dbReadable);
    expect(at(CACHE)).toEqual(allAllowed);
    feed(identity('MODIFIED', 303, labels));
    expect(idOf(DB)).toBe(303);
    expect(at(DB)).toEqual(allDenied);
    // A packet carrying the number itself (from a tunnel), whatever address it comes from.
    expect(at(CACHE)).toEqual(allAllowed);
  });

  it('a property: the same for generated unreadable values', () => {
    const bad = fc.oneof(
      fc.string({ minLength: 513, maxLength: 700 }).map((v) => ['k8s:note', v.replace(/;/g, 'x')] as const),
      fc.constantFrom('reserved', 'cidr', 'fqdn', 'node', 'host').map((s) => [`${s}:x`, ''] as const),
      fc.tuple(fc.string({ maxLength: 20 }), fc.string({ maxLength: 20 })).map(([x, y]) => ['k8s:note', `${x};${y}`] as const),
      fc.tuple(fc.string({ minLength: 1, maxLength: 20 }), fc.string({ maxLength: 20 })).map(([x, y]) => [`k8s:${x}=${y}`, 'v'] as const),
    );
    fc.assert(
      fc.property(bad, ([k, v]) => {
        const { feed, idOf, at, start, verdict } = agent();
        start();
        feed(identity('MODIFIED', 303, { ...podLabels('db'), [k]: v }));
        expect(idOf(DB)).toBe(303);
        expect(at(DB)).toEqual(allDenied);
        expect(verdict('shop/web', 302, 'ingress')).toBe('allow');
      }),
      { numRuns: 40 },
    );
  });

  it('above every rule: an allow naming the number\'s old labels does not admit it', () => {
    const { feed, verdict, start } = agent();
    start();
    feed({
      type: 'ADDED',
      object: {
        apiVersion: 'cilium.io/v2',
        kind: 'CiliumNetworkPolicy',
        metadata: meta('client', { namespace: 'shop' }),
        spec: { endpointSelector: { matchLabels: { app: 'client' } }, ingress: [{ fromEndpoints: [{ matchLabels: { app: 'db' } }] }] },
      },
    });
    expect(verdict('shop/client', 303, 'ingress')).toBe('allow');
    feed(identity('MODIFIED', 303, { ...podLabels('db'), 'k8s:note': 'x'.repeat(600) }));
    expect(verdict('shop/client', 303, 'ingress')).toBe('deny');
  });

  it('above every tier: an Admin Accept of priority 0 and a Pass do not admit it (both directions)', () => {
    const { feed, verdict, start } = agent();
    start();
    const cnp = (name: string, action: 'Accept' | 'Pass'): WatchItem => ({
      type: 'ADDED',
      object: {
        apiVersion: 'policy.networking.k8s.io/v1alpha2',
        kind: 'ClusterNetworkPolicy',
        metadata: meta(name),
        spec: {
          tier: 'Admin',
          priority: action === 'Accept' ? 0 : 1,
          subject: { namespaces: {} },
          ingress: [{ name: 'all-in', action, from: [{ namespaces: {} }] }],
          egress: [{ name: 'all-out', action, to: [{ namespaces: {} }] }],
        },
      },
    });
    feed(cnp('accept-all', 'Accept'), cnp('pass-all', 'Pass'));
    // Admitted over web's deny of app=db while readable (the Admin tier decides first).
    expect(verdict('shop/web', 303, 'ingress')).toBe('allow');
    feed(identity('MODIFIED', 303, { ...podLabels('db'), 'k8s:note': 'x'.repeat(600) }));
    for (const ep of ['shop/web', 'shop/client']) for (const d of ['ingress', 'egress'] as const) expect(verdict(ep, 303, d)).toBe('deny');
    expect(verdict('shop/web', 302, 'ingress')).toBe('allow');
  });

  it('never readable: an id first seen unreadable is denied too', () => {
    const { feed, verdict, start, engine } = agent();
    start();
    expect(verdict('shop/client', 304, 'ingress')).toBe('allow');
    feed(identity('ADDED', 304, { ...podLabels('new'), 'reserved:world': '' }));
    // What `maps dump` and the record show for the number: marked, never readable labels.
    expect(engine.identityLabels(304)).toEqual([{ source: 'reserved', key: 'unreadable-identity', value: '' }]);
    for (const ep of ['shop/web', 'shop/client']) for (const d of ['ingress', 'egress'] as const) expect(verdict(ep, 304, d)).toBe('deny');
  });

  it('recovery: a readable value makes it that value\'s identity (the same labels, then others)', () => {
    const { feed, idOf, at, start, verdict } = agent();
    start();
    feed(identity('MODIFIED', 303, { ...podLabels('db'), 'k8s:note': 'x'.repeat(600) }));
    expect(at(DB)).toEqual(allDenied);
    feed(identity('MODIFIED', 303, podLabels('db')));
    expect(idOf(DB)).toBe(303);
    expect(at(DB)).toEqual(dbReadable);
    feed(identity('MODIFIED', 303, { ...podLabels('db'), 'k8s:note': 'a;b' }));
    expect(at(DB)).toEqual(allDenied);
    // Now 303 is app=ok: db's labels have no identity; its address is the unallocated number every local map
    // denies (finding 2002: as 0 the wildcard allows admitted it past web's deny on app=db), 303 is not denied.
    feed(identity('MODIFIED', 303, podLabels('ok')));
    expect(idOf(DB)).toBe(UNALLOCATED_POD_IDENTITY);
    expect(at(DB)).toEqual(allDenied);
    expect(verdict('shop/client', 303, 'ingress')).toBe('allow');
  });

  it('a readable id of the same labels (its node allocated a new one) takes the pods over the stand-in, higher number or not', () => {
    const { feed, idOf, at, start, verdict } = agent();
    start();
    feed(identity('MODIFIED', 303, { ...podLabels('db'), 'k8s:note': 'x'.repeat(600) }));
    feed(identity('ADDED', 310, podLabels('db')));
    expect(idOf(DB)).toBe(310);
    expect(at(DB)).toEqual(dbReadable);
    expect(verdict('shop/client', 303, 'ingress')).toBe('deny');
    // The readable one deleted: back on the stand-in.
    feed(identity('DELETED', 310, podLabels('db')));
    expect(idOf(DB)).toBe(303);
    expect(at(DB)).toEqual(allDenied);
  });

  it('a local endpoint whose identity turns unreadable: its map denies everything until a readable value', () => {
    const { feed, verdict, start } = agent();
    start();
    expect(verdict('shop/web', 302, 'ingress')).toBe('allow');
    feed(identity('MODIFIED', 300, { ...podLabels('web'), 'k8s:note': 'x'.repeat(600) }));
    for (const id of [1, 302, 0]) for (const d of ['ingress', 'egress'] as const) expect(verdict('shop/web', id, d)).toBe('deny');
    // client still reaches everything but web's number.
    expect(verdict('shop/client', 302, 'egress')).toBe('allow');
    expect(verdict('shop/client', 300, 'egress')).toBe('deny');
    feed(identity('MODIFIED', 300, podLabels('web')));
    expect(verdict('shop/web', 302, 'ingress')).toBe('allow');
    expect(verdict('shop/web', 303, 'ingress')).toBe('deny');
    expect(verdict('shop/client', 300, 'egress')).toBe('allow');
  });

  it('two local endpoints of one identity: the number turns unreadable and back (one number, one local identity at a time)', () => {
    const { feed, verdict, start } = agent();
    start();
    const web2: WatchItem = {
      type: 'ADDED',
      object: { apiVersion: 'v1', kind: 'Pod', metadata: meta('web2', { namespace: 'shop', labels: { app: 'web' } }), spec: { nodeName: 'n1', containers: [] }, status: { phase: 'Running', podIP: '10.0.0.9' } },
    };
    feed(web2);
    for (const ep of ['shop/web', 'shop/web2']) expect(verdict(ep, 302, 'ingress')).toBe('allow');
    feed(identity('MODIFIED', 300, { ...podLabels('web'), 'reserved:world': '' }));
    for (const ep of ['shop/web', 'shop/web2']) expect(verdict(ep, 302, 'ingress')).toBe('deny');
    feed(identity('MODIFIED', 300, podLabels('web')));
    for (const ep of ['shop/web', 'shop/web2']) expect(verdict(ep, 302, 'ingress')).toBe('allow');
  });

  it('deleting the CiliumIdentity deletes the id, stand-in or not (Cilium: DeleteFunc → OnDelete)', () => {
    const { feed, idOf, at, start } = agent();
    start();
    feed(identity('MODIFIED', 303, { ...podLabels('db'), 'k8s:note': 'x'.repeat(600) }));
    feed(identity('DELETED', 303, { ...podLabels('db'), 'k8s:note': 'x'.repeat(600) }));
    // As every Cilium node: no identity cache entry for 303. db's labels have no id: its address is the unallocated
    // number every local map denies (finding 2002; Cilium keeps db's CiliumEndpoint number, which distill does not read).
    expect(idOf(DB)).toBe(UNALLOCATED_POD_IDENTITY);
    expect(at(DB)).toEqual(allDenied);
    // Re-created (Cilium's owner node re-creates a missing CiliumIdentity: crdBackend.UpdateKey, reliablyMissing).
    feed(identity('ADDED', 303, podLabels('db')));
    expect(at(DB)).toEqual(dbReadable);
  });

  it('relisted (410, then a List): an unreadable item is the stand-in, a later List without it deletes it', () => {
    const { feed, idOf, at, start, verdict } = agent();
    start();
    const rest = [identityObject(300, podLabels('web')), identityObject(301, podLabels('client')), identityObject(302, podLabels('cache'))];
    feed(gone, list(...rest, identityObject(303, { ...podLabels('db'), 'k8s:note': 'x'.repeat(600) }), identityObject(305, { 'reserved:host': '' })));
    expect(idOf(DB)).toBe(303);
    expect(at(DB)).toEqual(allDenied);
    expect(verdict('shop/client', 305, 'ingress')).toBe('deny');
    // The same unreadable value listed again: nothing changes.
    feed(gone, list(...rest, identityObject(303, { ...podLabels('db'), 'k8s:note': 'x'.repeat(600) }), identityObject(305, { 'reserved:host': '' })));
    expect(at(DB)).toEqual(allDenied);
    feed(gone, list(...rest, identityObject(303, podLabels('db'))));
    expect(at(DB)).toEqual(dbReadable);
    expect(verdict('shop/client', 305, 'ingress')).toBe('allow');
  });
});
