import { CoreV1Api, KubeConfig, makeInformer } from '@kubernetes/client-node';
import { createServer, IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
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

function handle(req: IncomingMessage, res: ServerResponse): void {
  const url = new URL(req.url ?? '/', 'http://127.0.0.1');
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
