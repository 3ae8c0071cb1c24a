import { describe, expect, it } from 'vitest';
import { mirrorAgent } from './mirror-agent.js';

/**
 * Finding 1644 (docs/attack-findings-22w.md): a relist (an initial-events-end bookmark, a List)
 * deletes what it does not list and keeps the object's resourceVersion, so an event older than the
 * object's last one is dropped as stale. It kept the relist's version even when that was older than
 * the object's own (a resourceVersion going backwards: a hostile or broken server or recorder; the
 * API server's watch-list and List answer "not older than" the version asked), so a replayed event
 * between the two brought a deleted allow back. Since 1750 (docs/attack-findings-23a.md) such a
 * relist is refused whole: the state seen at the newer version stays and the replay is still dropped.
 */
type Obj = Record<string, unknown>;
const ev = (type: string, object: Obj): string => JSON.stringify({ type, object });
const pod = (name: string, node: string, ip: string, app: string): Obj => ({ apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: 'x', resourceVersion: '1', labels: { app } }, spec: { nodeName: node, containers: [] }, status: { phase: 'Running', podIP: ip } });
const allowFrom = (name: string, rv: number, app: string): Obj => ({
  apiVersion: 'cilium.io/v2',
  kind: 'CiliumClusterwideNetworkPolicy',
  metadata: { name, resourceVersion: String(rv) },
  spec: { endpointSelector: { matchLabels: { app: 'server' } }, ingress: [{ fromEndpoints: [{ matchLabels: { app } }] }] },
});
const expired = ev('ERROR', { kind: 'Status', apiVersion: 'v1', status: 'Failure', reason: 'Expired', code: 410 });
const endBookmark = (rv: number): string =>
  ev('BOOKMARK', { apiVersion: 'cilium.io/v2', kind: 'CiliumClusterwideNetworkPolicy', metadata: { resourceVersion: String(rv), annotations: { 'k8s.io/initial-events-end': 'true' } } });
const list = (rv: number, items: Obj[]): string => JSON.stringify({ kind: 'CiliumClusterwideNetworkPolicyList', apiVersion: 'cilium.io/v2', metadata: { resourceVersion: String(rv) }, items });

/** Server isolated by allow-zzz; allow-b (seen at version 50) admits the client. */
function cluster() {
  const a = mirrorAgent();
  a.step('pods', ev('ADDED', pod('server', 'n1', '10.0.0.1', 'server')), ev('ADDED', pod('client', 'n2', '10.0.0.9', 'b')));
  a.step('policies', ev('ADDED', allowFrom('allow-zzz', 5, 'zzz')), ev('ADDED', allowFrom('allow-b', 50, 'b')));
  expect(a.verdict('10.0.0.9')).toBe('allow');
  return a;
}

describe('a relist at an older resourceVersion does not lower a deleted object\'s version (1644)', () => {
  it('1644. initial events end at version 30 without allow-b (seen at 50): a replayed MODIFIED at 40 stays dropped', () => {
    const a = cluster();
    a.step('policies', expired, ev('ADDED', allowFrom('allow-zzz', 5, 'zzz')), endBookmark(30));
    // Since 1750 a relist older than what its stream showed is refused: allow-b stays as seen at 50.
    expect(a.verdict('10.0.0.9')).toBe('allow');
    a.step('policies', ev('MODIFIED', allowFrom('allow-b', 40, 'zzz')));
    expect(a.verdict('10.0.0.9')).toBe('allow');
  });
  it('1644. a List at version 30 without allow-b (seen at 50): a replayed MODIFIED at 40 stays dropped', () => {
    const a = cluster();
    a.step('policies', list(30, [allowFrom('allow-zzz', 5, 'zzz')]));
    expect(a.verdict('10.0.0.9')).toBe('allow');
    a.step('policies', ev('MODIFIED', allowFrom('allow-b', 40, 'zzz')));
    expect(a.verdict('10.0.0.9')).toBe('allow');
    // A newer event is taken; a List not older than the stream deletes allow-b.
    a.step('policies', ev('MODIFIED', allowFrom('allow-b', 60, 'zzz')));
    expect(a.verdict('10.0.0.9')).toBe('none');
    a.step('policies', ev('MODIFIED', allowFrom('allow-b', 61, 'b')), list(70, [allowFrom('allow-zzz', 5, 'zzz')]));
    expect(a.verdict('10.0.0.9')).toBe('none');
    a.step('policies', ev('MODIFIED', allowFrom('allow-b', 65, 'b')));
    expect(a.verdict('10.0.0.9')).toBe('none');
  });
});
