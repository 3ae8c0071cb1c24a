import { describe, expect, it } from 'vitest';
import type { EngineEvent } from '../src/engine/events.js';
import { parseIp } from '../src/model/cidr.js';
import { mirrorAgent } from './k8s/mirror-agent.js';
import { recordedInformer } from './k8s/recorded-informer.js';
import { allowGood, at, denyEvilAllowCidr, ev, forgetLastTombstone, namespace, pod, T0 } from './k8s/replay-objects.js';

type Obj = Record<string, unknown>;

/**
 * x/server (n1); remote x/evil at 10.0.0.9 past its deadline (held at 255); then `claimant` (app=evil, denied) takes
 * 10.0.0.9, so evil gives it up. A batch of two unrelated pods is refused once (retried in halves: at most one object,
 * then two, per flush), and `leave` (the claimant's delete, move or namespace delete) comes meanwhile. Returns the
 * identity at 10.0.0.9 after each batch committed from then on.
 */
function claimantLeavesWhileHalving(claimant: Obj, leave: string[]) {
  let t = T0;
  const a = mirrorAgent('n1', { now: () => t, elapsed: () => t });
  a.step('w', ev('ADDED', namespace('x', 1)), ev('ADDED', namespace('y', 2)), ev('ADDED', at('server', 'x', 2, 'server', '10.0.0.1')), ev('ADDED', at('evil', 'x', 4, 'evil', '10.0.0.9', T0 + 30_000)), ev('ADDED', denyEvilAllowCidr));
  t += 31_000;
  const idAt = (): number | undefined => a.engine.ipcache().find((e) => e.prefix === '10.0.0.9/32')?.identity;
  const b = a.mirror.flush();
  a.engine.apply(b.events as EngineEvent[]);
  b.commit();
  expect(idAt()).toBe(255);
  a.step('w', ev('ADDED', claimant));
  const claimed = idAt();
  expect(claimed !== undefined && claimed !== 255).toBe(true);
  for (const object of [at('a1', 'x', 20, 'a', '10.0.0.21'), at('a2', 'x', 21, 'a', '10.0.0.22')]) a.mirror.observe({ type: 'ADDED', object }, 'w');
  const refused = a.mirror.flush();
  expect(refused.events.length).toBe(2);
  refused.rollback();
  for (const line of leave) a.mirror.observe(JSON.parse(line) as never, 'w');
  // What the datapath reads for 10.0.0.9 (the longest prefix holding it) to x/server on 80/TCP.
  const verdict = (): string => (a.engine.lookup('x/server', a.engine.identityOfIp(parseIp('10.0.0.9')), 'ingress', 6, 80)?.entry.deny === false ? 'allow' : 'deny');
  expect(verdict()).toBe('deny');
  const seen: { id: number | undefined; verdict: string }[] = [];
  for (let i = 0; i < 30 && !a.mirror.idle; i++) {
    const b = a.mirror.flush();
    a.engine.apply(b.events as EngineEvent[]);
    b.commit();
    seen.push({ id: idAt(), verdict: verdict() });
  }
  expect(a.mirror.idle).toBe(true);
  return seen;
}

describe('3200. a claimant leaving an expired pod\'s address commits apart from the expired pod\'s take-back', () => {
  // Before (0c025669): a batch of a2 and the claimant's delete commits while evil waits for the next flush (the
  // halving's limit): 10.0.0.9 has no entry, world, admitted by the 10.0.0.0/8 allow, though both the cluster before
  // (the claimant, app=evil) and after (evil, held at 255) deny it.
  it('the claimant deleted', () => {
    const seen = claimantLeavesWhileHalving(at('other', 'y', 10, 'evil', '10.0.0.9'), [ev('DELETED', at('other', 'y', 30, 'evil', '10.0.0.9'))]);
    expect(seen.length).toBeGreaterThan(0);
    expect(seen.filter((s) => s.id === undefined || s.verdict !== 'deny')).toEqual([]);
    expect(seen.at(-1)?.id).toBe(255);
  });
  it('the claimant moved to another address', () => {
    const seen = claimantLeavesWhileHalving(at('other', 'y', 10, 'evil', '10.0.0.9'), [ev('MODIFIED', at('other', 'y', 30, 'evil', '10.0.0.30'))]);
    expect(seen.filter((s) => s.id === undefined || s.verdict !== 'deny')).toEqual([]);
    expect(seen.at(-1)?.id).toBe(255);
  });
  it('the claimant\'s namespace deleted', () => {
    const seen = claimantLeavesWhileHalving(at('other', 'y', 10, 'evil', '10.0.0.9'), [ev('DELETED', namespace('y', 30))]);
    expect(seen.filter((s) => s.id === undefined || s.verdict !== 'deny')).toEqual([]);
    expect(seen.at(-1)?.id).toBe(255);
  });
});

describe('3201. the streams carrying each kind and namespace (3045\'s `carriers`) are kept for namespaces long gone', () => {
  it('2,000 namespaces created and deleted, each with a pod: what is kept of them stays bounded', () => {
    const a = mirrorAgent('n1');
    for (let i = 0; i < 2000; i++) {
      const ns = `ci-${i}`;
      const p = at('job', ns, 10 * i + 3, 'job', `10.2.${i >> 8}.${i & 255}`);
      a.mirror.observe({ type: 'ADDED', object: namespace(ns, 10 * i + 2) }, 'w');
      a.mirror.observe({ type: 'ADDED', object: p }, 'w');
      a.mirror.observe({ type: 'DELETED', object: { ...p, metadata: { ...(p.metadata as Obj), resourceVersion: String(10 * i + 4) } } }, 'w');
      a.mirror.observe({ type: 'DELETED', object: namespace(ns, 10 * i + 5) }, 'w');
    }
    // Before: one entry per kind and namespace ever seen (2,001 here), never removed: memory grows with namespace churn
    // (a CI cluster creates a namespace per job) however small `maxTombstones` is.
    const versions = (a.mirror as unknown as { versions: { carriers: ReadonlyMap<string, unknown> } }).versions;
    expect(versions.carriers.size).toBeLessThanOrEqual(2);
  });
});

describe('3202. a delete of an object with no state leaves a tombstone below its stream\'s forgotten bound', () => {
  it('informer: g\'s replayed MODIFIED at 4 dropped (bound 7) but cached; the relist deletes g at 4; g\'s MODIFIED at 6 replayed', async () => {
    const a = mirrorAgent('n1', { maxTombstones: 1 });
    a.step('policies', ev('ADDED', allowGood));
    const inf = await recordedInformer(a.mirror, [[pod('server', 1, 'n1', 'server', '10.0.0.1')], [pod('server', 1, 'n1', 'server', '10.0.0.1'), pod('evil', 8, 'n2', 'bad', '10.0.0.9')]], [3, 20]);
    await inf.send('ADDED', pod('g', 4, 'n2', 'good', '10.0.0.9'));
    await inf.send('MODIFIED', { ...pod('g', 6, 'n2', 'good', '10.0.0.9'), spec: { nodeName: 'n2', containers: [{ name: 'c', image: 'j' }] } });
    await inf.send('DELETED', pod('g', 7, 'n2', 'good', '10.0.0.9'));
    await inf.send('ADDED', pod('evil', 8, 'n2', 'bad', '10.0.0.9'));
    // One more delete: with the bound at 1, g's tombstone is forgotten (the stream's bound is 7).
    await forgetLastTombstone(inf.send, 9);
    a.step('policies');
    expect(a.verdict('10.0.0.9')).toBe('none');
    // The server replays g's ADDED at 4: the mirror drops it (3040), client-node's cache takes it.
    await inf.send('ADDED', pod('g', 4, 'n2', 'good', '10.0.0.9'));
    a.step('policies');
    expect(a.verdict('10.0.0.9')).toBe('none');
    // A 410: the relist (server, evil) deletes the g the informer holds, at 4.
    await inf.expire();
    a.step('policies');
    expect(a.verdict('10.0.0.9')).toBe('none');
    // The server replays g's MODIFIED at 6. Before: newer than g's new tombstone (4), taken: g back at evil's address.
    await inf.send('MODIFIED', { ...pod('g', 6, 'n2', 'good', '10.0.0.9'), spec: { nodeName: 'n2', containers: [{ name: 'c', image: 'j' }] } });
    a.step('policies');
    expect(a.verdict('10.0.0.9')).toBe('none');
  });
});

describe('3203. a replayed DELETED of an older incarnation empties the informer\'s cache of the live object', () => {
  const allowBad = (rv: number): Obj => ({
    apiVersion: 'cilium.io/v2',
    kind: 'CiliumNetworkPolicy',
    metadata: { name: 'allow-bad', namespace: 'x', resourceVersion: String(rv) },
    spec: { endpointSelector: { matchLabels: { app: 'server' } }, ingress: [{ fromEndpoints: [{ matchLabels: { app: 'bad' } }] }] },
  });
  // Fixed in 32b (docs/attack-findings-32b.md): the informer built with `replayGuard`, the stale DELETED never
  // reaches client-node's cache. Before (efc2e575, guard absent): `expected undefined to be defined` at the cache check,
  // and without that check `expected 'allow' to be 'none'` at the end.
  // x/server stays selected by allow-good (app=good only): without a policy it would admit everything.
  it('the live incarnation\'s genuine DELETED then gives no callback: the deleted allow stays in force', async () => {
    const a = mirrorAgent('n1');
    a.step('pods', ev('ADDED', allowGood), ev('ADDED', pod('server', 1, 'n1', 'server', '10.0.0.1')), ev('ADDED', pod('bad', 2, 'n2', 'bad', '10.0.0.9')));
    expect(a.verdict('10.0.0.9')).toBe('none');
    // An informer (client-node ListWatch) of CiliumNetworkPolicies: allow-bad created, deleted, created again.
    const inf = await recordedInformer(a.mirror, [[]], [3], undefined, true);
    await inf.send('ADDED', allowBad(4));
    await inf.send('DELETED', allowBad(5));
    await inf.send('ADDED', allowBad(8));
    a.step('pods');
    expect(a.verdict('10.0.0.9')).toBe('allow');
    // The server replays the first incarnation's DELETED: stale for the mirror; before, client-node's cache dropped allow-bad.
    await inf.send('DELETED', allowBad(5));
    a.step('pods');
    expect(a.verdict('10.0.0.9')).toBe('allow');
    expect(inf.informer.get('allow-bad', 'x')).toBeDefined();
    // allow-bad deleted for good: before, client-node did not hold it, so it called nothing (dist/cache.js `deleteObject`).
    await inf.send('DELETED', allowBad(12));
    // Any later input: the cluster before and after it has no allow-bad, so bad → x/server is denied.
    a.step('pods', ev('MODIFIED', pod('server', 13, 'n1', 'server', '10.0.0.1')));
    expect(a.verdict('10.0.0.9')).toBe('none');
  });
});
