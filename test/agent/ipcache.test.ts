import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterAll, describe, expect, it } from 'vitest';
import { Agent, AgentIpcache } from '../../src/agent/agent.js';
import type { MapBackend, WriteStats } from '../../src/backend/backend.js';
import { backendLookup } from '../../src/backend/lookup.js';
import { MemoryBackend } from '../../src/backend/memory.js';
import { kernelIpcacheContent } from '../../src/backend/ipcache-content.js';
import type { IpcacheDelta, MapDelta } from '../../src/engine/events.js';

/**
 * `Agent` with an ipcache: the first write brings it to the engine's, later transactions write
 * their ipcache deltas between the policy maps' phases. A remote pod P relabelled from app=x to
 * app=y, with endpoint A allowing port 80 from all and denying app in (x, y): P stays denied in
 * every intermediate state of the maps and the ipcache, one operation at a time.
 */
const work = mkdtempSync(join(tmpdir(), 'distill-agent-ipcache-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

type Obj = Record<string, unknown>;
const P_IP = '10.0.9.9';
const pod = (name: string, app: string, ip: string, node: string, rv: number): Obj => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name, namespace: 'ns', resourceVersion: String(rv), labels: { app } },
  spec: { nodeName: node, containers: [{ name: 'c', image: 'i' }] },
  status: { phase: 'Running', podIP: ip, podIPs: [{ ip }] },
});
const POLICY: Obj = {
  apiVersion: 'cilium.io/v2',
  kind: 'CiliumNetworkPolicy',
  metadata: { name: 'a', namespace: 'ns', resourceVersion: '3' },
  spec: {
    endpointSelector: { matchLabels: { app: 'a' } },
    ingress: [{ fromEntities: ['all'], toPorts: [{ ports: [{ port: '80', protocol: 'TCP' }] }] }],
    ingressDeny: [{ fromEndpoints: [{ matchExpressions: [{ key: 'app', operator: 'In', values: ['x', 'y'] }] }] }],
  },
};

/** An in-memory ipcache that checks P → A:80 after every write, as the node's maps do. */
class Node implements AgentIpcache {
  readonly maps = new MemoryBackend();
  readonly content = new Map<string, number>();
  readonly seen: boolean[] = [];
  writes = 0;
  closed = false;
  readonly stepped: MapBackend = Object.assign(Object.create(this.maps) as MapBackend, {
    apply: (endpoint: string, deltas: readonly MapDelta[]): WriteStats => {
      for (const d of deltas) this.maps.apply(endpoint, [d]), this.check();
      return { upserts: deltas.length, deletes: 0, syscalls: 0 };
    },
  });

  apply(deltas: readonly IpcacheDelta[]): void {
    for (const d of deltas) {
      if (d.op === 'delete') this.content.delete(d.prefix);
      else this.content.set(d.prefix, d.identity);
      this.writes++;
      this.check();
    }
  }

  sync(wanted: ReadonlyMap<string, number>): number {
    const deltas: IpcacheDelta[] = [...wanted].filter(([p, id]) => this.content.get(p) !== id).map(([prefix, identity]) => ({ op: 'upsert', prefix, identity }));
    for (const [prefix, identity] of this.content) if (!wanted.has(prefix)) deltas.push({ op: 'delete', prefix, identity });
    this.apply(deltas);
    return deltas.length;
  }

  close(): void {
    this.closed = true;
  }

  private check(): void {
    if (!this.maps.endpoints().includes('ns/a')) return;
    const peer = this.content.get(`${P_IP}/32`) ?? 2;
    const v = backendLookup(this.maps, 'ns/a', peer, 'ingress', 6, 80);
    this.seen.push(v !== undefined && !v.entry.deny);
  }
}

const stream = (items: Obj[]): string => {
  const file = join(work, `s${Math.random().toString(36).slice(2)}.json`);
  writeFileSync(file, items.map((object) => JSON.stringify({ type: 'ADDED', object })).join('\n'));
  return file;
};

describe('agent: the ipcache', () => {
  it('is brought to the engine\'s at the first write, then follows each transaction between the maps\' phases', async () => {
    const node = new Node();
    const ns: Obj = { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'ns', resourceVersion: '1', labels: {} } };
    const watch = [stream([ns]), stream([pod('a', 'a', '10.0.0.1', 'node-a', 2), pod('p', 'x', P_IP, 'node-b', 4)]), stream([POLICY])];
    const agent = new Agent({ node: 'node-a', watch, backend: node.stepped, ipcache: node, logger: pino({ level: 'silent' }), registry: new Registry(), exitAtEof: true });
    await agent.run();
    expect(node.content).toEqual(kernelIpcacheContent(agent.engine));
    expect(node.content.get(`${P_IP}/32`)).toBeDefined();
    expect(node.seen.at(-1), 'P (app=x) is denied').toBe(false);
    const before = node.content.get(`${P_IP}/32`);
    node.seen.length = 0;
    const writes = node.writes;
    agent.mirror.observe({ type: 'MODIFIED', object: pod('p', 'y', P_IP, 'node-b', 5) }, watch[1]!);
    agent.flush();
    expect(node.content.get(`${P_IP}/32`)).not.toBe(before);
    expect(node.writes).toBe(writes + 1);
    expect(node.content).toEqual(kernelIpcacheContent(agent.engine));
    expect(node.seen.length).toBeGreaterThanOrEqual(3);
    expect(node.seen, 'P is denied in every intermediate state').not.toContain(true);
    await agent.stop();
    expect(node.closed).toBe(true);
  });
});
