import * as k8s from '@kubernetes/client-node';
import { KubeConfig, ListWatch, type KubernetesObject, type Watch } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { makeGuardedInformer, watchInformer } from '../../src/k8s/informer.js';
import { mirrorAgent } from './mirror-agent.js';
import { recordedInformer, recreatedGood } from './recorded-informer.js';
import { allowGood, ev, pod } from './replay-objects.js';

type Obj = Record<string, unknown>;
const server = pod('server', 1, 'n1', 'server', '10.0.0.1');
const good = (rv: number) => pod('g', rv, 'n2', 'good', '10.0.0.9');

const lostG = (relist?: Obj[]) => recreatedGood(false, relist);

describe('3700/3701. an unguarded informer whose cache a replayed DELETED emptied of a live object: held fail-closed, its source awaits a relist', () => {
  // Before (5305e398): the mirror warned and kept g allowed; its genuine DELETED (12) never came (client-node's cache
  // lacks g), so a deleted pod stayed allowed for good: `expected 'allow' to be 'none'`; and the source was not listed:
  // `expected [] to deeply equal [ 'informer Pod' ]`.
  it('the replay: g held fail-closed (its deletion would not be reported) and `informer Pod` awaits a relist', async () => {
    const { a, inf, warnings } = await lostG();
    await inf.send('DELETED', good(5));
    expect(inf.informer.get('g', 'x')).toBeUndefined();
    a.step('policies');
    expect(a.verdict('10.0.0.9')).toBe('none');
    expect(a.mirror.streamsAwaitingRelist()).toEqual(['informer Pod']);
    expect(warnings.filter((w) => w.includes('held fail-closed'))).toHaveLength(1);
    // g's genuine deletion, unreported: still not allowed.
    await inf.send('DELETED', good(12));
    a.step('policies');
    expect(a.verdict('10.0.0.9')).toBe('none');
  });
  it('a relist whose List has g again at 8 gives it back: allowed, nothing awaits', async () => {
    const { a, inf } = await lostG();
    await inf.send('DELETED', good(5));
    await inf.expire();
    a.step('policies');
    expect(a.verdict('10.0.0.9')).toBe('allow');
    expect(a.mirror.streamsAwaitingRelist()).toEqual([]);
  });
  it('a newer update of g (its cache takes it as an add) ends the hold too', async () => {
    const { a, inf } = await lostG();
    await inf.send('DELETED', good(5));
    await inf.send('MODIFIED', good(9));
    a.step('policies');
    expect(a.verdict('10.0.0.9')).toBe('allow');
    expect(a.mirror.streamsAwaitingRelist()).toEqual([]);
  });
  it('a relist lacking g (deleted meanwhile): held fail-closed still, the source still listed (the mirror keeps g)', async () => {
    const { a, inf } = await lostG([server]);
    await inf.send('DELETED', good(5));
    await inf.expire();
    a.step('policies');
    expect(a.verdict('10.0.0.9')).toBe('none');
    expect(a.mirror.streamsAwaitingRelist()).toEqual(['informer Pod']);
  });
});

describe('3703. `makeGuardedInformer`: makeInformer with the replay guard', () => {
  // Before (5305e398): `makeGuardedInformer is not a function`.
  it('a replayed DELETED of the older incarnation stays out of its cache; the genuine DELETED then deletes g', async () => {
    const a = mirrorAgent('n1');
    a.step('policies', ev('ADDED', allowGood));
    let handler: ((phase: string, obj: unknown, raw: unknown) => void) | undefined;
    const kubeconfigs: unknown[] = [];
    class RecordedWatch {
      constructor(kc: unknown) {
        kubeconfigs.push(kc);
      }
      async watch(_path: string, _params: unknown, cb: typeof handler): Promise<AbortController> {
        handler = cb;
        return new AbortController();
      }
    }
    const listFn = async () => ({ metadata: { resourceVersion: '3' }, items: [server] as KubernetesObject[] });
    const informer = makeGuardedInformer({ ListWatch, Watch: RecordedWatch as unknown as new (kc: string) => Watch }, 'kc', '/api/v1/pods', listFn);
    watchInformer(informer, a.mirror, { kind: 'Pod', apiVersion: 'v1' });
    await informer.start();
    const send = async (type: string, o: Obj): Promise<void> => {
      handler!(type, o, { type, object: o });
      await new Promise((r) => setTimeout(r, 0));
    };
    await send('ADDED', good(4));
    await send('DELETED', good(5));
    await send('ADDED', good(8));
    await send('DELETED', good(5));
    expect(kubeconfigs).toEqual(['kc']);
    expect(informer.get('g', 'x')).toBeDefined();
    a.step('policies');
    expect(a.verdict('10.0.0.9')).toBe('allow');
    await send('DELETED', good(12));
    a.step('policies');
    expect(a.verdict('10.0.0.9')).toBe('none');
    expect(a.mirror.streamsAwaitingRelist()).toEqual([]);
  });
  it('takes the client-node module as it is imported (types and classes), not started', () => {
    const listFn = async () => ({ metadata: { resourceVersion: '3' }, items: [] as KubernetesObject[] });
    const informer = makeGuardedInformer(k8s, new KubeConfig(), '/api/v1/pods', listFn, 'app=x');
    expect(informer).toBeInstanceOf(ListWatch);
    expect(informer.list()).toEqual([]);
  });
});

describe('3702. an informer replaced by a new one: `retire` the old source, what only it gave held fail-closed', () => {
  /** The first informer lists server and g at 3, fails (500); `retire`d, a second one lists `relist` at 20. */
  async function replaced(relist: Obj[]) {
    const a = mirrorAgent('n1');
    a.step('policies', ev('ADDED', allowGood));
    const first = await recordedInformer(a.mirror, [[server, good(2)]], [3]);
    a.step('policies');
    expect(a.verdict('10.0.0.9')).toBe('allow');
    await first.fail();
    expect(a.mirror.streamsAwaitingRelist()).toEqual(['informer Pod']);
    first.feed.retire();
    const second = await recordedInformer(a.mirror, [relist], [20]);
    a.step('policies');
    return { a, first, second };
  }
  // Before (5305e398): `watchInformer` returned nothing: `Cannot read properties of undefined (reading 'retire')`;
  // without the retire, g (deleted while no informer ran) stayed allowed and `informer Pod` listed for good.
  it('g deleted while no informer ran (the new List lacks it): not allowed; nothing awaits a relist', async () => {
    const { a, second } = await replaced([server]);
    expect(second.feed.source).toBe('informer Pod #2');
    expect(a.verdict('10.0.0.9')).toBe('none');
    expect(a.mirror.streamsAwaitingRelist()).toEqual([]);
  });
  it('g still there (the new List gives it at 2): taken over, allowed; its later DELETED deletes it', async () => {
    const { a, second } = await replaced([server, good(2)]);
    expect(a.verdict('10.0.0.9')).toBe('allow');
    await second.send('DELETED', good(25));
    a.step('policies');
    expect(a.verdict('10.0.0.9')).toBe('none');
  });
  it('taken over, g is the new informer\'s: a replayed older DELETED emptying its cache holds g fail-closed (3700)', async () => {
    const { a, second } = await replaced([server, good(2)]);
    await second.send('DELETED', good(1));
    a.step('policies');
    expect(a.verdict('10.0.0.9')).toBe('none');
    expect(a.mirror.streamsAwaitingRelist()).toEqual(['informer Pod #2']);
  });
  it('twenty replacements: names never reused, nothing awaits, the retired informer\'s late callbacks ignored', async () => {
    const a = mirrorAgent('n1');
    a.step('policies', ev('ADDED', allowGood));
    let last = await recordedInformer(a.mirror, [[server, good(2)]], [3]);
    const retired = [last];
    for (let i = 0; i < 20; i++) {
      await last.fail();
      last.feed.retire();
      last = await recordedInformer(a.mirror, [[server, good(2)]], [3]);
      retired.push(last);
    }
    expect(last.feed.source).toBe('informer Pod #21');
    expect(a.mirror.streamsAwaitingRelist()).toEqual([]);
    // The first informer, retired, reports an error and a delete: neither reaches the mirror.
    await retired[0]!.fail();
    await retired[0]!.send('DELETED', good(30));
    a.step('policies');
    expect(a.mirror.streamsAwaitingRelist()).toEqual([]);
    expect(a.verdict('10.0.0.9')).toBe('allow');
  });
});

describe('3700. a policy lost by an unguarded informer is held at its deny side', () => {
  const allowBad = (rv: number, deny = false): Obj => ({
    apiVersion: 'cilium.io/v2',
    kind: 'CiliumNetworkPolicy',
    metadata: { name: 'allow-bad', namespace: 'x', resourceVersion: String(rv) },
    spec: { endpointSelector: { matchLabels: { app: 'server' } }, ingress: [{ fromEndpoints: [{ matchLabels: { app: 'bad' } }] }], ...(deny ? { ingressDeny: [{ fromEndpoints: [{ matchLabels: { app: 'good' } }] }] } : {}) },
  });
  // Before (5305e398): allow-bad kept whole after the replay, its deletion at 12 never reported:
  // `expected [ 'allow', 'deny' ] to deeply equal [ 'none', 'deny' ]`.
  it('its allows go, its denies stay, until the informer gives it again', async () => {
    const a = mirrorAgent('n1');
    a.step('pods', ev('ADDED', allowGood), ev('ADDED', server), ev('ADDED', pod('bad', 2, 'n2', 'bad', '10.0.0.9')), ev('ADDED', pod('g', 2, 'n2', 'good', '10.0.0.7')));
    const inf = await recordedInformer(a.mirror, [[]], [3]);
    await inf.send('ADDED', allowBad(4));
    await inf.send('DELETED', allowBad(5));
    await inf.send('ADDED', allowBad(8, true));
    a.step('pods');
    expect([a.verdict('10.0.0.9'), a.verdict('10.0.0.7')]).toEqual(['allow', 'deny']);
    await inf.send('DELETED', allowBad(5));
    await inf.send('DELETED', allowBad(12, true));
    a.step('pods', ev('MODIFIED', pod('server', 13, 'n1', 'server', '10.0.0.1')));
    expect([a.verdict('10.0.0.9'), a.verdict('10.0.0.7')]).toEqual(['none', 'deny']);
    await inf.send('MODIFIED', allowBad(14));
    a.step('pods');
    expect([a.verdict('10.0.0.9'), a.verdict('10.0.0.7')]).toEqual(['allow', 'allow']);
  });
});
