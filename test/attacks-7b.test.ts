import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterAll, describe, expect, it } from 'vitest';
import { Agent } from '../src/agent/agent.js';
import { MemoryBackend } from '../src/backend/memory.js';
import { ClusterMirror } from '../src/k8s/mirror.js';
import { WatchStreamParser } from '../src/k8s/watch.js';

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
