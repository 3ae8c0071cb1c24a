import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterAll, describe, expect, it } from 'vitest';
import { Agent } from '../../src/agent/agent.js';
import { BpfBackend, bpfUnavailableReason } from '../../src/backend/bpf.js';
import { KernelIpcache } from '../../src/backend/ipcache.js';
import { backendLookup } from '../../src/backend/lookup.js';
import type { WatchItem } from '../../src/k8s/watch.js';
import { parseIp } from '../../src/model/cidr.js';
import type { StackMode } from '../../src/model/identity.js';
import { steppedBackend } from './stepped-backend.js';

/**
 * Round 27g: an agent restarted over the same pins in the other stack mode (single, where an outside
 * address is reserved:world, 2, and dual, where it is world-ipv4 9 / world-ipv6 10: pkg/identity
 * `GetWorldIdentityFromIP`). The kernel ipcache's /0 entries move between those numbers while the
 * restart's reconcile rewrites the maps. After every single policy-map write and right after the
 * ipcache sync, an outside address of each family read as the datapath reads it (the pinned ipcache's
 * longest match, a miss being world 2: bpf/datapath.c `identity_of`; then the endpoint's map) is
 * allowed only if the old or the new state allows it; at the end it is what the new state gives.
 * Both directions of the switch, for world and CIDR rules, allow and deny. Skips where bpf() is not
 * permitted (as bpf.test.ts).
 */
const unavailable = bpfUnavailableReason();
if (unavailable && process.env.DISTILL_REQUIRE_BPF === '1') throw new Error(`DISTILL_REQUIRE_BPF=1 but ${unavailable}`);
const kernel = unavailable ? describe.skip : describe;
const PIN_ROOT = `/sys/fs/bpf/distill-test-27g-stack-${process.pid}`;
afterAll(() => {
  if (!unavailable) rmSync(PIN_ROOT, { recursive: true, force: true });
});

const logger = pino({ level: 'silent' });
let rv = 1;
const meta = (name: string, extra: Record<string, unknown> = {}) => ({ name, resourceVersion: String(rv++), ...extra });
const EP = 'shop/web';
const OUTSIDE = ['8.8.8.8', '2001:db8::8'];

const objects = (spec: Record<string, unknown>): WatchItem[] => [
  { type: 'ADDED', object: { apiVersion: 'v1', kind: 'Namespace', metadata: meta('shop') } },
  {
    type: 'ADDED',
    object: { apiVersion: 'v1', kind: 'Pod', metadata: meta('web', { namespace: 'shop', labels: { app: 'web' } }), spec: { nodeName: 'n1', containers: [] }, status: { phase: 'Running', podIP: '10.0.0.2', podIPs: [{ ip: '10.0.0.2' }, { ip: 'fd00::2' }] } },
  },
  { type: 'ADDED', object: { apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: meta('p', { namespace: 'shop' }), spec: { endpointSelector: { matchLabels: { app: 'web' } }, ...spec } } },
];

const POLICIES: Record<string, Record<string, unknown>> = {
  'allow-world': { egress: [{ toEntities: ['world'] }] },
  'deny-world': { egress: [{ toEntities: ['all'] }], egressDeny: [{ toEntities: ['world'] }] },
  'allow-cidr': { egress: [{ toCIDR: ['0.0.0.0/0', '::/0'] }] },
  'deny-cidr': { egress: [{ toEntities: ['all'] }], egressDeny: [{ toCIDR: ['0.0.0.0/0', '::/0'] }] },
  // A raw reserved label (the entities world-ipv4/-ipv6 are refused, docs/semantics.md): one family dual-stack, none single-stack.
  'allow-reserved-world-ipv4': { egress: [{ toEndpoints: [{ matchLabels: { 'reserved:world-ipv4': '' } }] }] },
  'deny-reserved-world-ipv6': { egress: [{ toEntities: ['all'] }], egressDeny: [{ toEndpoints: [{ matchLabels: { 'reserved:world-ipv6': '' } }] }] },
  'allow-reserved-world': { egress: [{ toEndpoints: [{ matchLabels: { 'reserved:world': '' } }] }] },
};

function verdicts(backend: BpfBackend | ReturnType<typeof steppedBackend>, ipcache: KernelIpcache): boolean[] {
  if (!backend.endpoints().includes(EP)) return OUTSIDE.map(() => false);
  return OUTSIDE.map((ip) => {
    const id = ipcache.lookup(parseIp(ip)) ?? 2;
    const hit = backendLookup(backend, EP, id, 'egress', 6, 443);
    return hit !== undefined && !hit.entry.deny;
  });
}

function run(dir: string, stack: StackMode, spec: Record<string, unknown>, check?: (b: BpfBackend, ipc: KernelIpcache) => void): boolean[] {
  const inner = new BpfBackend({ pinDir: join(dir, 'maps') });
  const ipcache = new KernelIpcache(dir);
  try {
    const backend = check ? steppedBackend(inner, () => check(inner, ipcache)) : inner;
    const observed = check
      ? { apply: ipcache.apply.bind(ipcache), close: () => undefined, sync: (w: ReadonlyMap<string, number>, l?: Parameters<KernelIpcache['sync']>[1]) => { const n = ipcache.sync(w, l); check(inner, ipcache); return n; } }
      : { apply: ipcache.apply.bind(ipcache), sync: ipcache.sync.bind(ipcache), close: () => undefined };
    const a = new Agent({ node: 'n1', watch: [], backend, ipcache: observed, logger, registry: new Registry(), stack });
    for (const item of objects(spec)) a.mirror.observe(item, 'test');
    a.flush();
    return verdicts(inner, ipcache);
  } finally {
    ipcache.close();
    inner.close();
  }
}

kernel('27g: a restart in the other stack mode over the same pins', () => {
  for (const [name, spec] of Object.entries(POLICIES)) {
    for (const [from, to] of [
      ['single', 'dual'],
      ['dual', 'single'],
    ] as const) {
      it(`${name}: ${from} then ${to}`, () => {
        const dir = join(PIN_ROOT, `${name}-${from}`);
        const old = run(dir, from, spec);
        // What the new mode gives from fresh pins.
        const fresh = run(join(PIN_ROOT, `${name}-${from}-fresh`), to, spec);
        const bad: string[] = [];
        const now = run(dir, to, spec, (b, ipc) => {
          verdicts(b, ipc).forEach((v, i) => {
            if (v && !old[i] && !fresh[i]) bad.push(`${OUTSIDE[i]} allowed mid-restart`);
          });
        });
        // The raw reserved labels read differently by mode: the switch changes a verdict there.
        if (name.includes('reserved')) expect(old).not.toEqual(fresh);
        expect(bad).toEqual([]);
        expect(now).toEqual(fresh);
      });
    }
  }
});
