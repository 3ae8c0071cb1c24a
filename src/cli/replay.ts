import { Command, Option } from 'commander';
import cliProgress from 'cli-progress';
import type { MapBackend } from '../backend/backend.js';
import { replay, ReplayDivergence, ReplayMode, ReplayPhase, ReplayRefusal, ReplayResult } from '../churn/replay.js';
import { checkTrace, parseTrace } from '../churn/trace.js';
import { Engine } from '../engine/engine.js';
import { reconcile } from '../node/restart.js';
import { backendOption, BackendOptions, openBackend, pinDirOption } from './backend-options.js';
import { BAD_INPUT_ERRORS, CliEnv, CliIo, Ctx, EXIT_BAD_INPUT, EXIT_MISMATCH, intOption, outputOption, OutputFormat, printData, reportInputError } from './common.js';
import { inputName, readInputUtf8 } from './input.js';

interface ReplayCliOptions extends BackendOptions {
  json?: boolean;
  output: OutputFormat;
  verifyEvery?: string;
  mode: ReplayMode;
  limit?: string;
  warmUp: boolean;
}

function formatReplay(r: ReplayResult): string {
  const out = [
    `${r.mode} replay${r.profile ? ` of profile ${r.profile}` : ''}: ${r.events} events (${r.coldStart.events} initial, ${r.churnEvents} churn), ${r.eventsPerSec} events/s`,
    `cold start: ${r.coldStart.ms} ms, heap ${(r.coldStart.heapBytes / 1e6).toFixed(1)} MB, ${r.coldStart.deltas} map entries written${r.warmUpMs === undefined ? '' : `; warm-up: ${r.warmUpMs} ms`}`,
    `endpoints: ${r.endpoints}, map entries: ${r.mapEntries}, deltas: ${r.deltas}, L7 table deltas: ${r.l7Deltas}, peak heap: ${(r.peakHeapBytes / 1e6).toFixed(1)} MB${r.verifications ? `, verified against a full recompute ${r.verifications} times` : ''}`,
    'latency per churn event (µs):',
  ];
  const tags = Object.keys(r.latencyUs);
  const w = Math.max(...tags.map((t) => t.length), 5);
  out.push(`  ${'event'.padEnd(w)}  ${'count'.padStart(6)}  ${'p50'.padStart(9)}  ${'p90'.padStart(9)}  ${'p99'.padStart(9)}  ${'max'.padStart(9)}`);
  for (const t of tags) {
    const l = r.latencyUs[t] as ReplayResult['latencyUs'][string];
    out.push(`  ${t.padEnd(w)}  ${String(l.count).padStart(6)}  ${l.p50.toFixed(1).padStart(9)}  ${l.p90.toFixed(1).padStart(9)}  ${l.p99.toFixed(1).padStart(9)}  ${l.max.toFixed(1).padStart(9)}`);
  }
  return out.join('\n');
}

/** The progress bar on a TTY (`io.progress`): one phase after another (parse, cold start, churn). */
interface ReplayProgress {
  readonly bar: cliProgress.SingleBar;
  phase(name: string, unit: string): (done: number, total: number) => void;
}

function replayProgress(io: CliIo): ReplayProgress | undefined {
  if (!io.progress) return undefined;
  const bar = new cliProgress.SingleBar({ format: 'replay {phase} [{bar}] {percentage}% {value}/{total} {unit}, {eta_formatted} left', stream: io.progress, hideCursor: true }, cliProgress.Presets.shades_classic);
  bar.start(1, 0, { phase: 'parse', unit: 'lines' });
  const phase = (name: string, unit: string) => (done: number, total: number): void => {
    bar.setTotal(total);
    bar.update(done, { phase: name, unit });
    // A phase's first frame is drawn now: the cold start is one synchronous transaction, and
    // cli-progress would otherwise skip a frame that comes right after the last one.
    if (done === 0) bar.render();
  };
  return { bar, phase };
}

const PHASE_NAMES: Readonly<Record<ReplayPhase, string>> = { 'cold start': 'cold start (one transaction)', 'warm-up': 'warm-up', churn: 'churn' };

/** The whole trace is read and checked before the backend is opened: a bad line writes nothing. */
function replayCommand(ctx: Ctx, file: string, opts: ReplayCliOptions): number {
  const { io } = ctx;
  let backend: MapBackend | undefined;
  let progress: ReplayProgress | undefined;
  try {
    const verifyEvery = intOption(opts.verifyEvery, 'distill replay --verify-every', 1);
    const limit = intOption(opts.limit, 'distill replay --limit', 0);
    progress = replayProgress(io);
    const trace = parseTrace(readInputUtf8(file, ctx.maxInputBytes), inputName(file), { manifests: false, ...(progress ? { onProgress: progress.phase('parse', 'lines') } : {}) });
    checkTrace(trace);
    backend = openBackend(opts, 'replay');
    reconcile(new Engine(), backend); // start from empty maps
    const phase = progress?.phase;
    const result = replay(trace, {
      mode: opts.mode,
      consume: true,
      warmUp: opts.warmUp,
      onWarmUpFailure: (error: string) => io.err(`warning: the warm-up stopped early (the replay goes on): ${error}\n`),
      backend,
      ...(verifyEvery !== undefined ? { verifyEvery } : {}),
      ...(limit !== undefined ? { limit } : {}),
      ...(phase ? { onProgress: (done: number, total: number, name: ReplayPhase) => phase(PHASE_NAMES[name], name === 'warm-up' ? 'steps' : 'events')(done, total) } : {}),
    });
    progress?.bar.stop();
    if (!printData(io, opts.json ? 'json' : opts.output, result)) io.out(`${formatReplay(result)}\n`);
    return 0;
  } catch (e) {
    progress?.bar.stop();
    return replayError(io, e, file);
  } finally {
    backend?.close();
  }
}

/** A divergence from the full recompute is a mismatch (1); a refused trace line is bad input (2). */
function replayError(io: CliIo, e: unknown, file: string): number {
  if (e instanceof ReplayDivergence) {
    io.err(`DIVERGENCE: ${e.message}\n`);
    return EXIT_MISMATCH;
  }
  if (e instanceof ReplayRefusal && BAD_INPUT_ERRORS.some((c) => e.cause instanceof c)) {
    io.err(`error: ${e.message}\n`);
    return EXIT_BAD_INPUT;
  }
  return reportInputError(io, e instanceof ReplayRefusal ? e.cause : e, file);
}

export function registerReplay(program: Command, { ctx, done }: CliEnv): void {
  program
    .command('replay')
    .description('Replay a churn trace through the engine and report throughput, latency per event type, deltas and heap')
    .argument('<trace>', 'trace file (JSON Lines, see docs/traces.md)')
    .option('--json', 'one JSON object with the summary')
    .option('--verify-every <n>', 'check the engine against a from-scratch recomputation every n churn events')
    .addOption(new Option('--mode <mode>', 'incremental: the engine; full: recompute every local endpoint from scratch after each event').choices(['incremental', 'full']).default('incremental'))
    .option('--limit <n>', 'replay only the first n churn events')
    .option('--no-warm-up', 'skip the warm-up between the cold start and the churn (scratch engines run the churn paths once, as the agent does before it reports ready)')
    .addOption(outputOption())
    .addOption(backendOption())
    .addOption(pinDirOption('replay'))
    .action((file: string, opts: ReplayCliOptions) => {
      done(replayCommand(ctx(), file, opts));
    });
}
