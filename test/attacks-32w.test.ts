import { describe, expect, it } from 'vitest';
import { mirrorAgent } from './k8s/mirror-agent.js';
import { ev, expired as ERROR, pod } from './k8s/replay-objects.js';

type Obj = Record<string, unknown>;
const CCNP = { apiVersion: 'cilium.io/v2', kind: 'CiliumClusterwideNetworkPolicy' };
const serverNs = { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'x', resourceVersion: '1', labels: {} } };
const pol = (name: string, rv: number, rule: Obj): Obj => ({ ...CCNP, metadata: { name, resourceVersion: String(rv) }, spec: { endpointSelector: { matchLabels: { app: 'server' } }, ...rule } });
const denyB = (rv: number): Obj => pol('deny-b', rv, { ingressDeny: [{ fromEndpoints: [{ matchLabels: { app: 'b' } }] }] });
const allowA = (rv: number): Obj => pol('allow-a', rv, { ingress: [{ fromEndpoints: [{ matchLabels: { app: 'a' } }] }] });
const allowAll = (rv: number): Obj => pol('allow-all', rv, { ingress: [{ fromEntities: ['all'] }] });
const endAt = (rv: number): string => ev('BOOKMARK', { ...CCNP, metadata: { resourceVersion: String(rv), annotations: { 'k8s.io/initial-events-end': 'true' } } });
const polList = (rv: number, items: Obj[]): string => JSON.stringify({ kind: 'CiliumClusterwideNetworkPolicyList', apiVersion: 'cilium.io/v2', metadata: { resourceVersion: String(rv) }, items });

/** x/server on n1, peer c0 (app `peerApp`) at 10.0.1.1 on n2; the policy stream first gives `first` (lines). */
function agent(maxTombstones: number | undefined, peerApp: string, first: string[]): ReturnType<typeof mirrorAgent> {
  const a = mirrorAgent('n1', maxTombstones === undefined ? {} : { maxTombstones });
  a.step('ns', ev('ADDED', serverNs));
  a.step('pods', ev('ADDED', pod('server', 2, 'n1', 'server', '10.0.0.1')), ev('ADDED', pod('c0', 3, 'n2', peerApp, '10.0.1.1')));
  if (first.length > 0) a.step('pol', ...first);
  return a;
}

/*
 * 3640: a policy created at 11 and deleted at 12 that the policy stream never gave; the stream relists at 12 (a
 * watch-list's initial events, or a List), which shows every policy there is at 12: not it. A replay of its ADDED at 11
 * after that is of an object that no longer existed at 12 (a later write would have a version above 12 and be in the
 * view): it must be dropped, whatever tombstones are kept, as the mirror never had one for it.
 */
const views: Array<[string, (lines: string[]) => string[]]> = [
  ['a watch-list ending at 12', (kept) => [ERROR, ...kept, endAt(12)]],
  ['a List at 12', (kept) => [ERROR, polList(12, kept.map((l) => (JSON.parse(l) as { object: Obj }).object))]],
];

describe('3640. a replayed ADDED of an object absent from its stream\'s whole view at a newer version is dropped', () => {
  for (const [what, view] of views) {
    for (const bound of [0, undefined]) {
      const tomb = bound === undefined ? 'default tombstones' : 'no tombstone kept';
      it(`after ${what}, ${tomb}: a replayed deny stays out (28d's counterexample: none for allow)`, () => {
        const a = agent(bound, 'a', []);
        a.step('pol', ...view([]));
        expect(a.verdict('10.0.1.1')).toBe('allow');
        const stale = a.mirror.counts.stale;
        a.step('pol', ev('ADDED', denyB(11)), ev('ADDED', pol('deny-a', 11, { ingressDeny: [{ fromEndpoints: [{ matchLabels: { app: 'a' } }] }] })));
        expect(a.verdict('10.0.1.1')).toBe('allow');
        expect(a.mirror.counts.stale).toBe(stale + 2);
      });
      it(`after ${what}, ${tomb}: a replayed allow-all allows no flow both policies deny`, () => {
        const a = agent(bound, 'b', []);
        a.step('pol', ...view([ev('ADDED', allowA(5))]));
        expect(a.verdict('10.0.1.1')).toBe('none');
        a.step('pol', ev('ADDED', allowAll(11)));
        expect(a.verdict('10.0.1.1')).toBe('none');
      });
    }
  }
});

describe('3641. (guards of 3640) what must still be taken', () => {
  it('an object newer than the view, even out of order after a newer event', () => {
    const a = agent(0, 'b', []);
    a.step('pol', ...views[0]![1]([ev('ADDED', allowA(5))]));
    a.step('pol', ev('ADDED', denyB(15)), ev('ADDED', allowAll(13)));
    expect(a.verdict('10.0.1.1')).toBe('deny');
    a.step('pol', ev('DELETED', denyB(16)));
    expect(a.verdict('10.0.1.1')).toBe('allow');
  });
  it('an object the view listed, changed after it', () => {
    const a = agent(0, 'b', []);
    a.step('pol', ...views[1]![1]([ev('ADDED', allowA(5))]));
    a.step('pol', ev('MODIFIED', pol('allow-a', 13, { ingress: [{ fromEndpoints: [{ matchLabels: { app: 'b' } }] }] })));
    expect(a.verdict('10.0.1.1')).toBe('allow');
  });
  it('on another stream, which showed no view: the same event at 11 is its initial state', () => {
    const a = agent(0, 'b', []);
    a.step('pol', ...views[0]![1]([]));
    a.step('pol2', ev('ADDED', allowAll(11)));
    expect(a.verdict('10.0.1.1')).toBe('allow');
  });
  it('after the stream ended: a watch under its name later is another one', () => {
    const a = agent(0, 'b', []);
    a.step('pol', ...views[0]![1]([]));
    a.mirror.endStream('pol');
    a.step('pol', ev('ADDED', allowAll(11)));
    expect(a.verdict('10.0.1.1')).toBe('allow');
  });
});
