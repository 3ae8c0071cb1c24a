import { describe, expect, it } from 'vitest';
import type { EngineEvent } from '../src/engine/events.js';
import { mirrorAgent } from './k8s/mirror-agent.js';
import { informedAfterGap, recordedInformer } from './k8s/recorded-informer.js';
import { allowGood, at, denyEvilAllowCidr, ev, namespace, pod, T0 } from './k8s/replay-objects.js';

type Obj = Record<string, unknown>;
const server = (rv = 1): Obj => pod('server', rv, 'n1', 'server', '10.0.0.1');
const inNamespace = (p: Obj, ns: string): Obj => ({ ...p, metadata: { ...(p.metadata as Obj), namespace: ns } });

describe('3040. an informer stream drops a replay of a deleted object whose tombstone was forgotten (2962)', () => {
  it('the server replays old\'s Running event at 4 on the informer\'s watch: not taken again', async () => {
    const { a, inf } = await informedAfterGap();
    const stale = a.mirror.counts.stale;
    await inf.send('ADDED', pod('old', 4, 'n2', 'good', '10.0.0.9'));
    a.step('policies');
    expect(a.verdict('10.0.0.9')).toBe('none');
    expect(a.mirror.counts.stale).toBe(stale + 1);
  });
  it('the same replayed as a MODIFIED', async () => {
    const { a, inf } = await informedAfterGap();
    await inf.send('MODIFIED', pod('old', 4, 'n2', 'good', '10.0.0.9'));
    a.step('policies');
    expect(a.verdict('10.0.0.9')).toBe('none');
  });
});

describe('3041. (guards of 3040) what an informer must still take', () => {
  it('its relist after a 410: an update and an add in the order of its List, the add older than the update', async () => {
    // g was created in the watch's gap (at 25), server changed after (30): newer than every version the informer gave.
    const { a, inf } = await informedAfterGap([server(30), pod('evil', 6, 'n2', 'bad', '10.0.0.9'), pod('g', 25, 'n2', 'good', '10.0.0.8')]);
    await inf.expire();
    a.step('policies');
    expect([a.verdict('10.0.0.8'), a.verdict('10.0.0.9')]).toEqual(['allow', 'none']);
  });
  it('a second informer of the kind (one per namespace; a source of its own since 3341): its List older than the forgotten tombstone is taken', async () => {
    const { a } = await informedAfterGap();
    await recordedInformer(a.mirror, [[inNamespace(pod('h', 4, 'n2', 'good', '10.0.0.7'), 'y')]], [9]);
    a.step('policies');
    expect(a.verdict('10.0.0.7')).toBe('allow');
  });
});

/**
 * x/server (n1), remote x/evil at 10.0.0.9 past its deadline (held at 255), then y/other claiming 10.0.0.9 with its
 * namespace y, flushed by an engine that refuses every batch upserting namespace y while `refuseY` says so. Returns the
 * identity at 10.0.0.9 after each committed batch.
 */
function claimWhileNamespaceRefused(claimant: Obj, refuseY: () => boolean) {
  let t = T0;
  const a = mirrorAgent('n1', { now: () => t, elapsed: () => t });
  a.step('w', ev('ADDED', namespace('x', 1)), ev('ADDED', at('server', 'x', 2, 'server', '10.0.0.1')), ev('ADDED', at('evil', 'x', 4, 'evil', '10.0.0.9', T0 + 30_000)), ev('ADDED', denyEvilAllowCidr));
  t += 31_000;
  const b = a.mirror.flush();
  a.engine.apply(b.events as EngineEvent[]);
  b.commit();
  const idAt = (): number | undefined => a.engine.ipcache().find((e) => e.prefix === '10.0.0.9/32')?.identity;
  expect(idAt()).toBe(255);
  for (const object of [claimant, namespace('y', 6)]) a.mirror.observe({ type: 'ADDED', object }, 'w');
  const seen: (number | undefined)[] = [];
  for (let i = 0; i < 30 && !a.mirror.idle; i++) {
    const b = a.mirror.flush();
    if (refuseY() && b.events.some((e) => e.type === 'upsertNamespace' && e.name === 'y')) {
      b.rollback();
      continue;
    }
    a.engine.apply(b.events as EngineEvent[]);
    b.commit();
    seen.push(idAt());
  }
  return { a, seen, idAt };
}

describe('3042. an expired pod gives an address up only to a claimant the engine holds (2926)', () => {
  it('the claimant waits for its namespace, which the engine refuses: the address stays at 255, never world', () => {
    const { seen } = claimWhileNamespaceRefused(at('other', 'y', 5, 'other', '10.0.0.9'), () => true);
    // Before: evil's delete committed (other counted, its namespace read) while other waited: no /32 entry, world,
    // which the 10.0.0.0/8 allow admits, though both the cluster before (evil) and after (other) deny it.
    expect(seen.length).toBeGreaterThan(0);
    expect(seen.filter((id) => id !== 255)).toEqual([]);
  });
  it('once the engine takes the namespace, the claimant owns the address', () => {
    let refuse = true;
    const { a, seen, idAt } = claimWhileNamespaceRefused(at('other', 'y', 5, 'other', '10.0.0.9'), () => refuse);
    expect(seen.every((id) => id === 255)).toBe(true);
    refuse = false;
    // Retried when it changes (or after the next commit).
    a.step('w', ev('MODIFIED', namespace('y', 7)));
    const id = idAt();
    expect(id !== undefined && id !== 255 && a.engine.identityLabels(id)?.some((l) => l.key === 'app' && l.value === 'other')).toBe(true);
    // The claimant deleted: the address is evil's again, fail-closed.
    a.step('w', ev('DELETED', at('other', 'y', 9, 'other', '10.0.0.9')));
    expect(idAt()).toBe(255);
  });
});

describe('3044. an informer\'s relist deletes the older version a replay left in its cache', () => {
  it('g\'s older MODIFIED replayed (dropped by the mirror, kept by the informer), g deleted in a watch gap: the relist deletes it', async () => {
    const a = mirrorAgent('n1');
    a.step('policies', ev('ADDED', allowGood));
    const inf = await recordedInformer(a.mirror, [[server(), pod('g', 2, 'n2', 'good', '10.0.0.9')], [server()]], [3, 6]);
    await inf.send('MODIFIED', pod('g', 4, 'n2', 'good', '10.0.0.9'));
    await inf.send('MODIFIED', pod('g', 2, 'n2', 'good', '10.0.0.9'));
    a.step('policies');
    expect(a.verdict('10.0.0.9')).toBe('allow');
    // g deleted at 5 while the watch was gone: the informer's relist deletes the g it holds, at 2.
    await inf.expire();
    a.step('policies');
    // Before: the delete, older than the mirror's g (4), was dropped as stale: g stayed for good.
    expect(a.verdict('10.0.0.9')).toBe('none');
  });
});

describe('3045. a replay on another stream of the kind than the one whose delete was kept last (2963)', () => {
  const old = (rv: number): Obj => pod('old', rv, 'n2', 'good', '10.0.0.9');
  /** pods-x (namespace x) gives old's life and evil, then pods (every namespace, lagging) the same; tmp forgets old's tombstone. */
  function twoStreams(podsFirst: string[]) {
    const a = mirrorAgent('n1', { maxTombstones: 1 });
    a.step('policies', ev('ADDED', allowGood));
    a.step('pods', ev('ADDED', server()));
    a.step('pods-x', ...podsFirst);
    a.step('pods', ev('ADDED', pod('old', 2, 'n2', 'good')), ev('MODIFIED', old(4)), ev('DELETED', old(5)), ev('ADDED', pod('evil', 6, 'n2', 'bad', '10.0.0.9')));
    a.step('pods', ev('ADDED', pod('tmp', 7, 'n2', 'bad')), ev('DELETED', pod('tmp', 8, 'n2', 'bad')));
    expect(a.verdict('10.0.0.9')).toBe('none');
    return a;
  }
  it('pods-x had shown the delete (and more) when pods buried it: old\'s MODIFIED at 4 replayed on pods-x stays dropped', () => {
    const a = twoStreams([ev('ADDED', pod('old', 2, 'n2', 'good')), ev('MODIFIED', old(4)), ev('DELETED', old(5)), ev('ADDED', pod('evil', 6, 'n2', 'bad', '10.0.0.9'))]);
    a.step('pods-x', ev('MODIFIED', old(4)));
    // Before: the tombstone's bound was kept for pods only: old came back at evil's address, admitted by allow-good.
    expect(a.verdict('10.0.0.9')).toBe('none');
  });
  it('(guard) pods-x lagging behind the delete takes a pod of its own older than it', () => {
    const a = twoStreams([ev('ADDED', pod('old', 2, 'n2', 'good')), ev('MODIFIED', pod('h', 3, 'n2', 'bad', '10.0.0.8'))]);
    a.step('pods-x', ev('ADDED', pod('g', 4, 'n2', 'good', '10.0.0.7')));
    expect(a.verdict('10.0.0.7')).toBe('allow');
  });
});
