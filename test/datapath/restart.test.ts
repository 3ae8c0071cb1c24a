import { spawn } from 'node:child_process';
import { afterAll, expect, it } from 'vitest';
import { listenSet } from '../../src/cli/testbed.js';
import { PROBE_TOOL } from '../../src/datapath/loader.js';
import { Testbed } from '../../src/datapath/testbed.js';
import type { ClusterState } from '../../src/model/cluster.js';
import { EMPTY_CLUSTER } from '../../src/model/cluster.js';
import { parseScenario } from '../../src/scenario/format.js';
import { applyChange } from '../../src/scenario/run.js';
import { kernel } from './gate.js';

const POLICY = (name: string, selector: string, rule: string): string => `
      - apply:
          apiVersion: cilium.io/v2
          kind: CiliumNetworkPolicy
          metadata: {name: ${name}, namespace: x}
          spec:
            endpointSelector: {matchLabels: {app: ${selector}}}
            ${rule}`;

/** client → server allowed; other → server denied; then a deny that moves from client's egress to server's ingress. */
const SCENARIO = `
namespaces: [{name: x, labels: {}}]
pods:
  - {name: x/client, labels: {app: client}}
  - {name: x/server, labels: {app: server}}
  - {name: x/other, labels: {app: other}}
policies:
  - apiVersion: cilium.io/v2
    kind: CiliumNetworkPolicy
    metadata: {name: server-in, namespace: x}
    spec:
      endpointSelector: {matchLabels: {app: server}}
      ingress: [{fromEndpoints: [{matchLabels: {app: client}}], toPorts: [{ports: [{port: "80", protocol: TCP}]}]}]
steps:
  - changes:
${POLICY('deny-out', 'client', 'egressDeny: [{toEndpoints: [{matchLabels: {app: server}}]}]')}
    probes: [{from: x/client, to: x/server, port: 80, protocol: TCP}, {from: x/other, to: x/server, port: 80, protocol: TCP}]
  - changes:
      - delete: {kind: CiliumNetworkPolicy, namespace: x, name: deny-out}
${POLICY('deny-in', 'server', 'ingressDeny: [{fromEndpoints: [{matchLabels: {app: client}}]}]')}
    probes: [{from: x/client, to: x/server, port: 80, protocol: TCP}]
`;

let bed: Testbed | undefined;
afterAll(() => bed?.close());

function states(): ClusterState[] {
  const sc = parseScenario(SCENARIO, 'restart.yaml');
  let s = EMPTY_CLUSTER;
  for (const c of sc.setup) s = applyChange(s, c);
  const out = [s];
  for (const step of sc.steps) {
    for (const c of step.changes) s = applyChange(s, c);
    out.push(s);
  }
  return out;
}

/** Connections attempted back to back from `from` to `to` in a child process, while the test works. */
function connections(b: Testbed, from: string, to: string, n: number): Promise<number[]> {
  const src = b.address(from, 'ipv4');
  const dst = b.address(to, 'ipv4');
  const script = `for i in $(seq 1 ${n}); do ${PROBE_TOOL} client ${src.netns} TCP ${dst.ip} 80 100; echo $?; done`;
  return new Promise((resolve) => {
    const c = spawn('sh', ['-c', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    c.stdout.on('data', (d: Buffer) => (out += d.toString()));
    c.on('exit', () => resolve(out.trim().split('\n').map(Number)));
  });
}

const flow = (from: string): { from: string; to: string; port: number; protocol: 'TCP' } => ({ from, to: 'x/server', port: 80, protocol: 'TCP' });

kernel('datapath across restarts and transactions', () => {
  it('a restarting agent opens no allowed-to-denied or denied-to-allowed gap, and rewrites nothing', async () => {
    const [base] = states();
    bed = new Testbed({ listen: listenSet(parseScenario(SCENARIO, 'restart.yaml')) });
    const s = base as ClusterState;
    expect(bed.decide(s, flow('x/client')).allowed).toBe(true);
    expect(bed.decide(s, flow('x/other')).allowed).toBe(false);
    const allowed = connections(bed, 'x/client', 'x/server', 150);
    const denied = connections(bed, 'x/other', 'x/server', 20);
    for (let i = 0; i < 20; i++) {
      const stats = bed.restartAgent(s);
      expect([stats.upserts, stats.deletes, stats.created, stats.removed]).toEqual([0, 0, 0, 0]);
      await new Promise((r) => setTimeout(r, 20));
    }
    const [a, d] = await Promise.all([allowed, denied]);
    expect(a).toHaveLength(150);
    expect(a.every((x) => x === 0)).toBe(true);
    expect(d.every((x) => x === 1)).toBe(true);
    expect(bed.decide(s, flow('x/client')).allowed).toBe(true); // the restarted agent still drives the maps
  }, 120_000);

  it('a transaction moving a deny from the client egress to the server ingress never lets a connection through', async () => {
    const [, withEgressDeny, withIngressDeny] = states() as [ClusterState, ClusterState, ClusterState];
    const b = bed as Testbed;
    expect(b.decide(withEgressDeny, flow('x/client')).allowed).toBe(false);
    const attempts = connections(b, 'x/client', 'x/server', 40);
    for (let i = 0; i < 40; i++) {
      expect(b.decide(i % 2 === 0 ? withIngressDeny : withEgressDeny, flow('x/client')).allowed).toBe(false);
    }
    const results = await attempts;
    expect(results).toHaveLength(40);
    expect(results.every((x) => x === 1)).toBe(true);
  }, 120_000);
});
