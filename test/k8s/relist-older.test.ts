import { describe, expect, it } from 'vitest';
import { mirrorAgent } from './mirror-agent.js';

/**
 * Finding 1750 (docs/attack-findings-23a.md): a relist (a List, a watch-list's initial events at
 * their end bookmark) at a resourceVersion older than what its stream already showed was taken:
 * it deleted what was created after it and brought back versions replaced after it. client-go
 * relists "with a resource version no older than has already been observed in relist results or
 * watch events" (tools/cache/reflector.go `relistResourceVersion`) and the API server answers
 * "not older than" it (API concepts, "Resource versions": `resourceVersionMatch=NotOlderThan`), so
 * only a source gone back in time gives one (a lagging API server replica behind a load balancer
 * answering `resourceVersion=0` from its watch cache, a replayed recording). Every case fails on 94c6f52;
 * the last also on the first 1750 fix, which applied the held events before it refused their bookmark.
 */
type Obj = Record<string, unknown>;
const ev = (type: string, object: Obj): string => JSON.stringify({ type, object });
const pod = (name: string, node: string, ip: string, app: string): Obj => ({ apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: 'x', resourceVersion: '1', labels: { app } }, spec: { nodeName: node, containers: [] }, status: { phase: 'Running', podIP: ip } });
const ccnp = (name: string, rv: number, spec: Obj): Obj => ({ apiVersion: 'cilium.io/v2', kind: 'CiliumClusterwideNetworkPolicy', metadata: { name, resourceVersion: String(rv) }, spec: { endpointSelector: { matchLabels: { app: 'server' } }, ...spec } });
const allowFrom = (rv: number, app: string): Obj => ccnp('allow', rv, { ingress: [{ fromEndpoints: [{ matchLabels: { app } }] }] });
const denyB = (rv: number): Obj => ccnp('deny-b', rv, { ingressDeny: [{ fromEndpoints: [{ matchLabels: { app: 'b' } }] }] });
const expired = ev('ERROR', { kind: 'Status', apiVersion: 'v1', status: 'Failure', reason: 'Expired', code: 410 });
const endBookmark = (rv: number): string => ev('BOOKMARK', { apiVersion: 'cilium.io/v2', kind: 'CiliumClusterwideNetworkPolicy', metadata: { resourceVersion: String(rv), annotations: { 'k8s.io/initial-events-end': 'true' } } });
const typedList = (rv: number, items: Obj[]): string => JSON.stringify({ kind: 'CiliumClusterwideNetworkPolicyList', apiVersion: 'cilium.io/v2', metadata: { resourceVersion: String(rv) }, items });
/** As `kubectl get -o json` prints a list: a plain List whose resourceVersion is empty. */
const kubectlList = (items: Obj[]): string => JSON.stringify({ kind: 'List', apiVersion: 'v1', metadata: { resourceVersion: '' }, items });

function cluster() {
  const a = mirrorAgent();
  a.step('pods', ev('ADDED', pod('server', 'n1', '10.0.0.1', 'server')), ev('ADDED', pod('client', 'n2', '10.0.0.9', 'b')));
  a.step('policies', ev('ADDED', allowFrom(10, 'b')));
  expect(a.verdict('10.0.0.9')).toBe('allow');
  return a;
}

describe('a relist older than what its stream showed is refused (1750)', () => {
  it('1750. a List at 30 does not delete deny-b, created at 45: the client stays denied', () => {
    const a = cluster();
    a.step('policies', ev('ADDED', denyB(45)));
    expect(a.verdict('10.0.0.9')).toBe('deny');
    a.step('policies', expired, typedList(30, [allowFrom(10, 'b')]));
    expect(a.verdict('10.0.0.9')).toBe('deny');
    expect(a.mirror.streamsAwaitingRelist()).toEqual(['policies']);
    // A List not older than the stream's view applies (deny-b deleted since).
    a.step('policies', typedList(60, [allowFrom(10, 'b')]));
    expect(a.verdict('10.0.0.9')).toBe('allow');
    expect(a.mirror.streamsAwaitingRelist()).toEqual([]);
  });

  it('1750. a List at 30 does not bring back allow\'s version 10 (admitting app=b), replaced at 40 by one admitting app=zzz', () => {
    const a = cluster();
    a.step('policies', ev('MODIFIED', allowFrom(40, 'zzz')));
    expect(a.verdict('10.0.0.9')).toBe('none');
    a.step('policies', typedList(30, [allowFrom(10, 'b')]));
    expect(a.verdict('10.0.0.9')).toBe('none');
  });

  it('1750. initial events ending at a bookmark at 30 do not delete deny-b, created at 45', () => {
    const a = cluster();
    a.step('policies', ev('ADDED', denyB(45)));
    a.step('policies', expired, ev('ADDED', allowFrom(10, 'b')), endBookmark(30));
    expect(a.verdict('10.0.0.9')).toBe('deny');
    expect(a.mirror.streamsAwaitingRelist()).toEqual(['policies']);
    // The next watch-list, not older, applies.
    a.step('policies', ev('ADDED', allowFrom(10, 'b')), endBookmark(70));
    expect(a.verdict('10.0.0.9')).toBe('allow');
    expect(a.mirror.streamsAwaitingRelist()).toEqual([]);
  });

  it('1750. a kubectl List (no resourceVersion) listing allow at 10, after the stream showed it at 40, is refused whole', () => {
    const a = cluster();
    a.step('policies', ev('MODIFIED', allowFrom(40, 'zzz')), ev('ADDED', denyB(45)));
    a.step('policies', ev('DELETED', denyB(46)));
    expect(a.verdict('10.0.0.9')).toBe('none');
    a.step('policies', kubectlList([allowFrom(10, 'b')]));
    expect(a.verdict('10.0.0.9')).toBe('none');
    expect(a.mirror.streamsAwaitingRelist()).toEqual(['policies']);
  });

  it('1750. a List on another stream lagging behind does not bring back the version a newer stream gave', () => {
    const a = cluster();
    a.step('policies-new', ev('MODIFIED', allowFrom(40, 'zzz')));
    expect(a.verdict('10.0.0.9')).toBe('none');
    a.step('policies-old', typedList(25, [allowFrom(10, 'b')]));
    expect(a.verdict('10.0.0.9')).toBe('none');
    expect(a.mirror.streamsAwaitingRelist()).toEqual([]);
  });

  it('1750. initial events holding a version newer than their end bookmark are refused whole (none of them applies)', () => {
    const a = cluster();
    a.step('policies', ev('MODIFIED', allowFrom(40, 'zzz')));
    expect(a.verdict('10.0.0.9')).toBe('none');
    a.step('policies', expired, ev('ADDED', allowFrom(50, 'b')), endBookmark(48));
    expect(a.verdict('10.0.0.9')).toBe('none');
    expect(a.mirror.streamsAwaitingRelist()).toEqual(['policies']);
  });
});
