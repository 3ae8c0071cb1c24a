import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterAll, describe, expect, it } from 'vitest';
import { Agent } from '../../src/agent/agent.js';
import type { MapBackend, WriteStats } from '../../src/backend/backend.js';
import { KernelIpcache } from '../../src/backend/ipcache.js';
import { backendLookup } from '../../src/backend/lookup.js';
import { MemoryBackend } from '../../src/backend/memory.js';
import type { IpcacheDelta, MapDelta } from '../../src/engine/events.js';
import { parseIp } from '../../src/model/cidr.js';
import type { StackMode } from '../../src/model/identity.js';

/*
 * Review 26s (docs/attack-findings-26s.md): an agent restarted with another stack mode over the maps and the kernel
 * ipcache the last run pinned. Cilium: an outside address is world (2) single-stack, world-ipv4 (9) / world-ipv6 (10)
 * dual-stack (pkg/identity GetWorldIdentityFromIP), its CIDR identity carries the one world label of the mode
 * (pkg/labels/cidr.go addWorldLabel). The restarted agent must bring the /0 entries to the new mode's world identity
 * and leave no 9/10 (or 2) entry of the old mode, and at no write of the restart may a flow both modes deny be allowed
 * (the datapath's ipcache miss is 2, bpf/datapath.c WORLD_IDENTITY). Needs bpffs (root, CAP_BPF).
 */
type Obj = Record<string, unknown>;
const work = mkdtempSync(join(tmpdir(), 'distill-stack-restart-'));
const PIN_ROOT = '/sys/fs/bpf';
const pins: string[] = [];
afterAll(() => {
  rmSync(work, { recursive: true, force: true });
  for (const p of pins) rmSync(p, { recursive: true, force: true });
});

const ns: Obj = { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'ns', resourceVersion: '1', labels: {} } };
const podA: Obj = { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'a', namespace: 'ns', resourceVersion: '2', labels: { app: 'a' } }, spec: { nodeName: 'node-a', containers: [{ name: 'c', image: 'i' }] }, status: { phase: 'Running', podIP: '10.0.0.1', podIPs: [{ ip: '10.0.0.1' }, { ip: 'fd00::1' }] } };
/** Raw world selectors per port (80 world, 81 world-ipv4, 82 world-ipv6), CIDR rules, and denies by raw selector. */
const policy: Obj = {
  apiVersion: 'cilium.io/v2',
  kind: 'CiliumNetworkPolicy',
  metadata: { name: 'p', namespace: 'ns', resourceVersion: '3' },
  spec: {
    endpointSelector: { matchLabels: { app: 'a' } },
    ingress: [
      { fromEndpoints: [{ matchLabels: { 'reserved:world': '' } }], toPorts: [{ ports: [{ port: '80', protocol: 'TCP' }] }] },
      { fromEndpoints: [{ matchLabels: { 'reserved:world-ipv4': '' } }], toPorts: [{ ports: [{ port: '81', protocol: 'TCP' }] }] },
      { fromEndpoints: [{ matchLabels: { 'reserved:world-ipv6': '' } }], toPorts: [{ ports: [{ port: '82', protocol: 'TCP' }] }] },
      { fromCIDR: ['203.0.113.0/24', '2001:db8:1::/48'], toPorts: [{ ports: [{ port: '83', protocol: 'TCP' }] }] },
      { fromEntities: ['world'], toPorts: [{ ports: [{ port: '84', protocol: 'TCP' }] }] },
    ],
    ingressDeny: [
      { fromEndpoints: [{ matchLabels: { 'reserved:world': '' } }], toPorts: [{ ports: [{ port: '84', protocol: 'TCP' }] }] },
      { fromEndpoints: [{ matchLabels: { 'reserved:world-ipv4': '' } }], toPorts: [{ ports: [{ port: '83', protocol: 'TCP' }] }] },
    ],
  },
};
const PEERS = ['203.0.113.9', '198.51.100.9', '2001:db8:1::9', '2001:db8:2::9'];
const PORTS = [80, 81, 82, 83, 84];

const stream = (items: Obj[]): string => {
  const file = join(work, `s${Math.random().toString(36).slice(2)}.json`);
  writeFileSync(file, items.map((object) => JSON.stringify({ type: 'ADDED', object })).join('\n'));
  return file;
};

/** Every peer × port's verdict on ns/a's ingress through the maps and the kernel ipcache (a miss: 2, as the datapath). */
function verdicts(maps: MapBackend, ipcache: KernelIpcache): Map<string, boolean> {
  const out = new Map<string, boolean>();
  if (!maps.endpoints().includes('ns/a')) return out;
  for (const peer of PEERS) {
    const id = ipcache.lookup(parseIp(peer)) ?? 2;
    for (const port of PORTS) {
      const v = backendLookup(maps, 'ns/a', id, 'ingress', 6, port);
      out.set(`${peer}:${port}`, v !== undefined && !v.entry.deny);
    }
  }
  return out;
}

async function run(stack: StackMode, pinDir: string, maps: MemoryBackend, onWrite?: (ipcache: KernelIpcache) => void): Promise<{ ipcache: KernelIpcache; agent: Agent }> {
  const ipcache = new KernelIpcache(pinDir);
  const stepped: MapBackend = onWrite
    ? Object.assign(Object.create(maps) as MapBackend, {
        apply: (endpoint: string, deltas: readonly MapDelta[]): WriteStats => {
          for (const d of deltas) maps.apply(endpoint, [d]), onWrite(ipcache);
          return { upserts: deltas.length, deletes: 0, syscalls: 0 };
        },
      })
    : maps;
  if (onWrite) {
    const raw = ipcache as unknown as { write(w: readonly IpcacheDelta[]): void };
    const write = raw.write.bind(ipcache);
    raw.write = (ws) => {
      for (const w of ws) write([w]), onWrite(ipcache);
    };
  }
  const agent = new Agent({ node: 'node-a', watch: [stream([ns]), stream([podA]), stream([policy])], backend: stepped, ipcache, logger: pino({ level: 'silent' }), registry: new Registry(), exitAtEof: true, allowLocalhost: 'policy', stack });
  await agent.run();
  return { ipcache, agent };
}

describe('2141. an agent run dual-stack beside pods of one family says so (the other side of 2103)', () => {
  // A dual-stack Cilium gives every pod one address per family (IPAM), so a pod of one family shows the cluster runs
  // single-stack: then a raw `reserved:world` deny (Cilium: every outside address) denies nothing here, and a raw
  // `reserved:world-ipv4` allow (Cilium single-stack: nothing) admits IPv4 outside addresses. On c802ed50 only the
  // single-stack agent beside a dual-stack pod warned (2103); the dual-stack agent said nothing.
  const warnings = async (stack: StackMode, pods: Obj[]): Promise<string[]> => {
    const lines: string[] = [];
    const logger = pino({ level: 'warn' }, { write: (s: string) => void lines.push(s) });
    const agent = new Agent({ node: 'node-a', watch: [stream([ns]), stream(pods), stream([policy])], backend: new MemoryBackend(), logger, registry: new Registry(), exitAtEof: true, stack });
    await agent.run();
    await agent.stop();
    return lines.map((l) => (JSON.parse(l) as { msg: string }).msg).filter((m) => /single-stack|dual-stack/.test(m));
  };
  const podB = (ips: string[]): Obj => ({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'b', namespace: 'ns', resourceVersion: '4', labels: { app: 'b' } }, spec: { nodeName: 'node-b', containers: [{ name: 'c', image: 'i' }] }, status: { phase: 'Running', podIP: ips[0], podIPs: ips.map((ip) => ({ ip })) } });
  it('dual-stack beside IPv4-only pods: one warning', async () => {
    expect(await warnings('dual', [podA, podB(['10.0.0.2']), { ...podB(['10.0.0.3']), metadata: { name: 'c', namespace: 'ns', resourceVersion: '5', labels: { app: 'c' } } }])).toHaveLength(1);
  });
  it('(control) dual-stack beside dual-stack pods, single-stack beside single-family pods: none', async () => {
    expect(await warnings('dual', [podA, podB(['10.0.0.2', 'fd00::2'])])).toEqual([]);
    expect(await warnings('single', [{ ...podA, status: { phase: 'Running', podIP: '10.0.0.1', podIPs: [{ ip: '10.0.0.1' }] } }, podB(['10.0.0.2'])])).toEqual([]);
  });
});

describe('26s. an agent restarted with another stack mode over pinned maps and ipcache', () => {
  for (const [from, to] of [['dual', 'single'], ['single', 'dual']] as const) {
    it(`${from} -> ${to}: the /0 entries become ${to}'s world, no entry of the old mode is left, no write allows what both modes deny`, async () => {
      const pinDir = mkdtempSync(join(PIN_ROOT, 'distill-test-26s-'));
      pins.push(pinDir);
      // Each mode's verdicts on its own fresh maps.
      const fresh = async (stack: StackMode): Promise<Map<string, boolean>> => {
        const dir = mkdtempSync(join(PIN_ROOT, 'distill-test-26s-'));
        pins.push(dir);
        const maps = new MemoryBackend();
        const { ipcache, agent } = await run(stack, dir, maps);
        const v = verdicts(maps, ipcache);
        await agent.stop();
        return v;
      };
      const before = await fresh(from);
      const after = await fresh(to);
      expect(before).not.toEqual(after); // the modes disagree on these raw selectors
      const maps = new MemoryBackend();
      const first = await run(from, pinDir, maps);
      expect(verdicts(maps, first.ipcache)).toEqual(before);
      await first.agent.stop();
      const bad: string[] = [];
      let writes = 0;
      const check = (ipc: KernelIpcache): void => {
        writes++;
        for (const [flow, allowed] of verdicts(maps, ipc)) if (allowed && !before.get(flow) && !after.get(flow)) bad.push(flow);
      };
      // The restart: every policy-map and ipcache write is checked.
      const second = await run(to, pinDir, maps, check);
      check(second.ipcache);
      expect(writes).toBeGreaterThan(3);
      expect(bad).toEqual([]);
      expect(verdicts(maps, second.ipcache)).toEqual(after);
      const world = to === 'single' ? [2, 2] : [9, 10];
      expect([second.ipcache.entries().get('0.0.0.0/0'), second.ipcache.entries().get('::/0')]).toEqual(world);
      const stale = [...second.ipcache.entries()].filter(([, id]) => id === 2 || id === 9 || id === 10).map(([, id]) => id);
      expect(stale.sort()).toEqual([...world].sort());
      await second.agent.stop();
    });
  }
});
