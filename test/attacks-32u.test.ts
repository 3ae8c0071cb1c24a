import { KubeConfig, ListWatch, Watch, type KubernetesObject } from '@kubernetes/client-node';
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { replayGuard, watchInformer } from '../src/k8s/informer.js';
import { mirrorAgent } from './k8s/mirror-agent.js';
import { recordedInformer } from './k8s/recorded-informer.js';
import { allowGood, ev, pod } from './k8s/replay-objects.js';

type Obj = Record<string, unknown>;
const good = (rv: number) => pod('g', rv, 'n2', 'good', '10.0.0.9');

// A pod API server whose watch stays open: `push` writes one event line on it.
let watchRes: ServerResponse | undefined;
const server = createServer((req, res) => {
  if (!(req.url ?? '').includes('watch=true')) return void res.writeHead(404).end();
  res.writeHead(200, { 'content-type': 'application/json' });
  res.flushHeaders();
  watchRes = res;
});
let base = '';
beforeAll(async () => {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  watchRes?.end();
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
});

async function until(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !cond(); i++) await new Promise((r) => setTimeout(r, 10));
}

describe('3600. a `held` that throws made the guard drop every watch event, silently', () => {
  // Before (9303fb0c): client-node's Watch (dist/watch.js) calls the callback inside a try/catch that ignores what
  // it throws, so `replayGuard(watch, informer.get)` (unbound: `this` undefined in `get`) dropped every event:
  // `expected undefined to be defined` (the pod never reached the cache, nor the mirror: 'none' for 'allow').
  it('an unbound `informer.get`: events still reach the informer and the mirror', async () => {
    const a = mirrorAgent('n1');
    a.step('policies', ev('ADDED', allowGood));
    const kc = new KubeConfig();
    kc.loadFromOptions({ clusters: [{ name: 't', server: base, skipTLSVerify: true }], users: [{ name: 't' }], contexts: [{ name: 't', cluster: 't', user: 't' }], currentContext: 't' });
    const box: { get?: ListWatch<KubernetesObject>['get'] } = {};
    const listFn = async () => ({ metadata: { resourceVersion: '3' }, items: [pod('server', 1, 'n1', 'server', '10.0.0.1')] as KubernetesObject[] });
    const informer = new ListWatch('/api/v1/pods', replayGuard(new Watch(kc), (n, ns) => box.get!(n, ns)), listFn, false);
    box.get = informer.get;
    watchInformer(informer, a.mirror, { kind: 'Pod', apiVersion: 'v1' });
    await informer.start();
    await until(() => watchRes !== undefined);
    watchRes!.write(JSON.stringify({ type: 'ADDED', object: pod('g', 4, 'n2', 'good', '10.0.0.9') }) + '\n');
    await until(() => informer.get('g', 'x') !== undefined);
    await informer.stop();
    expect(informer.get('g', 'x')).toBeDefined();
    a.step('policies');
    expect(a.verdict('10.0.0.9')).toBe('allow');
  });
});

describe('3601. without `replayGuard`, the mirror warned once per replayed DELETED of a standing loss', () => {
  /** allow-good; an unguarded informer of pods (server listed at 3); g created (4), deleted (5), created again (8). */
  async function lost() {
    const warnings: string[] = [];
    const a = mirrorAgent('n1', { warn: (msg) => warnings.push(msg) });
    a.step('policies', ev('ADDED', allowGood));
    const inf = await recordedInformer(a.mirror, [[pod('server', 1, 'n1', 'server', '10.0.0.1')]], [3]);
    await inf.send('ADDED', good(4));
    await inf.send('DELETED', good(5));
    await inf.send('ADDED', good(8));
    const replayed = () => warnings.filter((w) => w.includes('replayGuard')).length;
    return { a, inf, replayed };
  }
  // Before (9303fb0c): each replayed ADDED at 4 put g back in client-node's cache at 4 and each DELETED at 5 took it
  // out again, a warning each time: `expected 50 to be 1`.
  it('a replay storm of the older incarnation: one warning while the loss stands', async () => {
    const { inf, replayed } = await lost();
    for (let i = 0; i < 50; i++) {
      await inf.send('ADDED', good(4));
      await inf.send('DELETED', good(5));
    }
    expect(replayed()).toBe(1);
  });
  it('the informer gives g again at 8 (its cache holds it): a later loss warns again', async () => {
    const { inf, replayed } = await lost();
    await inf.send('DELETED', good(5));
    await inf.send('ADDED', good(8));
    await inf.send('DELETED', good(5));
    expect(replayed()).toBe(2);
  });
});

describe('checked and held: what `replayGuard` passes and drops (versions, keys, phases)', () => {
  /** The phases the guard passes of `events`, `held` the informer's cache by `namespace/name` ('' for none). */
  function passed(held: Record<string, string>, events: [string, Obj][]): string[] {
    const cache = new Map(Object.entries(held));
    const asked: string[] = [];
    const seen: string[] = [];
    const fake = { watch: async (_p: string, _q: unknown, cb: (phase: string, obj: unknown) => void, _done: (err: unknown) => void) => { for (const [t, o] of events) cb(t, o); return {}; } };
    const w = replayGuard(fake, (name, ns) => {
      asked.push(`${ns ?? '<none>'}/${name}`);
      const rv = cache.get(`${ns ?? ''}/${name}`);
      return rv === undefined ? undefined : { metadata: { resourceVersion: rv } };
    });
    void w.watch('/p', {}, (phase, obj) => seen.push(`${phase}@${String(((obj as Obj).metadata as Obj | undefined)?.resourceVersion)}`), () => {});
    return [...seen, ...asked.filter((k) => k.startsWith('<none>/'))];
  }
  const o = (rv: string, ns?: string): Obj => ({ metadata: { name: 'p', resourceVersion: rv, ...(ns === undefined ? {} : { namespace: ns }) } });
  it('versions: leading zeros equal, beyond 2^53 by digits, equal DELETED passes, non-integers never compared', () => {
    expect(passed({ 'x/p': '8' }, [['MODIFIED', o('08', 'x')], ['DELETED', o('0008', 'x')], ['DELETED', o('7', 'x')]])).toEqual(['DELETED@0008']);
    const big = '9007199254740993';
    expect(passed({ 'x/p': big }, [['MODIFIED', o('9007199254740992', 'x')], ['MODIFIED', o('9007199254740994', 'x')], ['DELETED', o('99999999999999999999', 'x')]])).toEqual(['MODIFIED@9007199254740994', 'DELETED@99999999999999999999']);
    expect(passed({ 'x/p': '8' }, [['DELETED', o('', 'x')], ['DELETED', o('5a', 'x')], ['MODIFIED', o('-1', 'x')]])).toEqual(['DELETED@', 'DELETED@5a', 'MODIFIED@-1']);
  });
  it('a cluster-scoped object is looked up without a namespace; BOOKMARK and ERROR pass untouched', () => {
    expect(passed({ '/p': '8' }, [['DELETED', o('5')], ['BOOKMARK', o('1')], ['ERROR', { code: 410 }], ['ADDED', o('9')]])).toEqual(['BOOKMARK@1', 'ERROR@undefined', 'ADDED@9', '<none>/p', '<none>/p']);
  });
});
