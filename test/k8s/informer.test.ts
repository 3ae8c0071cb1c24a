import { CoreV1Api, KubeConfig, makeInformer, NetworkingV1Api } from '@kubernetes/client-node';
import { createServer, IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.js';
import type { EngineEvent } from '../../src/engine/events.js';
import { comparableMaps } from '../../src/harness/cluster-sync.js';
import { watchInformer } from '../../src/k8s/informer.js';
import { ClusterMirror } from '../../src/k8s/mirror.js';
import { WatchStreamParser } from '../../src/k8s/watch.js';

/**
 * The @kubernetes/client-node path: real informers (list, then watch) against a small API server
 * on 127.0.0.1 that speaks the watch protocol (chunked newline-delimited events). The first pod
 * watch ends with a 410 Expired ERROR event, so the informer relists: the second list drops pod
 * `b` and adds pod `c`. The mirror fed by the informers must end where a mirror fed the final
 * objects directly ends, with the same engine maps.
 */
type Obj = Record<string, unknown>;
const ns: Obj = { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop', resourceVersion: '10', uid: 'n', creationTimestamp: '2026-11-29T10:00:00Z', labels: { 'kubernetes.io/metadata.name': 'shop' } }, spec: { finalizers: ['kubernetes'] }, status: { phase: 'Active' } };
const pod = (name: string, rv: number, app: string, ip: string): Obj => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name, namespace: 'shop', uid: `u-${name}`, resourceVersion: String(rv), creationTimestamp: '2026-11-29T10:00:00Z', labels: { app } },
  spec: { nodeName: 'node-a', serviceAccountName: 'default', containers: [{ name: 'c', image: 'i', ports: [{ name: 'http', containerPort: 8080, protocol: 'TCP' }] }] },
  status: { phase: 'Running', podIP: ip, podIPs: [{ ip }], startTime: '2026-11-29T10:00:01Z' },
});
const policy: Obj = {
  apiVersion: 'networking.k8s.io/v1',
  kind: 'NetworkPolicy',
  metadata: { name: 'web', namespace: 'shop', uid: 'p', resourceVersion: '11', generation: 1, creationTimestamp: '2026-11-29T10:00:00Z' },
  spec: { podSelector: { matchLabels: { app: 'web' } }, policyTypes: ['Ingress'], ingress: [{ from: [{ podSelector: { matchLabels: { app: 'client' } } }], ports: [{ port: 'http', protocol: 'TCP' }] }] },
};
const a = pod('a', 20, 'web', '10.0.0.1');
const b = pod('b', 21, 'client', '10.0.0.2');
const c = pod('c', 40, 'client', '10.0.0.3');
const aModified = pod('a', 30, 'web', '10.0.0.1');
(aModified.metadata as { labels: Record<string, string> }).labels.tier = 'front';

const list = (kind: string, apiVersion: string, rv: number, items: Obj[]): Obj => ({ kind: `${kind}List`, apiVersion, metadata: { resourceVersion: String(rv) }, items: items.map(({ kind: _k, apiVersion: _a, ...rest }) => rest) });

/** Served per path: the lists in order (the last repeats) and the watch streams in order (after the last: held open, empty). */
const routes: Record<string, { lists: Obj[]; watches: Obj[][] }> = {
  '/api/v1/namespaces': { lists: [list('Namespace', 'v1', 12, [ns])], watches: [] },
  '/apis/networking.k8s.io/v1/networkpolicies': { lists: [list('NetworkPolicy', 'networking.k8s.io/v1', 12, [policy])], watches: [] },
  '/api/v1/pods': {
    lists: [list('Pod', 'v1', 22, [a, b]), list('Pod', 'v1', 41, [aModified, c])],
    watches: [[{ type: 'MODIFIED', object: aModified }, { type: 'BOOKMARK', object: { kind: 'Pod', apiVersion: 'v1', metadata: { resourceVersion: '31' } } }, { type: 'ERROR', object: { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: 'too old resource version: 22 (35)', reason: 'Expired', code: 410 } }]],
  },
};
const served = new Map<string, { lists: number; watches: number }>();
const open: ServerResponse[] = [];

function handle(req: IncomingMessage, res: ServerResponse): void {
  const url = new URL(req.url ?? '/', 'http://127.0.0.1');
  const route = routes[url.pathname];
  if (!route) return void res.writeHead(404, { 'content-type': 'application/json' }).end('{"kind":"Status","code":404}');
  const n = served.get(url.pathname) ?? { lists: 0, watches: 0 };
  served.set(url.pathname, n);
  if (url.searchParams.get('watch') !== 'true') {
    const body = route.lists[Math.min(n.lists++, route.lists.length - 1)];
    return void res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body));
  }
  res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
  const events = route.watches[n.watches++];
  if (events === undefined) {
    res.flushHeaders();
    return void open.push(res);
  }
  for (const e of events) res.write(`${JSON.stringify(e)}\n`);
  res.end();
}

const server = createServer(handle);
let base = '';
beforeAll(async () => {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  for (const r of open) r.end();
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
});

function drain(mirror: ClusterMirror, engine: Engine): void {
  while (!mirror.idle) {
    const batch = mirror.flush();
    engine.apply(batch.events as EngineEvent[]);
    batch.commit();
  }
}

describe('@kubernetes/client-node informers', () => {
  it('feed the mirror through list, watch, bookmark, a 410 and the relist', async () => {
    const kc = new KubeConfig();
    kc.loadFromOptions({ clusters: [{ name: 'test', server: base, skipTLSVerify: true }], users: [{ name: 'test' }], contexts: [{ name: 'test', cluster: 'test', user: 'test' }], currentContext: 'test' });
    const core = kc.makeApiClient(CoreV1Api);
    const net = kc.makeApiClient(NetworkingV1Api);
    const errors: unknown[] = [];
    const mirror = new ClusterMirror({ nodeName: 'node-a', warn: (msg, fields) => errors.push({ msg, ...fields }) });
    const engine = new Engine();
    const informers = [
      { informer: makeInformer(kc, '/api/v1/namespaces', () => core.listNamespace()), kind: 'Namespace', apiVersion: 'v1' },
      { informer: makeInformer(kc, '/api/v1/pods', () => core.listPodForAllNamespaces()), kind: 'Pod', apiVersion: 'v1' },
      { informer: makeInformer(kc, '/apis/networking.k8s.io/v1/networkpolicies', () => net.listNetworkPolicyForAllNamespaces()), kind: 'NetworkPolicy', apiVersion: 'networking.k8s.io/v1' },
    ];
    for (const { informer, kind, apiVersion } of informers) watchInformer(informer, mirror, { kind, apiVersion, onChange: () => drain(mirror, engine), onError: (e) => errors.push(e) });
    try {
      for (const { informer } of informers) await informer.start();
      for (let i = 0; i < 400 && (served.get('/api/v1/pods')?.lists ?? 0) < 2; i++) await new Promise((r) => setTimeout(r, 10));
      for (let i = 0; i < 400 && engine.endpoints().join() !== 'shop/a,shop/c'; i++) await new Promise((r) => setTimeout(r, 10));
      // client-node 1.x reports the watch it aborts itself for the relist as an error: not ours.
      expect(errors.filter((e) => !(e instanceof Error && e.name === 'AbortError'))).toEqual([]);
    } finally {
      for (const { informer } of informers) await informer.stop();
    }
    expect(served.get('/api/v1/pods')).toMatchObject({ lists: 2 });
    expect(engine.endpoints()).toEqual(['shop/a', 'shop/c']);

    // The same final objects, straight from a stream.
    const direct = new ClusterMirror({ nodeName: 'node-a' });
    const reference = new Engine();
    for (const item of new WatchStreamParser('direct').push([ns, policy, aModified, c].map((o) => JSON.stringify({ type: 'ADDED', object: o })).join('\n'))) direct.observe(item, 'direct');
    drain(direct, reference);
    expect(comparableMaps(engine)).toEqual(comparableMaps(reference));
  });
});
