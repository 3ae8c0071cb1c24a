import { parseTrace, type TraceEventJson } from '../churn/trace.js';
import type { WatchItem } from '../k8s/watch.js';

const API_VERSIONS: Readonly<Record<string, string>> = {
  NetworkPolicy: 'networking.k8s.io/v1',
  CiliumNetworkPolicy: 'cilium.io/v2',
  CiliumClusterwideNetworkPolicy: 'cilium.io/v2',
  ClusterNetworkPolicy: 'policy.networking.k8s.io/v1alpha2',
};

/** A trace as the Kubernetes API server would stream it to every node, pods placed on `nodes` agents. */
export interface ClusterFeed {
  readonly items: readonly WatchItem[];
  /** Trace events (phases excluded). */
  readonly events: number;
}

/**
 * The trace's node of a pod, folded onto the agents there are: `node-j` goes to agent j mod N;
 * without a `node` field, `local` pods go to node-0 and the others round-robin over the rest.
 */
function placer(nodes: number): (e: { local?: boolean; node?: string }) => string {
  let next = 0;
  return (e) => {
    const m = e.node !== undefined ? /^node-(\d+)$/.exec(e.node) : null;
    if (m) return `node-${Number(m[1]) % nodes}`;
    if (e.node !== undefined) return `node-${[...e.node].reduce((h, c) => (h * 31 + c.charCodeAt(0)) >>> 0, 7) % nodes}`;
    if (e.local === true || nodes === 1) return 'node-0';
    return `node-${1 + (next++ % (nodes - 1))}`;
  };
}

/**
 * Converts a trace to watch events (the agents' real input: no trace mode in the agent). The trace
 * is checked by parseTrace first; each line becomes one object with increasing resourceVersions.
 * Pods keep the node they were first placed on.
 */
export function traceToWatch(text: string, source: string, nodes: number): ClusterFeed {
  parseTrace(text, source);
  const place = placer(nodes);
  const podNode = new Map<string, string>();
  const items: WatchItem[] = [];
  let rv = 0;
  const md = (m: Record<string, unknown>): Record<string, unknown> => ({ ...m, resourceVersion: String(++rv) });
  for (const line of text.split('\n').slice(1)) {
    if (line.trim() === '') continue;
    const e = JSON.parse(line) as TraceEventJson;
    switch (e.type) {
      case 'upsertNamespace':
        items.push({ type: 'ADDED', object: { apiVersion: 'v1', kind: 'Namespace', metadata: md({ name: e.name, labels: e.labels }) } });
        break;
      case 'deleteNamespace':
        items.push({ type: 'DELETED', object: { apiVersion: 'v1', kind: 'Namespace', metadata: md({ name: e.name }) } });
        break;
      case 'upsertPod': {
        const key = `${e.pod.namespace}/${e.pod.name}`;
        const node = podNode.get(key) ?? place(e);
        podNode.set(key, node);
        const ports = (e.pod.ports ?? []).map((p) => ({ ...(p.name !== undefined ? { name: p.name } : {}), containerPort: p.port, ...(p.protocol !== undefined ? { protocol: p.protocol } : {}) }));
        items.push({
          type: 'ADDED',
          object: {
            apiVersion: 'v1',
            kind: 'Pod',
            // A pod without a service account is a static pod's mirror pod (src/k8s/objects.ts `podServiceAccount`).
            metadata: md({ name: e.pod.name, namespace: e.pod.namespace, labels: e.pod.labels, ...(e.pod.serviceAccount === '' ? { annotations: { 'kubernetes.io/config.mirror': 'trace' } } : {}) }),
            spec: { nodeName: node, serviceAccountName: e.pod.serviceAccount ?? 'default', containers: [{ name: 'c', image: 'i', ports }] },
            status: { phase: 'Running', podIP: e.pod.ip, podIPs: (e.pod.ips ?? [e.pod.ip]).map((ip) => ({ ip })) },
          },
        });
        break;
      }
      case 'deletePod':
        podNode.delete(`${e.namespace}/${e.name}`);
        items.push({ type: 'DELETED', object: { apiVersion: 'v1', kind: 'Pod', metadata: md({ name: e.name, namespace: e.namespace }) } });
        break;
      case 'upsertPolicy': {
        const m = e.manifest as { metadata?: Record<string, unknown> };
        items.push({ type: 'ADDED', object: { ...e.manifest, metadata: md(m.metadata ?? {}) } });
        break;
      }
      case 'deletePolicy':
        items.push({ type: 'DELETED', object: { apiVersion: API_VERSIONS[e.ref.kind] ?? 'cilium.io/v2', kind: e.ref.kind, metadata: md({ name: e.ref.name, ...(e.ref.namespace !== undefined ? { namespace: e.ref.namespace } : {}) }) } });
        break;
      case 'upsertCidrGroup': {
        const m = e.manifest as { metadata?: Record<string, unknown> };
        items.push({ type: 'ADDED', object: { ...e.manifest, metadata: md(m.metadata ?? {}) } });
        break;
      }
      case 'deleteCidrGroup':
        items.push({ type: 'DELETED', object: { apiVersion: 'cilium.io/v2', kind: 'CiliumCIDRGroup', metadata: md({ name: e.name }) } });
        break;
      case 'phase':
        break;
      default:
        throw new Error(`${source}: ${e.type} events have no Kubernetes object; distill cluster replays namespaces, pods, policies and CIDR groups`);
    }
  }
  return { items, events: items.length };
}
