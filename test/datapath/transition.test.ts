import { spawnSync } from 'node:child_process';
import { afterAll, expect, it } from 'vitest';
import { KernelIpcache } from '../../src/backend/ipcache.js';
import { TRANSITION_IDENTITY } from '../../src/backend/ipcache-content.js';
import { PROBE_TOOL } from '../../src/datapath/loader.js';
import { Testbed } from '../../src/datapath/testbed.js';
import { parseScenario } from '../../src/scenario/format.js';
import { scenarioStates } from '../../src/scenario/run.js';
import { kernel } from './gate.js';

/*
 * Finding 1120's barrier in the real datapath: an address the writer is moving is at
 * TRANSITION_IDENTITY in the kernel ipcache, and the endpoint program drops it in both directions
 * before any policy lookup. The pods have no policy (every map allows every peer through its
 * identity-0 entries), so on the datapath without the check the transition identity, like any
 * number the maps do not name, would pass through those wildcard entries.
 */
const SCENARIO = `
namespaces: [{name: x, labels: {}}]
pods:
  - {name: x/client, labels: {app: client}}
  - {name: x/server, labels: {app: server}}
`;

let bed: Testbed | undefined;
afterAll(() => bed?.close());

kernel('the transition identity in the kernel ipcache (real packets)', () => {
  it('1120: a peer at the transition identity is dropped by both the sender\'s egress and the receiver\'s ingress, in both families', () => {
    const [state] = scenarioStates(parseScenario(SCENARIO, 'transition.yaml'));
    const b = (bed = new Testbed({ listen: new Set(['TCP:80']) }));
    expect(b.decide(state!, { from: 'x/client', to: 'x/server', port: 80, protocol: 'TCP' }).allowed).toBe(true);
    const ipcache = new KernelIpcache(b.pinRoot);
    try {
      const held = new Map(ipcache.entries());
      for (const family of ['ipv4', 'ipv6'] as const) {
        const client = b.address('x/client', family);
        const server = b.address('x/server', family);
        const connects = (): boolean => {
          const r = spawnSync(PROBE_TOOL, ['client', client.netns, 'TCP', server.ip, '80', '500'], { encoding: 'utf8' });
          if (r.status !== 0 && r.status !== 1) throw new Error(`probe failed (exit ${r.status ?? 'none'}): ${r.stderr}`);
          return r.status === 0;
        };
        const bits = family === 'ipv4' ? 32 : 128;
        const seen: Record<string, boolean> = Object.create(null) as Record<string, boolean>;
        seen.before = connects();
        for (const [side, ip] of [['client moving (server ingress)', client.ip], ['server moving (client egress)', server.ip]] as const) {
          const prefix = `${ip}/${bits}`;
          ipcache.apply([{ op: 'upsert', prefix, identity: TRANSITION_IDENTITY, previous: held.get(prefix) as number }]);
          seen[side] = connects();
          ipcache.sync(held);
        }
        seen.after = connects();
        expect(seen, family).toEqual({ before: true, 'client moving (server ingress)': false, 'server moving (client egress)': false, after: true });
      }
    } finally {
      ipcache.close();
    }
  }, 120_000);
});
