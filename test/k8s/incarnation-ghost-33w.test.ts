import { describe, expect, it } from 'vitest';
import { allowXBad, allowXGood, at, isolate } from './incarnation-objects.js';
import { mirrorAgent } from './mirror-agent.js';
import { ev, pod } from './replay-objects.js';

type Obj = Record<string, unknown>;

function cluster(...policies: string[]) {
  const a = mirrorAgent('n1');
  a.step('pods', ev('ADDED', pod('server', 1, 'n1', 'server', '10.0.0.1')), ev('ADDED', pod('b', 2, 'n2', 'bad', '10.0.0.7')), ev('MODIFIED', pod('b', 2, 'n2', 'bad', '10.0.0.7')));
  a.step('policies', ev('ADDED', isolate), ...policies);
  return a;
}

describe('3920. opaque versions: a replayed incarnation the mirror took (3722/3723) is not kept against the genuine events of the name', () => {
  // Before (4d9ba6e5): the genuine ADDED and DELETED of p2 were dropped as "another incarnation" than the ghost p1, which allowed app=bad for good.
  it('a ghost on the stream itself: the next incarnation and its DELETED do not leave it allowing', () => {
    const a = cluster(ev('ADDED', at(allowXBad, 'z4', 'p1')), ev('DELETED', at(allowXBad, 'z5', 'p1')));
    expect(a.verdict('10.0.0.7')).toBe('none');
    a.step('policies', ev('ADDED', at(allowXBad, 'z4', 'p1'))); // replay of p1 onto the tombstone: taken (3722)
    a.step('policies', ev('ADDED', at(allowXGood, 'z8', 'p2')), ev('DELETED', at(allowXGood, 'z9', 'p2')));
    expect(a.verdict('10.0.0.7')).toBe('none');
    expect(a.mirror.streamsAwaitingRelist()).toContain('policies');
  });
  it('a ghost from another stream: the genuine DELETED of the live incarnation does not leave it allowing', () => {
    const a = cluster(ev('ADDED', at(allowXGood, 'z8', 'p2')), ev('MODIFIED', at(allowXGood, 'z8', 'p2')));
    a.step('policies-2', ev('ADDED', at(allowXBad, 'z4', 'p1'))); // another stream's other incarnation: taken (3723)
    a.step('policies', ev('DELETED', at(allowXGood, 'z9', 'p2')));
    expect(a.verdict('10.0.0.7')).toBe('none');
  });
  it('the stream\'s relist settles the hold: the listed incarnation is in force again', () => {
    const list = (...items: Obj[]): string => JSON.stringify({ apiVersion: 'cilium.io/v2', kind: 'CiliumClusterwideNetworkPolicyList', metadata: { resourceVersion: 'z20' }, items });
    const a = cluster(ev('ADDED', at(allowXBad, 'z4', 'p1')), ev('DELETED', at(allowXBad, 'z5', 'p1')), ev('ADDED', at(allowXBad, 'z4', 'p1')), ev('ADDED', at(allowXGood, 'z8', 'p2')));
    expect(a.verdict('10.0.0.7')).toBe('none');
    a.step('policies', list(isolate, at(allowXBad, 'z10', 'p2')));
    expect(a.mirror.streamsAwaitingRelist()).toEqual([]);
    expect(a.verdict('10.0.0.7')).toBe('allow');
  });
});
