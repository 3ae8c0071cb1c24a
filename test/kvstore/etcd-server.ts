import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * A real etcd for tests: 127.0.0.1 only, random free ports, a temporary data dir. `stop()` then
 * `start()` restarts the same member on the same data dir and ports (fault tests); `destroy()`
 * kills it and removes the data dir. Every server is also killed when the test process exits.
 */
export function etcdUnavailableReason(): string | undefined {
  try {
    execFileSync('etcd', ['--version'], { stdio: 'ignore' });
    return undefined;
  } catch {
    return 'no `etcd` binary on PATH (install Debian package etcd-server)';
  }
}

/** Skip visibly without etcd; DISTILL_REQUIRE_ETCD=1 (set by .ci/run) makes that a failure. */
export function requireEtcdOrSkip(what: string): boolean {
  const reason = etcdUnavailableReason();
  if (reason && process.env.DISTILL_REQUIRE_ETCD === '1') throw new Error(`DISTILL_REQUIRE_ETCD=1 but ${reason}`);
  if (reason) process.stderr.write(`SKIPPING ${what}: ${reason}\n`);
  return reason === undefined;
}

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

/** A TCP proxy on 127.0.0.1 in front of etcd that can cut every connection (a partition) and heal. */
export class CuttableProxy {
  private open = true;
  private readonly sockets = new Set<import('node:net').Socket>();
  private constructor(
    private readonly server: import('node:net').Server,
    readonly url: string,
  ) {}

  static async start(target: string): Promise<CuttableProxy> {
    const { hostname, port } = new URL(target);
    const { connect } = await import('node:net');
    let proxy: CuttableProxy | undefined;
    const server = createServer((client) => {
      if (!proxy?.open) return void client.destroy();
      const upstream = connect(Number(port), hostname);
      for (const s of [client, upstream]) {
        proxy.sockets.add(s);
        s.once('close', () => proxy?.sockets.delete(s));
        s.on('error', () => undefined);
      }
      client.pipe(upstream).pipe(client);
      client.once('close', () => upstream.destroy());
      upstream.once('close', () => client.destroy());
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const addr = server.address();
    proxy = new CuttableProxy(server, `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`);
    return proxy;
  }

  cut(): void {
    this.open = false;
    for (const s of this.sockets) s.destroy();
  }

  heal(): void {
    this.open = true;
  }

  async close(): Promise<void> {
    this.cut();
    await new Promise((r) => this.server.close(r));
  }
}
