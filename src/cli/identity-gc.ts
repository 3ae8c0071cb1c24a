import { Command, InvalidArgumentError, Option } from 'commander';
import { IDENTITIES_PREFIX } from '../kvstore/layout.js';

interface Io {
  out(s: string): void;
  err(s: string): void;
}

interface IdentityGcOptions {
  readonly etcd: string;
  readonly grace: number;
  readonly rate: number;
  readonly prefix: string;
  readonly json?: boolean;
}

const number = (name: string, min: number) => (v: string): number => {
  const n = Number(v);
  if (!Number.isFinite(n) || n < min) throw new InvalidArgumentError(`${name} must be a number >= ${min}, got ${JSON.stringify(v)}`);
  return n;
};

/**
 * The operator's identity GC, Cilium's two rounds: mark the ids no node references, wait `grace`
 * seconds (a node that is restarting re-creates its slave keys meanwhile), delete those still
 * unreferenced and unmodified, at most `rate` per second. Exit 0 done, 1 etcd unreachable.
 */
async function identityGc(io: Io, opts: IdentityGcOptions): Promise<number> {
  // Loaded here, not at the top: etcd's gRPC client (with its .proto files) cost every command's start-up (docs/benchmarks.md, perf25).
  const [{ connectEtcd, isUnavailable, KvstoreUnavailableError }, { runIdentityGc }] = await Promise.all([import('../kvstore/client.js'), import('../kvstore/gc.js')]);
  const client = connectEtcd(opts.etcd);
  try {
    const first = await runIdentityGc(client, { prefix: opts.prefix });
    if (opts.grace > 0) await new Promise((r) => setTimeout(r, opts.grace * 1000));
    const second = await runIdentityGc(client, { prefix: opts.prefix, previous: first.stale, maxDeletesPerSec: opts.rate });
    const summary = { ids: second.ids, unreferenced: second.unreferenced, deleted: second.deleted };
    io.out(opts.json ? `${JSON.stringify(summary)}\n` : `identity-gc: ${summary.ids} ids, ${summary.unreferenced} unreferenced, ${summary.deleted} deleted\n`);
    return 0;
  } catch (e) {
    if (!isUnavailable(e)) throw e;
    io.err(`identity-gc: ${new KvstoreUnavailableError(opts.etcd, 'identity-gc', e).message}\n`);
    return 1;
  } finally {
    client.close();
  }
}

/**
 * `distill identity-gc`. The command is asynchronous while runCli is synchronous: the action
 * sets process.exitCode when it finishes (after runCli has returned 0).
 */
export function registerIdentityGc(program: Command, io: Io): void {
  program
    .command('identity-gc')
    .description('Delete cluster-wide identities (etcd, Cilium kvstore layout) that no node references')
    .addOption(new Option('--etcd <url>', 'etcd client URL, e.g. http://127.0.0.1:2379').makeOptionMandatory())
    .addOption(new Option('--grace <seconds>', 'wait between marking and deleting').default(10).argParser(number('--grace', 0)))
    .addOption(new Option('--rate <n>', 'deletions per second at most').default(10).argParser(number('--rate', 0.001)))
    .addOption(new Option('--prefix <key>', 'identity key prefix').default(IDENTITIES_PREFIX))
    .option('--json', 'one JSON object {ids, unreferenced, deleted}')
    .action((opts: IdentityGcOptions) => {
      void identityGc(io, opts).then((code) => {
        process.exitCode = code;
      });
    });
}
