import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterAll, describe, expect, it } from 'vitest';
import { Agent, type AgentIpcache } from '../../src/agent/agent.js';
import { BpfBackend, bpfUnavailableReason } from '../../src/backend/bpf.js';
import { KernelIpcache } from '../../src/backend/ipcache.js';
import { backendLookup } from '../../src/backend/lookup.js';
import type { WatchItem } from '../../src/k8s/watch.js';
import { parseIp } from '../../src/model/cidr.js';
import { UNALLOCATED_POD_IDENTITY } from '../../src/model/identity.js';
import { steppedBackend } from './stepped-backend.js';

/**
 * Round 27g on real kernel maps: CiliumEndpoint-derived ipcache entries (finding 2220; Cilium's
 * pkg/k8s/watchers/cilium_endpoint.go `endpointUpdated` puts `status.identity.id` at each address of
 * `status.networking.addressing`). A remote pod moves between 255 (no readable number: every local
 * map denies it above every tier), its endpoint's number, a hostile endpoint's 255 and its labels'
 * own identity. After every single policy-map write and every ipcache write, its packets to a local
 * pod, read as the datapath reads them (the pinned ipcache's longest match, then the map), are
 * allowed only if the state before or the state after the transaction allows them. The objects are
 * the API's wire format (cilium.io/v2 CiliumEndpoint, pkg/k8s/apis/cilium.io/v2/types.go). Skips
 * where bpf() is not permitted (as bpf.test.ts).
 */
const unavailable = bpfUnavailableReason();
if (unavailable && process.env.DISTILL_REQUIRE_BPF === '1') throw new Error(`DISTILL_REQUIRE_BPF=1 but ${unavailable}`);
const kernel = unavailable ? describe.skip : describe;
const PIN_ROOT = `/sys/fs/bpf/distill-test-27g-cep-${process.pid}`;
afterAll(() => {
  if (!unavailable) rmSync(PIN_ROOT, { recursive: true, force: true });
});

const logger = pino({ level: 'silent' });
let rv = 1;
const meta = (name: string, extra: Record<string, unknown> = {}) => ({ name, resourceVersion: String(rv++), ...extra });
const podLabels = (app: string, extra: Record<string, string> = {}): Record<string, string> => ({
  'k8s:app': app,
  ...extra,
  'k8s:io.kubernetes.pod.namespace': 'shop',
  'k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name': 'shop',
  'k8s:io.cilium.k8s.policy.cluster': 'default',
  'k8s:io.cilium.k8s.policy.serviceaccount': 'default',
});
const identity = (type: 'ADDED' | 'MODIFIED' | 'DELETED', id: number, labels: unknown): WatchItem => ({
  type,
  object: { apiVersion: 'cilium.io/v2', kind: 'CiliumIdentity', metadata: meta(String(id)), 'security-labels': labels },
});
const pod = (name: string, node: string, ip: string, labels: Record<string, string>): WatchItem => ({
  type: 'ADDED',
  object: { apiVersion: 'v1', kind: 'Pod', metadata: meta(name, { namespace: 'shop', labels }), spec: { nodeName: node, containers: [] }, status: { phase: 'Running', podIP: ip, podIPs: [{ ip }] } },
});
const cep = (type: 'ADDED' | 'MODIFIED' | 'DELETED', name: string, id: number, ip: string): WatchItem => ({
  type,
  object: {
    apiVersion: 'cilium.io/v2',
    kind: 'CiliumEndpoint',
    metadata: meta(name, { namespace: 'shop', uid: `uid-cep-${name}`, generation: 1, ownerReferences: [{ apiVersion: 'v1', kind: 'Pod', name, uid: `uid-pod-${name}`, blockOwnerDeletion: true }] }),
    status: { id: 1844, identity: { id, labels: [] }, networking: { addressing: [{ ipv4: ip }], node: '192.0.2.20' }, encryption: {}, 'named-ports': [], state: 'ready' },
  },
});
const WEB = '10.0.0.2';
const CLIENT = '10.0.1.3';
const node2: WatchItem = { type: 'ADDED', object: { apiVersion: 'v1', kind: 'Node', metadata: meta('n2'), spec: {}, status: { addresses: [{ type: 'InternalIP', address: '192.0.2.20' }] } } };
/** web admits app=client and world, denies app=db (db's number is one a hostile endpoint may name). */
const policy: WatchItem = {
  type: 'ADDED',
  object: {
    apiVersion: 'cilium.io/v2',
    kind: 'CiliumNetworkPolicy',
    metadata: meta('web', { namespace: 'shop' }),
    spec: { endpointSelector: { matchLabels: { app: 'web' } }, ingress: [{ fromEndpoints: [{ matchLabels: { app: 'client' } }] }, { fromEntities: ['world'] }], ingressDeny: [{ fromEndpoints: [{ matchLabels: { app: 'db' } }] }] },
  },
};

kernel('27g: CiliumEndpoint numbers in the kernel ipcache, at every write', () => {
  it('a remote pod between 255, its endpoint\'s number, a hostile one and its own never passes what both states deny', () => {
    const dir = join(PIN_ROOT, 'a');
    const inner = new BpfBackend({ pinDir: join(dir, 'maps') });
    const ipc = new KernelIpcache(dir);
    try {
      const verdict = (): string => {
        if (!inner.endpoints().includes('shop/web')) return 'deny';
        const id = ipc.lookup(parseIp(CLIENT)) ?? 2;
        const hit = backendLookup(inner, 'shop/web', id, 'ingress', 6, 80);
        return hit === undefined || hit.entry.deny ? 'deny' : 'allow';
      };
      let before = 'deny';
      let seen: string[] = [];
      const step = (): void => void seen.push(verdict());
      const backend = steppedBackend(inner, step);
      const ipcache: AgentIpcache = {
        apply: (d, l) => {
          const n = ipc.apply(d, l);
          step();
          return n;
        },
        sync: (w, l) => {
          const n = ipc.sync(w, l);
          step();
          return n;
        },
        close: () => undefined,
      };
      const a = new Agent({ node: 'n1', watch: [], backend, ipcache, logger, registry: new Registry(), identities: 'external' });
      const history: string[] = [];
      const feed = (what: string, ...items: WatchItem[]): void => {
        seen = [];
        for (const item of items) a.mirror.observe(item, 'test');
        a.flush();
        const after = verdict();
        history.push(`${what}: ${before} -> ${after} (${ipc.lookup(parseIp(CLIENT))})`);
        if (before === 'deny' && after === 'deny') expect(seen.filter((v) => v === 'allow'), what).toEqual([]);
        before = after;
      };
      feed('start', { type: 'ADDED', object: { apiVersion: 'v1', kind: 'Namespace', metadata: meta('shop') } }, identity('ADDED', 300, podLabels('web')), identity('ADDED', 301, podLabels('client')), identity('ADDED', 303, podLabels('db')), node2, pod('web', 'n1', WEB, { app: 'web' }), policy);
      feed('client relabelled, no id', pod('client', 'n2', CLIENT, { app: 'client', rev: '2' }));
      expect(ipc.lookup(parseIp(CLIENT))).toBe(UNALLOCATED_POD_IDENTITY);
      feed('endpoint names 301', cep('ADDED', 'client', 301, CLIENT));
      expect(ipc.lookup(parseIp(CLIENT))).toBe(301);
      feed('endpoint names 303 (db)', cep('MODIFIED', 'client', 303, CLIENT));
      feed('endpoint names web (300, a local pod)', cep('MODIFIED', 'client', 300, CLIENT));
      feed('endpoint names 301 again', cep('MODIFIED', 'client', 301, CLIENT));
      feed('endpoint gone', cep('DELETED', 'client', 301, CLIENT));
      feed('endpoint names 301 once more', cep('ADDED', 'client', 301, CLIENT));
      feed('labels get 302 (rev=2)', identity('ADDED', 302, podLabels('client', { 'k8s:rev': '2' })));
      feed('302 unreadable', identity('MODIFIED', 302, { ...podLabels('client', { 'k8s:rev': '2' }), 'k8s:x': 'y'.repeat(600) }));
      feed('302 readable', identity('MODIFIED', 302, podLabels('client', { 'k8s:rev': '2' })));
      // Every event moved the ipcache entry and, but for one, the verdict: the checks above were not vacuous.
      expect(history).toEqual([
        'start: deny -> allow (2)',
        'client relabelled, no id: allow -> deny (255)',
        'endpoint names 301: deny -> allow (301)',
        'endpoint names 303 (db): allow -> deny (303)',
        'endpoint names web (300, a local pod): deny -> deny (300)',
        'endpoint names 301 again: deny -> allow (301)',
        'endpoint gone: allow -> deny (255)',
        'endpoint names 301 once more: deny -> allow (301)',
        'labels get 302 (rev=2): allow -> allow (302)',
        '302 unreadable: allow -> deny (302)',
        '302 readable: deny -> allow (302)',
      ]);
      expect(a.summary.refusals).toBe(0);
    } finally {
      ipc.close();
      inner.close();
    }
  });
});
