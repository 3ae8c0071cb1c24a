import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterAll, describe, expect, it } from 'vitest';
import { Agent } from '../../src/agent/agent.js';
import { MemoryBackend } from '../../src/backend/memory.js';

/**
 * Finding 1521 (docs/attack-findings-21w.md): `Agent.stop` applies what arrived and closes the
 * backend, but a flush queued meanwhile (a refused batch retried in halves, a stream chunk read in
 * the same turn as SIGTERM, an etcd identity change before the source is closed) still ran once
 * the backend was closed and wrote to it. On a `BpfBackend` that was a write through freed
 * native buffers (a segfault at shutdown, finding 1520) after the pin-dir lock was released.
 */
const work = mkdtempSync(join(tmpdir(), 'distill-agent-stop-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

type Obj = Record<string, unknown>;
const ns: Obj = { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'x', resourceVersion: '1' } };
const pod = (name: string, rv: number, node: string, ip: string): Obj => ({ apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: 'x', resourceVersion: String(rv), labels: { app: name } }, spec: { nodeName: node, containers: [] }, status: { phase: 'Running', podIP: ip } });
const cnp = (name: string, rv: number, spec: Obj): Obj => ({ apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name, namespace: 'x', resourceVersion: String(rv) }, spec: { endpointSelector: { matchLabels: { app: 'server' } }, ...spec } });
// Two L7 parsers on one port: the engine refuses the second (Cilium: pkg/policy/rule.go mergePortProto).
const l7 = (name: string, rv: number, rules: Obj): Obj => cnp(name, rv, { ingress: [{ fromEndpoints: [{ matchLabels: { app: 'client' } }], toPorts: [{ ports: [{ port: '80', protocol: 'TCP' }], rules }] }] });
const deny = cnp('deny', 6, { ingressDeny: [{ fromEndpoints: [{ matchLabels: { app: 'client' } }] }] });

/** A memory backend that counts every call made after `close`. */
class Closing extends MemoryBackend {
  closed = false;
  callsAfterClose: string[] = [];
  private note(what: string): void {
    if (this.closed) this.callsAfterClose.push(what);
  }
  override endpoints(): string[] {
    this.note('endpoints');
    return super.endpoints();
  }
  override create(endpoint: string): void {
    this.note('create');
    super.create(endpoint);
  }
  override size(endpoint: string): number {
    this.note('size');
    return super.size(endpoint);
  }
  override apply(...args: Parameters<MemoryBackend['apply']>): ReturnType<MemoryBackend['apply']> {
    this.note('apply');
    return super.apply(...args);
  }
  override close(): void {
    this.closed = true;
    super.close();
  }
}

describe('1521. agent: nothing is written after stop closed the backend', () => {
  it('a refused batch stop applied is not retried in halves once the backend is closed', async () => {
    const file = join(work, 'w.json');
    const initial = [ns, pod('server', 2, 'n1', '10.0.0.1'), pod('client', 3, 'n2', '10.0.0.2'), l7('kafka', 4, { kafka: [{ topic: 'foo' }] })];
    writeFileSync(file, initial.map((object) => JSON.stringify({ type: 'ADDED', object })).join('\n'));
    const backend = new Closing();
    const agent = new Agent({ node: 'n1', watch: [file], backend, logger: pino({ level: 'silent' }), registry: new Registry(), exitAtEof: true });
    await agent.run();
    expect(agent.summary.transactions).toBe(1);
    // What a stream read in the turn SIGTERM arrived in: a deny, and a policy the engine refuses.
    agent.mirror.observe({ type: 'ADDED', object: deny }, file);
    agent.mirror.observe({ type: 'ADDED', object: l7('http', 7, { http: [{ method: 'GET' }] }) }, file);
    await agent.stop();
    expect(agent.summary.refusals).toBe(1);
    // The halves the refusal queued would run on the next turns of the event loop.
    for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
    expect(backend.callsAfterClose).toEqual([]);
    expect(agent.summary.refusals).toBe(1);
    expect(agent.mapsBehind).toBeUndefined();
  });
});
