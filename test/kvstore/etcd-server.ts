import { execFileSync } from 'node:child_process';
import { createServer } from 'node:net';
import type { Etcd3 } from 'etcd3';
import { afterAll, beforeAll } from 'vitest';
import { connectEtcd, type KvstoreOptions } from '../../src/kvstore/client.js';
import { EtcdServer } from '../../src/cluster/etcd.js';

/** A real etcd for tests: EtcdServer (src/cluster/etcd.ts), and a visible skip without one. */
function etcdUnavailableReason(): string | undefined {
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

export { EtcdServer };

/**
 * A private etcd for one describe block. Create it at module level (its `client()` may be called by helpers there);
 * `setUp()`, called inside the describe, starts the server in beforeAll, and in afterAll closes every client made or
 * tracked through it and destroys the server.
 */
export class PrivateEtcd {
  private started: EtcdServer | undefined;
  private readonly clients: Etcd3[] = [];

  setUp(startTimeoutMs = 30_000): void {
    beforeAll(async () => {
      this.started = await EtcdServer.start();
    }, startTimeoutMs);
    afterAll(async () => {
      for (const c of this.clients.splice(0)) c.close();
      await this.started?.destroy();
    });
  }

  get server(): EtcdServer {
    if (!this.started) throw new Error('PrivateEtcd: the server is started by setUp() in beforeAll');
    return this.started;
  }

  get url(): string {
    return this.server.url;
  }

  /** A client of this etcd (default call timeout 2 s), closed in afterAll. */
  client(opts: KvstoreOptions = { callTimeoutMs: 2000 }): Etcd3 {
    return this.track(connectEtcd(this.url, opts));
  }

  /** Closes `c` in afterAll with the others (a client of a proxy in front of this etcd). */
  track(c: Etcd3): Etcd3 {
    this.clients.push(c);
    return c;
  }
}

/**
 * A TCP proxy on 127.0.0.1 in front of etcd that can cut every connection (a partition) and heal,
 * or freeze them (a stall: connections stay open, nothing gets through, as behind a blackholing
 * network or a stopped etcd process) and thaw them (what was held is delivered, in order).
 */
export class CuttableProxy {
  private open = true;
  /** Writes held while frozen, in arrival order; undefined when not frozen. */
  private held: (() => void)[] | undefined;
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
      const forward = (from: import('node:net').Socket, to: import('node:net').Socket): void => {
        from.on('data', (d: Buffer) => (proxy?.held ? proxy.held.push(() => to.write(d)) : to.write(d)));
      };
      forward(client, upstream);
      forward(upstream, client);
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

  freeze(): void {
    this.held ??= [];
  }

  thaw(): void {
    const held = this.held ?? [];
    this.held = undefined;
    for (const write of held) write();
  }

  async close(): Promise<void> {
    this.cut();
    await new Promise((r) => this.server.close(r));
  }
}

/** Polls `check` every 50 ms until it holds (at most `tries` times). */
export async function until(what: string, check: () => Promise<boolean> | boolean, tries = 200): Promise<void> {
  for (let i = 0; i < tries; i++) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`still not true after ${tries} polls: ${what}`);
}

/** Waits (20 ms a try, at most `tries` tries) until `done()`; says whether it came. */
export async function polls(done: () => boolean, tries = 1000): Promise<boolean> {
  for (let i = 0; i < tries; i++) {
    if (done()) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return done();
}
