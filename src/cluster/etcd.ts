import { ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * A private etcd: 127.0.0.1 only, random free ports, a temporary data dir. `stop()` then
 * `start()` restarts the same member on the same data dir and ports (fault injection: tests and
 * `distill cluster --restart-etcd-at`); `destroy()` kills it and removes the data dir. Every
 * server is also killed when the process exits.
 */
async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const p of live) p.kill('SIGKILL');
});

export class EtcdServer {
  private proc: ChildProcess | undefined;
  private log = '';

  private constructor(
    readonly dataDir: string,
    private readonly clientPort: number,
    private readonly peerPort: number,
  ) {}

  get url(): string {
    return `http://127.0.0.1:${this.clientPort}`;
  }

  static async start(): Promise<EtcdServer> {
    const dir = mkdtempSync(join(tmpdir(), 'distill-etcd-'));
    const server = new EtcdServer(dir, await freePort(), await freePort());
    try {
      await server.start();
    } catch (err) {
      await server.destroy();
      throw err;
    }
    return server;
  }

  async start(): Promise<void> {
    if (this.proc) throw new Error('etcd test server already running');
    const peer = `http://127.0.0.1:${this.peerPort}`;
    const args = [
      '--name', 'distill-test', '--data-dir', join(this.dataDir, 'data'),
      '--listen-client-urls', this.url, '--advertise-client-urls', this.url,
      '--listen-peer-urls', peer, '--initial-advertise-peer-urls', peer,
      '--initial-cluster', `distill-test=${peer}`, '--log-level', 'error',
    ];
    const proc = spawn('etcd', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    proc.stderr?.on('data', (d: Buffer) => {
      this.log = (this.log + d.toString()).slice(-4000);
    });
    live.add(proc);
    proc.once('exit', () => live.delete(proc));
    this.proc = proc;
    await this.waitHealthy();
  }

  private async waitHealthy(): Promise<void> {
    for (let i = 0; i < 200; i++) {
      if (this.proc?.exitCode !== null) throw new Error(`etcd exited (code ${this.proc?.exitCode}): ${this.log}`);
      try {
        const res = await fetch(`${this.url}/health`);
        const body = (await res.json()) as { health?: string };
        if (body.health === 'true') return;
      } catch {
        // not listening yet
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`etcd at ${this.url} not healthy after 10 s: ${this.log}`);
  }

  /** Stops etcd (SIGTERM, SIGKILL after 5 s); the data dir stays for `start()`. */
  async stop(): Promise<void> {
    const proc = this.proc;
    if (!proc) return;
    this.proc = undefined;
    if (proc.exitCode !== null) return;
    const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
    proc.kill('SIGTERM');
    const timer = setTimeout(() => proc.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  }

  async destroy(): Promise<void> {
    await this.stop();
    rmSync(this.dataDir, { recursive: true, force: true });
  }
}
