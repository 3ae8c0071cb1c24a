import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterAll, describe, expect, it } from 'vitest';
import { Agent } from '../src/agent/agent.js';
import { backendLookup } from '../src/backend/lookup.js';
import { MemoryBackend } from '../src/backend/memory.js';
import { ClusterMirror } from '../src/k8s/mirror.js';
import { WatchStreamParser } from '../src/k8s/watch.js';
import { parseManifestFile } from '../src/policy/manifest.js';

/*
 * Round 7b attacks (docs/attack-findings-7b.md): the agent's edges — the Kubernetes wire format
 * of its watch streams, and what it reports while they fail.
 */

const work = mkdtempSync(join(tmpdir(), 'distill-att7b-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

type Obj = Record<string, unknown>;
const ns: Obj = { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'ns', resourceVersion: '1', labels: {} } };
const podObj = (name: string, app: string, ip: string, rv: number): Obj => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name, namespace: 'ns', uid: `uid-${name}`, resourceVersion: String(rv), labels: { app } },
  spec: { nodeName: 'node-a', containers: [{ name: 'c', image: 'i' }] },
  status: { phase: 'Running', podIP: ip, podIPs: [{ ip }] },
});
const cnpObj = (name: string, rv: number, spec: Obj): Obj => ({ apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name, namespace: 'ns', uid: `uid-${name}`, resourceVersion: String(rv) }, spec });
const ALLOW_WORLD_80 = cnpObj('allow', 4, { endpointSelector: { matchLabels: { app: 'server' } }, ingress: [{ fromEntities: ['world'], toPorts: [{ ports: [{ port: '80', protocol: 'TCP' }] }] }] });
const WORLD = 2;
const DENY_WORLD = cnpObj('deny', 3, { endpointSelector: { matchLabels: { app: 'server' } }, ingressDeny: [{ fromEntities: ['world'] }] });
const events = (objs: readonly Obj[]): string => objs.map((object) => JSON.stringify({ type: 'ADDED', object })).join('\n');

describe('80. agent mirror: a typed List speaks for its kind only, whatever its items claim', () => {
  it('a PodList relist with an item whose kind is CiliumNetworkPolicy does not delete the deny policy', () => {
    const warnings: string[] = [];
    const mirror = new ClusterMirror({ nodeName: 'node-a', warn: (msg, fields) => warnings.push(`${msg} ${JSON.stringify(fields)}`) });
    const parser = new WatchStreamParser('mixed.json');
    const server = podObj('server', 'server', '10.0.0.1', 2);
    for (const item of parser.push(events([ns, server, DENY_WORLD]))) mirror.observe(item, 'mixed.json');
    const first = mirror.flush();
    expect(first.events.map((e) => e.type)).toContain('upsertPolicy');
    first.commit();
    // A relist of pods whose second item claims another kind: a PodList's items are Pods.
    const stray = cnpObj('stray', 9, { endpointSelector: {}, ingress: [{}] });
    const relist = { apiVersion: 'v1', kind: 'PodList', metadata: { resourceVersion: '10' }, items: [server, stray] };
    for (const item of parser.push(JSON.stringify(relist))) mirror.observe(item, 'mixed.json');
    const second = mirror.flush();
    expect(second.events.map((e) => e.type), 'the deny stays; the stray item is no policy').not.toContain('deletePolicy');
    expect(second.events.map((e) => e.type)).not.toContain('upsertPolicy');
    expect(warnings.some((w) => /PodList/.test(w) && /CiliumNetworkPolicy/.test(w))).toBe(true);
  });
});

/** Runs an agent over `files` (to their end) with a metrics server; returns it and a /healthz probe. */
async function agentOn(files: readonly string[]): Promise<{ agent: Agent; health: () => Promise<[number, string]> }> {
  let addr = '';
  const agent = new Agent({ node: 'node-a', watch: files, backend: new MemoryBackend(), logger: pino({ level: 'silent' }), registry: new Registry(), exitAtEof: true, metricsAddr: '127.0.0.1:0', onListening: (a) => (addr = a) });
  await agent.run();
  const health = async (): Promise<[number, string]> => {
    const r = await fetch(`http://${addr}/healthz`);
    return [r.status, await r.text()];
  };
  return { agent, health };
}

describe('81. agent: /healthz while a watch stream is unreadable or lost events', () => {
  const good = events([ns, podObj('server', 'server', '10.0.0.1', 2)]);
  it.each([
    ['a UTF-8 byte order mark', `\uFEFF${events([DENY_WORLD])}`],
    ['a NUL byte between events', `${events([DENY_WORLD])}\n\u0000\n`],
    ['a value cut off at the end', `${events([DENY_WORLD])}\n{"type":"ADDED","object":{"kind":`],
  ])('answers 503 naming the stream after %s (the deny it carried is not in force)', async (_what, text) => {
    const ok = join(work, 'good.json');
    const bad = join(work, 'bad.json');
    writeFileSync(ok, good);
    writeFileSync(bad, text);
    const { agent, health } = await agentOn([ok, bad]);
    try {
      expect(agent.summary.unreadableStreams).toBe(1);
      const [status, body] = await health();
      expect(status, 'the policy no longer follows the stream: not ready').toBe(503);
      expect(body).toContain(bad);
    } finally {
      await agent.stop();
    }
  });

  it('answers 503 after an ERROR event (410 Gone) until the stream is relisted', async () => {
    const file = join(work, 'err.json');
    writeFileSync(file, `${good}\n${events([DENY_WORLD])}`);
    const { agent, health } = await agentOn([file]);
    try {
      expect(await health()).toEqual([200, 'ok\n']);
      const gone = { apiVersion: 'v1', kind: 'Status', status: 'Failure', message: 'too old resource version: 3 (40)', reason: 'Expired', code: 410 };
      agent.mirror.observe({ type: 'ERROR', object: gone }, file);
      agent.flush();
      const [status, body] = await health();
      expect(status, 'the watch ended: what happened until the relist is unknown').toBe(503);
      expect(body).toMatch(/watch stream error not followed by a relist/);
      agent.mirror.observe({ type: 'LIST', itemKind: undefined, apiVersion: 'v1', items: [ns, podObj('server', 'server', '10.0.0.1', 2), DENY_WORLD], resourceVersion: '41' }, file);
      agent.flush();
      expect(await health()).toEqual([200, 'ok\n']);
    } finally {
      await agent.stop();
    }
  });
});

describe('82. agent: the events before bad input in the same read are applied', () => {
  it('a deny followed by a NUL byte in one chunk is in force (it was dropped with the chunk)', async () => {
    const file = join(work, 'prefix.json');
    const first = events([ns, podObj('server', 'server', '10.0.0.1', 2), ALLOW_WORLD_80]);
    // Whitespace pads the first part to the read stream's first chunk (64 KiB): the deny and the NUL arrive together.
    const pad = ' '.repeat(64 * 1024 - Buffer.byteLength(first));
    writeFileSync(file, `${first}${pad}${events([DENY_WORLD])}\u0000`);
    const { agent } = await agentOn([file]);
    try {
      expect(agent.summary.unreadableStreams).toBe(1);
      // The stream became unreadable before the first transaction, which now never runs (1752,
      // docs/attack-findings-23a.md): the deny is read, waiting in the mirror.
      const batch = agent.mirror.flush();
      expect(batch.events.flatMap((e) => (e.type === 'upsertPolicy' ? [e.policy.ref.name] : [])), 'the deny arrived whole before the bad byte').toContain('deny');
      batch.rollback();
    } finally {
      await agent.stop();
    }
  });
});

describe('83. manifests: YAML 1.1 booleans as kubectl reads them (go-yaml v2)', () => {
  const cnp = (selector: string, extra = ''): string => `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: p, namespace: ns}
spec:
  endpointSelector: {matchLabels: {${selector}}}
${extra}  ingressDeny: [{fromEntities: [world]}]
`;
  it.each(['exposed: yes', 'tier: n', 'debug: Off', 'canary: Y'])('a label value `%s` is a boolean to kubectl, which the API server refuses: refused, not enforced', (label) => {
    expect(() => parseManifestFile(cnp(label), 'm.yaml')).toThrow(/m\.yaml#1.*spec\.endpointSelector\.matchLabels\.\w+: .*boolean/);
  });
  it('quoted, the same value is a string and the policy is read', () => {
    const [p] = parseManifestFile(cnp('exposed: "yes"'), 'm.yaml');
    expect(JSON.stringify(p!.rules[0]!.subject.requirements)).toContain('"values":["yes"]');
  });
  it('a key `on:` is the key "true" (sigs.k8s.io/yaml turns boolean keys into "true"/"false")', () => {
    const [p] = parseManifestFile(cnp('on: x'), 'm.yaml');
    expect(p!.rules[0]!.subject.key).toContain('true=x');
    expect(p!.rules[0]!.subject.key).not.toContain('on=x');
  });
  it('`enableDefaultDeny: {ingress: no}` is false, as kubectl reads it (it was refused as a string)', () => {
    const [p] = parseManifestFile(cnp('app: web', '  enableDefaultDeny: {ingress: no}\n'), 'm.yaml');
    const quoted = parseManifestFile(cnp('app: web', '  enableDefaultDeny: {ingress: false}\n'), 'm.yaml');
    expect(JSON.stringify(p)).toBe(JSON.stringify(quoted[0]));
  });
  it('a merge key `<<: *deny` is the rule it names, as kubectl reads it (it was refused as an unknown field)', () => {
    const text = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: p, namespace: ns}
spec:
  endpointSelector: {matchLabels: {app: web}}
  ingressDeny:
  - &deny {fromEntities: [world], toPorts: [{ports: [{port: "80", protocol: TCP}]}]}
  - <<: *deny
    toPorts: [{ports: [{port: "443", protocol: TCP}]}]
`;
    const [p] = parseManifestFile(text, 'm.yaml');
    expect(p!.rules).toHaveLength(2);
    const ports = (i: number): unknown => (p!.rules[i] as unknown as { ports: unknown }).ports;
    expect(ports(0)).toEqual([{ l4: { kind: 'range', protocol: 'TCP', from: 80, to: 80 } }]);
    expect(ports(1), "the mapping's own toPorts wins over the merged one").toEqual([{ l4: { kind: 'range', protocol: 'TCP', from: 443, to: 443 } }]);
    expect(p!.rules[1]!.peers).toEqual(p!.rules[0]!.peers);
  });
});

describe('85. agent: what another writer put in the maps is undone by the periodic full reconcile', () => {
  it('a foreign allow (world to server:443) written behind the agent is gone after the next full reconcile', async () => {
    const backend = new MemoryBackend();
    const pending: { fn: () => void; ms: number }[] = [];
    const timers = { setTimeout: (fn: () => void, ms: number) => pending.push({ fn, ms }), clearTimeout: () => {} };
    const file = join(work, 'foreign.json');
    writeFileSync(file, events([ns, podObj('server', 'server', '10.0.0.1', 2), ALLOW_WORLD_80]));
    const agent = new Agent({ node: 'node-a', watch: [file], backend, logger: pino({ level: 'silent' }), registry: new Registry(), exitAtEof: true, timers, fullReconcileMs: 60_000 });
    try {
      await agent.run();
      const allow80 = backendLookup(backend, 'ns/server', WORLD, 'ingress', 6, 80);
      expect(allow80?.entry.deny).toBe(false);
      expect(backendLookup(backend, 'ns/server', WORLD, 'ingress', 6, 443), 'isolated: 443 is not allowed').toBeUndefined();
      // Another writer (a second agent on the pin dir, a debugging session) adds an allow neither policy has.
      const key = { identity: WORLD, direction: 'ingress' as const, protocol: 6, port: 443, portPrefixLen: 16 };
      backend.apply('ns/server', [{ endpoint: 'ns/server', op: 'upsert', key, entry: allow80!.entry }]);
      expect(backendLookup(backend, 'ns/server', WORLD, 'ingress', 6, 443)?.entry.deny).toBe(false);
      const full = pending.find((t) => t.ms === 60_000);
      expect(full, 'a full reconcile is scheduled').toBeDefined();
      full!.fn();
      expect(backendLookup(backend, 'ns/server', WORLD, 'ingress', 6, 443), 'the foreign allow is gone').toBeUndefined();
      expect(backendLookup(backend, 'ns/server', WORLD, 'ingress', 6, 80)?.entry.deny).toBe(false);
      expect(pending.filter((t) => t.ms === 60_000), 'and the next one is scheduled').toHaveLength(2);
    } finally {
      await agent.stop();
    }
  });
});
