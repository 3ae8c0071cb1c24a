import { describe, expect, it } from 'vitest';
import { mirrorAgent } from './mirror-agent.js';

/**
 * Attack round 4: a pod whose Namespace the agent has not seen yet (separate watch streams, no
 * order between them) or no longer sees (the namespace stream ran ahead of the pod stream). Its
 * identity lacked the namespace's labels, so a deny on them missed it while a cluster-wide allow
 * matched it: fail-open. Cilium makes no endpoint for such a pod: fetchK8sMetadataForEndpoint
 * (daemon/cmd/endpoint.go) reads the namespace from the watcher's store (GetCachedNamespace,
 * pkg/k8s/watchers/namespace.go) and fails with NotFound; a remote pod's identity comes from its
 * own agent, which refuses the same way.
 */
type Obj = Record<string, unknown>;
const ev = (type: string, object: Obj): string => JSON.stringify({ type, object });
const ns = (name: string, rv: number, labels: Obj = {}): Obj => ({ apiVersion: 'v1', kind: 'Namespace', metadata: { name, resourceVersion: String(rv), labels } });
const pod = (namespace: string, name: string, rv: number, node: string, ip: string): Obj => ({ apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace, resourceVersion: String(rv), labels: { app: name } }, spec: { nodeName: node, containers: [] }, status: { phase: 'Running', podIP: ip } });
const ccnp = (name: string, rv: number, spec: Obj): Obj => ({ apiVersion: 'cilium.io/v2', kind: 'CiliumClusterwideNetworkPolicy', metadata: { name, resourceVersion: String(rv) }, spec: { endpointSelector: { matchLabels: { app: 'server' } }, ...spec } });
const allowCluster = (rv: number) => ccnp('allow', rv, { ingress: [{ fromEntities: ['cluster'] }] });
const denyEvil = (rv: number) => ccnp('deny-evil', rv, { ingressDeny: [{ fromEndpoints: [{ matchLabels: { 'io.cilium.k8s.namespace.labels.team': 'evil' } }] }] });

function agent() {
  const a = mirrorAgent();
  return { step: (...lines: string[]): void => a.step('w', ...lines), verdict: a.verdict, engine: a.engine };
}

describe('agent: a pod whose namespace is not (or no longer) known', () => {
  it('is no endpoint until its namespace arrives, then carries its labels', () => {
    const a = agent();
    a.step(ev('ADDED', ns('x', 1)), ev('ADDED', pod('x', 'server', 2, 'n1', '10.0.0.1')), ev('ADDED', allowCluster(3)), ev('ADDED', denyEvil(4)));
    a.step(ev('ADDED', pod('y', 'intruder', 5, 'n2', '10.0.0.9')));
    expect(a.engine.identityOfPod('y/intruder')).toBeUndefined();
    expect(a.verdict('10.0.0.9')).not.toBe('allow');
    a.step(ev('ADDED', ns('y', 6, { team: 'evil' })));
    expect(a.engine.identityOfPod('y/intruder')).toBeDefined();
    expect(a.verdict('10.0.0.9')).toBe('deny');
  });
  it('is not re-sent without its namespace labels after the namespace is deleted', () => {
    const a = agent();
    a.step(ev('ADDED', ns('x', 1)), ev('ADDED', ns('y', 2, { team: 'evil' })), ev('ADDED', pod('x', 'server', 3, 'n1', '10.0.0.1')), ev('ADDED', allowCluster(4)), ev('ADDED', denyEvil(5)));
    a.step(ev('ADDED', pod('y', 'intruder', 6, 'n2', '10.0.0.9')));
    expect(a.verdict('10.0.0.9')).toBe('deny');
    a.step(ev('DELETED', ns('y', 7, { team: 'evil' })));
    expect(a.engine.identityOfPod('y/intruder')).toBeUndefined();
    expect(a.verdict('10.0.0.9')).not.toBe('allow');
  });
  /**
   * Finding 801 (docs/attack-findings-17w.md): Kubernetes deletes a namespace only once its pods
   * are gone (pkg/controller/namespace/deletion/namespaced_resources_deleter.go `Delete`:
   * `deleteAllContent`, then `finalizeNamespace`), so a pod the mirror still holds when the
   * namespace's DELETED arrives is stale (the pod stream lags). It was kept waiting, and came back
   * under a namespace re-created with the same name, with the new namespace's labels: the allow of
   * team=good admitted a pod that both the old state (team=evil) and the new one (no such pod) deny.
   */
  const allowGood = (rv: number) => ccnp('allow-good', rv, { ingress: [{ fromEndpoints: [{ matchLabels: { 'io.cilium.k8s.namespace.labels.team': 'good' } }] }] });
  it('801. a namespace deleted and re-created with other labels: its stale pods do not come back under them', () => {
    for (const oneChunk of [false, true]) {
      const a = agent();
      a.step(ev('ADDED', ns('x', 1)), ev('ADDED', ns('y', 2, { team: 'evil' })), ev('ADDED', pod('x', 'server', 3, 'n1', '10.0.0.1')), ev('ADDED', allowGood(4)), ev('ADDED', pod('y', 'intruder', 5, 'n2', '10.0.0.9')));
      expect(a.verdict('10.0.0.9')).not.toBe('allow');
      if (oneChunk) a.step(ev('DELETED', ns('y', 6, { team: 'evil' })), ev('ADDED', ns('y', 7, { team: 'good' })));
      else a.step(ev('DELETED', ns('y', 6, { team: 'evil' }))), a.step(ev('ADDED', ns('y', 7, { team: 'good' })));
      expect(a.engine.identityOfPod('y/intruder')).toBeUndefined();
      expect(a.verdict('10.0.0.9')).not.toBe('allow');
      // The pod's late DELETED changes nothing; a pod of the new namespace is taken, with its labels.
      a.step(ev('DELETED', pod('y', 'intruder', 8, 'n2', '10.0.0.9')), ev('ADDED', pod('y', 'newcomer', 9, 'n2', '10.0.0.10')));
      expect(a.verdict('10.0.0.9')).not.toBe('allow');
      expect(a.verdict('10.0.0.10')).toBe('allow');
    }
  });
  it('801. a relist of the namespaces that no longer lists one deletes its stale pods too', () => {
    const a = agent();
    a.step(ev('ADDED', ns('x', 1)), ev('ADDED', ns('y', 2, { team: 'evil' })), ev('ADDED', pod('x', 'server', 3, 'n1', '10.0.0.1')), ev('ADDED', allowGood(4)), ev('ADDED', pod('y', 'intruder', 5, 'n2', '10.0.0.9')));
    a.step(JSON.stringify({ apiVersion: 'v1', kind: 'NamespaceList', metadata: { resourceVersion: '6' }, items: [ns('x', 1)] }));
    a.step(ev('ADDED', ns('y', 7, { team: 'good' })));
    expect(a.engine.identityOfPod('y/intruder')).toBeUndefined();
    expect(a.verdict('10.0.0.9')).not.toBe('allow');
  });
  /**
   * Finding 990 (docs/attack-findings-18w.md), 801's remainder: the pod stream lags further, so the
   * stale pod's ADDED (resourceVersion 5) is read only after its namespace's DELETED (10). It waited
   * for its namespace and came back under the one re-created as team=good (11), admitted by the
   * allow of team=good. The resourceVersions the API server gives are etcd revisions, one order for
   * every kind: an object of the namespace older than its deletion is of the deleted namespace
   * (deleted before it: namespaced_resources_deleter.go `Delete`, as in 801).
   */
  it('990. a stale pod read after its namespace was deleted does not come back under a re-created one', () => {
    for (const when of ['before', 'after'] as const) {
      const a = agent();
      a.step(ev('ADDED', ns('x', 1)), ev('ADDED', ns('y', 2, { team: 'evil' })), ev('ADDED', pod('x', 'server', 3, 'n1', '10.0.0.1')), ev('ADDED', allowGood(4)));
      a.step(ev('DELETED', ns('y', 10, { team: 'evil' })));
      if (when === 'after') a.step(ev('ADDED', ns('y', 11, { team: 'good' })));
      a.step(ev('ADDED', pod('y', 'intruder', 5, 'n2', '10.0.0.9')));
      if (when === 'before') a.step(ev('ADDED', ns('y', 11, { team: 'good' })));
      expect(a.engine.identityOfPod('y/intruder')).toBeUndefined();
      expect(a.verdict('10.0.0.9')).not.toBe('allow');
      // A pod of the new namespace is taken, with its labels.
      a.step(ev('DELETED', pod('y', 'intruder', 8, 'n2', '10.0.0.9')), ev('ADDED', pod('y', 'newcomer', 12, 'n2', '10.0.0.10')));
      expect(a.verdict('10.0.0.9')).not.toBe('allow');
      expect(a.verdict('10.0.0.10')).toBe('allow');
    }
  });
  it('990. a pod List at a version before the namespace\'s deletion does not bring its stale pod back', () => {
    const a = agent();
    a.step(ev('ADDED', ns('x', 1)), ev('ADDED', ns('y', 2, { team: 'evil' })), ev('ADDED', pod('x', 'server', 3, 'n1', '10.0.0.1')), ev('ADDED', allowGood(4)));
    a.step(ev('DELETED', ns('y', 10, { team: 'evil' })), ev('ADDED', ns('y', 11, { team: 'good' })));
    a.step(JSON.stringify({ apiVersion: 'v1', kind: 'PodList', metadata: { resourceVersion: '6' }, items: [pod('x', 'server', 3, 'n1', '10.0.0.1'), pod('y', 'intruder', 5, 'n2', '10.0.0.9')] }));
    expect(a.engine.identityOfPod('y/intruder')).toBeUndefined();
    expect(a.verdict('10.0.0.9')).not.toBe('allow');
    expect(a.engine.identityOfPod('x/server')).toBeDefined();
  });
  it('990. a stale policy of the deleted namespace read late does not apply in the re-created one', () => {
    const a = agent();
    const cnp = (name: string, namespace: string, rv: number, spec: Obj): Obj => ({ apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name, namespace, resourceVersion: String(rv) }, spec: { endpointSelector: {}, ...spec } });
    a.step(ev('ADDED', ns('x', 1)), ev('DELETED', ns('y', 10)), ev('ADDED', ns('y', 11)), ev('ADDED', pod('y', 'web', 12, 'n1', '10.0.0.5')), ev('ADDED', cnp('isolate', 'y', 13, { ingress: [{ fromEndpoints: [{ matchLabels: { app: 'x' } }] }] })));
    // The old namespace's allow-all, late on the policy stream (its own DELETED, also before 10, comes later still).
    a.step(ev('ADDED', cnp('open', 'y', 5, { ingress: [{ fromEntities: ['world'] }] })));
    const hit = a.engine.lookup('y/web', 2, 'ingress', 6, 80);
    expect(hit === undefined || hit.entry.deny).toBe(true);
  });
  it('990. a pod of the re-created namespace read before the old one\'s DELETED comes back with the new labels', () => {
    const a = agent();
    a.step(ev('ADDED', ns('x', 1)), ev('ADDED', ns('y', 2, { team: 'evil' })), ev('ADDED', pod('x', 'server', 3, 'n1', '10.0.0.1')), ev('ADDED', allowGood(4)));
    a.step(ev('ADDED', pod('y', 'newcomer', 12, 'n2', '10.0.0.10')));
    expect(a.verdict('10.0.0.10')).not.toBe('allow');
    a.step(ev('DELETED', ns('y', 10, { team: 'evil' })));
    expect(a.engine.identityOfPod('y/newcomer')).toBeUndefined();
    a.step(ev('ADDED', ns('y', 11, { team: 'good' })));
    expect(a.verdict('10.0.0.10')).toBe('allow');
  });
  it('without any Namespace stream, pods still become endpoints (namespace name only)', () => {
    const a = agent();
    a.step(ev('ADDED', pod('x', 'server', 1, 'n1', '10.0.0.1')));
    expect(a.engine.identityOfPod('x/server')).toBeDefined();
  });
});
