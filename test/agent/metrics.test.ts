import { pino, type Logger } from 'pino';
import { Registry } from 'prom-client';
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { InstrumentedEngine } from '../../src/agent/instrument.js';
import { Engine } from '../../src/engine/engine.js';
import type { EngineEvent } from '../../src/engine/events.js';
import { parseIp } from '../../src/model/cidr.js';
import { parseManifest } from '../../src/policy/manifest.js';
import { promtoolCheck, promtoolMissing } from './promtool.js';

const pod = (name: string, app: string, n: number): EngineEvent => ({ type: 'upsertPod', local: true, pod: { namespace: 'shop', name, labels: { app }, ip: parseIp(`10.0.0.${n}`), serviceAccount: 'default', ports: [] } });
const policy = (name: string, ports: number): EngineEvent => ({
  type: 'upsertPolicy',
  policy: parseManifest(
    { apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { name, namespace: 'shop' }, spec: { podSelector: { matchLabels: { app: 'web' } }, ingress: [{ from: [{ podSelector: {} }], ports: Array.from({ length: ports }, (_, i) => ({ port: 1000 + i })) }] } },
    name,
  ),
});

function logSink(): { logger: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split('\n')) if (l !== '') lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  return { logger: pino({ level: 'debug' }, stream), lines };
}

/** A registry after three transactions: two applied, one refused for capacity, one refused as invalid. */
async function scenario() {
  const registry = new Registry();
  const { logger, lines } = logSink();
  const engine = new InstrumentedEngine(new Engine({ mapCapacity: 256 }), { registry, logger });
  expect(engine.apply([{ type: 'upsertNamespace', name: 'shop', labels: {} }, pod('web', 'web', 1), pod('db', 'db', 2)]).ok).toBe(true);
  expect(engine.apply([policy('small', 3)]).ok).toBe(true);
  const capacity = engine.apply([policy('huge', 300)]);
  expect(capacity.ok ? '' : capacity.error.name).toBe('MapCapacityError');
  const invalid = engine.apply([{ type: 'deletePod', namespace: 'shop', name: 'gone' }]);
  expect(invalid.ok ? '' : invalid.error.name).toBe('EngineError');
  await new Promise((r) => setImmediate(r));
  return { text: await registry.metrics(), lines };
}

function value(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe('metrics and logs, from outside the engine', () => {
  it('counts outcomes, refusals by reason, deltas, and reads sizes and map pressure', async () => {
    const { text } = await scenario();
    expect(value(text, 'distill_policy_change_total{outcome="success"}')).toBe(1);
    expect(value(text, 'distill_policy_change_total{outcome="failure"}')).toBe(1);
    expect(value(text, 'distill_refused_transactions_total{reason="MapCapacityError"}')).toBe(1);
    expect(value(text, 'distill_refused_transactions_total{reason="EngineError"}')).toBe(1);
    expect(value(text, 'distill_transaction_duration_seconds_count{event_type="mixed"}')).toBe(1);
    expect(value(text, 'distill_transaction_duration_seconds_count{event_type="upsertPolicy"}')).toBe(1);
    expect(value(text, 'distill_endpoints')).toBe(2);
    // Cilium's identity types (finding 1267): the engine's 10 reserved identities, 2 pods, no CIDR or remote node.
    expect(value(text, 'distill_identity{type="reserved"}')).toBe(10);
    expect(value(text, 'distill_identity{type="cluster_local"}')).toBe(2);
    expect(value(text, 'distill_identity{type="node_local"}')).toBe(0);
    expect(value(text, 'distill_identity{type="remote_node"}')).toBe(0);
    // web: egress allow-all + 3 ports from the peer (db, and web itself: 2 identities) = 1 + 6.
    expect(value(text, 'distill_bpf_map_pressure{map_name="pol_shop_2fweb"}')).toBeCloseTo(7 / 256);
    expect(value(text, 'distill_deltas_total')).toBeGreaterThanOrEqual(8);
    expect(value(text, 'distill_engine_work_total{counter="selector_evaluations"}')).toBeGreaterThan(0);
  });
  it('logs each refusal at warn with its reason and culprit rules, transactions at debug', async () => {
    const { lines } = await scenario();
    const warns = lines.filter((l) => l.level === 40);
    expect(warns.map((l) => l.reason)).toEqual(['MapCapacityError', 'EngineError']);
    expect(String((warns[0]!.culprits as string[])[0])).toMatch(/huge/);
    expect(lines.filter((l) => l.level === 20 && l.msg === 'transaction applied')).toHaveLength(2);
  });
  it('is silent by default', () => {
    expect(new InstrumentedEngine(new Engine(), { registry: new Registry() }).logger.level).toBe('silent');
  });
  it.skipIf(promtoolMissing !== null)('passes promtool check metrics', async () => {
    const { text } = await scenario();
    expect(promtoolCheck(text)).toEqual({ status: 0, output: '' });
    expect(promtoolCheck(`${text}\nbad_metric_total{ 1\n`).status).not.toBe(0);
  });
});

/**
 * Finding 746 (docs/attack-findings-16w.md, -17w.md): each refused transaction was one warn line.
 * The mirror retries a refused batch in halves, and what it refuses follows what any namespace
 * admin writes; the line now goes through the mirror's `LogLimiter` (10 at once, then one per
 * 500 ms of the given clock), the counter still counts every refusal.
 */
describe('746. a flood of refused transactions', () => {
  it('logs a bounded number of warn lines, the next one telling how many were suppressed', async () => {
    const registry = new Registry();
    const { logger, lines } = logSink();
    let now = 0;
    const engine = new InstrumentedEngine(new Engine(), { registry, logger, now: () => now });
    for (let i = 0; i < 100; i++) expect(engine.apply([{ type: 'deletePod', namespace: 'shop', name: `gone-${i}` }]).ok).toBe(false);
    now += 500;
    expect(engine.apply([{ type: 'deletePod', namespace: 'shop', name: 'last' }]).ok).toBe(false);
    await new Promise((r) => setImmediate(r));
    const warns = lines.filter((l) => l.level === 40 && l.msg === 'transaction refused');
    expect(warns).toHaveLength(11);
    expect(warns[10]!.suppressed).toBe(90);
    expect(value(await registry.metrics(), 'distill_refused_transactions_total{reason="EngineError"}')).toBe(101);
  });
});
