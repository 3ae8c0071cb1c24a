import { describe, expect, it } from 'vitest';
import { replayGuard } from '../src/k8s/informer.js';
import { mirrorAgent } from './k8s/mirror-agent.js';
import { recordedInformer } from './k8s/recorded-informer.js';
import { allowGood, ev, pod } from './k8s/replay-objects.js';

type Obj = Record<string, unknown>;

/** `o` at resourceVersion `rv` (an opaque string: a server whose versions are not etcd revisions), with `uid`. */
const at = (o: Obj, rv: string, uid?: string): Obj => ({ ...o, metadata: { ...(o.metadata as Obj), resourceVersion: rv, ...(uid === undefined ? {} : { uid }) } });
const ccnp = (name: string, spec: Obj): Obj => ({ apiVersion: 'cilium.io/v2', kind: 'CiliumClusterwideNetworkPolicy', metadata: { name }, spec });
const toServer = { matchLabels: { app: 'server' } };
/** Every endpoint may reach x/server; deny-bad (either incarnation) denies app=bad. */
const allowAll = at(ccnp('allow-all', { endpointSelector: toServer, ingress: [{ fromEndpoints: [{}] }] }), 'z1', 'A');
const denyBad = ccnp('deny-bad', { endpointSelector: toServer, ingressDeny: [{ fromEndpoints: [{ matchLabels: { app: 'bad' } }] }] });
/** Two incarnations of allow-x: the first allows app=bad, the second app=good only. */
const allowXBad = ccnp('allow-x', { endpointSelector: toServer, ingress: [{ fromEndpoints: [{ matchLabels: { app: 'bad' } }] }] });
const allowXGood = ccnp('allow-x', { endpointSelector: toServer, ingress: [{ fromEndpoints: [{ matchLabels: { app: 'good' } }] }] });
const server = (): Obj => pod('server', 1, 'n1', 'server', '10.0.0.1');
const bad = (): Obj => pod('b', 2, 'n2', 'bad', '10.0.0.7');

/** x/server and x/b (app=bad, 10.0.0.7) on the pods stream; `policies` on the policies stream (opaque versions). */
function cluster(...policies: string[]) {
  const a = mirrorAgent('n1');
  a.step('pods', ev('ADDED', server()), ev('ADDED', bad()), ev('MODIFIED', bad()));
  a.step('policies', ...policies);
  return a;
}

describe('3720. versions that are not integers: a replay of another incarnation (3604)', () => {
  // Before (5305e398): the replayed DELETED of deny-bad's first incarnation deleted the live second one (`expected 'allow' to be 'deny'`).
  it('mirror: a replayed DELETED of an older incarnation does not delete the live one', () => {
    const a = cluster(ev('ADDED', allowAll), ev('ADDED', at(denyBad, 'z4', 'd1')), ev('DELETED', at(denyBad, 'z5', 'd1')), ev('ADDED', at(denyBad, 'z8', 'd2')));
    expect(a.verdict('10.0.0.7')).toBe('deny');
    a.step('policies', ev('DELETED', at(denyBad, 'z5', 'd1')));
    expect(a.verdict('10.0.0.7')).toBe('deny');
    // Its own DELETED is taken, on any stream.
    a.step('policies-2', ev('DELETED', at(denyBad, 'z9', 'd2')));
    expect(a.verdict('10.0.0.7')).toBe('allow');
  });
  // Before: the replayed ADDED of allow-x's first incarnation was taken (`expected 'allow' to be 'none'`).
  it('mirror: a replayed ADDED of an older incarnation on the stream that gave the live one, in order, is dropped', () => {
    const a = cluster(ev('ADDED', at(allowXBad, 'z4', 'p1')), ev('DELETED', at(allowXBad, 'z5', 'p1')), ev('ADDED', at(allowXGood, 'z8', 'p2')));
    expect(a.verdict('10.0.0.7')).toBe('none');
    a.step('policies', ev('ADDED', at(allowXBad, 'z4', 'p1')));
    expect(a.verdict('10.0.0.7')).toBe('none');
    a.step('policies', ev('MODIFIED', at(allowXBad, 'z4', 'p1')));
    expect(a.verdict('10.0.0.7')).toBe('none');
    // An update of the live incarnation is taken, held fail-closed (3920) while it is that incarnation: at opaque
    // versions it cannot be told from a replay (33y 3960); its DELETED and a re-creation after it end the hold.
    a.step('policies', ev('MODIFIED', at(allowXBad, 'z10', 'p2')));
    expect(a.verdict('10.0.0.7')).toBe('none');
    expect(a.mirror.streamsAwaitingRelist()).toEqual(['policies']);
    a.step('policies', ev('DELETED', at(allowXBad, 'z11', 'p2')), ev('ADDED', at(allowXBad, 'z12', 'p3')));
    expect(a.verdict('10.0.0.7')).toBe('allow');
    expect(a.mirror.streamsAwaitingRelist()).toEqual([]);
  });
  it('mirror, what is still taken: another incarnation from another stream, or before the stream is in order; integer versions decide', () => {
    // Initial ADDEDs (a watch started without a version) come in any order: the stream is not in order yet.
    const initial = cluster(ev('ADDED', at(allowXGood, 'z8', 'p2')), ev('ADDED', at(allowXBad, 'z9', 'p3')));
    expect(initial.verdict('10.0.0.7')).toBe('allow');
    // Another stream may lag or lead: its incarnation is taken, as before.
    const other = cluster(ev('ADDED', at(allowXGood, 'z8', 'p2')), ev('MODIFIED', at(allowXGood, 'z8', 'p2')));
    other.step('policies-2', ev('ADDED', at(allowXBad, 'z9', 'p3')));
    expect(other.verdict('10.0.0.7')).toBe('allow');
    // Integer versions: a DELETED of another uid newer than the held object shows that one gone too.
    const ints = cluster(ev('ADDED', allowAll), ev('ADDED', at(denyBad, '10', 'd2')));
    ints.step('policies-2', ev('DELETED', at(denyBad, '12', 'd1')));
    expect(ints.verdict('10.0.0.7')).toBe('allow');
  });
  it('mirror: the uid is kept only where versions are opaque (no cost on an etcd-backed server)', () => {
    const a = cluster(ev('ADDED', at(denyBad, '10', 'd2')), ev('ADDED', at(allowXGood, 'z8', 'p2')));
    const states = (a.mirror as unknown as { states: { get(k: string): { uid?: string } | undefined } }).states;
    expect(states.get('CiliumClusterwideNetworkPolicy//deny-bad')?.uid).toBeUndefined();
    expect(states.get('CiliumClusterwideNetworkPolicy//allow-x')?.uid).toBe('p2');
  });

  const g = (rv: string, uid: string, app = 'good'): Obj => at(pod('g', 0, 'n2', app, '10.0.0.9'), rv, uid);
  /** allow-good; a guarded informer of pods listed at `a3` (server alone; later Lists: `relists`). */
  async function informed(relists: Obj[][] = []) {
    const a = mirrorAgent('n1');
    a.step('policies', ev('ADDED', allowGood));
    const inf = await recordedInformer(a.mirror, [[server()], ...relists], ['a3', ...relists.map((_, i) => `a${20 + i}`)], undefined, true);
    return { a, inf };
  }
  // Before: the replay passed the guard and emptied the informer's cache (`expected undefined to be defined`).
  it('guard: a replayed DELETED of an older incarnation stays out of the cache; the live one\'s DELETED is then taken', async () => {
    const { a, inf } = await informed();
    await inf.send('ADDED', g('a4', 'u1'));
    await inf.send('DELETED', g('a5', 'u1'));
    await inf.send('ADDED', g('a8', 'u2'));
    await inf.send('DELETED', g('a5', 'u1'));
    expect(inf.informer.get('g', 'x')).toBeDefined();
    await inf.send('DELETED', g('a12', 'u2'));
    a.step('policies');
    expect(a.verdict('10.0.0.9')).toBe('none');
  });
  // Before: the replayed ADDED of g's first incarnation (app=good) replaced the live one (app=bad): `expected 'allow' to be 'none'`.
  it('guard: a replayed ADDED of an older incarnation makes the informer relist instead of replacing the live one', async () => {
    const live = g('a8', 'u2', 'bad');
    const { a, inf } = await informed([[server(), live]]);
    await inf.send('ADDED', g('a4', 'u1'));
    await inf.send('DELETED', g('a5', 'u1'));
    await inf.send('ADDED', live);
    await inf.send('ADDED', g('a4', 'u1'));
    await inf.send('MODIFIED', g('a4', 'u1'));
    a.step('policies');
    expect(a.verdict('10.0.0.9')).toBe('none');
    // One List per replayed object version (the first List, then one): the MODIFIED repeats the ADDED's u1 at a4
    // against the u2 the List confirmed, dropped (3921).
    expect(inf.lists()).toBe(2);
    expect((inf.informer.get('g', 'x')?.metadata as Obj).uid).toBe('u2');
  });
  it('guard: a ghost a replay left (an object not held: undecidable) is replaced once its name is created again', async () => {
    // Dropping the new incarnation instead of relisting would keep the ghost (app=good) for good.
    const { a, inf } = await informed([[server(), g('a9', 'u2', 'bad')]]);
    await inf.send('ADDED', g('a4', 'u1'));
    await inf.send('ADDED', g('a9', 'u2', 'bad'));
    a.step('policies');
    expect(a.verdict('10.0.0.9')).toBe('none');
    expect((inf.informer.get('g', 'x')?.metadata as Obj).uid).toBe('u2');
  });
});

describe('3721. the guard bounds a watch by the version it started at (3642 for informers)', () => {
  const g = (rv: number): Obj => pod('g', rv, 'n2', 'good', '10.0.0.9');
  // Before: a replay of a pod the informer never held, older than its List, was taken (`expected 'allow' to be 'none'`).
  it('an event at or below the watch\'s start version is dropped, held or not', async () => {
    const a = mirrorAgent('n1');
    a.step('policies', ev('ADDED', allowGood));
    const inf = await recordedInformer(a.mirror, [[server()]], [10], undefined, true);
    expect(inf.watches).toEqual([{ resourceVersion: '10' }]);
    await inf.send('ADDED', g(5));
    await inf.send('ADDED', g(10));
    a.step('policies');
    expect(a.verdict('10.0.0.9')).toBe('none');
    await inf.send('ADDED', g(11));
    a.step('policies');
    expect(a.verdict('10.0.0.9')).toBe('allow');
  });
  it('no bound for a watch started without a version, at "0", or at one that is not an integer', async () => {
    for (const rv of ['', '0', 'a10']) {
      const a = mirrorAgent('n1');
      a.step('policies', ev('ADDED', allowGood));
      const inf = await recordedInformer(a.mirror, [[server()]], [rv], undefined, true);
      await inf.send('ADDED', g(5));
      a.step('policies');
      expect(a.verdict('10.0.0.9')).toBe('allow');
    }
  });
  it('a forced relist is one 410 to the informer: the aborted request\'s own end is not passed on', async () => {
    const ends: unknown[] = [];
    let cb: ((phase: string, obj: unknown) => void) | undefined;
    let end: ((err: unknown) => void) | undefined;
    const watch = replayGuard({ watch: async (_p: string, _q: unknown, c: typeof cb, d: typeof end) => ((cb = c), (end = d), undefined) }, () => at(g(0), 'a3', 'u2'));
    await watch.watch('/p', { resourceVersion: 'a3' }, () => {}, (e) => ends.push(e));
    cb!('ADDED', at(g(0), 'a4', 'u1'));
    cb!('MODIFIED', at(g(0), 'a5', 'u1'));
    end!(new Error('aborted'));
    expect(ends).toHaveLength(1);
    expect((ends[0] as { statusCode: number }).statusCode).toBe(410);
  });
});
