import { get } from 'node:http';
import { Writable } from 'node:stream';
import { pino, type Logger } from 'pino';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { Agent } from '../../src/agent/agent.js';
import { MemoryBackend } from '../../src/backend/memory.js';
import type { EngineEvent } from '../../src/engine/events.js';
import type { WatchItem } from '../../src/k8s/watch.js';
import { DEFAULT_MAP_CAPACITY } from '../../src/model/policy-map.js';
import { promtoolCheck, promtoolMissing } from './promtool.js';

/*
 * Finding 2395 (docs/attack-findings-27z.md; 2203 in 27a): while an identity event waits after a refusal, an object is
 * held refused, or an input reads as the fail-closed stand-in, the node keeps enforcing what it last committed for it,
 * and /healthz said only `ok`. Cilium keeps an endpoint's last realized policy while its regeneration fails and shows it
 * in `cilium status` and `cilium_endpoint_regenerations_total{outcome="fail"}`, never failing the agent's health
 * (daemon/cmd/status.go `getStatus`: only the kvstore, the container runtime, Kubernetes and the CNI file decide its
 * state). Now /healthz stays 200 and names them after its `ok`, `/healthz?format=json` gives the counts (state
 * `Warning`), gauges count them, and a `status` log line says when they change.
 */

let rv = 1;
const meta = (name: string, extra: Record<string, unknown> = {}) => ({ name, resourceVersion: String(rv++), ...extra });
const shop = (): WatchItem => ({ type: 'ADDED', object: { apiVersion: 'v1', kind: 'Namespace', metadata: meta('shop') } });
const pod = (name: string, node: string, ip: string): WatchItem => ({
  type: 'ADDED',
  object: { apiVersion: 'v1', kind: 'Pod', metadata: meta(name, { namespace: 'shop', labels: { app: name } }), spec: { nodeName: node, containers: [] }, status: { phase: 'Running', podIP: ip } },
});
const labels = (app: string): Record<string, string> => ({
  'k8s:app': app,
  'k8s:io.kubernetes.pod.namespace': 'shop',
  'k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name': 'shop',
  'k8s:io.cilium.k8s.policy.cluster': 'default',
  'k8s:io.cilium.k8s.policy.serviceaccount': 'default',
});

/** An identity source as the etcd one behaves toward the agent: its events wait until a transaction acks them. */
class Source {
  readonly pending: EngineEvent[] = [];
  onChange: () => void = () => undefined;
  readonly ready = true;
  observe(): void {}
  peek(): readonly EngineEvent[] {
    return this.pending;
  }
  ack(n: number): void {
    this.pending.splice(0, n);
  }
}

/** web's egress: `toEntities: [all]` on `n` distinct TCP ports (40 a rule), one map entry each. */
function wide(name: string, n: number): WatchItem & { type: 'ADDED' } {
  const egress: unknown[] = [];
  for (let p = 1; p <= n; p += 40) {
    const ports = [];
    for (let q = p; q < Math.min(p + 40, n + 1); q++) ports.push({ port: String(q), protocol: 'TCP' });
    egress.push({ toEntities: ['all'], toPorts: [{ ports }] });
  }
  return { type: 'ADDED', object: { apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: meta(name, { namespace: 'shop' }), spec: { endpointSelector: { matchLabels: { app: 'web' } }, egress } } };
}

/** pino lines, parsed. */
function capture(): { logger: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString('utf8').split('\n')) if (l !== '') lines.push(JSON.parse(l) as Record<string, unknown>);
      done();
    },
  });
  return { logger: pino({ level: 'info' }, stream) as Logger, lines };
}

const agents: Agent[] = [];
afterEach(async () => {
  for (const a of agents.splice(0)) await a.stop();
});

/** An agent serving /healthz and /metrics on a free port, fed by hand (`feed`). */
async function start(opts: { identitySource?: Source; identities?: 'external'; cidrGroups?: boolean; now?: () => number }) {
  const backend = new MemoryBackend();
  const { logger, lines } = capture();
  let addr = '';
  const a = new Agent({ node: 'n1', watch: [], backend, logger, registry: new Registry(), metricsAddr: '127.0.0.1:0', onListening: (x) => (addr = x), ...opts });
  agents.push(a);
  void a.run();
  while (addr === '') await new Promise((r) => setTimeout(r, 5));
  const feed = (...items: WatchItem[]): void => {
    for (const item of items) a.mirror.observe(item, 'test');
    a.flush();
  };
  const fetchPath = async (path: string): Promise<{ code: number; body: string }> => {
    // The retries a refusal queued run first: a request waiting behind a long one is cut at the server's 10 s bound.
    do await new Promise((r) => setImmediate(r));
    while (!a.mirror.idle);
    // A fresh connection each time: a kept-alive one the server closes after a long transaction resets the next request.
    return new Promise((resolve, reject) => {
      get(`http://${addr}${path}`, { agent: false }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ code: res.statusCode ?? 0, body }));
      }).on('error', reject);
    });
  };
  const gauge = async (name: string): Promise<number> => {
    const { body } = await fetchPath('/metrics');
    const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(body);
    if (!m) throw new Error(`${name} not in /metrics`);
    return Number(m[1]);
  };
  const json = async (): Promise<Record<string, unknown>> => JSON.parse((await fetchPath('/healthz?format=json')).body) as Record<string, unknown>;
  const statusLines = (): Record<string, unknown>[] => lines.filter((l) => typeof l.msg === 'string' && l.msg.startsWith('status: '));
  return { a, backend, feed, fetchPath, gauge, json, statusLines };
}

describe('2395: /healthz, metrics and logs say what is not in force', () => {
  it('an identity event waiting after a refusal (--identities etcd): 200 with a warning, the gauge, a status line; all clear once it commits', async () => {
    const source = new Source();
    const t = await start({ identitySource: source });
    source.pending.push({ type: 'upsertIdentity', id: 300, labels: labels('web') }, { type: 'upsertIdentity', id: 303, labels: labels('db') });
    t.feed(shop(), pod('web', 'n1', '10.0.0.2'), pod('db', 'n2', '10.0.1.4'));
    const big = wide('wide', DEFAULT_MAP_CAPACITY - 3);
    t.feed(big);
    expect(await t.fetchPath('/healthz')).toEqual({ code: 200, body: 'ok\n' });
    expect(await t.gauge('distill_identity_events_waiting')).toBe(0);
    // 303 turns unreadable: its stand-in's deny does not fit web's map; the event waits (2201).
    source.pending.push({ type: 'upsertIdentity', id: 303, labels: labels('db'), unreadable: true });
    t.a.flush();
    expect(source.pending.length).toBe(1);
    const h = await t.fetchPath('/healthz');
    expect(h.code).toBe(200);
    expect(h.body).toMatch(/^ok\nwarning: 1 identity event\(s\) refused, waiting for the next transaction/);
    const j = await t.json();
    expect(j).toMatchObject({ state: 'Warning', notReady: [], identityEventsWaiting: 1, objectsRefused: 0, identitiesUnreadable: 0 });
    expect(await t.gauge('distill_identity_events_waiting')).toBe(1);
    expect(t.statusLines().at(-1)).toMatchObject({ level: 40, identityEventsWaiting: 1 });
    if (!promtoolMissing) expect(promtoolCheck((await t.fetchPath('/metrics')).body)).toEqual({ status: 0, output: '' });
    // The wide policy goes: the stand-in commits; 303 is now read as the stand-in, denied by every local map.
    t.feed({ type: 'DELETED', object: big.object });
    expect(source.pending.length).toBe(0);
    expect(await t.gauge('distill_identity_events_waiting')).toBe(0);
    expect(await t.gauge('distill_identities_unreadable')).toBe(1);
    expect(await t.json()).toMatchObject({ state: 'Warning', identityEventsWaiting: 0, identitiesUnreadable: 1, unreadableIdentities: [303] });
    expect((await t.fetchPath('/healthz')).body).toMatch(/^ok\nwarning: 1 identity number\(s\) unreadable, read as the fail-closed stand-in .*: 303\n$/);
    expect(t.statusLines().at(-1)).toMatchObject({ level: 40, identityEventsWaiting: 0, identitiesUnreadable: 1 });
    // Readable again: nothing left, one info line.
    source.pending.push({ type: 'upsertIdentity', id: 303, labels: labels('db') });
    t.a.flush();
    expect(await t.fetchPath('/healthz')).toEqual({ code: 200, body: 'ok\n' });
    expect(await t.json()).toMatchObject({ state: 'Ok', warnings: [] });
    expect(t.statusLines().at(-1)).toMatchObject({ level: 30, msg: 'status: every input is in force' });
    expect(t.statusLines().length).toBe(3);
  });

  it('a policy the engine refuses alone is counted and named until it goes; a refused relist retry keeps it counted', async () => {
    const t = await start({});
    t.feed(shop(), pod('web', 'n1', '10.0.0.2'));
    const over = wide('over', DEFAULT_MAP_CAPACITY + 1);
    t.feed(over);
    expect(t.a.summary.refusals).toBeGreaterThan(0);
    expect(await t.gauge('distill_objects_refused')).toBe(1);
    expect(await t.json()).toMatchObject({ state: 'Warning', objectsRefused: 1, refusedObjects: ['CiliumNetworkPolicy/shop/over'] });
    expect((await t.fetchPath('/healthz')).body).toMatch(/^ok\nwarning: 1 object\(s\) refused, .*: CiliumNetworkPolicy\/shop\/over\n$/);
    // An unrelated commit moves the refused policy back for a retry (EngineBatches.commit); refused again, still counted.
    t.feed(pod('db', 'n1', '10.0.0.4'));
    expect(t.a.status().objectsRefused).toBe(1);
    t.a.flush();
    expect(await t.gauge('distill_objects_refused')).toBe(1);
    t.feed({ type: 'DELETED', object: over.object });
    expect(await t.gauge('distill_objects_refused')).toBe(0);
    expect(await t.fetchPath('/healthz')).toEqual({ code: 200, body: 'ok\n' });
    if (!promtoolMissing) expect(promtoolCheck((await t.fetchPath('/metrics')).body)).toEqual({ status: 0, output: '' });
    // A map-capacity policy compiled three times takes ~58 s alone on a 2-core machine: room for a loaded CI.
  }, 180_000);

  it('an unreadable CiliumCIDRGroup (group peers read as the stand-in) is counted while it is', async () => {
    const t = await start({ cidrGroups: true });
    const group = (cidrs: unknown, type: 'ADDED' | 'MODIFIED' = 'MODIFIED'): WatchItem => ({ type, object: { apiVersion: 'cilium.io/v2alpha1', kind: 'CiliumCIDRGroup', metadata: meta('corp'), spec: { externalCIDRs: cidrs } } });
    t.feed(shop(), pod('web', 'n1', '10.0.0.2'), group(['192.0.2.0/24'], 'ADDED'));
    expect(await t.gauge('distill_cidr_groups_unreadable')).toBe(0);
    t.feed(group(['not a prefix']));
    expect(await t.gauge('distill_cidr_groups_unreadable')).toBe(1);
    expect(await t.json()).toMatchObject({ state: 'Warning', cidrGroupsUnreadable: 1 });
    expect(t.statusLines().at(-1)).toMatchObject({ level: 40, cidrGroupsUnreadable: 1 });
    t.feed(group(['192.0.2.0/25']));
    expect(await t.gauge('distill_cidr_groups_unreadable')).toBe(0);
    expect(await t.fetchPath('/healthz')).toEqual({ code: 200, body: 'ok\n' });
  });

  it('an input flipping at each event does not flood the log; the last state is written once the limit allows', async () => {
    let clock = 1_000_000;
    const t = await start({ cidrGroups: true, now: () => clock });
    const group = (cidrs: unknown, type: 'ADDED' | 'MODIFIED' = 'MODIFIED'): WatchItem => ({ type, object: { apiVersion: 'cilium.io/v2alpha1', kind: 'CiliumCIDRGroup', metadata: meta('corp'), spec: { externalCIDRs: cidrs } } });
    t.feed(shop(), pod('web', 'n1', '10.0.0.2'), group(['192.0.2.0/24'], 'ADDED'));
    for (let i = 0; i < 30; i++) t.feed(group(['not a prefix'])), t.feed(group(['192.0.2.0/24']));
    t.feed(group(['not a prefix']));
    expect(t.statusLines().length).toBe(10);
    clock += 60_000;
    t.a.flush();
    expect(t.statusLines().at(-1)).toMatchObject({ level: 40, cidrGroupsUnreadable: 1, suppressed: expect.any(Number) });
  });

  it('not ready stays 503 with the same body; the JSON says Failure', async () => {
    const t = await start({});
    t.a.mirror.observe({ type: 'ERROR', object: { kind: 'Status', apiVersion: 'v1', status: 'Failure', reason: 'Expired', code: 410, message: 'too old' } }, 'test');
    const h = await t.fetchPath('/healthz');
    expect(h.code).toBe(503);
    expect(h.body).toMatch(/^watch stream error not followed by a relist .*\n$/);
    const j = await t.fetchPath('/healthz?format=json');
    expect(j.code).toBe(503);
    expect(JSON.parse(j.body)).toMatchObject({ state: 'Failure', notReady: [expect.stringMatching(/^watch stream error/)] });
  });
});
