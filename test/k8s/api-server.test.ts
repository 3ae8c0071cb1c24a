import { describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.js';
import type { EngineEvent } from '../../src/engine/events.js';
import { ClusterMirror } from '../../src/k8s/mirror.js';
import { WatchStreamParser } from '../../src/k8s/watch.js';
import { parseIp } from '../../src/model/cidr.js';

/**
 * The API server's addresses from the default/kubernetes EndpointSlices, in the wire format of
 * `kubectl get endpointslices -A --watch --output-watch-events -o json` (discovery.k8s.io/v1 as the
 * API server's endpoint reconciler writes it: one slice named `kubernetes`, label
 * `kubernetes.io/service-name: kubernetes`, port `https`). Cilium labels every backend of that
 * Service `reserved:kube-apiserver` (pkg/ipcache/cell/apiserver_watcher.go); until the agent has
 * read one, a kube-apiserver deny keeps distill's stand-in (world, host, remote-node; finding 100).
 */
type Obj = Record<string, unknown>;
const slice = (name: string, namespace: string, service: string, rv: number, addresses: string[], addressType = 'IPv4'): Obj => ({
  apiVersion: 'discovery.k8s.io/v1',
  kind: 'EndpointSlice',
  addressType,
  metadata: { name, namespace, uid: `uid-${name}`, resourceVersion: String(rv), generation: 1, creationTimestamp: '2026-01-01T00:00:00Z', labels: { 'kubernetes.io/service-name': service } },
  endpoints: addresses.map((a) => ({ addresses: [a], conditions: { ready: true, serving: true, terminating: false } })),
  ports: [{ name: 'https', port: 6443, protocol: 'TCP' }],
});
const ns: Obj = { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop', resourceVersion: '1' } };
const web: Obj = {
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name: 'web', namespace: 'shop', resourceVersion: '2', labels: { app: 'web' } },
  spec: { nodeName: 'node-a', containers: [{ name: 'c', image: 'i' }] },
  status: { phase: 'Running', podIP: '10.244.0.5', podIPs: [{ ip: '10.244.0.5' }], hostIP: '192.0.2.10' },
};
const nodeB: Obj = {
  apiVersion: 'v1',
  kind: 'Node',
  metadata: { name: 'node-b', resourceVersion: '3' },
  status: { addresses: [{ type: 'InternalIP', address: '192.0.2.11' }] },
};
const noApiServer: Obj = {
  apiVersion: 'cilium.io/v2',
  kind: 'CiliumNetworkPolicy',
  metadata: { name: 'no-apiserver', namespace: 'shop', resourceVersion: '4' },
  spec: { endpointSelector: { matchLabels: { app: 'web' } }, egress: [{ toEntities: ['all'] }], egressDeny: [{ toEntities: ['kube-apiserver'] }] },
};

function harness() {
  const mirror = new ClusterMirror({ nodeName: 'node-a' });
  const engine = new Engine();
  const parser = new WatchStreamParser('watch');
  const step = (...lines: [string, Obj][]): void => {
    for (const item of parser.push(lines.map(([type, object]) => `${JSON.stringify({ type, object })}\n`).join(''))) mirror.observe(item, 'watch');
    const batch = mirror.flush();
    engine.apply(batch.events as EngineEvent[]);
    batch.commit();
  };
  const reaches = (ip: string): boolean => {
    const hit = engine.lookup('shop/web', engine.identityOfIp(parseIp(ip)), 'egress', 6, 6443);
    return hit !== undefined && !hit.entry.deny;
  };
  const reach = (): Record<string, boolean> => Object.fromEntries(['203.0.113.10', '8.8.8.8', '192.0.2.11'].map((ip) => [ip, reaches(ip)]));
  return { step, reach };
}

describe('the API server from EndpointSlices of default/kubernetes', () => {
  it('no slice yet: the deny keeps its stand-in; a slice makes it exact; moves and deletion follow', () => {
    const h = harness();
    h.step(['ADDED', ns], ['ADDED', web], ['ADDED', nodeB], ['ADDED', noApiServer]);
    expect(h.reach()).toEqual({ '203.0.113.10': false, '8.8.8.8': false, '192.0.2.11': false });
    h.step(['ADDED', slice('kubernetes', 'default', 'kubernetes', 10, ['203.0.113.10'])]);
    expect(h.reach()).toEqual({ '203.0.113.10': false, '8.8.8.8': true, '192.0.2.11': true });
    // The control plane moves onto node-b: its address is kube-apiserver (7), the old one world again.
    h.step(['MODIFIED', slice('kubernetes', 'default', 'kubernetes', 11, ['192.0.2.11'])]);
    expect(h.reach()).toEqual({ '203.0.113.10': true, '8.8.8.8': true, '192.0.2.11': false });
    // A second slice of the Service (IPv6 or a split) adds its addresses; deleting it takes them back.
    h.step(['ADDED', slice('kubernetes-2', 'default', 'kubernetes', 12, ['8.8.8.8'])]);
    expect(h.reach()['8.8.8.8']).toBe(false);
    h.step(['DELETED', slice('kubernetes-2', 'default', 'kubernetes', 13, ['8.8.8.8'])]);
    expect(h.reach()['8.8.8.8']).toBe(true);
    // Every slice deleted: known and empty (Cilium drops the label from every address), no stand-in.
    h.step(['DELETED', slice('kubernetes', 'default', 'kubernetes', 14, ['192.0.2.11'])]);
    expect(h.reach()).toEqual({ '203.0.113.10': true, '8.8.8.8': true, '192.0.2.11': true });
  });

  it('slices of other Services, of a `kubernetes` Service in another namespace or of address type FQDN name no API server', () => {
    const h = harness();
    h.step(['ADDED', ns], ['ADDED', web], ['ADDED', nodeB], ['ADDED', noApiServer]);
    h.step(
      ['ADDED', slice('kube-dns-abc', 'kube-system', 'kube-dns', 20, ['8.8.8.8'])],
      ['ADDED', slice('kubernetes', 'shop', 'kubernetes', 21, ['8.8.8.8'])],
    );
    // Still unknown: the stand-in holds.
    expect(h.reach()['8.8.8.8']).toBe(false);
    h.step(['ADDED', slice('kubernetes-fqdn', 'default', 'kubernetes', 22, ['8.8.8.8'], 'FQDN')], ['ADDED', slice('kubernetes', 'default', 'kubernetes', 23, ['203.0.113.10'])]);
    expect(h.reach()).toEqual({ '203.0.113.10': false, '8.8.8.8': true, '192.0.2.11': true });
  });
});
