import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { applyChangeSet } from '../../src/backend/backend.js';
import { BpfBackend, pinName } from '../../src/backend/bpf.js';
import { bpf, BPF_CMD, closeFd, NativeBuffer } from '../../src/backend/bpf-syscall.js';
import { encodeKey, encodeValue, KEY_SIZE, VALUE_SIZE } from '../../src/backend/encoding.js';
import { KernelIpcache } from '../../src/backend/ipcache.js';
import { PROBE_TOOL } from '../../src/datapath/loader.js';
import { ipcacheContent, policyPinDir, Testbed } from '../../src/datapath/testbed.js';
import { TestbedWriter } from '../../src/datapath/writer.js';
import { Engine } from '../../src/engine/engine.js';
import { ALL_LOCAL } from '../../src/harness/cluster-sync.js';
import { EngineDecider } from '../../src/harness/engine-decider.js';
import type { EngineEvent } from '../../src/engine/events.js';
import { parseIp } from '../../src/model/cidr.js';
import type { ClusterState } from '../../src/model/cluster.js';
import { parseManifestFile } from '../../src/policy/manifest.js';
import { reconcile } from '../../src/node/restart.js';
import { parseScenario } from '../../src/scenario/format.js';
import { scenarioStates } from '../../src/scenario/run.js';
import { kernel } from './gate.js';
import { cnp } from './yaml.js';

/**
 * Attack round 24d on real packets (docs/attack-findings-24d.md). The testbed's own names are used
 * (`dtb-<id>-*`, /sys/fs/bpf/distill-testbed-<id>), removed by `close()`.
 */
const serverIn = (port: number): string => cnp('server-in', 'server', `ingress: [{fromEndpoints: [{matchLabels: {app: client}}], toPorts: [{ports: [{port: "${port}", protocol: TCP}]}]}]`);
const SCENARIO = `
namespaces: [{name: x, labels: {}}]
pods:
  - {name: x/client, labels: {app: client}}
  - {name: x/server, labels: {app: server}}
policies:
  - ${serverIn(80)}
steps:
  - changes:
      - apply: ${serverIn(81)}
`;

/** The server leaves (its pod object is gone while its sandbox still runs) and comes back with its allow moved to 81. */
const SERVER_IP = '10.244.7.2';
const ZOMBIE = `
namespaces: [{name: x, labels: {}}]
pods:
  - {name: x/client, labels: {app: client}}
  - {name: x/server, labels: {app: server}, ip: ${SERVER_IP}}
policies:
  - ${serverIn(80)}
steps:
  - changes:
      - {deletePod: x/server}
  - changes:
      - apply: ${serverIn(81)}
      - {addPod: {name: x/server, labels: {app: server}, ip: ${SERVER_IP}}}
`;

const beds: Testbed[] = [];
afterAll(() => {
  for (const b of beds) b.close();
}, 60_000);

/** One real TCP connection from `from` to `to`:`port` (IPv4): whether it was made. */
function connects(b: Testbed, from: string, to: string, port: number): boolean {
  const src = b.address(from, 'ipv4');
  const dst = b.address(to, 'ipv4');
  const r = spawnSync(PROBE_TOOL, ['client', src.netns, 'TCP', dst.ip, String(port), '800'], { encoding: 'utf8' });
  if (r.status !== 0 && r.status !== 1) throw new Error(`probe failed (exit ${r.status ?? 'none'}): ${r.stderr}`);
  return r.status === 0;
}

kernel('attack round 24d: the kernel map backend and the datapath', () => {
  it('1810: a policy process restarted with another map capacity replaces the pinned maps; the loaded programs must not keep enforcing the old ones', () => {
    const [before, after] = scenarioStates(parseScenario(SCENARIO, 'attacks-24d.yaml')) as [ClusterState, ClusterState];
    const b = new Testbed({ listen: new Set(['TCP:80', 'TCP:81']) });
    beds.push(b);
    expect(b.decide(before, { from: 'x/client', to: 'x/server', port: 80, protocol: 'TCP' }).allowed).toBe(true);
    b.releaseMaps();
    // A policy process of its own (as `distill testbed-agent`, or an agent upgraded or reconfigured),
    // with another capacity: its backend replaces every pinned policy map at open (objCheck), and
    // its state no longer allows client -> server:80.
    const backend = new BpfBackend({ pinDir: policyPinDir(b.pinRoot), capacity: 1024 });
    const ipcache = new KernelIpcache(b.pinRoot);
    try {
      const engine = new Engine({ mapCapacity: backend.capacity });
      new EngineDecider(engine, ALL_LOCAL, () => undefined).sync(after);
      reconcile(engine, backend, () => void ipcache.sync(ipcacheContent(engine, after)));
      const client = engine.identityOfPod('x/client') as number;
      // What the backend holds says denied...
      expect(backend.lookup('x/server', client, 'ingress', 6, 80)).toBeUndefined();
      expect(backend.lookup('x/server', client, 'ingress', 6, 81)?.entry.deny).toBe(false);
      // ...and so must the packets: the server's program still holds the map it was loaded with.
      expect(connects(b, 'x/client', 'x/server', 80)).toBe(false);
    } finally {
      ipcache.close();
      backend.close();
    }
  }, 120_000);

  it('1811: a map removed while a program still holds it (the endpoint left, its veth did not) must not keep admitting', () => {
    const [setup, gone, back] = scenarioStates(parseScenario(ZOMBIE, 'attacks-24d-zombie.yaml')) as [ClusterState, ClusterState, ClusterState];
    const b = new Testbed({ listen: new Set(['TCP:80', 'TCP:81']) });
    beds.push(b);
    expect(b.decide(setup, { from: 'x/client', to: 'x/server', port: 80, protocol: 'TCP' }).allowed).toBe(true);
    b.releaseMaps();
    const writer = new TestbedWriter(b.pinRoot);
    try {
      writer.start(setup);
      // Same capacity: the pins are reopened, not replaced.
      writer.apply(gone);
      writer.apply(back);
      const engine = new EngineDecider(new Engine(), ALL_LOCAL, () => undefined);
      expect(engine.decide(back, { from: 'x/client', to: 'x/server', port: 80, protocol: 'TCP' }).allowed, 'the policy now').toBe(false);
      // The server's new map allows 81 only; its program was loaded with the setup's map, whose pin went.
      expect(connects(b, 'x/client', 'x/server', 80)).toBe(false);
    } finally {
      writer.close();
    }
  }, 120_000);

  it('1812: the reconcile\'s cleanup of a map holding a foreign element never passes a redirected port as a plain allow', async () => {
    const pinRoot = mkdtempSync('/sys/fs/bpf/distill-test-att24dp-');
    const backend = new BpfBackend({ pinDir: join(pinRoot, 'policy'), capacity: 8192 });
    try {
      const engine = new Engine({ mapCapacity: backend.capacity });
      applyChangeSet(backend, engine.apply(L7_EVENTS));
      const client = engine.identityOfIp(parseIp('10.250.0.2'));
      expect(backend.lookup('prod/web', client, 'ingress', 6, 80)?.entry.proxyPort, 'client -> web:80 goes to the proxy').toBeGreaterThan(0);
      // Another writer's elements: stale allows of the client on SCTP ports, which the trie walks
      // after TCP/80 and before the client's L3 allow (post-order), and one element distill never
      // writes (direction byte 2), which makes the next reconcile clean the map in place.
      const allow = { deny: false, proxyPort: 0, precedence: 0 };
      writeRaw(join(backend.pinDir, pinName('prod/web')), [
        ...Array.from({ length: 4000 }, (_, i) => {
          const key = { identity: client, direction: 'ingress' as const, protocol: 132, port: i + 1, portPrefixLen: 16 };
          return [encodeKey(key), encodeValue(allow, key)] as const;
        }),
        [Buffer.from([64, 0, 0, 0, ...u32le(client), 2, 6, 0, 80]), encodeValue(allow, { identity: client, direction: 'ingress', protocol: 6, port: 80, portPrefixLen: 16 })],
      ]);
      // A reader beside the writer, as the endpoint's program: client -> web:80 must never read as a plain allow.
      const watch = spawn(process.execPath, [join(import.meta.dirname, 'lookup-watch.mjs'), backend.pinDir, 'prod/web', String(client), '6', '80'], { stdio: ['pipe', 'pipe', 'inherit'] });
      let out = '';
      watch.stdout.on('data', (d: Buffer) => (out += d.toString()));
      const exited = new Promise((r) => watch.once('exit', r));
      for (let i = 0; i < 3000 && !out.includes('ready'); i++) await new Promise((r) => setTimeout(r, 10));
      await new Promise((r) => setTimeout(r, 100));
      reconcile(engine, backend);
      await new Promise((r) => setTimeout(r, 100));
      watch.stdin.end();
      await exited;
      expect(out).toMatch(/lookups [1-9]/);
      expect(backend.lookup('prod/web', client, 'ingress', 6, 80)?.entry.proxyPort, 'after the reconcile: the proxy again').toBeGreaterThan(0);
      expect(out.includes('open'), 'a plain allow was read for client -> web:80 during the cleanup').toBe(false);
    } finally {
      backend.close();
      rmSync(pinRoot, { recursive: true, force: true });
    }
  }, 120_000);
});

const u32le = (n: number): number[] => [n & 0xff, (n >> 8) & 0xff, (n >> 16) & 0xff, n >>> 24];

const pod = (name: string, labels: Record<string, string>, ip: string, local: boolean): EngineEvent => ({
  type: 'upsertPod',
  local,
  pod: { namespace: 'prod', name, labels, ip: parseIp(ip), serviceAccount: 'default', ports: [] },
});
/** web admits the client at L3, and its TCP/80 through the HTTP proxy (a redirect under the L3 allow). */
const L7_EVENTS: EngineEvent[] = [
  pod('web', { app: 'web' }, '10.250.0.1', true),
  pod('client', { app: 'client' }, '10.250.0.2', false),
  {
    type: 'upsertPolicy',
    policy: parseManifestFile(
      `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: web, namespace: prod}
spec:
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: client}}]
  - fromEndpoints: [{matchLabels: {app: client}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}], rules: {http: [{method: GET}]}}]
`,
      'web.yaml',
    )[0]!,
  },
];

/** What another writer does (bpftool map update): raw elements into the pinned map. */
function writeRaw(path: string, elements: readonly (readonly [Buffer, Buffer])[]): void {
  const attr = new NativeBuffer(128);
  const p = new NativeBuffer(4096);
  const k = new NativeBuffer(KEY_SIZE);
  const v = new NativeBuffer(VALUE_SIZE);
  let fd = -1;
  try {
    Buffer.from(`${path}\0`).copy(p.buf);
    attr.buf.writeBigUInt64LE(p.address, 0);
    fd = bpf(BPF_CMD.OBJ_GET, attr).ret;
    expect(fd).toBeGreaterThanOrEqual(0);
    for (const [key, value] of elements) {
      key.copy(k.buf);
      value.copy(v.buf);
      attr.buf.fill(0);
      attr.buf.writeUInt32LE(fd, 0);
      attr.buf.writeBigUInt64LE(k.address, 8);
      attr.buf.writeBigUInt64LE(v.address, 16);
      expect(bpf(BPF_CMD.MAP_UPDATE_ELEM, attr).ret).toBe(0);
    }
  } finally {
    if (fd >= 0) closeFd(fd);
    for (const b of [attr, p, k, v]) b.free();
  }
}
