import { ListWatch, type KubernetesObject, type Watch } from '@kubernetes/client-node';
import { expect } from 'vitest';
import { replayGuard, watchInformer } from '../../src/k8s/informer.js';
import type { ClusterMirror } from '../../src/k8s/mirror.js';
import { mirrorAgent } from './mirror-agent.js';
import { allowGood, ev, forgetLastTombstone, pod } from './replay-objects.js';

type Obj = Record<string, unknown>;

/**
 * A real client-node informer (`ListWatch`) of pods fed by a recorded API server: `lists` answer its Lists in turn
 * (the last repeats) at `listVersions`, or `list` gives each; `send` delivers a watch event on its open watch,
 * `expire` ends the watch with a 410 (it relists), `fail` with a 500 (it stops). Each call returns once the
 * informer's callbacks ran. `guard`: the informer is built with `replayGuard` (finding 3203).
 */
export async function recordedInformer(mirror: ClusterMirror, lists: Obj[][], listVersions: (number | string)[], list?: () => { items: Obj[]; resourceVersion: number | string }, guard = false) {
  let n = 0;
  const watches: unknown[] = [];
  let handler: ((phase: string, obj: unknown, raw: unknown) => void) | undefined;
  let done: ((err: unknown) => void) | undefined;
  const server = {
    watch: async (_path: string, params: unknown, cb: typeof handler, end: typeof done): Promise<AbortController> => {
      watches.push(params);
      handler = cb;
      done = end;
      return new AbortController();
    },
  } as unknown as Watch;
  const listFn = async (): Promise<{ metadata: { resourceVersion: string }; items: KubernetesObject[] }> => {
    const i = Math.min(n++, lists.length - 1);
    const l = list?.() ?? { items: lists[i]!, resourceVersion: listVersions[i]! };
    return { metadata: { resourceVersion: String(l.resourceVersion) }, items: l.items as KubernetesObject[] };
  };
  const built: { informer?: ListWatch<KubernetesObject> } = {};
  const watch = guard ? replayGuard(server, (name, ns) => built.informer?.get(name, ns)) : server;
  const informer = new ListWatch('/api/v1/pods', watch, listFn, false);
  built.informer = informer;
  const feed = watchInformer(informer, mirror, { kind: 'Pod', apiVersion: 'v1' });
  const settle = (): Promise<void> => new Promise((r) => setTimeout(r, 0));
  await informer.start();
  await settle();
  return {
    informer,
    feed,
    /** How many Lists the informer made, and the query of each watch it opened. */
    lists: () => n,
    watches,
    async send(type: string, object: Obj): Promise<void> {
      handler!(type, object, { type, object });
      await settle();
    },
    /** The watch ends with a 500: the informer reports the error and stops. */
    async fail(): Promise<void> {
      done!({ statusCode: 500 });
      await settle();
    },
    async expire(): Promise<void> {
      done!({ statusCode: 410 });
      await settle();
      await settle();
    },
  };
}

/**
 * allow-good, and one client-node informer of pods (a List at 3 of server and old, Pending) feeding the mirror, once
 * `before` ran (another informer of pods: 3341); `relist`: what its List after a 410 gives (at 40). Its watch gives
 * 2841's gap, and one more delete forgets old's tombstone (`maxTombstones: 1`).
 */
export async function informedAfterGap(relist: Obj[] = [], before: (mirror: ClusterMirror) => Promise<unknown> = async () => {}) {
  const a = mirrorAgent('n1', { maxTombstones: 1 });
  a.step('policies', ev('ADDED', allowGood));
  await before(a.mirror);
  const inf = await recordedInformer(a.mirror, [[pod('server', 1, 'n1', 'server', '10.0.0.1'), pod('old', 2, 'n2', 'good')], relist], [3, 40]);
  // 2841's gap on the informer's watch: old runs at 10.0.0.9, is deleted, evil takes the address.
  await inf.send('MODIFIED', pod('old', 4, 'n2', 'good', '10.0.0.9'));
  await inf.send('DELETED', pod('old', 5, 'n2', 'good', '10.0.0.9'));
  await inf.send('ADDED', pod('evil', 6, 'n2', 'bad', '10.0.0.9'));
  // One more delete: with the bound at 1 its tombstone evicts old's.
  await forgetLastTombstone(inf.send, 7);
  a.step('policies');
  expect(a.verdict('10.0.0.9')).toBe('none');
  return { a, inf };
}

/**
 * allow-good; an informer of pods built with `replayGuard` or not (server listed at 3; after a 410 it lists `relist`,
 * default server and g at 8, at 20); g (app=good, 10.0.0.9) created (4), deleted (5), created again (8): allowed.
 */
export async function recreatedGood(guard: boolean, relist?: Obj[]) {
  const warnings: string[] = [];
  const a = mirrorAgent('n1', { warn: (msg) => warnings.push(msg) });
  a.step('policies', ev('ADDED', allowGood));
  const server = pod('server', 1, 'n1', 'server', '10.0.0.1');
  const good = (rv: number): Obj => pod('g', rv, 'n2', 'good', '10.0.0.9');
  const inf = await recordedInformer(a.mirror, [[server], relist ?? [server, good(8)]], [3, 20], undefined, guard);
  await inf.send('ADDED', good(4));
  await inf.send('DELETED', good(5));
  await inf.send('ADDED', good(8));
  a.step('policies');
  expect(a.verdict('10.0.0.9')).toBe('allow');
  return { a, inf, warnings };
}
