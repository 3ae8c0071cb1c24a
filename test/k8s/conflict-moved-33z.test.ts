import { describe, expect, it } from 'vitest';
import { allowXBad, at, conflictedAgent, isolate } from './incarnation-objects.js';
import { ev } from './replay-objects.js';

const ccnpList = (rv: string, items: Record<string, unknown>[]): string =>
  JSON.stringify({ apiVersion: 'cilium.io/v2', kind: 'CiliumClusterwideNetworkPolicyList', metadata: { resourceVersion: rv }, items });

/** The 3920 conflict on `policies` (ghost p1 allowing app=bad), then p1's replayed MODIFIED from `policies-2`: its state is that stream's now. */
function movedConflict() {
  const a = conflictedAgent();
  a.step('policies-2', ev('MODIFIED', at(allowXBad, 'z6', 'p1')));
  expect(a.verdict('10.0.0.7')).toBe('none');
  return a;
}

describe('3980. a conflict hold whose state another stream set since is settled only by that stream\'s relist', () => {
  // Before (8743a1fa): the List of `policies` settled the hold, which its dropUnlisted does not speak for (p1 is
  // `policies-2`'s): the ghost allowed app=bad, which p1 deleted (both before and after the List) denies: 'allow'.
  it('a List of the kind from the stream that conflicted, lacking p1, keeps p1 held', () => {
    const a = movedConflict();
    a.step('policies', ccnpList('z20', [isolate]));
    expect(a.verdict('10.0.0.7')).toBe('none');
    expect(a.mirror.streamsAwaitingRelist()).toContain('policies-2');
  });
  it('the stream holding p1 now is listed as awaiting a relist, and its List settles it', () => {
    const a = movedConflict();
    expect(a.mirror.streamsAwaitingRelist()).toContain('policies-2');
    a.step('policies-2', ccnpList('z21', []));
    expect(a.verdict('10.0.0.7')).toBe('none');
    expect(a.mirror.streamsAwaitingRelist()).toEqual([]);
  });
  it('a List of the conflicting stream that lists p1 again takes it back and settles the hold', () => {
    const a = movedConflict();
    a.step('policies', ccnpList('z20', [isolate, at(allowXBad, 'z30', 'p1')]));
    expect(a.verdict('10.0.0.7')).toBe('allow');
    expect(a.mirror.streamsAwaitingRelist()).toEqual([]);
  });
});
