import { Command, InvalidArgumentError, Option } from 'commander';
import { readFileSync } from 'node:fs';
import { runCluster, type ClusterReport } from '../cluster/run.js';
import { traceToWatch } from '../cluster/watch-objects.js';

interface Io {
  out(s: string): void;
  err(s: string): void;
}

interface ClusterCliOptions {
  etcd: string;
  nodes: number;
  json?: boolean;
  killAgentEvery?: number;
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
export async function cluster(io: Io, trace: string, opts: ClusterCliOptions): Promise<number> {
  const feed = traceToWatch(readFileSync(trace, 'utf8'), trace, opts.nodes);
  const distill = [process.execPath, ...process.execArgv, process.argv[1]!];
  const report = await runCluster(feed, { etcd: opts.etcd, nodes: opts.nodes, distill, ...(opts.killAgentEvery !== undefined ? { killAgentEvery: opts.killAgentEvery } : {}), log: (l) => io.err(`${l}\n`) });
  const { mapMismatches: _m, kills: _k, ...json } = report;
  io.out(opts.json ? `${JSON.stringify(json)}\n` : render(report));
  return report.duplicates > 0 || report.disagreements > 0 || report.mapMismatches.length > 0 ? 1 : 0;
}

export function registerCluster(program: Command, io: Io): void {
  program
    .command('cluster')
    .description('Run N agents sharing identities through etcd, feed them a trace, check they agree and compute the right maps')
    .argument('<trace>', 'trace file (JSON Lines; pods placed by their node field, see distill gen --nodes)')
    .addOption(new Option('--etcd <url>', 'etcd client URL').makeOptionMandatory())
    .addOption(new Option('--nodes <n>', 'number of agents (node-0 … node-(n-1))').default(2).argParser(whole('--nodes', 1)))
    .addOption(new Option('--kill-agent-every <k>', 'kill -9 one agent after every k events and restart it').argParser(whole('--kill-agent-every', 1)))
    .option('--json', 'one JSON object {nodes, events, identities, duplicates, disagreements, mapsVerified, allocationUs: {p50, p99}, eventsPerSec}')
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
