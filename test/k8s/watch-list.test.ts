import { describe, expect, it } from 'vitest';
import { mirrorAgent } from './mirror-agent.js';

/**
 * Watch streams of a watch with `sendInitialEvents=true` (KEP-3157 watch-list, what client-go's
 * reflector opens when its WatchListClient feature is on): synthetic ADDED events of every object,
 * then a BOOKMARK annotated `k8s.io/initial-events-end: "true"`, then the watch goes on. client-go
 * (tools/cache/reflector.go `watchList`) collects the events in a temporary store and, at that
 * bookmark, `r.store.Replace(temporaryStore.List(), resourceVersion)`: a relist. Findings 1140 and
 * 993 (docs/attack-findings-19w.md).
 */
type Obj = Record<string, unknown>;
const ev = (type: string, object: Obj): string => JSON.stringify({ type, object });
const ns = (name: string, rv: number, labels: Obj = {}): Obj => ({ apiVersion: 'v1', kind: 'Namespace', metadata: { name, resourceVersion: String(rv), labels } });
const pod = (namespace: string, name: string, rv: number, node: string, ip: string, labels: Obj): Obj => ({ apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace, resourceVersion: String(rv), labels }, spec: { nodeName: node, containers: [] }, status: { phase: 'Running', podIP: ip } });
const ccnp = (name: string, rv: number, spec: Obj): Obj => ({ apiVersion: 'cilium.io/v2', kind: 'CiliumClusterwideNetworkPolicy', metadata: { name, resourceVersion: String(rv) }, spec: { endpointSelector: { matchLabels: { app: 'server' } }, ...spec } });
const allowFrom = (name: string, rv: number, app: string) => ccnp(name, rv, { ingress: [{ fromEndpoints: [{ matchLabels: { app } }] }] });
const bookmark = (apiVersion: string, kind: string, rv: number, initialEnd: boolean): string =>
  ev('BOOKMARK', { apiVersion, kind, metadata: { resourceVersion: String(rv), ...(initialEnd ? { annotations: { 'k8s.io/initial-events-end': 'true' } } : {}) } });
const expired = ev('ERROR', { kind: 'Status', apiVersion: 'v1', status: 'Failure', reason: 'Expired', code: 410 });

const agent = mirrorAgent;

const CNP = ['cilium.io/v2', 'CiliumClusterwideNetworkPolicy'] as const;

/** Namespace x with a local server (app=server, 10.0.0.1) and a remote client (app=b, 10.0.0.9). */
function serverAndClient() {
  const a = agent();
  a.step('ns', ev('ADDED', ns('x', 1)));
  a.step('pods', ev('ADDED', pod('x', 'server', 2, 'n1', '10.0.0.1', { app: 'server' })), ev('ADDED', pod('x', 'client', 3, 'n2', '10.0.0.9', { app: 'b' })));
  return a;
}

const denyB = (rv: number, app: string) => ccnp('deny-b', rv, { ingressDeny: [{ fromEndpoints: [{ matchLabels: { app } }] }] });

function cluster() {
  const a = serverAndClient();
  a.step('policies', ev('ADDED', allowFrom('allow-a', 4, 'a')), ev('ADDED', allowFrom('allow-c', 5, 'c')));
  expect(a.verdict('10.0.0.9')).toBe('none');
  return a;
}

describe('watch-list streams: the initial-events-end bookmark is a relist', () => {
  /**
   * 1140: the policy watch expires (410) and is opened again with sendInitialEvents; allow-a was
   * deleted meanwhile, so the new watch's initial events omit it. The client pod is relabelled
   * app=a. Before: allow-a, client app=b (denied); after: no allow-a, client app=a (denied). On
   * 400db28 allow-a stayed and admitted the client, and the stream stayed "awaiting a relist".
   */
  it('1140. an object the new watch\'s initial events omit is deleted at the bookmark', () => {
    const a = cluster();
    a.step('policies', expired);
    expect(a.mirror.streamsAwaitingRelist()).toEqual(['policies']);
    a.step('policies', ev('ADDED', allowFrom('allow-c', 5, 'c')), bookmark(...CNP, 20, true));
    a.step('pods', ev('MODIFIED', pod('x', 'client', 21, 'n2', '10.0.0.9', { app: 'a' })));
    expect(a.verdict('10.0.0.9')).toBe('none');
    expect(a.mirror.streamsAwaitingRelist()).toEqual([]);
    // What the initial events gave is kept.
    a.step('pods', ev('MODIFIED', pod('x', 'client', 22, 'n2', '10.0.0.9', { app: 'c' })));
    expect(a.verdict('10.0.0.9')).toBe('allow');
  });
  it('1140. without an ERROR (a watch ended and opened again): what the stream left since its last such bookmark is kept, the rest of the kind deleted', () => {
    const a = cluster();
    // The first watch's own end of initial events; then a new watch's, without an ERROR between.
    a.step('policies', bookmark(...CNP, 6, true));
    // allow-c is given again by the new watch, allow-a not; a stale DELETED of allow-c (older) leaves it held.
    a.step('policies', ev('ADDED', allowFrom('allow-c', 5, 'c')), ev('DELETED', allowFrom('allow-c', 1, 'c')), bookmark(...CNP, 20, true));
    a.step('pods', ev('MODIFIED', pod('x', 'client', 21, 'n2', '10.0.0.9', { app: 'a' })));
    expect(a.verdict('10.0.0.9')).toBe('none');
    a.step('pods', ev('MODIFIED', pod('x', 'client', 22, 'n2', '10.0.0.9', { app: 'c' })));
    expect(a.verdict('10.0.0.9')).toBe('allow');
  });
  it('1140. the bookmark relists its own kind only, and one without the annotation relists nothing', () => {
    const a = cluster();
    a.step('policies', bookmark(...CNP, 20, false));
    a.step('pods', ev('MODIFIED', pod('x', 'client', 21, 'n2', '10.0.0.9', { app: 'a' })));
    expect(a.verdict('10.0.0.9')).toBe('allow');
    // A Pod bookmark on the pod stream with nothing before it since the start deletes its pods, not the policies.
    a.step('pods', bookmark('v1', 'Pod', 30, true));
    expect(a.engine.identityOfPod('x/client')).toBeDefined();
    a.step('pods', expired, ev('ADDED', pod('x', 'server', 2, 'n1', '10.0.0.1', { app: 'server' })), bookmark('v1', 'Pod', 31, true));
    expect(a.engine.identityOfPod('x/client')).toBeUndefined();
    expect(a.engine.identityOfPod('x/server')).toBeDefined();
    expect(a.verdict('10.0.0.9')).toBe('none');
  });
  /**
   * 1340: the initial events of a watch-list watch are a relist, and client-go applies them at once
   * at the initial-events-end bookmark (reflector.go `watchList`: a `temporaryStore`, then
   * `r.store.Replace(temporaryStore.List(), resourceVersion)`); read one transaction at a time they
   * made states the cluster never had. During the 410 gap allow-a is changed to admit app=b, and
   * deny-b (ingressDeny app=b) is created. Before: client app=b denied (allow-a admits app=zzz); after:
   * denied (deny-b). The new watch sends allow-a before deny-b (key order); on de39223 allow-a's new
   * version was in force alone until deny-b's chunk was read, and admitted the client.
   */
  it('1340. the initial events after an ERROR are applied together at their end bookmark, not one chunk at a time', () => {
    const a = serverAndClient();
    a.step('policies', ev('ADDED', allowFrom('allow-a', 4, 'zzz')));
    expect(a.verdict('10.0.0.9')).toBe('none');
    a.step('policies', expired);
    a.step('policies', ev('ADDED', allowFrom('allow-a', 20, 'b')));
    expect(a.verdict('10.0.0.9')).toBe('none');
    a.step('policies', ev('ADDED', denyB(21, 'b')));
    expect(a.verdict('10.0.0.9')).toBe('none');
    a.step('policies', bookmark(...CNP, 22, true));
    expect(a.verdict('10.0.0.9')).toBe('deny');
    expect(a.mirror.streamsAwaitingRelist()).toEqual([]);
  });
  it('1340. after an ERROR, a MODIFIED or DELETED shows a watch resumed, not initial events: what was held applies in order', () => {
    const a = cluster();
    a.step('policies', expired, ev('ADDED', allowFrom('allow-b', 20, 'b')));
    expect(a.verdict('10.0.0.9')).toBe('none');
    a.step('policies', ev('DELETED', allowFrom('allow-a', 21, 'a')));
    expect(a.verdict('10.0.0.9')).toBe('allow');
    // Still no relist: /healthz keeps saying so.
    expect(a.mirror.streamsAwaitingRelist()).toEqual(['policies']);
  });
  /**
   * 1480: a List cut short by a watch event (the recorder's List failed between pages, e.g. its
   * `continue` token expired, and its reflector then opened a watch-list watch) leaves the stream
   * awaiting a relist as an ERROR does; client-go never resumes a watch after a failed List, it
   * lists again (reflector.go `ListAndWatch`). The same allow-a/deny-b gap as 1340: on e1bb28f the
   * initial events after the cut-short List were applied one chunk at a time and allow-a's new
   * version admitted the client until deny-b's chunk was read; both cluster states deny it.
   */
  it('1480. after a List cut short by an event, the initial events that follow are held until their end bookmark as after an ERROR', () => {
    const a = serverAndClient();
    a.step('policies', ev('ADDED', allowFrom('allow-a', 4, 'zzz')));
    expect(a.verdict('10.0.0.9')).toBe('none');
    a.step('policies', JSON.stringify({ kind: 'CiliumClusterwideNetworkPolicyList', apiVersion: 'cilium.io/v2', metadata: { resourceVersion: '10', continue: 'c1' }, items: [allowFrom('allow-a', 4, 'zzz')] }));
    a.step('policies', ev('ADDED', allowFrom('allow-a', 20, 'b')));
    expect(a.mirror.streamsAwaitingRelist()).toEqual(['policies']);
    expect(a.verdict('10.0.0.9')).toBe('none');
    a.step('policies', ev('ADDED', denyB(21, 'b')));
    expect(a.verdict('10.0.0.9')).toBe('none');
    a.step('policies', bookmark(...CNP, 22, true));
    expect(a.verdict('10.0.0.9')).toBe('deny');
    expect(a.mirror.streamsAwaitingRelist()).toEqual([]);
  });
  /**
   * 1480 (second part): what the stream's events gave before the cut-short List does not count at
   * the bookmark: only the initial events do (client-go's `temporaryStore` holds only them). Before:
   * allow-x (admits app=b) and deny-b; during the gap allow-x is deleted and deny-b changed to deny
   * app=zzz (it still isolates the server): denied both times. On e1bb28f allow-x, given by an event
   * before the List, was kept at the bookmark beside deny-b's new version: allowed.
   */
  it('1480. after a List cut short, the end bookmark keeps only the initial events, not what the stream gave before the List', () => {
    const a = serverAndClient();
    a.step('policies', ev('ADDED', allowFrom('allow-x', 4, 'b')), ev('ADDED', denyB(5, 'b')));
    expect(a.verdict('10.0.0.9')).toBe('deny');
    a.step('policies', JSON.stringify({ kind: 'CiliumClusterwideNetworkPolicyList', apiVersion: 'cilium.io/v2', metadata: { resourceVersion: '10', continue: 'c1' }, items: [allowFrom('allow-x', 4, 'b')] }));
    a.step('policies', ev('ADDED', denyB(20, 'zzz')), bookmark(...CNP, 22, true));
    expect(a.verdict('10.0.0.9')).toBe('none');
    expect(a.mirror.streamsAwaitingRelist()).toEqual([]);
  });
  /**
   * 1481: an initial-events-end bookmark of a kind distill does not read cannot relist (it names no
   * kind to delete from), so the initial events held before it were applied as upserts without the
   * deletes a relist makes. Before the gap allow-b and deny-b (ingressDeny app=b) hold: the client
   * app=b is denied; during it allow-b is deleted and deny-b changed to deny app=zzz: still denied
   * (deny-b isolates the server: Cilium's `evaluateDefaultDenyForRule` counts `ingressDeny`). On
   * e1bb28f deny-b's new version applied and allow-b stayed: the client was allowed.
   */
  it('1481. initial events ended by a bookmark of a kind distill does not read are dropped, not applied without the relist\'s deletes', () => {
    const a = serverAndClient();
    a.step('policies', ev('ADDED', allowFrom('allow-b', 4, 'b')), ev('ADDED', denyB(5, 'b')));
    expect(a.verdict('10.0.0.9')).toBe('deny');
    a.step('policies', expired, ev('ADDED', denyB(20, 'zzz')), bookmark('example.com/v1', 'Widget', 22, true));
    expect(a.verdict('10.0.0.9')).not.toBe('allow');
    expect(a.mirror.streamsAwaitingRelist()).toEqual(['policies']);
    // The relist that follows gives the new state.
    a.step('policies', expired, ev('ADDED', denyB(20, 'zzz')), bookmark(...CNP, 22, true));
    expect(a.verdict('10.0.0.9')).toBe('none');
    expect(a.mirror.streamsAwaitingRelist()).toEqual([]);
  });
  it('1340. initial events cut short (another ERROR, the stream\'s end) are dropped: the old state stays', () => {
    const a = cluster();
    a.step('policies', expired, ev('ADDED', allowFrom('allow-b', 20, 'b')), expired);
    a.step('policies', ev('ADDED', allowFrom('allow-c', 5, 'c')), bookmark(...CNP, 22, true));
    expect(a.verdict('10.0.0.9')).toBe('none');
    a.step('policies', expired, ev('ADDED', allowFrom('allow-b', 30, 'b')));
    a.mirror.endStream('policies');
    a.step('policies');
    expect(a.verdict('10.0.0.9')).toBe('none');
    expect(a.mirror.streamsAwaitingRelist()).toEqual(['policies']);
  });
  /**
   * 993 (docs/attack-findings-18w.md): a namespace stream resumed at a resourceVersion starts with a
   * BOOKMARK, which names the kind: pods wait for their namespace from then on. On 400db28 pods
   * were sent with their namespace's name only until the first Namespace object, so a deny on the
   * namespace's labels missed them (the cluster's state, y team=evil throughout, denies).
   */
  it('993. a namespace stream that starts with a BOOKMARK makes pods wait for their namespace', () => {
    const a = agent();
    a.step('ns', bookmark('v1', 'Namespace', 1, false));
    const denyEvil = ccnp('deny-evil', 4, { ingressDeny: [{ fromEndpoints: [{ matchLabels: { 'io.cilium.k8s.namespace.labels.team': 'evil' } }] }] });
    a.step('policies', ev('ADDED', ccnp('allow', 3, { ingress: [{ fromEntities: ['cluster'] }] })), ev('ADDED', denyEvil));
    a.step('pods', ev('ADDED', pod('x', 'server', 5, 'n1', '10.0.0.1', { app: 'server' })), ev('ADDED', pod('y', 'intruder', 6, 'n2', '10.0.0.9', { app: 'intruder' })));
    a.step('ns', ev('ADDED', ns('x', 7)));
    expect(a.engine.identityOfPod('y/intruder')).toBeUndefined();
    expect(a.verdict('10.0.0.9')).not.toBe('allow');
    a.step('ns', ev('ADDED', ns('y', 8, { team: 'evil' })));
    expect(a.verdict('10.0.0.9')).toBe('deny');
  });
});
