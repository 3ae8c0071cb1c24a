import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { applyChangeSet } from '../../src/backend/backend.js';
import { BpfBackend, bpfUnavailableReason } from '../../src/backend/bpf.js';
import { backendLookup } from '../../src/backend/lookup.js';
import { Engine } from '../../src/engine/engine.js';
import type { EngineEvent } from '../../src/engine/events.js';
import { parseIp } from '../../src/model/cidr.js';
import type { Pod } from '../../src/model/cluster.js';
import { UNALLOCATED_POD_IDENTITY } from '../../src/model/identity.js';
import { parseManifest } from '../../src/policy/manifest.js';

/**
 * Review 27o of round 27q (finding 2352) on real kernel maps: a local pod held fail-closed (`Pod.failClosed`) is an
 * endpoint whose pinned map denies every peer both ways, and every other local endpoint's pinned map denies the
 * unallocated number (its addresses) both ways, past a wildcard allow and port-specific `cluster`/named-port allows.
 * Once the pod is read as written the same lookups allow (the check can fail). Skips where bpf() is not permitted.
 */
const unavailable = bpfUnavailableReason();
if (unavailable && process.env.DISTILL_REQUIRE_BPF === '1') throw new Error(`DISTILL_REQUIRE_BPF=1 but ${unavailable}`);
const kernel = unavailable ? describe.skip : describe;
const PIN_ROOT = `/sys/fs/bpf/distill-test-27o-${process.pid}`;
afterAll(() => {
  if (!unavailable) rmSync(PIN_ROOT, { recursive: true, force: true });
});

const mkPod = (name: string, ips: string[]): Pod => ({
  namespace: 'shop',
  name,
  labels: { app: name },
  ip: parseIp(ips[0] as string),
  ...(ips.length > 1 ? { ips: ips.map(parseIp) } : {}),
  serviceAccount: 'default',
  ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
});
const policy = (doc: Record<string, unknown>) => parseManifest(doc, 't.yaml');
const allowAll = policy({ apiVersion: 'cilium.io/v2', kind: 'CiliumClusterwideNetworkPolicy', metadata: { name: 'all' }, spec: { endpointSelector: {}, ingress: [{ fromEntities: ['all'] }], egress: [{ toEntities: ['all'] }] } });
const ports = policy({
  apiVersion: 'cilium.io/v2',
  kind: 'CiliumClusterwideNetworkPolicy',
  metadata: { name: 'ports' },
  spec: {
    endpointSelector: {},
    ingress: [{ fromEntities: ['cluster'], toPorts: [{ ports: [{ port: '80', protocol: 'TCP' }] }] }],
    egress: [{ toEntities: ['cluster'], toPorts: [{ ports: [{ port: '80', protocol: 'TCP' }] }] }, { toEndpoints: [{}], toPorts: [{ ports: [{ port: 'http', protocol: 'TCP' }] }] }],
  },
});

kernel('27o: a fail-closed pod in pinned kernel maps', () => {
  it('its own map denies every peer both ways; the others deny its number both ways; read as written, both allow', () => {
    const backend = new BpfBackend({ pinDir: join(PIN_ROOT, 'a') });
    try {
      const e = new Engine({ stack: 'dual', mapCapacity: backend.capacity });
      const web = mkPod('web', ['10.0.0.2', 'fd00::2']);
      const db = mkPod('db', ['10.0.0.3', 'fd00::3']);
      const apply = (events: EngineEvent[]): void => void applyChangeSet(backend, e.apply(events));
      apply([{ type: 'upsertNamespace', name: 'shop', labels: {} }, { type: 'upsertPolicy', policy: allowAll }, { type: 'upsertPolicy', policy: ports }, { type: 'upsertPod', pod: web, local: true }, { type: 'upsertPod', pod: { ...db, failClosed: true }, local: true }]);
      expect(backend.endpoints().sort()).toEqual(['shop/db', 'shop/web']);
      expect(e.identityOfIp(parseIp('fd00::3'))).toBe(UNALLOCATED_POD_IDENTITY);
      const webId = e.identityOfPod('shop/web') as number;
      const probes = [[6, 80], [6, 8080], [17, 53], [1, 8]] as const;
      const kernelVerdicts = (ep: string, peer: number): string[] =>
        (['ingress', 'egress'] as const).flatMap((d) => probes.map(([proto, port]) => {
          const hit = backendLookup(backend, ep, peer, d, proto, port);
          return `${ep} ${d} ${peer} ${proto}/${port} ${hit === undefined || hit.entry.deny ? 'deny' : 'allow'}`;
        }));
      const closed = [...kernelVerdicts('shop/web', UNALLOCATED_POD_IDENTITY), ...kernelVerdicts('shop/db', webId), ...kernelVerdicts('shop/db', 2), ...kernelVerdicts('shop/db', 0)];
      expect(closed.filter((v) => v.endsWith('allow'))).toEqual([]);
      // Engine and kernel agree on every probe.
      for (const v of closed) {
        const [ep, d, peer, pp] = v.split(' ') as [string, 'ingress' | 'egress', string, string];
        const [proto, port] = pp.split('/').map(Number) as [number, number];
        const hit = e.lookup(ep, Number(peer), d, proto, port);
        expect(hit === undefined || hit.entry.deny, v).toBe(true);
      }
      apply([{ type: 'upsertPod', pod: db, local: true }]);
      const dbId = e.identityOfPod('shop/db') as number;
      expect(dbId).not.toBe(UNALLOCATED_POD_IDENTITY);
      const open = [...kernelVerdicts('shop/web', dbId), ...kernelVerdicts('shop/db', webId)];
      expect(open.filter((v) => v.endsWith('deny'))).toEqual([]);
      expect(backend.size('shop/db')).toBeGreaterThan(0);
    } finally {
      backend.close();
    }
  });
});
