import { execFileSync } from 'node:child_process';
import { createWriteStream, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterAll, describe, expect, it } from 'vitest';
import { Agent } from '../../src/agent/agent.js';
import { MemoryBackend } from '../../src/backend/memory.js';

/**
 * Finding 742 (docs/attack-findings-16w.md): `kubectl get --watch --output-watch-events -o json`
 * prints the initial objects as ADDED events with no end marker. The agent's first transaction
 * (which reconciles the pinned maps of a restart) took the first chunk of each stream: an allow
 * policy read before the deny printed after it reached the maps alone.
 */
type Obj = Record<string, unknown>;
const ev = (object: Obj): string => JSON.stringify({ type: 'ADDED', object });
const cnp = (name: string, spec: Obj): Obj => ({ apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name, namespace: 'x', resourceVersion: '5' }, spec });
const pod = (name: string, node: string, ip: string): Obj => ({ apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: 'x', resourceVersion: '2', labels: { app: name } }, spec: { nodeName: node, containers: [] }, status: { phase: 'Running', podIP: ip } });
const allow = cnp('allow', { endpointSelector: { matchLabels: { app: 'server' } }, ingress: [{ fromEndpoints: [{ matchLabels: { app: 'client' } }] }] });
const deny = cnp('deny', { endpointSelector: { matchLabels: { app: 'server' } }, ingressDeny: [{ fromEndpoints: [{ matchLabels: { app: 'client' } }] }] });
/** Policies selecting no pod, ~300 bytes each: the deny comes ~120 KB after the allow (two read chunks). */
const fillers = Array.from({ length: 400 }, (_, i) => ev(cnp(`filler-${i}`, { endpointSelector: { matchLabels: { app: `nobody-${i}` } }, ingress: [{ fromEndpoints: [{ matchLabels: { app: 'a'.repeat(200) } }] }] })));

const dir = mkdtempSync(join(tmpdir(), 'distill-first-tx-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function agentOn(files: string[], exitAtEof: boolean, initialQuietMs?: number) {
  const agent = new Agent({ node: 'n1', watch: files, backend: new MemoryBackend(), logger: pino({ level: 'silent' }), registry: new Registry(), exitAtEof, ...(initialQuietMs !== undefined ? { initialQuietMs } : {}) });
  const txs: string[][] = [];
  const apply = agent.instrumented.apply.bind(agent.instrumented);
  agent.instrumented.apply = (events) => {
    txs.push(events.flatMap((e) => (e.type === 'upsertPolicy' ? [e.policy.ref.name] : [])));
    return apply(events);
  };
  return { agent, txs };
}

function baseFiles(): string[] {
  const ns = join(dir, 'ns.json');
  const pods = join(dir, 'pods.json');
  writeFileSync(ns, `${ev({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'x', resourceVersion: '1' } })}\n`);
  writeFileSync(pods, `${[ev(pod('server', 'n1', '10.0.0.1')), ev(pod('client', 'n2', '10.0.0.2'))].join('\n')}\n`);
  return [ns, pods];
}

describe('the first transaction takes every stream\'s initial objects (742)', () => {
  it('742. recorded streams: the allow and the deny printed after it are in the first transaction', async () => {
    const pol = join(dir, 'pol.json');
    writeFileSync(pol, `${[ev(allow), ...fillers, ev(deny)].join('\n')}\n`);
    const { agent, txs } = agentOn([...baseFiles(), pol], true);
    await agent.run();
    expect(txs[0]).toContain('allow');
    expect(txs[0]).toContain('deny');
  });

  it('742. a live stream (a FIFO kubectl writes into): the initial burst is one transaction; what follows is the next', async () => {
    const fifo = join(dir, 'pol.fifo');
    execFileSync('mkfifo', [fifo]);
    // A quiet period far above the 30 ms pause inside the burst, so a loaded machine does not split it.
    const { agent, txs } = agentOn([...baseFiles(), fifo], false, 1500);
    const running = agent.run();
    const w = createWriteStream(fifo);
    const write = (text: string) => new Promise<void>((r) => w.write(text, () => r()));
    await write(`${ev(allow)}\n`);
    await new Promise((r) => setTimeout(r, 30));
    await write(`${[...fillers, ev(deny)].join('\n')}\n`);
    for (let i = 0; i < 250 && txs.length === 0; i++) await new Promise((r) => setTimeout(r, 20));
    expect(txs[0]).toContain('allow');
    expect(txs[0]).toContain('deny');
    await write(`${ev(cnp('later', { endpointSelector: { matchLabels: { app: 'server' } }, ingress: [{}] }))}\n`);
    for (let i = 0; i < 100 && !txs.some((t) => t.includes('later')); i++) await new Promise((r) => setTimeout(r, 20));
    expect(txs.at(-1)).toEqual(['later']);
    await new Promise<void>((r) => w.end(() => r()));
    await agent.stop();
    await running;
  }, 20_000);
});
