#!/usr/bin/env node
import { Command, Option } from 'commander';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { decideFlow, UnknownEndpointError } from '../naive/evaluator.js';
import { ManifestError } from '../policy/errors.js';
import { parseManifestFile } from '../policy/manifest.js';
import { formatWarning } from '../model/rules.js';
import { parseScenario } from '../scenario/format.js';
import { FlowDecider, runScenario, ScenarioRun } from '../scenario/run.js';
import { applyChangeSet, BackendError, MapBackend } from '../backend/backend.js';
import { BpfBackend, BpfError, DEFAULT_PIN_DIR, PinDirError } from '../backend/bpf.js';
import { MemoryBackend } from '../backend/memory.js';
import { backendLookup, reconcile } from '../backend/reconcile.js';
import { EngineDecider } from '../engine/decide.js';
import { Engine } from '../engine/engine.js';
import { EngineError, MapCapacityError } from '../engine/events.js';
import { L7ParserConflictError } from '../engine/rule-units.js';
import { ALL_LOCAL } from '../engine/sync.js';
import { generateTrace, PROFILES } from '../churn/profiles.js';
import { replay, ReplayDivergence, ReplayMode, ReplayResult } from '../churn/replay.js';
import { parseTrace } from '../churn/trace.js';
import cliProgress from 'cli-progress';
import { explainJson, l7RowJson, LEGEND, mapRecordJson, renderL7Policies, renderMapRecords, renderRun, resultJson } from './render.js';

const EXIT_MISMATCH = 1;
const EXIT_BAD_INPUT = 2;

/** Bad input is the user's to fix: print what and where, no stack trace. */
function reportInputError(e: unknown): number {
  if (
    e instanceof ManifestError ||
    e instanceof UnknownEndpointError ||
    e instanceof EngineError ||
    e instanceof MapCapacityError ||
    e instanceof L7ParserConflictError ||
    e instanceof BpfError ||
    e instanceof PinDirError ||
    e instanceof BackendError
  ) {
    process.stderr.write(`error: ${e.message}\n`);
    return EXIT_BAD_INPUT;
  }
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'ENOENT' || code === 'EISDIR' || code === 'EACCES') {
    process.stderr.write(`error: ${(e as Error).message}\n`);
    return EXIT_BAD_INPUT;
  }
  throw e;
}

function scenarioFiles(paths: readonly string[]): string[] {
  const files: string[] = [];
  const walk = (p: string): void => {
    if (statSync(p).isDirectory()) {
      for (const entry of readdirSync(p).sort()) walk(join(p, entry));
    } else if (/\.ya?ml$/.test(p) || paths.includes(p)) {
      files.push(p);
    }
  };
  for (const p of paths) walk(p);
  return files;
}

type BackendKind = 'memory' | 'bpf';

interface BackendOptions {
  backend: BackendKind;
  pinDir: string;
}

interface ReachOptions extends BackendOptions {
  scenario: string[];
  json?: boolean;
  explain?: boolean;
  naive?: boolean;
}

/** Scenario runs pin their maps in a subdirectory, so they never touch an agent's maps. */
function openBackend(opts: BackendOptions): MapBackend {
  return opts.backend === 'bpf' ? new BpfBackend({ pinDir: join(opts.pinDir, 'scenario') }) : new MemoryBackend();
}

interface EngineRun {
  readonly engine: Engine;
  readonly backend: MapBackend;
  readonly decide: FlowDecider;
}

/**
 * An engine whose change sets are written to the backend, and whose verdicts are read back from
 * the backend's maps with the datapath's lookup (for bpf: real kernel LPM lookups).
 */
function engineRun(backend: MapBackend): EngineRun {
  const engine = new Engine({ mapCapacity: backend.capacity });
  reconcile(engine, backend); // a fresh engine: stale maps from an earlier run go
  const decider = new EngineDecider(engine, ALL_LOCAL, (cs) => applyChangeSet(backend, cs), (ep, peer, dir, proto, port) => backendLookup(backend, ep, peer, dir, proto, port)?.entry);
  return { engine, backend, decide: decider.decide };
}

/** The engine answers by default; `--naive` asks the oracle. */
function decider(naive: boolean, backend: MapBackend): FlowDecider {
  return naive ? decideFlow : engineRun(backend).decide;
}

function reach(opts: ReachOptions): number {
  let files: string[];
  try {
    files = scenarioFiles(opts.scenario);
  } catch (e) {
    return reportInputError(e);
  }
  const many = files.length > 1;
  let exit = 0;
  let backend: MapBackend;
  try {
    backend = openBackend(opts);
  } catch (e) {
    return reportInputError(e);
  }
  if (!opts.json) process.stdout.write(`${LEGEND}\n\n`);
  for (const file of files) {
    let run;
    try {
      run = runScenario(parseScenario(readFileSync(file, 'utf8'), file), decider(opts.naive ?? false, backend));
    } catch (e) {
      exit = Math.max(exit, reportInputError(e));
      continue;
    }
    const mismatches = run.steps.flatMap((s) => s.mismatches);
    if (opts.json) {
      const lines: string[] = [];
      for (const step of run.steps) {
        for (const r of step.results) {
          const extra = many ? { scenario: file } : {};
          const obj = resultJson(r, extra);
          if (opts.explain) obj.explain = explainJson(r);
          lines.push(JSON.stringify(obj));
        }
      }
      if (lines.length > 0) process.stdout.write(lines.join('\n') + '\n');
    } else {
      process.stdout.write(`== ${file}${run.scenario.description ? `: ${run.scenario.description}` : ''}\n`);
      process.stdout.write(renderRun(run, opts.explain ?? false) + '\n');
    }
    if (mismatches.length > 0) {
      exit = Math.max(exit, EXIT_MISMATCH);
      for (const m of mismatches) {
        process.stderr.write(`${file}: step ${m.step} probe ${m.probe} ${m.pair}: expected ${m.expected}, got ${m.actual}\n`);
      }
    }
  }
  if (!opts.json && files.length > 1) {
    process.stdout.write(`${files.length} scenarios, ${exit === 0 ? 'all as expected' : 'SOME NOT AS EXPECTED'}\n`);
  }
  backend.close();
  return exit;
}

interface VerifyOptions extends BackendOptions {
  scenario: string[];
  json?: boolean;
}

/** Runs each scenario through the engine and through the oracle and compares every result. */
function verify(opts: VerifyOptions): number {
  let files: string[];
  try {
    files = scenarioFiles(opts.scenario);
  } catch (e) {
    return reportInputError(e);
  }
  let exit = 0;
  let total = 0;
  let disagreements = 0;
  let backend: MapBackend;
  try {
    backend = openBackend(opts);
  } catch (e) {
    return reportInputError(e);
  }
  for (const file of files) {
    let engineRun: ScenarioRun;
    let naiveRun: ScenarioRun;
    try {
      const scenario = parseScenario(readFileSync(file, 'utf8'), file);
      engineRun = runScenario(scenario, decider(false, backend));
      naiveRun = runScenario(scenario, decideFlow);
    } catch (e) {
      exit = Math.max(exit, reportInputError(e));
      continue;
    }
    let fileDisagreements = 0;
    engineRun.steps.forEach((step, si) => {
      step.results.forEach((r, ri) => {
        total++;
        const o = naiveRun.steps[si]?.results[ri];
        if (o && o.allowed === r.allowed && o.proxied === r.proxied) return;
        fileDisagreements++;
        const verdict = (x: { allowed: boolean; proxied: boolean } | undefined): string => (x === undefined ? 'missing' : x.allowed ? (x.proxied ? 'proxied' : 'allowed') : 'denied');
        const line = { scenario: file, step: r.step, probe: r.probe, from: r.from, to: r.to, port: r.port, protocol: r.protocol, engine: verdict(r), naive: verdict(o) };
        process.stderr.write(opts.json ? `${JSON.stringify(line)}\n` : `${file}: step ${r.step} probe ${r.probe} ${r.from} -> ${r.to} ${r.port}/${r.protocol}: engine ${line.engine}, naive ${line.naive}\n`);
      });
    });
    disagreements += fileDisagreements;
    if (fileDisagreements > 0) exit = Math.max(exit, EXIT_MISMATCH);
  }
  backend.close();
  const summary = { scenarios: files.length, results: total, disagreements };
  process.stdout.write(opts.json ? `${JSON.stringify(summary)}\n` : `${files.length} scenarios, ${total} results, ${disagreements === 0 ? 'engine and naive evaluator agree on all' : `${disagreements} DISAGREEMENTS`}\n`);
  return exit;
}

interface DumpOptions extends BackendOptions {
  scenario: string;
  endpoint: string;
  json?: boolean;
}

/** Builds the scenario's final state through the engine and a backend, then dumps one map. */
function mapsDump(opts: DumpOptions): number {
  let backend: MapBackend | undefined;
  try {
    backend = openBackend(opts);
    const run = engineRun(backend);
    runScenario(parseScenario(readFileSync(opts.scenario, 'utf8'), opts.scenario), run.decide);
    if (!backend.endpoints().includes(opts.endpoint)) {
      throw new UnknownEndpointError(`no local endpoint "${opts.endpoint}" (endpoints: ${backend.endpoints().join(', ')})`);
    }
    const records = backend.dump(opts.endpoint);
    const labelsOf = (id: number): string[] => (id === 0 ? [] : (run.engine.identityLabels(id) ?? []).map((l) => (l.value === '' ? `${l.source}:${l.key}` : `${l.source}:${l.key}=${l.value}`)));
    if (opts.json) {
      const pressure = records.length / backend.capacity;
      const l7 = run.engine.l7Table(opts.endpoint).map((row) => l7RowJson(row, labelsOf));
      process.stdout.write(`${JSON.stringify({ endpoint: opts.endpoint, backend: backend.kind, capacity: backend.capacity, pressure, entries: records.map((r) => mapRecordJson(r, labelsOf)), l7 })}\n`);
    } else {
      const where = backend instanceof BpfBackend ? ` (pinned under ${backend.pinDir})` : '';
      const pct = ((100 * records.length) / backend.capacity).toFixed(2);
      process.stdout.write(`policy map of ${opts.endpoint}: ${records.length} / ${backend.capacity} entries (${pct}% full), ${backend.kind} backend${where}\n`);
      process.stdout.write(renderMapRecords(records, labelsOf) + '\n');
      process.stdout.write(`\nL7 proxies (what each is told):\n${renderL7Policies(run.engine.l7Policies(opts.endpoint), labelsOf)}\n`);
    }
    return 0;
  } catch (e) {
    return reportInputError(e);
  } finally {
    backend?.close();
  }
}

interface GenOptions {
  profile: string;
  seed: string;
  scale?: string;
  churn?: string;
}

function gen(opts: GenOptions): number {
  const num = (v: string | undefined, what: string): number | undefined => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isFinite(n) || n < 0) throw new ManifestError('distill gen', what, `"${v}" is not a non-negative number`);
    return n;
  };
  try {
    const scale = num(opts.scale, '--scale');
    const churnEvents = num(opts.churn, '--churn');
    const text = generateTrace({ profile: opts.profile, seed: num(opts.seed, '--seed') ?? 1, ...(scale !== undefined ? { scale } : {}), ...(churnEvents !== undefined ? { churnEvents } : {}) });
    process.stdout.write(text);
    return 0;
  } catch (e) {
    return reportInputError(e);
  }
}

interface ReplayCliOptions extends BackendOptions {
  json?: boolean;
  verifyEvery?: string;
  mode: ReplayMode;
  limit?: string;
}

function formatReplay(r: ReplayResult): string {
  const out = [
    `${r.mode} replay${r.profile ? ` of profile ${r.profile}` : ''}: ${r.events} events (${r.coldStart.events} initial, ${r.churnEvents} churn), ${r.eventsPerSec} events/s`,
    `cold start: ${r.coldStart.ms} ms, heap ${(r.coldStart.heapBytes / 1e6).toFixed(1)} MB, ${r.coldStart.deltas} map entries written`,
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

function replayCommand(file: string, opts: ReplayCliOptions): number {
  let backend: MapBackend | undefined;
  let bar: cliProgress.SingleBar | undefined;
  try {
    const trace = parseTrace(readFileSync(file, 'utf8'), file);
    backend = opts.backend === 'bpf' ? new BpfBackend({ pinDir: join(opts.pinDir, 'replay') }) : new MemoryBackend();
    reconcile(new Engine(), backend); // start from empty maps
    const verifyEvery = opts.verifyEvery === undefined ? undefined : Number(opts.verifyEvery);
    if (verifyEvery !== undefined && (!Number.isInteger(verifyEvery) || verifyEvery < 1)) throw new ManifestError('distill replay', '--verify-every', `"${opts.verifyEvery}" is not a positive integer`);
    const limit = opts.limit === undefined ? undefined : Number(opts.limit);
    if (limit !== undefined && (!Number.isInteger(limit) || limit < 0)) throw new ManifestError('distill replay', '--limit', `"${opts.limit}" is not a non-negative integer`);
    if (process.stderr.isTTY) {
      bar = new cliProgress.SingleBar({ format: 'replay [{bar}] {percentage}% {value}/{total} events, {eta_formatted} left', stream: process.stderr, hideCursor: true }, cliProgress.Presets.shades_classic);
      bar.start(1, 0);
    }
    const result = replay(trace, {
      mode: opts.mode,
      backend,
      ...(verifyEvery !== undefined ? { verifyEvery } : {}),
      ...(limit !== undefined ? { limit } : {}),
      ...(bar ? { onProgress: (done: number, total: number) => { bar?.setTotal(total); bar?.update(done); } } : {}),
    });
    bar?.stop();
    process.stdout.write(opts.json ? `${JSON.stringify(result)}\n` : `${formatReplay(result)}\n`);
    return 0;
  } catch (e) {
    bar?.stop();
    if (e instanceof ReplayDivergence) {
      process.stderr.write(`DIVERGENCE: ${e.message}\n`);
      return EXIT_MISMATCH;
    }
    return reportInputError(e);
  } finally {
    backend?.close();
  }
}

function validate(files: string[]): number {
  let exit = 0;
  for (const file of files) {
    try {
      const policies = parseManifestFile(readFileSync(file, 'utf8'), file);
      const rules = policies.reduce((n, p) => n + p.rules.length, 0);
      for (const w of policies.flatMap((p) => p.warnings ?? [])) process.stderr.write(`${formatWarning(w)}\n`);
      process.stdout.write(`${file}: ${policies.length} policies, ${rules} rules, valid\n`);
    } catch (e) {
      exit = Math.max(exit, reportInputError(e));
    }
  }
  return exit;
}

function backendOption(): Option {
  return new Option('--backend <kind>', 'where policy maps are written and verdicts read back from').choices(['memory', 'bpf']).default('memory');
}

function pinDirOption(): Option {
  return new Option('--pin-dir <dir>', 'bpffs directory for --backend bpf (scenario maps go to <dir>/scenario)').default(DEFAULT_PIN_DIR);
}

export function buildProgram(): Command {
  const program = new Command();
  program.name('distill').description('Network policy for the endpoints of one node: Kubernetes and Cilium semantics, explained.').showHelpAfterError();
  program
    .command('reach')
    .description('Decide every probe of a scenario (a file, or a directory of them) and check its expectations')
    .addOption(new Option('--scenario <path...>', 'scenario file(s) or directories').makeOptionMandatory())
    .option('--json', 'one JSON object per probe result')
    .option('--explain', 'say which policies allowed or denied each flow')
    .option('--naive', 'answer with the reference evaluator instead of the engine')
    .addOption(backendOption())
    .addOption(pinDirOption())
    .action((opts: ReachOptions) => {
      process.exitCode = reach(opts);
    });
  program
    .command('verify')
    .description('Answer every probe with the engine and with the reference evaluator; exit 1 on any disagreement')
    .addOption(new Option('--scenario <path...>', 'scenario file(s) or directories').makeOptionMandatory())
    .option('--json', 'a JSON summary on stdout, one JSON object per disagreement on stderr')
    .addOption(backendOption())
    .addOption(pinDirOption())
    .action((opts: VerifyOptions) => {
      process.exitCode = verify(opts);
    });
  program
    .command('gen')
    .description('Generate a churn trace (JSON Lines) for a cluster profile, on stdout')
    .addOption(new Option('--profile <name>', 'cluster shape').choices(PROFILES.map((p) => p.name)).makeOptionMandatory())
    .option('--seed <n>', 'random seed: the same seed gives the same trace', '1')
    .option('--scale <x>', 'multiply the cluster size (1 = the published shape)')
    .option('--churn <n>', 'number of churn events after the initial state')
    .action((opts: GenOptions) => {
      process.exitCode = gen(opts);
    });
  program
    .command('replay')
    .description('Replay a churn trace through the engine and report throughput, latency per event type, deltas and heap')
    .argument('<trace>', 'trace file (JSON Lines, see docs/traces.md)')
    .option('--json', 'one JSON object with the summary')
    .option('--verify-every <n>', 'check the engine against a from-scratch recomputation every n churn events')
    .addOption(new Option('--mode <mode>', 'incremental: the engine; full: recompute every local endpoint from scratch after each event').choices(['incremental', 'full']).default('incremental'))
    .option('--limit <n>', 'replay only the first n churn events')
    .addOption(backendOption())
    .addOption(pinDirOption())
    .action((file: string, opts: ReplayCliOptions) => {
      process.exitCode = replayCommand(file, opts);
    });
  const maps = program.command('maps').description('Per-endpoint policy maps');
  maps
    .command('dump')
    .description("Build a scenario's final state and print one endpoint's policy map, read back from the backend")
    .addOption(new Option('--scenario <file>', 'scenario file').makeOptionMandatory())
    .addOption(new Option('--endpoint <namespace/name>', 'the local endpoint (pod) whose map to print').makeOptionMandatory())
    .option('--json', 'one JSON object')
    .addOption(backendOption())
    .addOption(pinDirOption())
    .action((opts: DumpOptions) => {
      process.exitCode = mapsDump(opts);
    });
  program
    .command('validate')
    .description('Validate manifest files (multi-document YAML of NetworkPolicy, CiliumNetworkPolicy, CiliumClusterwideNetworkPolicy)')
    .argument('<files...>')
    .action((files: string[]) => {
      process.exitCode = validate(files);
    });
  return program;
}

buildProgram().parse(process.argv);
