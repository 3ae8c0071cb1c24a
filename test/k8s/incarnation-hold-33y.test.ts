import { describe, expect, it } from 'vitest';
import { allowXBad, at, conflictedAgent, isolate } from './incarnation-objects.js';
import { mirrorAgent } from './mirror-agent.js';
import { recordedInformer } from './recorded-informer.js';
import { allowGood, ev, pod } from './replay-objects.js';

type Obj = Record<string, unknown>;

/** The 3920 conflict (`conflictedAgent`): p1 held fail-closed. */
function conflicted() {
  const a = conflictedAgent();
  expect(a.verdict('10.0.0.7')).toBe('none');
  return a;
}

describe('3960. the 3920 hold does not end before the held incarnation is confirmed', () => {
  // Before (5aa77205): the replayed MODIFIED of p1 at another opaque version changed the state's version, which ended the hold: 'allow'.
  it('a replayed event of the held incarnation at another version keeps it held', () => {
    const a = conflicted();
    a.step('policies', ev('MODIFIED', at(allowXBad, 'z6', 'p1')));
    expect(a.verdict('10.0.0.7')).toBe('none');
    expect(a.mirror.streamsAwaitingRelist()).toContain('policies');
  });
  it('the same replay from another stream keeps it held', () => {
    const a = conflicted();
    a.step('policies-2', ev('MODIFIED', at(allowXBad, 'z6', 'p1')));
    expect(a.verdict('10.0.0.7')).toBe('none');
  });
  it('its DELETED still removes it, and the name\'s next incarnation is in force unheld', () => {
    const a = conflicted();
    a.step('policies', ev('DELETED', at(allowXBad, 'z6', 'p1')), ev('ADDED', at(allowXBad, 'z12', 'p3')));
    expect(a.verdict('10.0.0.7')).toBe('allow');
    expect(a.mirror.streamsAwaitingRelist()).toEqual([]);
  });
});

describe('3961. a relist that does not speak for the held object\'s kind does not settle its hold', () => {
  // Before (5aa77205): a typed CiliumNetworkPolicyList on the stream settled the CCNP's hold: 'allow'.
  it('a typed list of another kind on the stream', () => {
    const a = conflicted();
    a.step('policies', JSON.stringify({ apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicyList', metadata: { resourceVersion: 'z20' }, items: [] }));
    expect(a.verdict('10.0.0.7')).toBe('none');
    expect(a.mirror.streamsAwaitingRelist()).toContain('policies');
  });
  it('a List of its kind settles it (3920)', () => {
    const a = conflicted();
    a.step('policies', JSON.stringify({ apiVersion: 'cilium.io/v2', kind: 'CiliumClusterwideNetworkPolicyList', metadata: { resourceVersion: 'z20' }, items: [isolate, at(allowXBad, 'z10', 'p2')] }));
    expect(a.verdict('10.0.0.7')).toBe('allow');
    expect(a.mirror.streamsAwaitingRelist()).toEqual([]);
  });
});

describe('3962 (held). guard: a replay it relisted for comes back genuine after a List that did not confirm the held one', () => {
  const gp = (rv: string, uid: string, app: string): Obj => {
    const p = pod('g', 0, 'n2', app, '10.0.0.9');
    return { ...p, metadata: { ...(p.metadata as Obj), resourceVersion: rv, uid } };
  };
  it('the List lacks the held object: the same uid and version pass into the cache', async () => {
    const a = mirrorAgent('n1');
    a.step('policies', ev('ADDED', allowGood));
    const server = pod('server', 1, 'n1', 'server', '10.0.0.1');
    const inf = await recordedInformer(a.mirror, [[server, gp('a8', 'u2', 'bad')], [server]], ['a9', 'a20'], undefined, true);
    await inf.send('ADDED', gp('a4', 'u1', 'good'));
    expect(inf.lists()).toBe(2);
    await inf.send('ADDED', gp('a4', 'u1', 'good'));
    expect(inf.lists()).toBe(2);
    expect((inf.informer.get('g', 'x')?.metadata as Obj).uid).toBe('u1');
    a.step('policies');
    expect(a.verdict('10.0.0.9')).toBe('allow');
  });
});
