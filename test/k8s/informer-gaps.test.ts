import { CoreV1Api, KubeConfig, makeInformer } from '@kubernetes/client-node';
import { createServer, IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.js';
import type { EngineEvent } from '../../src/engine/events.js';
import { watchInformer } from '../../src/k8s/informer.js';
import { ClusterMirror } from '../../src/k8s/mirror.js';

/**
 * Finding 1641 (docs/attack-findings-22w.md): a @kubernetes/client-node informer whose watch fails
 * with anything but a 410 emits `error` and stops (dist/cache.js `doneHandler`: no restart until
 * `start()`); what happens in the cluster meanwhile is lost. `watchInformer` passed the error to
 * `onError` only, so `streamsAwaitingRelist()` (what an embedder's health check reads, what
 * `/healthz` reads for streams) stayed empty while the informer was stopped. A real informer
 * against a small API server on 127.0.0.1: the first watch answers 500.
 */
const podList = { kind: 'PodList', apiVersion: 'v1', metadata: { resourceVersion: '5' }, items: [] };
let watches = 0;
const open: ServerResponse[] = [];

type Obj = Record<string, unknown>;
const CCNP_PATH = '/apis/cilium.io/v2/ciliumclusterwidenetworkpolicies';
const ccnp = (name: string, rv: number, rule: Obj): Obj => ({ apiVersion: 'cilium.io/v2', kind: 'CiliumClusterwideNetworkPolicy', metadata: { name, resourceVersion: String(rv) }, spec: { endpointSelector: { matchLabels: { app: 'server' } }, ...rule } });
const from = (app: string): Obj[] => [{ fromEndpoints: [{ matchLabels: { app } }] }];
/** Before the gap: allow-b admits app=b, deny-b denies it. After: deny-b deleted, allow-b admits app=zzz only. Both deny app=b. */
const ccnpLists = [
  { kind: 'CiliumClusterwideNetworkPolicyList', apiVersion: 'cilium.io/v2', metadata: { resourceVersion: '6' }, items: [ccnp('allow-b', 4, { ingress: from('b') }), ccnp('deny-b', 5, { ingressDeny: from('b') })] },
  { kind: 'CiliumClusterwideNetworkPolicyList', apiVersion: 'cilium.io/v2', metadata: { resourceVersion: '20' }, items: [ccnp('allow-b', 19, { ingress: from('zzz') })] },
];
let ccnpListed = 0;
let ccnpWatches = 0;
const expired = { type: 'ERROR', object: { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', reason: 'Expired', code: 410 } };

function handleCcnp(url: URL, res: ServerResponse): void {
  if (url.searchParams.get('watch') !== 'true') return void res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(ccnpLists[Math.min(ccnpListed++, 1)]));
  res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
  // The first watch expires (the informer relists); later ones stay open.
  if (ccnpWatches++ === 0) return void res.end(`${JSON.stringify(expired)}\n`);
  res.flushHeaders();
  open.push(res);
}

function handle(req: IncomingMessage, res: ServerResponse): void {
  const url = new URL(req.url ?? '/', 'http://127.0.0.1');
  if (url.pathname === CCNP_PATH) return handleCcnp(url, res);
  if (url.pathname !== '/api/v1/pods') return void res.writeHead(404).end();
  if (url.searchParams.get('watch') !== 'true') return void res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(podList));
  if (watches++ === 0) return void res.writeHead(500, { 'content-type': 'application/json' }).end('{"kind":"Status","code":500}');
  res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
  res.flushHeaders();
  open.push(res);
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

describe('an informer that failed is listed until it connects again (1641)', () => {
  it('1641. a 500 on the watch stops the informer: its stream is listed by streamsAwaitingRelist until started again', async () => {
    const kc = new KubeConfig();
    kc.loadFromOptions({ clusters: [{ name: 't', server: base, skipTLSVerify: true }], users: [{ name: 't' }], contexts: [{ name: 't', cluster: 't', user: 't' }], currentContext: 't' });
    const core = kc.makeApiClient(CoreV1Api);
    const informer = makeInformer(kc, '/api/v1/pods', () => core.listPodForAllNamespaces());
    const mirror = new ClusterMirror({ nodeName: 'n1' });
    const errors: unknown[] = [];
    watchInformer(informer, mirror, { kind: 'Pod', apiVersion: 'v1', onError: (e) => errors.push(e) });
    try {
      await informer.start();
      for (let i = 0; i < 400 && errors.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
      expect(errors).toHaveLength(1);
      expect(mirror.streamsAwaitingRelist()).toEqual(['informer Pod']);
      // Started again (as client-node's docs show: on error, start after a delay), it connects: no longer listed.
      await informer.start();
      for (let i = 0; i < 400 && watches < 2; i++) await new Promise((r) => setTimeout(r, 10));
      expect(mirror.streamsAwaitingRelist()).toEqual([]);
    } finally {
      await informer.stop();
    }
  });
});

/**
 * Finding 1643: client-node's relist after a 410 calls `delete` for each object gone, then `add`
 * or `update` for each listed one, in one run (dist/cache.js `doneHandler`). `watchInformer` called
 * `onChange` after each: an embedder that flushes there (as test/k8s/informer.test.ts does) made a
 * transaction of the relist's deletes alone, a state the cluster never had.
 */
describe('an informer relist is one transaction for an embedder that flushes in onChange (1643)', () => {
  it('1643. deny-b deleted and allow-b narrowed in one gap: the client is never admitted', async () => {
    const kc = new KubeConfig();
    kc.loadFromOptions({ clusters: [{ name: 't', server: base, skipTLSVerify: true }], users: [{ name: 't' }], contexts: [{ name: 't', cluster: 't', user: 't' }], currentContext: 't' });
    const listFn = async () => (await fetch(`${base}${CCNP_PATH}`)).json() as Promise<{ items: Obj[]; metadata: Obj }>;
    const informer = makeInformer(kc, CCNP_PATH, listFn as never);
    const mirror = new ClusterMirror({ nodeName: 'n1' });
    const engine = new Engine();
    const verdicts: string[] = [];
    const drain = (): void => {
      while (!mirror.idle) {
        const b = mirror.flush();
        engine.apply(b.events as EngineEvent[]);
        b.commit();
      }
      const id = engine.ipcache().find((e) => e.prefix === '10.0.0.9/32')?.identity;
      const hit = id === undefined ? undefined : engine.lookup('x/server', id, 'ingress', 6, 80);
      verdicts.push(hit === undefined ? 'none' : hit.entry.deny ? 'deny' : 'allow');
    };
    const pod = (name: string, node: string, ip: string, app: string): Obj => ({ apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: 'x', resourceVersion: '1', labels: { app } }, spec: { nodeName: node, containers: [] }, status: { phase: 'Running', podIP: ip } });
    mirror.observe({ type: 'ADDED', object: pod('server', 'n1', '10.0.0.1', 'server') }, 'pods');
    mirror.observe({ type: 'ADDED', object: pod('client', 'n2', '10.0.0.9', 'b') }, 'pods');
    drain();
    // Without policies the server is not isolated: what counts is what the informer's runs give.
    verdicts.length = 0;
    watchInformer(informer, mirror, { kind: 'CiliumClusterwideNetworkPolicy', apiVersion: 'cilium.io/v2', onChange: drain });
    try {
      await informer.start();
      for (let i = 0; i < 400 && (ccnpListed < 2 || !verdicts.includes('none') || verdicts.at(-1) !== 'none'); i++) await new Promise((r) => setTimeout(r, 10));
    } finally {
      await informer.stop();
    }
    expect(ccnpListed).toBe(2);
    expect(verdicts.at(-1)).toBe('none');
    expect(verdicts).not.toContain('allow');
  });
});

describe('onChange once per run: what it throws (1643)', () => {
  it('1643. goes to onError: a microtask that threw would end the process', async () => {
    const callbacks = new Map<string, (obj: object) => void>();
    const informer = { on: (verb: string, cb: (obj: object) => void) => void callbacks.set(verb, cb) };
    const mirror = new ClusterMirror({ nodeName: 'n1' });
    const errors: unknown[] = [];
    let calls = 0;
    const onChange = (): void => {
      calls++;
      throw new Error('a flush while a batch is open');
    };
    watchInformer(informer, mirror, { kind: 'Namespace', apiVersion: 'v1', onChange, onError: (e) => errors.push(e) });
    callbacks.get('add')!({ metadata: { name: 'a', resourceVersion: '1' } });
    callbacks.get('add')!({ metadata: { name: 'b', resourceVersion: '2' } });
    await Promise.resolve();
    expect(calls).toBe(1);
    expect(errors).toEqual([new Error('a flush while a batch is open')]);
  });
});
