import { execFileSync, spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { applyChangeSet, BackendError, MapBackend } from '../../src/backend/backend.js';
import { BpfBackend, bpfUnavailableReason, pinName } from '../../src/backend/bpf.js';
import { encodeKey, encodeValue } from '../../src/backend/encoding.js';
import { MemoryBackend } from '../../src/backend/memory.js';
import { backendLookup } from '../../src/backend/lookup.js';
import { reconcile } from '../../src/node/restart.js';
import { Engine } from '../../src/engine/engine.js';
import { ChangeSet, EngineEvent, MapCapacityError } from '../../src/engine/events.js';
import { parseIp } from '../../src/model/cidr.js';
import { datapathLookup } from '../../src/model/policy-map.js';
import { PROTOCOL_NUMBER } from '../../src/model/ports.js';
import { parseManifestFile } from '../../src/policy/manifest.js';
import { op, Op, PROBE_PORTS, prng, toEvent } from '../engine/gen.js';

/**
 * These tests write real kernel maps. Where bpf() is not permitted they skip, saying why; CI sets
 * DISTILL_REQUIRE_BPF=1, which turns that skip into a failure so the kernel is always exercised.
 */
const unavailable = bpfUnavailableReason();
const required = process.env.DISTILL_REQUIRE_BPF === '1';
if (unavailable && required) throw new Error(`DISTILL_REQUIRE_BPF=1 but ${unavailable}`);
if (unavailable) process.stderr.write(`SKIPPING kernel map tests: ${unavailable}\n`);
const kernel = unavailable ? describe.skip : describe;

const PIN_ROOT = `/sys/fs/bpf/distill-test-${process.pid}`;
let dirs = 0;
const pinDir = (): string => join(PIN_ROOT, String(dirs++));
afterAll(() => {
  if (!unavailable) rmSync(PIN_ROOT, { recursive: true, force: true });
});

const bytesOf = (b: MapBackend, ep: string): string[] => b.dump(ep).map((r) => encodeKey(r.key).toString('hex') + ':' + encodeValue(r.entry, r.key).toString('hex'));

function sameMaps(a: MapBackend, b: MapBackend): void {
  expect(b.endpoints()).toEqual(a.endpoints());
  for (const ep of a.endpoints()) expect(bytesOf(b, ep)).toEqual(bytesOf(a, ep));
}

let ipn = 10;
const pod = (ns: string, name: string, labels: Record<string, string>, local: boolean): EngineEvent => ({
  type: 'upsertPod',
  local,
  pod: { namespace: ns, name, labels, ip: parseIp(`10.250.${ipn >> 8}.${ipn++ & 255}`), serviceAccount: 'default', ports: [] },
});
const manyPeers = (n: number): EngineEvent[] => Array.from({ length: n }, (_, i) => pod('prod', `client-${i}`, { app: 'client', i: String(i) }, false));
const webPolicy: EngineEvent = {
  type: 'upsertPolicy',
  policy: parseManifestFile(
    `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: web, namespace: prod}
spec:
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: client}}]
    toPorts: [{ports: [{port: "8000", endPort: 8010, protocol: TCP}]}]
`,
    'web.yaml',
  )[0]!,
};

kernel('eBPF backend (real kernel maps)', () => {
  it('random engine delta streams leave kernel maps byte-identical to the memory backend, and kernel LPM lookups give the engine verdicts', () => {
    fc.assert(
      fc.property(fc.array(fc.array(op, { minLength: 1, maxLength: 3 }), { minLength: 3, maxLength: 15 }), fc.nat(), (txns: Op[][], seed) => {
        const engine = new Engine({ mapCapacity: 256 });
        const mem = new MemoryBackend({ capacity: 256 });
        const bpf = new BpfBackend({ capacity: 256, pinDir: pinDir() });
        try {
          const rnd = prng(seed);
          for (const ops of txns) {
            let cs: ChangeSet;
            try {
              cs = engine.apply(ops.map(toEvent));
            } catch {
              continue;
            }
            applyChangeSet(mem, cs);
            applyChangeSet(bpf, cs);
            sameMaps(mem, bpf);
            const eps = engine.endpoints();
            for (let i = 0; i < 10 && eps.length > 0; i++) {
              const ep = eps[Math.floor(rnd() * eps.length)]!;
              const ids = [0, ...engine.identities()];
              const peer = ids[Math.floor(rnd() * ids.length)]!;
              const dir = rnd() < 0.5 ? 'ingress' : 'egress';
              const probe = PROBE_PORTS[Math.floor(rnd() * PROBE_PORTS.length)]!;
              const proto = PROTOCOL_NUMBER[probe.protocol];
              const expected = datapathLookup(engine.mapState(ep), peer, dir, proto, probe.port)?.entry;
              expect(backendLookup(bpf, ep, peer, dir, proto, probe.port)?.entry).toEqual(expected);
            }
          }
        } finally {
          bpf.close();
        }
      }),
      { numRuns: 25 },
    );
  });

  it('bpftool, an independent reader, sees the same entries', () => {
    const probe = spawnSync('bpftool', ['version']);
    if (probe.error) {
      if (required) throw new Error('bpftool is not installed (.ci/run installs it)');
      process.stderr.write('SKIPPING bpftool cross-check: bpftool is not installed\n');
      return;
    }
    const dir = pinDir();
    const engine = new Engine();
    const bpf = new BpfBackend({ pinDir: dir });
    applyChangeSet(bpf, engine.apply([pod('prod', 'web', { app: 'web' }, true), ...manyPeers(5), webPolicy]));
    const out = execFileSync('bpftool', ['-j', 'map', 'dump', 'pinned', join(dir, pinName('prod/web'))], { encoding: 'utf8' });
    const rows = (JSON.parse(out) as { key: string[]; value: string[] }[]).map((r) => r.key.map((h) => h.replace(/^0x/, '')).join('') + ':' + r.value.map((h) => h.replace(/^0x/, '')).join(''));
    expect(rows.sort()).toEqual(bytesOf(bpf, 'prod/web').sort());
    expect(rows.length).toBe(engine.mapState('prod/web').size);
    bpf.close();
  });

  it('a batch the kernel stops part-way is reported with its count, and leaves only entries of the old or new state', () => {
    // The engine allows 1,000 entries, the kernel map only 256: the kernel stops the batch.
    const engine = new Engine({ mapCapacity: 1000 });
    const bpf = new BpfBackend({ capacity: 256, pinDir: pinDir() });
    applyChangeSet(bpf, engine.apply([pod('prod', 'web', { app: 'web' }, true), webPolicy]));
    const old = new Set(bytesOf(bpf, 'prod/web'));
    const cs = engine.apply(manyPeers(300));
    const fresh = new Set(cs.deltas.filter((d) => d.op === 'upsert').map((d) => encodeKey(d.key).toString('hex') + ':' + encodeValue(d.entry, d.key).toString('hex')));
    let err: unknown;
    try {
      applyChangeSet(bpf, cs);
    } catch (x) {
      err = x;
    }
    expect(err).toBeInstanceOf(BackendError);
    const b = err as BackendError;
    expect([7, 28]).toContain(b.errno); // E2BIG, or ENOSPC as the LPM trie reports a full map
    const now = bytesOf(bpf, 'prod/web');
    expect(now).toHaveLength(256);
    expect(b.done).toBe(256 - old.size);
    for (const row of now) expect(old.has(row) || fresh.has(row)).toBe(true);
    bpf.close();
  });

  it('an overflowing transaction is refused before anything is written', () => {
    const engine = new Engine({ mapCapacity: 256 });
    const bpf = new BpfBackend({ capacity: 256, pinDir: pinDir() });
    applyChangeSet(bpf, engine.apply([pod('prod', 'web', { app: 'web' }, true), webPolicy]));
    const before = bytesOf(bpf, 'prod/web');
    const calls = bpf.syscalls;
    // Each client needs 3 keys (8000-8010 is 8000/13, 8008/15, 8010/16): 100 clients need 300.
    expect(() => engine.apply(manyPeers(100))).toThrow(MapCapacityError);
    expect(bpf.syscalls).toBe(calls);
    expect(bytesOf(bpf, 'prod/web')).toEqual(before);
    bpf.close();
  });

  it('a restart with unchanged policy writes nothing; a changed policy writes only the difference', () => {
    const dir = pinDir();
    const events: EngineEvent[] = [pod('prod', 'web', { app: 'web' }, true), pod('prod', 'db', { app: 'db' }, true), ...manyPeers(20), webPolicy];
    const first = new Engine();
    const bpf1 = new BpfBackend({ pinDir: dir });
    applyChangeSet(bpf1, first.apply(events));
    bpf1.close();

    const second = new Engine();
    second.apply(events);
    const bpf2 = new BpfBackend({ pinDir: dir });
    const stats = reconcile(second, bpf2);
    expect(stats).toMatchObject({ upserts: 0, deletes: 0, created: 0, removed: 0 });
    expect(stats.syscalls).toBe(0); // no write syscalls: the maps were only read

    // Restart into a changed cluster: one more client (3 masked-port keys for ports 8000-8010),
    // and the db endpoint gone.
    const third = new Engine();
    third.apply([...events.filter((e) => e.type !== 'upsertPod' || e.pod.name !== 'db'), pod('prod', 'extra', { app: 'client' }, false)]);
    const diff = reconcile(third, bpf2);
    expect(diff).toMatchObject({ created: 0, removed: 1, upserts: 3, deletes: 0 });
    expect(bpf2.endpoints()).toEqual(['prod/web']);
    expect(bytesOf(bpf2, 'prod/web').length).toBe(third.mapState('prod/web').size);
    bpf2.close();
  });
});
