import { spawnSync } from 'node:child_process';
import { afterAll, expect, it } from 'vitest';
import { applyChangeSet, MapBackend } from '../../src/backend/backend.js';
import { planWrites } from '../../src/backend/write-plan.js';
import { PROBE_TOOL } from '../../src/datapath/loader.js';
import { Testbed } from '../../src/datapath/testbed.js';
import type { ChangeSet, MapDelta } from '../../src/engine/events.js';
import type { ClusterState } from '../../src/model/cluster.js';
import { parseScenario } from '../../src/scenario/format.js';
import { scenarioStates } from '../../src/scenario/run.js';
import { kernel } from './gate.js';
import { cnp } from './yaml.js';


/** The server allows the client on port 80; a deny of that flow moves from the client's egress to the server's ingress. */
const SCENARIO = `
namespaces: [{name: x, labels: {}}]
pods:
  - {name: x/client, labels: {app: client}}
  - {name: x/server, labels: {app: server}}
policies:
  - ${cnp('server-in', 'server', 'ingress: [{fromEndpoints: [{matchLabels: {app: client}}], toPorts: [{ports: [{port: "80", protocol: TCP}]}]}]')}
steps:
  - changes:
      - apply: ${cnp('deny-out', 'client', 'egressDeny: [{toEndpoints: [{matchLabels: {app: server}}]}]')}
  - changes:
      - delete: {kind: CiliumNetworkPolicy, namespace: x, name: deny-out}
      - apply: ${cnp('deny-in', 'server', 'ingressDeny: [{fromEndpoints: [{matchLabels: {app: client}}]}]')}
`;

/** Before the deny (client → server:80 allowed), with it on the client's egress, with it on the server's ingress. */
function states(): [ClusterState, ClusterState, ClusterState] {
  const out = scenarioStates(parseScenario(SCENARIO, 'write-order.yaml'));
  return out as [ClusterState, ClusterState, ClusterState];
}

/** How a test writes one transaction's operations: the plan's order, or a deliberately wrong one. */
type Order = 'plan' | 'reversed' | 'loosen-first';

function ordered(cs: ChangeSet, backend: MapBackend, order: Order): MapDelta[] {
  const byEndpoint = new Map<string, MapDelta[]>();
  for (const d of cs.deltas) byEndpoint.set(d.endpoint, [...(byEndpoint.get(d.endpoint) ?? []), d]);
  const writes = [...byEndpoint].map(([endpoint, deltas]) => ({ endpoint, deltas, size: backend.size(endpoint) }));
  const plan = planWrites(writes, backend.capacity, (ep) => backend.dump(ep));
  if (order === 'loosen-first') return [...plan.filter((b) => b.phase === 'loosen'), ...plan.filter((b) => b.phase === 'tighten')].flatMap((b) => b.ops);
  const ops = plan.flatMap((b) => b.ops);
  return order === 'reversed' ? ops.reverse() : ops;
}

const flow = { from: 'x/client', to: 'x/server', port: 80, protocol: 'TCP' } as const;

/**
 * A testbed whose transactions, while `stepping` is set, are written one operation at a time, with
 * a real connection from the client to the server attempted before the first and after each
 * (500 ms each: a loaded machine cannot hide a leak, and less than TCP's 1 s SYN retransmission).
 */
class SteppedBed {
  stepping: Order | undefined;
  /** Per attempt: whether it connected, and how many operations had been written. */
  readonly attempts: { connected: boolean; after: number }[] = [];
  readonly bed: Testbed;

  constructor() {
    this.bed = new Testbed({ listen: new Set(['TCP:80']), write: (backend, cs) => this.write(backend, cs) });
  }

  private connect(after: number): void {
    const src = this.bed.address(flow.from, 'ipv4');
    const dst = this.bed.address(flow.to, 'ipv4');
    const r = spawnSync(PROBE_TOOL, ['client', src.netns, 'TCP', dst.ip, '80', '500'], { encoding: 'utf8' });
    if (r.status !== 0 && r.status !== 1) throw new Error(`probe failed (exit ${r.status ?? 'none'}): ${r.stderr}`);
    this.attempts.push({ connected: r.status === 0, after });
  }

  private write(backend: MapBackend, cs: ChangeSet): void {
    if (this.stepping === undefined) return void applyChangeSet(backend, cs);
    expect([cs.endpointsAdded, cs.endpointsRemoved]).toEqual([[], []]);
    const ops = ordered(cs, backend, this.stepping);
    this.connect(0);
    ops.forEach((op, i) => {
      backend.apply(op.endpoint, [op]);
      this.connect(i + 1);
    });
  }
}

/**
 * The check: from a state that denies client → server:80, a transaction to another state that
 * denies it, written step by step in `order`, with a connection attempted at every step: none
 * may get through. Returns the number of operations written.
 */
function moveDeny(s: SteppedBed, from: ClusterState, to: ClusterState, order: Order): number {
  expect(s.bed.decide(from, flow).allowed).toBe(false);
  s.attempts.length = 0;
  s.stepping = order;
  try {
    expect(s.bed.decide(to, flow).allowed).toBe(false);
  } finally {
    s.stepping = undefined;
  }
  const ops = s.attempts.length - 1;
  process.stderr.write(`write-order: ${order}: ${ops} operations, connected after [${s.attempts.map((a) => (a.connected ? 'Y' : 'n')).join(' ')}]\n`);
  const through = s.attempts.filter((a) => a.connected).map((a) => `after ${a.after} of ${ops} operations`);
  expect(through, `connections got through (${order} order)`).toEqual([]);
  return ops;
}

const beds: SteppedBed[] = [];
afterAll(() => {
  for (const b of beds) b.bed.close();
});
const fresh = (): SteppedBed => {
  const b = new SteppedBed();
  beds.push(b);
  return b;
};

kernel('write order with real packets, step by step', () => {
  const [open, egressDeny, ingressDeny] = states();

  it('moving a deny between endpoints, in the plan\'s order, lets no connection through at any step (both ways)', () => {
    const s = fresh();
    expect(s.bed.decide(open, flow).allowed).toBe(true); // the flow is allowed without the deny: the check can see a leak
    expect(moveDeny(s, egressDeny, ingressDeny, 'plan')).toBeGreaterThanOrEqual(2);
    expect(moveDeny(s, ingressDeny, egressDeny, 'plan')).toBeGreaterThanOrEqual(2);
  }, 60_000);

  for (const wrong of ['reversed', 'loosen-first'] as const) {
    it(`the same check catches a wrong order: ${wrong}`, () => {
      const s = fresh();
      s.bed.decide(open, flow);
      expect(() => moveDeny(s, egressDeny, ingressDeny, wrong)).toThrow(/connections got through/);
      expect(s.attempts.some((a) => a.connected)).toBe(true);
    }, 60_000);
  }
});
