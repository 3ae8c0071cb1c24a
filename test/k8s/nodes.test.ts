import { describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.js';
import type { EngineEvent } from '../../src/engine/events.js';
import { ClusterMirror } from '../../src/k8s/mirror.js';
import { nodeOf } from '../../src/k8s/objects.js';
import { WatchStreamParser } from '../../src/k8s/watch.js';
import { parseIp } from '../../src/model/cidr.js';

/**
 * Node objects read from a recorded watch stream (`kubectl get nodes --watch --output-watch-events
 * -o json`, Node as in the Kubernetes API reference: `status.addresses` of type InternalIP,
 * ExternalIP, Hostname): their addresses get the reserved identity host (the agent's `--node`) or
 * remote-node, so a host-network pod on another node (which the adapter drops: it uses its node's
 * address) is not world, and `fromCIDR: [0.0.0.0/0]` does not admit it.
 */
type Obj = Record<string, unknown>;
const node = (name: string, rv: number, addresses: [string, string][]): Obj => ({
  apiVersion: 'v1',
  kind: 'Node',
  metadata: { name, uid: `uid-${name}`, resourceVersion: String(rv), labels: { 'kubernetes.io/hostname': name }, creationTimestamp: '2026-01-01T00:00:00Z' },
  spec: { podCIDR: '10.244.1.0/24', podCIDRs: ['10.244.1.0/24'] },
  status: {
    addresses: addresses.map(([type, address]) => ({ type, address })),
    conditions: [{ type: 'Ready', status: 'True', reason: 'KubeletReady', lastHeartbeatTime: '2026-01-01T00:00:00Z', lastTransitionTime: '2026-01-01T00:00:00Z' }],
    nodeInfo: { kubeletVersion: 'v1.31.0', architecture: 'amd64', operatingSystem: 'linux' },
  },
});
const ns: Obj = { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop', resourceVersion: '1' } };
const web: Obj = {
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name: 'web', namespace: 'shop', resourceVersion: '2', labels: { app: 'web' } },
  spec: { nodeName: 'node-a', containers: [{ name: 'c', image: 'i', ports: [{ containerPort: 80, protocol: 'TCP' }] }] },
  status: { phase: 'Running', podIP: '10.244.0.5', podIPs: [{ ip: '10.244.0.5' }], hostIP: '192.0.2.10' },
};
// An attacker's host-network pod on node-b: it has node-b's address.
const hostNet: Obj = {
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name: 'sniff', namespace: 'shop', resourceVersion: '3', labels: { app: 'sniff' } },
  spec: { nodeName: 'node-b', hostNetwork: true, containers: [{ name: 'c', image: 'i' }] },
  status: { phase: 'Running', podIP: '192.0.2.11', podIPs: [{ ip: '192.0.2.11' }], hostIP: '192.0.2.11' },
};
const fromWorld: Obj = {
  apiVersion: 'cilium.io/v2',
  kind: 'CiliumNetworkPolicy',
  metadata: { name: 'web-from-world', namespace: 'shop', resourceVersion: '4' },
  spec: { endpointSelector: { matchLabels: { app: 'web' } }, ingress: [{ fromCIDR: ['0.0.0.0/0'], toPorts: [{ ports: [{ port: '80', protocol: 'TCP' }] }] }] },
};

function harness() {
  const mirror = new ClusterMirror({ nodeName: 'node-a' });
  const engine = new Engine();
  const streams = new Map<string, WatchStreamParser>();
  /** One recorded watch stream's text, then a flush into the engine; the ipcache deltas it made. */
  const step = (stream: string, text: string): string[] => {
    let parser = streams.get(stream);
    if (!parser) streams.set(stream, (parser = new WatchStreamParser(stream)));
    for (const item of parser.push(text)) mirror.observe(item, stream);
    const batch = mirror.flush();
    const cs = engine.apply(batch.events as EngineEvent[]);
    batch.commit();
    return cs.ipcache.map((d) => `${d.op} ${d.prefix} ${d.identity}`);
  };
  const admits = (ip: string): boolean => {
    const hit = engine.lookup('shop/web', engine.identityOfIp(parseIp(ip)), 'ingress', 6, 80);
    return hit !== undefined && !hit.entry.deny;
  };
  return { engine, step, admits };
}

const line = (type: string, object: Obj): string => `${JSON.stringify({ type, object })}\n`;

describe('Node objects through the k8s adapter', () => {
  it('reads InternalIP and ExternalIP addresses once each, not host names; the --node node is local', () => {
    const n = nodeOf(node('node-b', 5, [['InternalIP', '192.0.2.11'], ['Hostname', 'node-b'], ['ExternalIP', '203.0.113.11'], ['InternalIP', 'fd00::11'], ['InternalDNS', 'node-b.internal'], ['ExternalIP', '203.0.113.11']]), 'node-a', 'nodes');
    expect([n.name, n.local, n.ips.map((a) => a.text)]).toEqual(['node-b', false, ['192.0.2.11', '203.0.113.11', 'fd00::11']]);
    expect(nodeOf(node('node-a', 5, [['InternalIP', '192.0.2.10']]), 'node-a', 'nodes').local).toBe(true);
    // As Cilium's ParseNode: an invalid or empty address is ignored (not the node), a second IP of a type and family too.
    expect(nodeOf(node('node-b', 5, [['InternalIP', '192.0.2.300'], ['ExternalIP', ''], ['InternalIP', '192.0.2.11']]), 'node-a', 'nodes.json#3').ips.map((a) => a.text)).toEqual(['192.0.2.11']);
  });

  it('node addresses are host / remote-node in the ipcache: fromCIDR 0.0.0.0/0 admits neither the node nor its host-network pod', () => {
    const h = harness();
    h.step('other', line('ADDED', ns) + line('ADDED', web) + line('ADDED', hostNet) + line('ADDED', fromWorld));
    expect(h.admits('192.0.2.11')).toBe(true); // no Node object yet: world, as Cilium would too
    const added = h.step('nodes', line('ADDED', node('node-a', 10, [['InternalIP', '192.0.2.10'], ['Hostname', 'node-a']])) + line('ADDED', node('node-b', 11, [['InternalIP', '192.0.2.11'], ['ExternalIP', '203.0.113.11']])));
    expect(added.sort()).toEqual(['upsert 192.0.2.10/32 1', 'upsert 192.0.2.11/32 6', 'upsert 203.0.113.11/32 6']);
    expect(h.admits('192.0.2.11')).toBe(false);
    expect(h.admits('203.0.113.11')).toBe(false);
    expect(h.admits('198.51.100.1')).toBe(true);
    // A status-only change (heartbeat) is no event; an address change is.
    expect(h.step('nodes', line('MODIFIED', { ...node('node-b', 12, [['InternalIP', '192.0.2.11'], ['ExternalIP', '203.0.113.11']]) }))).toEqual([]);
    expect(h.step('nodes', line('MODIFIED', node('node-b', 13, [['InternalIP', '192.0.2.11']])))).toEqual(['delete 203.0.113.11/32 6']);
    expect(h.step('nodes', line('DELETED', node('node-b', 14, [['InternalIP', '192.0.2.11']])))).toEqual(['delete 192.0.2.11/32 6']);
    expect(h.admits('192.0.2.11')).toBe(true);
  });
});
