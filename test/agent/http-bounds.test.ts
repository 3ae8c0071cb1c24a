import net from 'node:net';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { Agent } from '../../src/agent/agent.js';
import { MemoryBackend } from '../../src/backend/memory.js';

/**
 * Finding 1141 (docs/attack-findings-19w.md): the /healthz and /metrics server held every
 * connection it accepted for as long as the peer kept it open without sending anything. Each is
 * a file descriptor of the agent: with the process's limit reached (run by hand with
 * `ulimit -n 1024` and 1,100 idle connections), the next endpoint's map could not be created
 * (`bpf MAP_CREATE failed: errno 24`) and /healthz did not answer.
 */
async function started(): Promise<{ agent: Agent; host: string; port: number }> {
  let addr = '';
  const agent = new Agent({ node: 'n1', watch: [], backend: new MemoryBackend(), logger: pino({ level: 'silent' }), registry: new Registry(), metricsAddr: '127.0.0.1:0', onListening: (a) => (addr = a) });
  void agent.run();
  while (addr === '') await new Promise((r) => setTimeout(r, 10));
  const [host, port] = addr.split(':');
  return { agent, host: host!, port: Number(port) };
}

/** Resolves once `cond` holds, polling; rejects after `ms`. */
async function until(cond: () => boolean, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not reached');
    await new Promise((r) => setTimeout(r, 20));
  }
}

function healthz(host: string, port: number): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect(port, host, () => s.write('GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'));
    let out = '';
    s.setEncoding('utf8');
    s.on('data', (d: string) => (out += d));
    s.on('close', () => resolve(out.split('\r\n')[0] ?? ''));
    s.on('error', () => resolve('error'));
  });
}

describe('1141. the metrics server bounds the connections it holds', () => {
  it('closes connections beyond its limit, and idle ones, so /healthz answers again', async () => {
    const { agent, host, port } = await started();
    const sockets: net.Socket[] = [];
    let closed = 0;
    try {
      for (let i = 0; i < 200; i++) {
        const s = net.connect(port, host);
        s.on('error', () => {});
        s.on('close', () => closed++);
        sockets.push(s);
      }
      // At most 64 are held: the rest are closed at once.
      await until(() => closed >= 200 - 64, 8000);
      // The held ones are idle: closed after 10 s; then /healthz answers.
      await until(() => closed === 200, 30_000);
      expect(await healthz(host, port)).toBe('HTTP/1.1 200 OK');
    } finally {
      for (const s of sockets) s.destroy();
      await agent.stop();
    }
  }, 60_000);
});
