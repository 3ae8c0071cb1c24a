import { Writable } from 'node:stream';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { EtcdIdentitySource } from '../../src/agent/etcd-identities.js';
import { CuttableProxy, EtcdServer, polls as pollsUpTo, requireEtcdOrSkip } from '../kvstore/etcd-server.js';

/*
 * Finding 1268 (docs/attack-findings-19u.md): with etcd unreachable the identity source retried every
 * 200 ms and logged a warning per attempt (~18,000 lines an hour). Now the delay doubles per failure
 * (capped) and one warning is logged per distinct error; the repeats go to debug.
 */

const hasEtcd = requireEtcdOrSkip('etcd backoff tests');
const suite = hasEtcd ? describe : describe.skip;

const polls = (done: () => boolean): Promise<boolean> => pollsUpTo(done, 1500);

suite('etcd identities: retries while etcd is unreachable', () => {
  it('1268. back off exponentially and warn once per distinct error', async () => {
    const etcd = await EtcdServer.start();
    const proxy = await CuttableProxy.start(etcd.url);
    proxy.cut();
    const lines: { level: number; msg?: string; retryInMs?: number }[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, cb) {
        for (const l of chunk.toString().split('\n')) if (l !== '') lines.push(JSON.parse(l) as { level: number; msg?: string });
        cb();
      },
    });
    const source = new EtcdIdentitySource({ url: proxy.url, node: 'n1', logger: pino({ level: 'debug' }, sink), prefix: 'backoff/cilium/state/identities/v1', retryMs: 50, maxRetryMs: 400 });
    const started = Date.now();
    try {
      source.start();
      expect(await polls(() => source.stats.failures >= 6)).toBe(true);
      // Timers never fire early: six failures need at least the five delays between them, 50+100+200+400+400 ms.
      expect(Date.now() - started).toBeGreaterThanOrEqual(1150);
      await new Promise((r) => setImmediate(r));
      const retries = lines.filter((l) => l.msg === 'etcd identities: retrying');
      expect(retries.slice(0, 5).map((l) => l.retryInMs)).toEqual([50, 100, 200, 400, 400]);
      expect(retries.filter((l) => l.level === 40), 'one warning for one unchanged error').toHaveLength(1);
      expect(source.problem).toMatch(/^etcd identities: .*retrying/);
      proxy.heal();
      expect(await polls(() => source.ready)).toBe(true);
    } finally {
      await source.close();
      await proxy.close();
      await etcd.destroy();
    }
  }, 60_000);
});
