import { spawnSync } from 'node:child_process';
import { afterAll, expect, it } from 'vitest';
import { BpfBackend } from '../../src/backend/bpf.js';
import { KernelIpcache } from '../../src/backend/ipcache.js';
import { PROBE_TOOL } from '../../src/datapath/loader.js';
import { ipcacheContent, policyPinDir, Testbed } from '../../src/datapath/testbed.js';
import { TestbedWriter } from '../../src/datapath/writer.js';
import { Engine } from '../../src/engine/engine.js';
import { ALL_LOCAL } from '../../src/harness/cluster-sync.js';
import { EngineDecider } from '../../src/harness/engine-decider.js';
import type { ClusterState } from '../../src/model/cluster.js';
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
});
