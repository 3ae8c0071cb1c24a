import { describe, expect, it } from 'vitest';
import { mirrorAgent } from './k8s/mirror-agent.js';
import { informedAfterGap, recordedInformer, recreatedGood } from './k8s/recorded-informer.js';
import { pod } from './k8s/replay-objects.js';

type Obj = Record<string, unknown>;
const server = (): Obj => pod('server', 1, 'n1', 'server', '10.0.0.1');
const inNamespace = (p: Obj, ns: string): Obj => ({ ...p, metadata: { ...(p.metadata as Obj), namespace: ns } });
const good = (rv: number | string): Obj => pod('g', Number(rv), 'n2', 'good', '10.0.0.9');
const withVersion = (p: Obj, rv: string): Obj => ({ ...p, metadata: { ...(p.metadata as Obj), resourceVersion: rv } });

/** allow-good; g created (4), deleted (5), created again (8) on an informer built with `replayGuard` or not; its relist: server alone. */
const recreated = (guard: boolean) => recreatedGood(guard, [server()]);

describe('3340. (31w\'s 3203) `replayGuard` keeps replays out of client-node\'s cache', () => {
  // Before (efc2e575): no `replayGuard`; test/attacks-31w.test.ts "3203." and the 3203 property (attacks-31v) fail there.
  it('a replayed older MODIFIED, then the older incarnation\'s DELETED: the cache keeps g at 8, its genuine DELETED is taken', async () => {
    const { a, inf } = await recreated(true);
    // Unguarded, the MODIFIED at 4 would replace g at 8 in the cache, and the DELETED at 5, newer than 4, would pass.
    await inf.send('MODIFIED', good(4));
    await inf.send('DELETED', good(5));
    expect((inf.informer.get('g', 'x')?.metadata as Obj | undefined)?.resourceVersion).toBe('8');
    await inf.send('DELETED', good(12));
    a.step('policies');
    expect(a.verdict('10.0.0.9')).toBe('none');
  });
  it('what the informer must still take: a newer update, a delete at its version, versions that are not integers, a relist', async () => {
    const { a, inf } = await recreated(true);
    await inf.send('MODIFIED', pod('g', 9, 'n2', 'bad', '10.0.0.9'));
    a.step('policies');
    expect(a.verdict('10.0.0.9')).toBe('none');
    await inf.send('DELETED', pod('g', 9, 'n2', 'bad', '10.0.0.9'));
    expect(inf.informer.get('g', 'x')).toBeUndefined();
    await inf.send('ADDED', withVersion(good(0), 'a1'));
    await inf.send('MODIFIED', withVersion(pod('g', 0, 'n2', 'bad', '10.0.0.9'), 'a0'));
    expect((inf.informer.get('g', 'x')?.metadata as Obj | undefined)?.resourceVersion).toBe('a0');
    await inf.send('ADDED', good(20));
    await inf.expire();
    a.step('policies');
    // The relist (server alone, at 3) deletes g.
    expect(a.verdict('10.0.0.9')).toBe('none');
    expect(inf.informer.get('g', 'x')).toBeUndefined();
  });
  // Before: no warning (`expected [] to have a length of 1`); with the guard the replay never reaches the mirror.
  it('an informer built without it: the mirror warns when a replayed DELETED emptied its cache of a live object', async () => {
    const bare = await recreated(false);
    await bare.inf.send('DELETED', good(5));
    expect(bare.warnings.filter((w) => w.includes('replayGuard'))).toHaveLength(1);
    const guarded = await recreated(true);
    await guarded.inf.send('DELETED', good(5));
    expect(guarded.warnings).toEqual([]);
  });
});

describe('3341. two informers of one kind shared the source `informer <kind>` (31v\'s 3048)', () => {
  // Before (efc2e575): both informers fed `informer Pod`, so neither counted as a sole informer and 3040's check of a
  // replay against the stream's forgotten tombstones was off: old came back at evil's address (`expected 'allow' to be 'none'`).
  it('a replay on the second informer of a pod whose tombstone it forgot is dropped', async () => {
    // A first informer of pods (empty), then the second, whose watch gives 2841's gap.
    const { a, inf } = await informedAfterGap([], (mirror) => recordedInformer(mirror, [[]], [2]));
    await inf.send('ADDED', pod('old', 4, 'n2', 'good', '10.0.0.9'));
    a.step('policies');
    expect(a.verdict('10.0.0.9')).toBe('none');
  });
  // Before: the second informer's `connect` cleared the first's failure (`expected [] to deeply equal [ 'informer Pod' ]`).
  it('the first keeps its name; one informer\'s connect does not hide another\'s failure', async () => {
    const a = mirrorAgent('n1');
    const first = await recordedInformer(a.mirror, [[server()]], [3]);
    await first.fail();
    expect(a.mirror.streamsAwaitingRelist()).toEqual(['informer Pod']);
    const second = await recordedInformer(a.mirror, [[inNamespace(pod('h', 4, 'n2', 'good', '10.0.0.7'), 'y')]], [9]);
    expect(a.mirror.streamsAwaitingRelist()).toEqual(['informer Pod']);
    await second.fail();
    expect(a.mirror.streamsAwaitingRelist()).toEqual(['informer Pod', 'informer Pod #2']);
  });
});
