import type { WatchItem } from '../../src/k8s/watch.js';

/** Watch items of namespace `shop` for the CRD-identity agent tests (28b; the same shapes as 27s's). */
let rv = 1;
export const meta = (name: string, extra: Record<string, unknown> = {}): Record<string, unknown> => ({ name, resourceVersion: String(rv++), ...extra });
export const shop = (): WatchItem => ({ type: 'ADDED', object: { apiVersion: 'v1', kind: 'Namespace', metadata: meta('shop') } });
export const labels = (app: string): Record<string, string> => ({
  'k8s:app': app,
  'k8s:io.kubernetes.pod.namespace': 'shop',
  'k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name': 'shop',
  'k8s:io.cilium.k8s.policy.cluster': 'default',
  'k8s:io.cilium.k8s.policy.serviceaccount': 'default',
});
export const pod = (name: string, app: string, node: string, ip: string): WatchItem => ({
  type: 'ADDED',
  object: { apiVersion: 'v1', kind: 'Pod', metadata: meta(name, { namespace: 'shop', labels: { app } }), spec: { nodeName: node, containers: [] }, status: { phase: 'Running', podIP: ip } },
});
/** A CiliumIdentity; `app` null: empty `security-labels` (unreadable, the fail-closed stand-in). */
export const identity = (id: number, app: string | null, type: 'ADDED' | 'MODIFIED' | 'DELETED'): WatchItem => ({
  type,
  object: { apiVersion: 'cilium.io/v2', kind: 'CiliumIdentity', metadata: meta(String(id)), 'security-labels': app === null ? {} : labels(app) },
});
export const cnp = (name: string, subject: string, egress: unknown[], type: 'ADDED' | 'DELETED' = 'ADDED'): WatchItem => ({
  type,
  object: { apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: meta(name, { namespace: 'shop' }), spec: { endpointSelector: { matchLabels: { app: subject } }, egress } },
});
/** `toEntities: [all]` on `n` TCP ports from `from`: one map entry each; `n` 0 deletes the policy. */
export const fill = (name: string, subject: string, from: number, n: number): WatchItem =>
  n === 0 ? cnp(name, subject, [], 'DELETED') : cnp(name, subject, [{ toEntities: ['all'], toPorts: [{ ports: Array.from({ length: n }, (_, i) => ({ port: String(from + i), protocol: 'TCP' })) }] }]);
/** The DELETED event of an object item. */
export function deleted(item: WatchItem): WatchItem {
  if (!('object' in item)) throw new Error('an object item');
  return { type: 'DELETED', object: item.object };
}
