import { ClusterNode, ClusterState, Namespace, Pod, podIps } from '../../src/model/cluster.js';
import type { IpAddress } from '../../src/model/cidr.js';
import type { Policy } from '../../src/model/rules.js';
import type { WatchItem } from '../../src/k8s/watch.js';
import { cidrGroupNameKey, type CidrGroup } from '../../src/model/cidr-group.js';

/**
 * The scenario model written back as API objects in the wire format of the Kubernetes API
 * reference (what `kubectl get -o json` prints), to feed the adapters the same cluster the
 * scenario runner builds. Every pod runs on `node` unless `remote` says otherwise.
 */
export type Obj = Record<string, unknown>;

function namespaceObject(ns: Namespace, rv: number): Obj {
  return {
    apiVersion: 'v1',
    kind: 'Namespace',
    metadata: { name: ns.name, uid: `uid-ns-${ns.name}`, resourceVersion: String(rv), creationTimestamp: '2026-01-01T00:00:00Z', labels: { ...ns.labels } },
    spec: { finalizers: ['kubernetes'] },
    status: { phase: 'Active' },
  };
}

function podObject(pod: Pod, nodeName: string, rv: number): Obj {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: pod.name, namespace: pod.namespace, uid: `uid-pod-${pod.namespace}-${pod.name}`, resourceVersion: String(rv), creationTimestamp: '2026-01-01T00:00:00Z', labels: { ...pod.labels } },
    spec: {
      nodeName,
      serviceAccountName: pod.serviceAccount,
      containers: [{ name: 'main', image: 'registry.example/app:1', ports: pod.ports.map((p) => ({ ...(p.name !== undefined ? { name: p.name } : {}), containerPort: p.port, protocol: p.protocol })) }],
      restartPolicy: 'Always',
    },
    status: { phase: 'Running', podIP: pod.ip.text, podIPs: podIps(pod).map((ip) => ({ ip: ip.text })), hostIP: '192.0.2.10' },
  };
}

/** The agent runs on `node-a`: the scenario's local node is written under that name (a remote one so named is renamed). */
function nodeName(n: ClusterNode): string {
  return n.local ? 'node-a' : n.name === 'node-a' ? 'node-a-remote' : n.name;
}

/** A Node as the API returns it: its addresses as InternalIP, with a Hostname entry that is no address. */
function nodeObject(n: ClusterNode, rv: number): Obj {
  const name = nodeName(n);
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name, uid: `uid-node-${name}`, resourceVersion: String(rv), creationTimestamp: '2026-01-01T00:00:00Z', labels: { 'kubernetes.io/hostname': name } },
    spec: {},
    status: { addresses: [...n.ips.map((ip) => ({ type: 'InternalIP', address: ip.text })), { type: 'Hostname', address: name }] },
  };
}

/**
 * A node with health or Ingress addresses also has a CiliumNode (where Cilium keeps them:
 * spec.health, spec.ingress; one address of each family).
 */
function ciliumNodeObject(n: ClusterNode, rv: number): Obj | undefined {
  if (!n.health && !n.ingress) return undefined;
  const name = nodeName(n);
  const families = (l: readonly IpAddress[] | undefined): Obj => Object.fromEntries((l ?? []).map((ip) => [ip.family, ip.text]));
  return {
    apiVersion: 'cilium.io/v2',
    kind: 'CiliumNode',
    metadata: { name, uid: `uid-cnode-${name}`, resourceVersion: String(rv) },
    spec: { addresses: n.ips.map((ip) => ({ type: 'InternalIP', ip: ip.text })), health: families(n.health), ingress: families(n.ingress) },
  };
}

const API_VERSIONS: Readonly<Record<string, string>> = { CiliumCIDRGroup: 'cilium.io/v2', CiliumNode: 'cilium.io/v2', NetworkPolicy: 'networking.k8s.io/v1', CiliumNetworkPolicy: 'cilium.io/v2', CiliumClusterwideNetworkPolicy: 'cilium.io/v2', ClusterNetworkPolicy: 'policy.networking.k8s.io/v1alpha2' };

function policyObject(policy: Policy, rv: number): Obj {
  const m = policy.manifest as Obj;
  const md = (m.metadata ?? {}) as Obj;
  return {
    ...m,
    apiVersion: API_VERSIONS[policy.ref.kind],
    kind: policy.ref.kind,
    metadata: { ...md, name: policy.ref.name, ...(policy.ref.namespace !== undefined ? { namespace: policy.ref.namespace } : {}), uid: `uid-${policy.ref.kind}-${policy.ref.name}`, resourceVersion: String(rv), generation: 1 },
  };
}

/** A CiliumCIDRGroup as the API server returns it: its labels without the name label distill adds (src/policy/cidr-group.ts). */
function groupObject(g: CidrGroup, rv: number): Obj {
  const labels = Object.fromEntries([...g.labels].filter(([k]) => k !== cidrGroupNameKey(g.name)));
  return { apiVersion: 'cilium.io/v2', kind: 'CiliumCIDRGroup', metadata: { name: g.name, uid: `uid-group-${g.name}`, resourceVersion: String(rv), generation: 1, ...(Object.keys(labels).length > 0 ? { labels } : {}) }, spec: { externalCIDRs: g.cidrs.map((c) => c.text) } };
}

/** The objects of a cluster state by kind and key. */
function objectsOf(state: ClusterState, isLocal: (p: Pod) => boolean, rvOf: (key: string) => number): Map<string, Obj> {
  const out = new Map<string, Obj>();
  for (const ns of state.namespaces.values()) out.set(`Namespace/${ns.name}`, namespaceObject(ns, rvOf(`Namespace/${ns.name}`)));
  for (const [k, p] of state.pods) out.set(`Pod/${k}`, podObject(p, isLocal(p) ? 'node-a' : 'node-b', rvOf(`Pod/${k}`)));
  for (const [k, p] of state.policies) out.set(`Policy/${k}`, policyObject(p, rvOf(`Policy/${k}`)));
  for (const g of state.cidrGroups?.values() ?? []) out.set(`CiliumCIDRGroup/${g.name}`, groupObject(g, rvOf(`CiliumCIDRGroup/${g.name}`)));
  for (const n of state.nodes?.values() ?? []) out.set(`Node/${nodeName(n)}`, nodeObject(n, rvOf(`Node/${nodeName(n)}`)));
  for (const n of state.nodes?.values() ?? []) {
    const cn = ciliumNodeObject(n, rvOf(`CiliumNode/${nodeName(n)}`));
    if (cn) out.set(`CiliumNode/${nodeName(n)}`, cn);
  }
  return out;
}

/**
 * A fake API server: object versions across states, with one resourceVersion counter, giving
 * the watch events (ADDED, MODIFIED, DELETED) between two states, or a relist (List per kind).
 */
export class FakeApiServer {
  private rv = 100;
  private readonly objects = new Map<string, { obj: Obj; sig: string }>();

  constructor(private readonly isLocal: (p: Pod) => boolean = () => true) {}

  /** The watch events that bring a watcher from the server's last state to `state`. */
  moveTo(state: ClusterState): WatchItem[] {
    const sigs = new Map<string, { obj: Obj; sig: string }>();
    for (const [k, obj] of objectsOf(state, this.isLocal, () => 0)) sigs.set(k, { obj, sig: JSON.stringify(obj) });
    const out: WatchItem[] = [];
    for (const [k, old] of this.objects) {
      if (sigs.has(k)) continue;
      this.objects.delete(k);
      out.push({ type: 'DELETED', object: withRv(old.obj, ++this.rv) });
    }
    for (const [k, cur] of sigs) {
      const old = this.objects.get(k);
      if (old?.sig === cur.sig) continue;
      const obj = withRv(cur.obj, ++this.rv);
      this.objects.set(k, { obj, sig: cur.sig });
      out.push({ type: old === undefined ? 'ADDED' : 'MODIFIED', object: obj });
    }
    return out;
  }

  /** A full List per kind, as a relist returns it (typed lists: items without kind/apiVersion). */
  list(): WatchItem[] {
    const byKind = new Map<string, Obj[]>();
    for (const { obj } of this.objects.values()) {
      const kind = obj.kind as string;
      if (!byKind.has(kind)) byKind.set(kind, []);
      const { kind: _k, apiVersion: _a, ...item } = obj;
      byKind.get(kind)!.push(item);
    }
    const kinds = ['Namespace', 'Pod', 'Node', 'CiliumNode', 'NetworkPolicy', 'CiliumNetworkPolicy', 'CiliumClusterwideNetworkPolicy', 'ClusterNetworkPolicy', 'CiliumCIDRGroup'];
    return kinds.map((kind) => ({ type: 'LIST', itemKind: kind, apiVersion: API_VERSIONS[kind] ?? 'v1', items: byKind.get(kind) ?? [], resourceVersion: String(this.rv) }));
  }
}

function withRv(obj: Obj, rv: number): Obj {
  return { ...obj, metadata: { ...(obj.metadata as Obj), resourceVersion: String(rv) } };
}
