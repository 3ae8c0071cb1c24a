import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterAll, describe, expect, it } from 'vitest';
import { Agent } from '../../src/agent/agent.js';
import { backendLookup } from '../../src/backend/lookup.js';
import { MemoryBackend } from '../../src/backend/memory.js';

/**
 * Finding 1751 (docs/attack-findings-23a.md): at a restart, a stream whose first items lose events
 * (an ERROR, 410 Gone, before any object; a List cut short) holds nothing the engine can use until
 * its relist, and the first transaction, which reconciles the pinned maps, did not wait for it:
 * it wrote the other streams' view alone (pods without their policies: every flow allowed), a
 * state neither the last run's maps nor the cluster had. Cilium regenerates restored endpoints
 * only once every informer synced (pkg/k8s/watchers/watcher.go `InitK8sSubsystem`). Both cases fail on 94c6f52.
 */
type Obj = Record<string, unknown>;
const ev = (type: string, object: Obj): string => JSON.stringify({ type, object });
const pod = (name: string, node: string, ip: string): Obj => ({ apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: 'x', resourceVersion: '2', labels: { app: name } }, spec: { nodeName: node, containers: [] }, status: { phase: 'Running', podIP: ip } });
/** Isolates server: only app=zzz may reach it (the client is denied). */
const isolate: Obj = { apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name: 'isolate', namespace: 'x', resourceVersion: '5' }, spec: { endpointSelector: { matchLabels: { app: 'server' } }, ingress: [{ fromEndpoints: [{ matchLabels: { app: 'zzz' } }] }] } };
const expired = ev('ERROR', { kind: 'Status', apiVersion: 'v1', status: 'Failure', reason: 'Expired', code: 410 });

const dir = mkdtempSync(join(tmpdir(), 'distill-restart-partial-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function file(name: string, lines: string[]): string {
  const path = join(dir, name);
  writeFileSync(path, `${lines.join('\n')}\n`);
  return path;
}

async function runAgent(backend: MemoryBackend, policies: string[] | { path: string }): Promise<Agent> {
  const ns = file('ns.json', [ev('ADDED', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'x', resourceVersion: '1' } })]);
  const pods = file('pods.json', [ev('ADDED', pod('server', 'n1', '10.0.0.1')), ev('ADDED', pod('client', 'n2', '10.0.0.2'))]);
  const pol = Array.isArray(policies) ? file('pol.json', policies) : policies.path;
  const agent = new Agent({ node: 'n1', watch: [ns, pods, pol], backend, logger: pino({ level: 'silent' }), registry: new Registry(), exitAtEof: true });
  await agent.run();
  return agent;
}

/** The last run's maps: the client (its identity from that run) is denied. */
async function lastRun(): Promise<{ backend: MemoryBackend; denied: () => boolean }> {
  const backend = new MemoryBackend();
  const first = await runAgent(backend, [ev('ADDED', isolate)]);
  const client = first.engine.ipcache().find((e) => e.prefix === '10.0.0.2/32')!.identity;
  const denied = (): boolean => {
    const hit = backendLookup(backend, 'x/server', client, 'ingress', 6, 80);
    return hit === undefined || hit.entry.deny;
  };
  expect(denied()).toBe(true);
  return { backend, denied };
}

describe('a restart does not reconcile the pinned maps from a stream that lost events before its relist (1751)', () => {
  it('1751. the policy stream starts with an ERROR, then initial events without their end bookmark: the maps stay as the last run left them', async () => {
    const { backend, denied } = await lastRun();
    const agent = await runAgent(backend, [expired, ev('ADDED', isolate)]);
    expect(denied()).toBe(true);
    expect(agent.notReady).toMatch(/watch stream error not followed by a relist/);
    expect(agent.summary.transactions).toBe(0);
  });

  it('1751. the policy stream starts with a List page with `continue` and ends: the maps stay as the last run left them', async () => {
    const { backend, denied } = await lastRun();
    const page = JSON.stringify({ kind: 'CiliumNetworkPolicyList', apiVersion: 'cilium.io/v2', metadata: { resourceVersion: '9', continue: 'page-1', remainingItemCount: 1 }, items: [isolate] });
    await runAgent(backend, [page]);
    expect(denied()).toBe(true);
  });

  it('1751. the relist that follows the ERROR ends the wait: the first transaction takes it', async () => {
    const { backend, denied } = await lastRun();
    const bookmark = ev('BOOKMARK', { apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { resourceVersion: '9', annotations: { 'k8s.io/initial-events-end': 'true' } } });
    const agent = await runAgent(backend, [expired, ev('ADDED', isolate), bookmark]);
    expect(denied()).toBe(true);
    expect(agent.notReady).toBeUndefined();
    expect(agent.summary.transactions).toBe(1);
  });
});

/**
 * Finding 1752 (docs/attack-findings-23a.md): likewise a stream that became unreadable before the
 * first transaction (a NUL byte, a missing file): what it gave before is a prefix of its initial
 * objects (an allow read, the deny after the bad byte lost), or nothing. Cilium exits when its
 * informers do not sync (`InitK8sSubsystem`: "Timed out waiting for pre-existing resources to be
 * received; exiting") rather than regenerate from part of them. Both cases fail on 94c6f52.
 */
describe('a restart does not reconcile the pinned maps from a stream that became unreadable first (1752)', () => {
  const admit = (name: string, deny: boolean): Obj => ({ apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name, namespace: 'x', resourceVersion: '6' }, spec: { endpointSelector: { matchLabels: { app: 'server' } }, [deny ? 'ingressDeny' : 'ingress']: [{ fromEndpoints: [{ matchLabels: { app: 'client' } }] }] } });

  it('1752. the policy stream gives an allow, a NUL byte, then the deny: the maps stay as the last run left them', async () => {
    const { backend, denied } = await lastRun();
    const agent = await runAgent(backend, [ev('ADDED', admit('allow-client', false)), '\u0000', ev('ADDED', admit('deny-client', true))]);
    expect(agent.summary.unreadableStreams).toBe(1);
    expect(denied()).toBe(true);
    expect(agent.notReady).toMatch(/watch stream unreadable/);
  });

  it('1752. the policy stream\'s file is missing: the maps stay as the last run left them', async () => {
    const { backend, denied } = await lastRun();
    const agent = await runAgent(backend, { path: join(dir, 'no-such-file.json') });
    expect(agent.summary.unreadableStreams).toBe(1);
    expect(denied()).toBe(true);
  });
});

/**
 * Finding 1753 (docs/attack-findings-23a.md; the lead's review of 1751): 1751's wait held only a
 * stream that gave nothing before its ERROR. But what a stream gave before it completed a List or a
 * watch-list is part of its objects as likely as all of them: an allow read, then a 410, then the
 * deny (held as a watch-list's initial event without its end bookmark), or an allow and then a List
 * cut short whose next page held the deny. Both fail on 817b035 (the client is admitted).
 */
describe('a restart waits for the relist of a stream that lost events before it ever completed a List (1753)', () => {
  const admit = (name: string, deny: boolean): Obj => ({ apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name, namespace: 'x', resourceVersion: '6' }, spec: { endpointSelector: { matchLabels: { app: 'server' } }, [deny ? 'ingressDeny' : 'ingress']: [{ fromEndpoints: [{ matchLabels: { app: 'client' } }] }] } });

  it('1753. an allow, an ERROR, then the deny without an end bookmark: the maps stay as the last run left them', async () => {
    const { backend, denied } = await lastRun();
    const agent = await runAgent(backend, [ev('ADDED', admit('allow-client', false)), expired, ev('ADDED', admit('deny-client', true))]);
    expect(agent.summary.transactions).toBe(0);
    expect(denied()).toBe(true);
    expect(agent.notReady).toMatch(/relist/);
  });

  it('1753. an allow, then a List cut short (the deny on its page, more to come): the maps stay as the last run left them', async () => {
    const { backend, denied } = await lastRun();
    const page = JSON.stringify({ kind: 'CiliumNetworkPolicyList', apiVersion: 'cilium.io/v2', metadata: { resourceVersion: '9', continue: 'page-1', remainingItemCount: 1 }, items: [admit('deny-client', true)] });
    const agent = await runAgent(backend, [ev('ADDED', admit('allow-client', false)), page]);
    expect(agent.summary.transactions).toBe(0);
    expect(denied()).toBe(true);
  });

  it('a stream that completed a List before its ERROR keeps its view: the first transaction runs on it', async () => {
    const { backend, denied } = await lastRun();
    const list = JSON.stringify({ kind: 'CiliumNetworkPolicyList', apiVersion: 'cilium.io/v2', metadata: { resourceVersion: '9' }, items: [admit('allow-client', false), admit('deny-client', true)] });
    const agent = await runAgent(backend, [list, expired]);
    expect(agent.summary.transactions).toBe(1);
    expect(denied()).toBe(true);
  });
});
