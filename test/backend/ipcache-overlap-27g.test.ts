import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterAll, describe, expect, it } from 'vitest';
import { Agent } from '../../src/agent/agent.js';
import { BpfBackend, bpfUnavailableReason } from '../../src/backend/bpf.js';
import { KernelIpcache } from '../../src/backend/ipcache.js';
import type { WatchItem } from '../../src/k8s/watch.js';
import { parseIp } from '../../src/model/cidr.js';
import type { StackMode } from '../../src/model/identity.js';

/**
 * Round 27g: overlapping ipcache prefixes (/32 pods, /24, /8 and /0 CIDR identities of both families) in the
 * pinned kernel tries, in both stack modes: for every probed address the kernel's longest match (a miss being
 * world 2, bpf/datapath.c `identity_of`) is the identity the engine gives the address (`identityOfIp`, Cilium's
 * ipcache: a pod's address its pod's identity, else the longest CIDR prefix's, else world by stack mode,
 * pkg/identity `GetWorldIdentityFromIP`). Then the policies go and the same holds with only pods and world left
 * (a /0 CIDR entry's delete falls back to world, `kernelIpcacheDeltas`). Skips where bpf() is not permitted.
 */
const unavailable = bpfUnavailableReason();
if (unavailable && process.env.DISTILL_REQUIRE_BPF === '1') throw new Error(`DISTILL_REQUIRE_BPF=1 but ${unavailable}`);
const kernel = unavailable ? describe.skip : describe;
const PIN_ROOT = `/sys/fs/bpf/distill-test-27g-overlap-${process.pid}`;
afterAll(() => {
  if (!unavailable) rmSync(PIN_ROOT, { recursive: true, force: true });
});

const logger = pino({ level: 'silent' });
let rv = 1;
const meta = (name: string, extra: Record<string, unknown> = {}) => ({ name, resourceVersion: String(rv++), ...extra });
const pod = (name: string, node: string, ips: string[]): WatchItem => ({
  type: 'ADDED',
  object: { apiVersion: 'v1', kind: 'Pod', metadata: meta(name, { namespace: 'shop', labels: { app: name } }), spec: { nodeName: node, containers: [] }, status: { phase: 'Running', podIP: ips[0], podIPs: ips.map((ip) => ({ ip })) } },
});
const cnp = (type: 'ADDED' | 'DELETED', name: string, cidrs: string[]): WatchItem => ({
  type,
  object: { apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: meta(name, { namespace: 'shop' }), spec: { endpointSelector: { matchLabels: { app: 'web' } }, egress: [{ toCIDR: cidrs }] } },
});
const PROBES = ['10.0.1.3', '10.0.1.4', '10.0.1.200', '10.9.9.9', '8.8.8.8', '0.0.0.0', '255.255.255.255', 'fd00::2', 'fd00::3', 'fd00::1:0', 'fd00:1::1', '2001:db8::8', '::', 'ffff::1'];

kernel('27g: overlapping ipcache prefixes in the kernel tries agree with the engine', () => {
  for (const stack of ['single', 'dual'] as StackMode[]) {
    it(`${stack}-stack`, () => {
      const dir = join(PIN_ROOT, stack);
      const backend = new BpfBackend({ pinDir: join(dir, 'maps') });
      const ipc = new KernelIpcache(dir);
      try {
        const a = new Agent({ node: 'n1', watch: [], backend, ipcache: { apply: ipc.apply.bind(ipc), sync: ipc.sync.bind(ipc), close: () => undefined }, logger, registry: new Registry(), stack });
        const feed = (...items: WatchItem[]): void => {
          for (const item of items) a.mirror.observe(item, 'test');
          a.flush();
        };
        const disagreements = (): string[] =>
          PROBES.flatMap((text) => {
            const ip = parseIp(text);
            const k = ipc.lookup(ip) ?? 2;
            const e = a.engine.identityOfIp(ip);
            return k === e ? [] : [`${text}: kernel ${k}, engine ${e}`];
          });
        feed(
          { type: 'ADDED', object: { apiVersion: 'v1', kind: 'Namespace', metadata: meta('shop') } },
          pod('web', 'n1', ['10.0.1.3', 'fd00::2']),
          pod('db', 'n2', ['10.0.1.4', 'fd00::3']),
          cnp('ADDED', 'wide', ['0.0.0.0/0', '::/0']),
          cnp('ADDED', 'mid', ['10.0.0.0/8', 'fd00::/16']),
          cnp('ADDED', 'narrow', ['10.0.1.0/24', 'fd00::/112', '10.0.1.3/32', 'fd00::3/128']),
        );
        expect(disagreements()).toEqual([]);
        // Some probes read a CIDR identity, some a pod's: the overlap is there.
        const ids = new Set(PROBES.map((t) => ipc.lookup(parseIp(t))));
        expect(ids.size).toBeGreaterThanOrEqual(6);
        feed(cnp('DELETED', 'wide', []), cnp('DELETED', 'narrow', []));
        expect(disagreements()).toEqual([]);
        feed(cnp('DELETED', 'mid', []));
        expect(disagreements()).toEqual([]);
        expect(ipc.lookup(parseIp('8.8.8.8'))).toBe(stack === 'dual' ? 9 : 2);
        expect(ipc.lookup(parseIp('2001:db8::8'))).toBe(stack === 'dual' ? 10 : 2);
      } finally {
        ipc.close();
        backend.close();
      }
    });
  }
});
