import type { EngineEvent } from '../../src/engine/events.js';
import type { WatchItem } from '../../src/k8s/watch.js';

/*
 * Watch items and an identity source for the agent tests of stand-ins waiting for capacity (27x, 28c): namespace
 * `shop`, pods labelled `app: <name>`, CiliumNetworkPolicies, CiliumIdentity objects and their labels.
 */
let rv = 1;
export const meta = (name: string, extra: Record<string, unknown> = {}) => ({ name, resourceVersion: String(rv++), ...extra });
export const shop: WatchItem = { type: 'ADDED', object: { apiVersion: 'v1', kind: 'Namespace', metadata: meta('shop') } };
export const pod = (name: string, node: string, ip: string): WatchItem => ({
  type: 'ADDED',
  object: { apiVersion: 'v1', kind: 'Pod', metadata: meta(name, { namespace: 'shop', labels: { app: name } }), spec: { nodeName: node, containers: [] }, status: { phase: 'Running', podIP: ip } },
});
/** The identity labels of a pod of `shop` labelled `app`. */
export const labels = (app: string): Record<string, string> => ({
  'k8s:app': app,
  'k8s:io.kubernetes.pod.namespace': 'shop',
  'k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name': 'shop',
  'k8s:io.cilium.k8s.policy.cluster': 'default',
  'k8s:io.cilium.k8s.policy.serviceaccount': 'default',
});
export const cnp = (name: string, spec: Record<string, unknown>): WatchItem => ({ type: 'ADDED', object: { apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: meta(name, { namespace: 'shop' }), spec } });
/** A CiliumIdentity of `app`'s labels (null: empty `security-labels`, which distill cannot read). */
export const ciliumIdentity = (id: number, app: string | null, type: 'ADDED' | 'MODIFIED'): WatchItem => ({
  type,
  object: { apiVersion: 'cilium.io/v2', kind: 'CiliumIdentity', metadata: meta(String(id)), 'security-labels': app === null ? {} : labels(app) },
});

/** web's egress: `toEntities: [all]` on `n` distinct TCP ports (40 a rule), one map entry each. */
export function wide(n: number): WatchItem {
  const egress: unknown[] = [];
  for (let p = 1; p <= n; p += 40) {
    const ports = [];
    for (let q = p; q < Math.min(p + 40, n + 1); q++) ports.push({ port: String(q), protocol: 'TCP' });
    egress.push({ toEntities: ['all'], toPorts: [{ ports }] });
  }
  return cnp('wide', { endpointSelector: { matchLabels: { app: 'web' } }, egress });
}

/** An identity source (`--identities etcd`) the test feeds: events wait in `pending` until acked. */
export class Source {
  readonly pending: EngineEvent[] = [];
  onChange: () => void = () => undefined;
  readonly ready = true;
  observe(): void {}
  peek(): readonly EngineEvent[] {
    return this.pending;
  }
  ack(n: number): void {
    this.pending.splice(0, n);
  }
}
