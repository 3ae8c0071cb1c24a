import { Command, InvalidArgumentError, Option } from 'commander';
import { readFileSync } from 'node:fs';
import type { ClusterReport } from '../cluster/run.js';

interface Io {
  out(s: string): void;
  err(s: string): void;
}

interface ClusterCliOptions {
  etcd: string;
  nodes: number;
  json?: boolean;
  killAgentEvery?: number;
  restartEtcdAt?: number;
}

const whole = (name: string, min: number) => (v: string): number => {
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < min) throw new InvalidArgumentError(`${name} must be a whole number >= ${min}, got ${JSON.stringify(v)}`);
  return n;
};

function render(r: ClusterReport): string {
  return [
    `${r.nodes} agents, ${r.events} events, ${r.identities} identities, ${r.kills} agents killed and restarted`,
    `duplicate ids for one label set: ${r.duplicates}`,
    `label sets with different ids on different nodes: ${r.disagreements}`,
    `nodes whose maps equal a single-process engine's: ${r.mapsVerified}/${r.nodes}, ${r.entries} map entries in all${r.mapMismatches.length > 0 ? ` (mismatch: ${r.mapMismatches.join(', ')})` : ''}`,
    `allocation latency: p50 ${r.allocationUs.p50} us, p99 ${r.allocationUs.p99} us`,
    `events/s: ${r.eventsPerSec}`,
  ].join('\n') + '\n';
}

/** `distill cluster`: N agent processes on one etcd, fed a trace; exit 1 on a duplicate, disagreement or map mismatch. */
async function cluster(io: Io, trace: string, opts: ClusterCliOptions): Promise<number> {
  // Loaded here, not at the top: etcd's gRPC client cost every command's start-up (docs/benchmarks.md, perf25).
  const [{ runCluster }, { EtcdServer }, { traceToWatch }] = await Promise.all([import('../cluster/run.js'), import('../cluster/etcd.js'), import('../cluster/watch-objects.js')]);
  const feed = traceToWatch(readFileSync(trace, 'utf8'), trace, opts.nodes);
  const distill = [process.execPath, ...process.execArgv, process.argv[1]!];
  if (opts.restartEtcdAt !== undefined && opts.etcd !== 'local') throw new Error('--restart-etcd-at needs --etcd local (distill cluster can only restart an etcd it started)');
  const own = opts.etcd === 'local' ? await EtcdServer.start() : undefined;
  try {
    const report = await runCluster(feed, {
      etcd: own?.url ?? opts.etcd,
      nodes: opts.nodes,
      distill,
      ...(opts.killAgentEvery !== undefined ? { killAgentEvery: opts.killAgentEvery } : {}),
      ...(opts.restartEtcdAt !== undefined && own ? { restartEtcdAt: opts.restartEtcdAt, etcdControl: own } : {}),
      log: (l) => io.err(`${l}\n`),
    });
    return print(io, report, opts.json === true);
  } finally {
    await own?.destroy();
  }
}

function print(io: Io, report: ClusterReport, json: boolean): number {
  const { mapMismatches: _m, kills: _k, ...rest } = report;
  io.out(json ? `${JSON.stringify(rest)}\n` : render(report));
  return report.duplicates > 0 || report.disagreements > 0 || report.mapMismatches.length > 0 ? 1 : 0;
}

export function registerCluster(program: Command, io: Io): void {
  program
    .command('cluster')
    .description('Run N agents sharing identities through etcd, feed them a trace, check they agree and compute the right maps')
    .argument('<trace>', 'trace file (JSON Lines; pods placed by their node field, see distill gen --nodes)')
    .addOption(new Option('--etcd <url>', 'etcd client URL, or local: start a private etcd on 127.0.0.1 (binary etcd on PATH)').makeOptionMandatory())
    .addOption(new Option('--nodes <n>', 'number of agents (node-0 … node-(n-1))').default(2).argParser(whole('--nodes', 1)))
    .addOption(new Option('--kill-agent-every <k>', 'kill -9 one agent after every k events and restart it').argParser(whole('--kill-agent-every', 1)))
    .addOption(new Option('--restart-etcd-at <e>', 'stop etcd after e events, start it again halfway through the rest (with --etcd local)').argParser(whole('--restart-etcd-at', 0)))
    .option('--json', 'one JSON object {nodes, events, identities, duplicates, disagreements, mapsVerified, entries, allocationUs: {p50, p99}, eventsPerSec}')
    .action((trace: string, opts: ClusterCliOptions) => {
      cluster(io, trace, opts).then(
        (code) => void (process.exitCode = code),
        (e: Error) => {
          io.err(`error: ${e.message}\n`);
          process.exitCode = 2;
        },
      );
    });
}
