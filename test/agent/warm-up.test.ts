import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterAll, describe, expect, it } from 'vitest';
import { Agent } from '../../src/agent/agent.js';
import { MemoryBackend } from '../../src/backend/memory.js';

/**
 * The agent's start-up warm-up (perf22tail): after the first transaction's write and before
 * /healthz reports ready, scratch engines run the churn paths once. It runs once, and leaves the
 * agent's maps, engine and metrics as an agent without it has them.
 */
type Obj = Record<string, unknown>;
const ev = (object: Obj): string => JSON.stringify({ type: 'ADDED', object });
const pod = (name: string, node: string, ip: string, app: string): Obj => ({ apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: 'x', resourceVersion: '2', labels: { app } }, spec: { nodeName: node, containers: [] }, status: { phase: 'Running', podIP: ip } });
const cnp = { apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name: 'allow', namespace: 'x', resourceVersion: '5' }, spec: { endpointSelector: { matchLabels: { app: 'server' } }, ingress: [{ fromEndpoints: [{ matchLabels: { app: 'client' } }], toPorts: [{ ports: [{ port: '80', protocol: 'TCP' }] }] }] } };

const dir = mkdtempSync(join(tmpdir(), 'distill-warm-up-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function files(): string[] {
  const ns = join(dir, 'ns.json');
  const pods = join(dir, 'pods.json');
  const pol = join(dir, 'pol.json');
  writeFileSync(ns, `${ev({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'x', resourceVersion: '1' } })}\n`);
  writeFileSync(pods, `${[ev(pod('server', 'n1', '10.0.0.1', 'server')), ev(pod('client', 'n2', '10.0.0.2', 'client'))].join('\n')}\n`);
  writeFileSync(pol, `${ev(cnp)}\n`);
  return [ns, pods, pol];
}

function agentOn(warmUp: boolean) {
  const order: string[] = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => void order.push(`log ${(JSON.parse(line) as { msg: string }).msg}`) });
  const backend = new MemoryBackend();
  const registry = new Registry();
  const agent = new Agent({ node: 'n1', watch: files(), backend, logger, registry, exitAtEof: true, warmUp });
  const apply = agent.instrumented.apply.bind(agent.instrumented);
  agent.instrumented.apply = (events) => {
    order.push(`transaction, not ready: ${agent.notReady ?? '(ready)'}`);
    return apply(events);
  };
  return { agent, order, backend, registry };
}

/** The counters and gauges a transaction moves (the histograms hold times). */
async function counters(registry: Registry): Promise<string[]> {
  const text = await registry.metrics();
  return text.split('\n').filter((l) => /^distill_(policy_change_total|deltas_total|engine_work_total|endpoints|refused_transactions_total|l7_deltas_total|endpoint_regenerations_total)/.test(l));
}

describe('the agent warms up after its first transaction, before it reports ready', () => {
  it('not ready until the first transaction was written and the warm-up ran (once); then ready', async () => {
    const { agent, order, registry } = agentOn(true);
    expect(agent.notReady).toMatch(/^starting: the first transaction and the warm-up have not run yet$/);
    await agent.run();
    const first = order.findIndex((l) => l.startsWith('transaction'));
    const warm = order.findIndex((l) => l.startsWith('log warm-up'));
    expect(order[first]).toMatch(/not ready: starting/);
    expect(warm).toBeGreaterThan(first);
    expect(order.filter((l) => l.startsWith('log warm-up'))).toEqual(['log warm-up: the churn paths ran once through scratch engines']);
    expect(agent.notReady).toBeUndefined();
    expect(await registry.metrics()).toMatch(/^distill_warm_up_seconds [0-9.e-]+$/m);
    await agent.stop();
  }, 60_000);

  it('leaves the maps, the engine and the metrics as an agent without it has them', async () => {
    const warm = agentOn(true);
    const cold = agentOn(false);
    await warm.agent.run();
    await cold.agent.run();
    for (const { backend } of [warm, cold]) expect(backend.endpoints()).toHaveLength(1);
    const maps = (b: MemoryBackend) => b.endpoints().map((ep) => b.dump(ep));
    expect(maps(warm.backend)).toEqual(maps(cold.backend));
    expect(warm.agent.engine.ipcache()).toEqual(cold.agent.engine.ipcache());
    expect(warm.agent.engine.stats()).toEqual(cold.agent.engine.stats());
    expect(await counters(warm.registry)).toEqual(await counters(cold.registry));
    expect((await counters(warm.registry)).length).toBeGreaterThan(3);
    expect(cold.order.some((l) => l.startsWith('log warm-up'))).toBe(false);
    expect(await cold.registry.metrics()).not.toMatch(/distill_warm_up_seconds/);
    await warm.agent.stop();
    await cold.agent.stop();
  }, 60_000);
});
