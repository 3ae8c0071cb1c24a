import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { applyChangeSet } from '../../src/backend/backend.js';
import { BpfBackend, bpfUnavailableReason } from '../../src/backend/bpf.js';
import { KernelIpcache } from '../../src/backend/ipcache.js';
import { kernelIpcacheDeltas } from '../../src/backend/ipcache-content.js';
import { backendLookup } from '../../src/backend/lookup.js';
import { Engine } from '../../src/engine/engine.js';
import type { EngineEvent } from '../../src/engine/events.js';
import { parseIp } from '../../src/model/cidr.js';
import { UNALLOCATED_POD_IDENTITY } from '../../src/model/identity.js';
import { parseCidrGroup } from '../../src/policy/cidr-group.js';
import { parseManifest } from '../../src/policy/manifest.js';

/*
 * Findings 2431 and 2432 in pinned kernel maps (root, CAP_BPF): a CIDR group and a remote node held fail-closed move
 * their addresses to 255 in the kernel ipcache (the group's prefix and a policy's prefix inside it), and the kernel
 * policy map of a local endpoint under a wildcard allow denies them both ways; read as written again, the kernel
 * ipcache and maps come back. Pins under /sys/fs/bpf/distill-test-t28nodes-<pid>, removed after.
 */
const unavailable = bpfUnavailableReason();
const PIN_ROOT = `/sys/fs/bpf/distill-test-t28nodes-${process.pid}`;
afterAll(() => {
  if (!unavailable) rmSync(PIN_ROOT, { recursive: true, force: true });
});

const group = (failClosed: boolean): EngineEvent => {
  const g = parseCidrGroup({ apiVersion: 'cilium.io/v2', kind: 'CiliumCIDRGroup', metadata: { name: 'g', labels: { env: 'b' } }, spec: { externalCIDRs: ['198.51.100.0/24'] } }, 'g.yaml');
  return { type: 'upsertCidrGroup', group: failClosed ? { ...g, failClosed: true } : g };
};
const node = (failClosed: boolean): EngineEvent => ({ type: 'upsertNode', name: 'n2', ips: [parseIp('172.16.0.2')], labels: { role: 'b' }, ...(failClosed ? { failClosed: true as const } : {}) });
const cnp = (name: string, spec: Record<string, unknown>) => parseManifest({ apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name, namespace: 'x' }, spec: { endpointSelector: {}, ...spec } }, 't.yaml');
const base: EngineEvent[] = [
  { type: 'upsertNamespace', name: 'x', labels: {} },
  { type: 'upsertPod', pod: { namespace: 'x', name: 'server', labels: { app: 'server' }, ip: parseIp('10.0.0.1'), serviceAccount: 'default', ports: [] }, local: true },
  { type: 'upsertPolicy', policy: cnp('all', { ingress: [{ fromEntities: ['all'] }], egress: [{ toEntities: ['all'] }] }) },
  { type: 'upsertPolicy', policy: cnp('inner', { ingress: [{ fromCIDR: ['198.51.100.0/25'] }] }) },
];

(unavailable ? describe.skip : describe)('28t: groups and nodes held fail-closed, in pinned kernel maps', () => {
  it('their addresses read 255 in the kernel ipcache and the kernel map denies them both ways, until read as written', () => {
    const pinDir = join(PIN_ROOT, 'a');
    const backend = new BpfBackend({ pinDir });
    const ipcache = new KernelIpcache(pinDir);
    try {
      const engine = new Engine();
      const write = (events: EngineEvent[]): void => {
        const cs = engine.apply(events);
        applyChangeSet(backend, cs, () => ipcache.apply(kernelIpcacheDeltas(cs.ipcache)));
      };
      ipcache.sync(new Map());
      write([...base, group(false), node(false)]);
      const verdict = (ip: string, dir: 'ingress' | 'egress'): string => {
        const hit = backendLookup(backend, 'x/server', ipcache.lookup(parseIp(ip)) ?? 2, dir, 6, 80);
        return hit === undefined || hit.entry.deny ? 'deny' : 'allow';
      };
      const PEERS = ['198.51.100.7', '198.51.100.200', '172.16.0.2'];
      for (const ip of PEERS) expect(verdict(ip, 'ingress')).toBe('allow');
      write([group(true), node(true)]);
      for (const ip of PEERS) {
        expect(ipcache.lookup(parseIp(ip))).toBe(UNALLOCATED_POD_IDENTITY);
        for (const dir of ['ingress', 'egress'] as const) expect(verdict(ip, dir)).toBe('deny');
      }
      expect(verdict('203.0.113.1', 'ingress')).toBe('allow');
      write([group(false), node(false)]);
      for (const ip of PEERS) {
        expect(ipcache.lookup(parseIp(ip))).toBe(engine.identityOfIp(parseIp(ip)));
        expect(ipcache.lookup(parseIp(ip))).not.toBe(UNALLOCATED_POD_IDENTITY);
        expect(verdict(ip, 'ingress')).toBe('allow');
      }
    } finally {
      ipcache.close();
      backend.close();
    }
  });
});
