import { describe, expect, it } from 'vitest';
import { mirrorAgent } from './k8s/mirror-agent.js';
import { recordedInformer } from './k8s/recorded-informer.js';
import { allowGood, ev, pod } from './k8s/replay-objects.js';

type Obj = Record<string, unknown>;
const server = (rv = 1): Obj => pod('server', rv, 'n1', 'server', '10.0.0.1');
const inNamespace = (p: Obj, ns: string): Obj => ({ ...p, metadata: { ...(p.metadata as Obj), namespace: ns } });

/**
 * allow-good, and one client-node informer of pods (a List at 3 of server and old, Pending) feeding the mirror;
 * `relist`: what its List after a 410 gives (at 40).
 */
async function informed(relist: Obj[] = []) {
  const a = mirrorAgent('n1', { maxTombstones: 1 });
  a.step('policies', ev('ADDED', allowGood));
  const inf = await recordedInformer(a.mirror, [[server(), pod('old', 2, 'n2', 'good')], relist], [3, 40]);
  // 2841's gap on the informer's watch: old runs at 10.0.0.9, is deleted, evil takes the address.
  await inf.send('MODIFIED', pod('old', 4, 'n2', 'good', '10.0.0.9'));
  await inf.send('DELETED', pod('old', 5, 'n2', 'good', '10.0.0.9'));
  await inf.send('ADDED', pod('evil', 6, 'n2', 'bad', '10.0.0.9'));
  // One more delete: with the bound at 1 its tombstone evicts old's.
  await inf.send('ADDED', pod('tmp', 7, 'n2', 'bad'));
  await inf.send('DELETED', pod('tmp', 8, 'n2', 'bad'));
  a.step('policies');
  expect(a.verdict('10.0.0.9')).toBe('none');
  return { a, inf };
}

describe('3040. an informer stream drops a replay of a deleted object whose tombstone was forgotten (2962)', () => {
  it('the server replays old\'s Running event at 4 on the informer\'s watch: not taken again', async () => {
    const { a, inf } = await informed();
    const stale = a.mirror.counts.stale;
    await inf.send('ADDED', pod('old', 4, 'n2', 'good', '10.0.0.9'));
    a.step('policies');
    expect(a.verdict('10.0.0.9')).toBe('none');
    expect(a.mirror.counts.stale).toBe(stale + 1);
  });
  it('the same replayed as a MODIFIED', async () => {
    const { a, inf } = await informed();
    await inf.send('MODIFIED', pod('old', 4, 'n2', 'good', '10.0.0.9'));
    a.step('policies');
    expect(a.verdict('10.0.0.9')).toBe('none');
  });
});

describe('3041. (guards of 3040) what an informer must still take', () => {
  it('its relist after a 410: an update and an add in the order of its List, the add older than the update', async () => {
    // g was created in the watch's gap (at 25), server changed after (30): newer than every version the informer gave.
    const { a, inf } = await informed([server(30), pod('evil', 6, 'n2', 'bad', '10.0.0.9'), pod('g', 25, 'n2', 'good', '10.0.0.8')]);
    await inf.expire();
    a.step('policies');
    expect([a.verdict('10.0.0.8'), a.verdict('10.0.0.9')]).toEqual(['allow', 'none']);
  });
  it('a second informer of the kind (one per namespace) shares the source: its List older than the forgotten tombstone is taken', async () => {
    const { a } = await informed();
    await recordedInformer(a.mirror, [[inNamespace(pod('h', 4, 'n2', 'good', '10.0.0.7'), 'y')]], [9]);
    a.step('policies');
    expect(a.verdict('10.0.0.7')).toBe('allow');
  });
});
