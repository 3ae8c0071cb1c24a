#!/usr/bin/env node
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { createRequire } from 'node:module';
import { realpathSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { decideFlow } from '../naive/evaluator.js';
import { samePriorityWarnings } from '../policy/clusternetworkpolicy.js';
import { UnknownEndpointError } from '../model/flow.js';
import { ManifestError } from '../policy/errors.js';
import { readManifestFile } from '../policy/manifest.js';
import { formatWarning, policyRefKey } from '../model/rules.js';
import { parseScenario } from '../scenario/format.js';
import { FlowDecider, runScenario, ScenarioRun, scenarioEngineOptions, scenarioState } from '../scenario/run.js';
import { applyChangeSet, MapBackend } from '../backend/backend.js';
import { BpfBackend, DEFAULT_PIN_DIR } from '../backend/bpf.js';
import { MemoryBackend } from '../backend/memory.js';
import { backendLookup } from '../backend/lookup.js';
import { KernelIpcache } from '../backend/ipcache.js';
import { localEndpointAddresses } from '../backend/ipcache-content.js';
import type { ChangeSet } from '../engine/events.js';
import type { IpAddress } from '../model/cidr.js';
import type { ClusterState } from '../model/cluster.js';
import { RESERVED_IDENTITIES } from '../model/identity.js';
import { reconcile } from '../node/restart.js';
import { EngineDecider } from '../harness/engine-decider.js';
import { Engine } from '../engine/engine.js';
import { ALL_LOCAL } from '../harness/cluster-sync.js';
import { GEN_PROFILES, generateTrace } from '../churn/profiles.js';
import { replay, ReplayDivergence, ReplayMode, ReplayRefusal, ReplayResult } from '../churn/replay.js';
import { checkTrace, parseTrace } from '../churn/trace.js';
import cliProgress from 'cli-progress';
import { stringify as stringifyYaml } from 'yaml';
import { registerIdentityGc } from './identity-gc.js';
import { registerAgent } from './agent.js';
import { registerCluster } from './cluster.js';
import { registerTestbed } from './testbed.js';
import { registerTestbedAgent } from './testbed-agent.js';
import { checkStdinOnce, collectFiles, DEFAULT_MAX_INPUT_BYTES, InputError, inputName, isYamlFile, parseByteSize, readInputText, readInputUtf8 } from './input.js';
import { BAD_INPUT_ERRORS, CliEnv, isManifestFile, CliIo, Ctx, EXIT_BAD_INPUT, EXIT_INTERNAL, EXIT_MISMATCH, intOption, readScenario, RegisterCommand, reportInputError, outputOption, OutputFormat, printData } from './common.js';
import { registerTrace } from './trace.js';
import { registerPlan } from './plan.js';
import { registerMapsViews, registerViews } from './views.js';

export type { CliIo } from './common.js';
import { explainJson, LEGEND, renderL7Policies, renderRun, resultJson } from './render.js';
import { l7RowJson, labelsOfEngine, mapRecordJson } from '../backend/record-json.js';
import { renderMapRecords } from '../explain/format.js';

const VERSION = (createRequire(import.meta.url)('../../package.json') as { version: string }).version;
type BackendKind = 'memory' | 'bpf';

interface BackendOptions {
  backend: BackendKind;
  pinDir: string;
}

interface ReachOptions extends BackendOptions {
  scenario: string[];
  json?: boolean;
  /** -o: json is --json, wide is --explain, yaml the JSON objects as one YAML list per scenario. */
  output: OutputFormat;
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
  /** Brings the engine (and the backend) to a cluster state without deciding a flow. */
  readonly sync: (state: ClusterState) => void;
}

/**
 * An engine whose change sets are written to the backend, and whose verdicts are read back from
 * the backend's maps with the datapath's lookup (for bpf: real kernel LPM lookups).
 */
function engineRun(backend: MapBackend, options: ReturnType<typeof scenarioEngineOptions> = {}): EngineRun {
  const engine = new Engine({ mapCapacity: backend.capacity, ...options });
  reconcile(engine, backend); // a fresh engine: stale maps from an earlier run go
  // bpf: peers resolve through the kernel's ipcache (LPM), then the kernel's policy map.
  const ipcache = backend instanceof BpfBackend ? KernelIpcache.fresh(backend.pinDir) : undefined;
  const ipLookup = ipcache && ((ip: IpAddress) => ipcache.lookup(ip) ?? RESERVED_IDENTITIES[ip.family === 'ipv4' ? 'world-ipv4' : 'world-ipv6']);
  const write = (cs: ChangeSet): void => {
    const created = new Set(cs.endpointsAdded);
    applyChangeSet(backend, cs, ipcache && (() => ipcache.apply(cs.ipcache, localEndpointAddresses(engine, created))));
  };
  const decider = new EngineDecider(engine, ALL_LOCAL, write, (ep, peer, dir, proto, port) => backendLookup(backend, ep, peer, dir, proto, port)?.entry, ipLookup);
  return { engine, backend, decide: decider.decide, sync: (state) => decider.sync(state) };
}

/** The engine answers by default; `--naive` asks the oracle. */
function decider(naive: boolean, backend: MapBackend, options: ReturnType<typeof scenarioEngineOptions>): FlowDecider {
  return naive ? decideFlow : engineRun(backend, options).decide;
}

function reach(ctx: Ctx, given: ReachOptions): number {
  const { io } = ctx;
  const yaml = given.output === 'yaml';
  const opts: ReachOptions = { ...given, json: given.json === true || given.output === 'json' || yaml, explain: given.explain === true || given.output === 'wide' };
  let files: string[];
  try {
    files = collectFiles(opts.scenario, isYamlFile);
  } catch (e) {
    return reportInputError(io, e);
  }
  const many = files.length > 1;
  let exit = 0;
  let backend: MapBackend;
  try {
    backend = openBackend(opts);
  } catch (e) {
    return reportInputError(io, e);
  }
  let legendShown = opts.json === true;
  for (const file of files) {
    let run;
    try {
      const scenario = readScenario(ctx, file);
      run = runScenario(scenario, decider(opts.naive ?? false, backend, scenarioEngineOptions(scenario)));
    } catch (e) {
      exit = Math.max(exit, reportInputError(io, e, file));
      continue;
    }
    const mismatches = run.steps.flatMap((s) => s.mismatches);
    if (opts.json) {
      const lines: unknown[] = [];
      for (const step of run.steps) {
        for (const r of step.results) {
          const extra = many ? { scenario: file } : {};
          const obj = resultJson(r, extra);
          if (opts.explain) obj.explain = explainJson(r);
          lines.push(yaml ? obj : JSON.stringify(obj));
        }
      }
      if (yaml) io.out(`${many ? '---\n' : ''}${stringifyYaml(lines)}`);
      else if (lines.length > 0) io.out(lines.join('\n') + '\n');
    } else {
      if (!legendShown) io.out(`${LEGEND}\n\n`); // after the first scenario that reads: an input error alone prints no legend
      legendShown = true;
      io.out(`== ${file}${run.scenario.description ? `: ${run.scenario.description}` : ''}\n`);
      io.out(renderRun(run, opts.explain ?? false) + '\n');
    }
    if (mismatches.length > 0) {
      exit = Math.max(exit, EXIT_MISMATCH);
      for (const m of mismatches) {
        io.err(`${file}: step ${m.step} probe ${m.probe} ${m.pair}: expected ${m.expected}, got ${m.actual}\n`);
      }
    }
  }
  if (!opts.json && files.length > 1) {
    io.out(`${files.length} scenarios, ${exit === 0 ? 'all as expected' : 'SOME NOT AS EXPECTED'}\n`);
  }
  backend.close();
  return exit;
}

interface VerifyOptions extends BackendOptions {
  scenario: string[];
  json?: boolean;
  output: OutputFormat;
}

/** Runs each scenario through the engine and through the oracle and compares every result. */
function verify(ctx: Ctx, given: VerifyOptions): number {
  const { io } = ctx;
  const opts: VerifyOptions = { ...given, json: given.json === true || given.output === 'json' };
  let files: string[];
  try {
    files = collectFiles(opts.scenario, isYamlFile);
  } catch (e) {
    return reportInputError(io, e);
  }
  let exit = 0;
  let total = 0;
  let disagreements = 0;
  let unread = 0;
  let backend: MapBackend;
  try {
    backend = openBackend(opts);
  } catch (e) {
    return reportInputError(io, e);
  }
  for (const file of files) {
    let engineRun: ScenarioRun;
    let naiveRun: ScenarioRun;
    try {
      const scenario = readScenario(ctx, file);
      engineRun = runScenario(scenario, decider(false, backend, scenarioEngineOptions(scenario)));
      naiveRun = runScenario(scenario, decideFlow);
    } catch (e) {
      exit = Math.max(exit, reportInputError(io, e, file));
      unread++;
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
        io.err(opts.json ? `${JSON.stringify(line)}\n` : `${file}: step ${r.step} probe ${r.probe} ${r.from} -> ${r.to} ${r.port}/${r.protocol}: engine ${line.engine}, naive ${line.naive}\n`);
      });
    });
    disagreements += fileDisagreements;
    if (fileDisagreements > 0) exit = Math.max(exit, EXIT_MISMATCH);
  }
  backend.close();
  // A scenario that could not be read was not verified: never "agree on all" (attack finding 1541).
  const summary = { scenarios: files.length, results: total, disagreements, unread };
  if (opts.output === 'yaml') io.out(stringifyYaml(summary));
  else io.out(opts.json ? `${JSON.stringify(summary)}\n` : `${verifySummaryText(summary)}\n`);
  return exit;
}

function verifySummaryText(s: { scenarios: number; results: number; disagreements: number; unread: number }): string {
  const verdict = s.disagreements > 0 ? `${s.disagreements} DISAGREEMENTS` : s.unread === 0 ? 'engine and naive evaluator agree on all' : 'engine and naive evaluator agree on the scenarios read';
  return `${s.scenarios} scenarios, ${s.results} results, ${verdict}${s.unread > 0 ? `; ${s.unread} NOT READ (errors on stderr)` : ''}`;
}

interface DumpOptions extends BackendOptions {
  scenario: string;
  step?: string;
  endpoint?: string;
  all?: boolean;
  json?: boolean;
  output: OutputFormat;
}

/** One endpoint's map as data: what `--json` and `-o json|yaml` print. */
function dumpJson(run: EngineRun, endpoint: string, labelsOf: (id: number) => string[]): Record<string, unknown> {
  const records = run.backend.dump(endpoint);
  const l7 = run.engine.l7Table(endpoint).map((row) => l7RowJson(row, labelsOf));
  return { endpoint, backend: run.backend.kind, capacity: run.backend.capacity, pressure: records.length / run.backend.capacity, entries: records.map((r) => mapRecordJson(r, labelsOf)), l7 };
}

function dumpText(io: CliIo, run: EngineRun, endpoint: string, labelsOf: (id: number) => string[], wide: boolean): void {
  const { backend } = run;
  const records = backend.dump(endpoint);
  const where = backend instanceof BpfBackend ? ` (pinned under ${backend.pinDir})` : '';
  const pct = ((100 * records.length) / backend.capacity).toFixed(2);
  io.out(`policy map of ${endpoint}: ${records.length} / ${backend.capacity} entries (${pct}% full), ${backend.kind} backend${where}\n`);
  io.out(renderMapRecords(records, labelsOf, wide) + '\n');
  io.out(`\nL7 proxies (what each is told):\n${renderL7Policies(run.engine.l7Policies(endpoint), labelsOf)}\n`);
}

/**
 * Builds the scenario's state after --step (default: the last) through the engine and a backend, step
 * by step as maps list and trace do, then dumps maps. Probes are not run: the state, not the last
 * probed step, is what is dumped (a scenario without steps, or ending in changes, included).
 */
function mapsDump(ctx: Ctx, opts: DumpOptions): number {
  const { io } = ctx;
  let backend: MapBackend | undefined;
  try {
    if ((opts.endpoint === undefined) === (opts.all !== true)) throw new InputError('maps dump: give --endpoint NAMESPACE/NAME or --all (run `distill maps list --scenario FILE` to see the endpoints)');
    backend = openBackend(opts);
    const scenario = readScenario(ctx, opts.scenario);
    const run = engineRun(backend, scenarioEngineOptions(scenario));
    run.sync(scenarioState(scenario, intOption(opts.step, '--step', 0), run.sync));
    const endpoints = opts.all ? backend.endpoints() : [opts.endpoint as string];
    for (const ep of endpoints) {
      if (!backend.endpoints().includes(ep)) throw new UnknownEndpointError(`no local endpoint "${ep}" (endpoints: ${backend.endpoints().join(', ')})`);
    }
    const labelsOf = labelsOfEngine(run.engine);
    const format: OutputFormat = opts.json ? 'json' : opts.output;
    if (format === 'json') {
      for (const ep of endpoints) io.out(`${JSON.stringify(dumpJson(run, ep, labelsOf))}\n`);
    } else if (!printData(io, format, opts.all ? endpoints.map((ep) => dumpJson(run, ep, labelsOf)) : dumpJson(run, endpoints[0] as string, labelsOf))) {
      endpoints.forEach((ep, i) => {
        if (i > 0) io.out('\n');
        dumpText(io, run, ep, labelsOf, format === 'wide');
      });
    }
    return 0;
  } catch (e) {
    return reportInputError(io, e, opts.scenario);
  } finally {
    backend?.close();
  }
}

interface GenOptions {
  profile: string;
  seed: string;
  scale?: string;
  churn?: string;
  nodes?: string;
}

function gen({ io, maxInputBytes }: Ctx, opts: GenOptions): number {
  const num = (v: string | undefined, what: string): number | undefined => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isFinite(n) || n < 0) throw new ManifestError('distill gen', what, `"${v}" is not a non-negative number`);
    return n;
  };
  try {
    const scale = num(opts.scale, '--scale');
    const churnEvents = num(opts.churn, '--churn');
    const nodes = num(opts.nodes, '--nodes');
    const text = generateTrace({ profile: opts.profile, seed: num(opts.seed, '--seed') ?? 1, ...(nodes !== undefined ? { nodes } : {}), ...(scale !== undefined ? { scale } : {}), ...(churnEvents !== undefined ? { churnEvents } : {}), maxBytes: maxInputBytes });
    io.out(text);
    return 0;
  } catch (e) {
    return reportInputError(io, e);
  }
}

interface ReplayCliOptions extends BackendOptions {
  json?: boolean;
  output: OutputFormat;
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

/** The whole trace is read and checked before the backend is opened: a bad line writes nothing. */
function replayCommand(ctx: Ctx, file: string, opts: ReplayCliOptions): number {
  const { io } = ctx;
  let backend: MapBackend | undefined;
  let bar: cliProgress.SingleBar | undefined;
  try {
    const verifyEvery = intOption(opts.verifyEvery, 'distill replay --verify-every', 1);
    const limit = intOption(opts.limit, 'distill replay --limit', 0);
    if (io.progress) {
      bar = new cliProgress.SingleBar({ format: 'replay {phase} [{bar}] {percentage}% {value}/{total} {unit}, {eta_formatted} left', stream: io.progress, hideCursor: true }, cliProgress.Presets.shades_classic);
      bar.start(1, 0, { phase: 'parse', unit: 'lines' });
    }
    const phase = (name: string, unit: string) => (done: number, total: number): void => {
      bar?.setTotal(total);
      bar?.update(done, { phase: name, unit });
      // A phase's first frame is drawn now: the cold start is one synchronous transaction, and
      // cli-progress would otherwise skip a frame that comes right after the last one.
      if (done === 0) bar?.render();
    };
    const trace = parseTrace(readInputUtf8(file, ctx.maxInputBytes), inputName(file), { manifests: false, ...(bar ? { onProgress: phase('parse', 'lines') } : {}) });
    checkTrace(trace);
    backend = opts.backend === 'bpf' ? new BpfBackend({ pinDir: join(opts.pinDir, 'replay') }) : new MemoryBackend();
    reconcile(new Engine(), backend); // start from empty maps
    const result = replay(trace, {
      mode: opts.mode,
      consume: true,
      backend,
      ...(verifyEvery !== undefined ? { verifyEvery } : {}),
      ...(limit !== undefined ? { limit } : {}),
      ...(bar ? { onProgress: (done: number, total: number, name: string) => phase(name === 'churn' ? 'churn' : 'cold start (one transaction)', 'events')(done, total) } : {}),
    });
    bar?.stop();
    if (!printData(io, opts.json ? 'json' : opts.output, result)) io.out(`${formatReplay(result)}\n`);
    return 0;
  } catch (e) {
    bar?.stop();
    if (e instanceof ReplayDivergence) {
      io.err(`DIVERGENCE: ${e.message}\n`);
      return EXIT_MISMATCH;
    }
    if (e instanceof ReplayRefusal && BAD_INPUT_ERRORS.some((c) => e.cause instanceof c)) {
      io.err(`error: ${e.message}\n`);
      return EXIT_BAD_INPUT;
    }
    return reportInputError(io, e instanceof ReplayRefusal ? e.cause : e, file);
  } finally {
    backend?.close();
  }
}

/** Whether a file `validate` refused reads as a scenario (an operator's easy mix-up: `validate DIR` over scenarios). */
function isScenarioFile(ctx: Ctx, file: string): boolean {
  if (file === '-') return false; // stdin is read once
  try {
    parseScenario(readInputText(file, ctx.maxInputBytes), inputName(file));
    return true;
  } catch {
    return false;
  }
}

/** One file's outcome, as `validate -o json|yaml` prints it. */
type ValidateResult = { file: string; valid: true; policies: number; rules: number; podsAndNamespaces: number; skipped: number; names: string[] } | { file: string; valid: false; error: string };

function validate(ctx: Ctx, paths: string[], format: OutputFormat = 'text'): number {
  const { io } = ctx;
  const results: ValidateResult[] = [];
  let files: string[];
  try {
    if (paths.length === 0) throw new InputError('validate: give manifest files, directories or - (stdin), as arguments or with -f');
    checkStdinOnce(paths);
    files = collectFiles(paths, isManifestFile);
  } catch (e) {
    return reportInputError(io, e);
  }
  let exit = 0;
  for (const file of files) {
    try {
      const { policies, objects, skipped } = readManifestFile(readInputText(file, ctx.maxInputBytes), inputName(file));
      const rules = policies.reduce((n, p) => n + p.rules.length + (p.tiered?.rules.length ?? 0), 0);
      const tierWarnings = samePriorityWarnings(policies, inputName(file));
      for (const w of [...policies.flatMap((p) => p.warnings ?? []), ...objects.flatMap((o) => o.warnings), ...skipped, ...tierWarnings]) io.err(`${formatWarning(w)}\n`);
      const others = objects.length > 0 ? `, ${objects.length} pods and namespaces` : '';
      results.push({ file: inputName(file), valid: true, policies: policies.length, rules, podsAndNamespaces: objects.length, skipped: skipped.length, names: policies.map((p) => policyRefKey(p.ref)) });
      if (format === 'text' || format === 'wide') io.out(`${inputName(file)}: ${policies.length} policies, ${rules} rules${others}, valid\n`);
    } catch (e) {
      let error = '';
      exit = Math.max(exit, reportInputError({ out: io.out, err: (s) => (io.err(s), (error += s)) }, e, file));
      if (isScenarioFile(ctx, file)) io.err(`hint: ${inputName(file)} is a distill scenario, not a manifest: check it with \`distill reach --scenario ${inputName(file)}\`\n`);
      results.push({ file: inputName(file), valid: false, error: error.replace(/^error: /, '').trimEnd() });
    }
  }
  printData(io, format, results);
  return exit;
}

function backendOption(): Option {
  return new Option('--backend <kind>', 'where policy maps are written and verdicts read back from').choices(['memory', 'bpf']).default('memory');
}

/** `sub`: the subdirectory the command pins its maps in, so they never touch an agent's maps. */
function pinDirOption(sub: 'scenario' | 'replay'): Option {
  return new Option('--pin-dir <dir>', `bpffs directory for --backend bpf (this command's maps go to <dir>/${sub})`).default(DEFAULT_PIN_DIR);
}

/** Commander's own exits: help and version are 0, every usage error is bad input (2). */
function commanderExit(io: CliIo, e: CommanderError): number {
  if (e.code === 'commander.help' && e.exitCode !== 0) io.err('error: no command given\n');
  return e.code === 'commander.helpDisplayed' || e.code === 'commander.version' || e.exitCode === 0 ? 0 : EXIT_BAD_INPUT;
}

/**
 * Runs one distill command in-process and returns its exit code: 0 ok, 1 an expectation or
 * comparison failed, 2 bad input (a message, no stack), 70 a bug in distill.
 */
export function runCli(argv: readonly string[], io: CliIo): number {
  let exit = 0;
  try {
    buildProgram(io, (code) => (exit = code)).parse([...argv], { from: 'user' });
    return exit;
  } catch (e) {
    if (e instanceof CommanderError) return commanderExit(io, e);
    if (BAD_INPUT_ERRORS.some((c) => e instanceof c)) return reportInputError(io, e);
    const debug = process.env.DISTILL_DEBUG === '1';
    const err = e instanceof Error ? e : new Error(String(e));
    io.err(`internal error: ${err.message}\n${debug && err.stack ? `${err.stack}\n` : ''}`);
    return EXIT_INTERNAL;
  }
}

function maxInputBytesOption(): Option {
  return new Option('--max-input-bytes <n>', 'refuse any input file (scenario, manifest, trace, stdin) larger than this; k/M/G suffixes allowed')
    .default(DEFAULT_MAX_INPUT_BYTES, `${DEFAULT_MAX_INPUT_BYTES / 1024 ** 2}M`)
    .argParser((v: string) => {
      try {
        return parseByteSize(v);
      } catch (e) {
        throw new InvalidArgumentError((e as Error).message);
      }
    });
}

/** Every command, in help order. A new command: one `register<Command>` line here. */
const COMMANDS: readonly RegisterCommand[] = [registerReach, registerVerify, registerTrace, registerPlan, registerGen, registerReplay, registerMaps, registerValidate, registerViews];

/** Usage errors print one line and where to look, not the whole help text. */
function oneLineUsageErrors(cmd: Command): void {
  const path: string[] = [];
  for (let c: Command | null = cmd; c; c = c.parent) path.unshift(c.name());
  cmd.showHelpAfterError(`(run '${path.join(' ')} --help' for usage)`).showSuggestionAfterError(true);
  for (const sub of cmd.commands) oneLineUsageErrors(sub);
}

/** The program; each action passes its exit code to `done` (nothing here sets process.exitCode). */
function buildProgram(io: CliIo, done: (exit: number) => void): Command {
  const program = new Command();
  program
    .name('distill')
    .description('Network policy for the endpoints of one node: Kubernetes and Cilium semantics, explained.')
    .version(VERSION, '-V, --version', 'print the version')
    .exitOverride()
    .configureOutput({ writeOut: (s) => io.out(s), writeErr: (s) => io.err(s) })
    .addOption(maxInputBytesOption());
  const env: CliEnv = { ctx: () => ({ io, maxInputBytes: program.opts<{ maxInputBytes: number }>().maxInputBytes }), done };
  for (const register of COMMANDS) register(program, env);
  registerIdentityGc(program, io);
  registerCluster(program, io);
  // The agent runs past runCli's return: its exit code goes to the process when it stops.
  registerAgent(program, io, (code) => (process.exitCode = code));
  registerTestbed(program, io, done);
  registerTestbedAgent(program, io, (code) => (process.exitCode = code));
  oneLineUsageErrors(program);
  return program;
}

function registerReach(program: Command, { ctx, done }: CliEnv): void {
  program
    .command('reach')
    .description('Decide every probe of a scenario (a file, or a directory of them) and check its expectations')
    .addOption(new Option('--scenario <path...>', 'scenario file(s) or directories').makeOptionMandatory())
    .option('--json', 'one JSON object per probe result')
    .option('--explain', 'say which policies allowed or denied each flow')
    .option('--naive', 'answer with the reference evaluator instead of the engine')
    .addOption(outputOption())
    .addOption(backendOption())
    .addOption(pinDirOption('scenario'))
    .action((opts: ReachOptions) => {
      done(reach(ctx(), opts));
    });
}

function registerVerify(program: Command, { ctx, done }: CliEnv): void {
  program
    .command('verify')
    .description('Answer every probe with the engine and with the reference evaluator; exit 1 on any disagreement')
    .addOption(new Option('--scenario <path...>', 'scenario file(s) or directories').makeOptionMandatory())
    .option('--json', 'a JSON summary on stdout, one JSON object per disagreement on stderr')
    .addOption(outputOption())
    .addOption(backendOption())
    .addOption(pinDirOption('scenario'))
    .action((opts: VerifyOptions) => {
      done(verify(ctx(), opts));
    });
}

function registerGen(program: Command, { ctx, done }: CliEnv): void {
  program
    .command('gen')
    .description('Generate a churn trace (JSON Lines) for a cluster profile, on stdout')
    .addOption(new Option('--profile <name>', 'cluster shape').choices(GEN_PROFILES.map((p) => p.name)).makeOptionMandatory())
    .option('--seed <n>', 'random seed: the same seed gives the same trace', '1')
    .option('--scale <x>', 'multiply the cluster size (a positive number, 1 = the published shape; not for small, a fixed shape)')
    .option('--churn <n>', 'number of churn events after the initial state (a whole number)')
    .option('--nodes <k>', 'spread pods over k nodes (a node field on each pod; local pods on node-0)')
    .action((opts: GenOptions) => {
      done(gen(ctx(), opts));
    });
}

function registerReplay(program: Command, { ctx, done }: CliEnv): void {
  program
    .command('replay')
    .description('Replay a churn trace through the engine and report throughput, latency per event type, deltas and heap')
    .argument('<trace>', 'trace file (JSON Lines, see docs/traces.md)')
    .option('--json', 'one JSON object with the summary')
    .option('--verify-every <n>', 'check the engine against a from-scratch recomputation every n churn events')
    .addOption(new Option('--mode <mode>', 'incremental: the engine; full: recompute every local endpoint from scratch after each event').choices(['incremental', 'full']).default('incremental'))
    .option('--limit <n>', 'replay only the first n churn events')
    .addOption(outputOption())
    .addOption(backendOption())
    .addOption(pinDirOption('replay'))
    .action((file: string, opts: ReplayCliOptions) => {
      done(replayCommand(ctx(), file, opts));
    });
}

function registerMaps(program: Command, env: CliEnv): void {
  const maps = program.command('maps').description('Per-endpoint policy maps');
  maps
    .command('dump')
    .description("Build a scenario's final state (or its state after --step) and print policy maps (one endpoint, or --all), read back from the backend")
    .addOption(new Option('--scenario <file>', 'scenario file').makeOptionMandatory())
    .option('--step <n>', 'the cluster after step n (default: after the last step)')
    .option('--endpoint <namespace/name>', 'the local endpoint (pod) whose map to print')
    .option('--all', 'every endpoint\'s map')
    .option('--json', 'one JSON object (per endpoint, one line each)')
    .addOption(outputOption())
    .addOption(backendOption())
    .addOption(pinDirOption('scenario'))
    .action((opts: DumpOptions) => {
      env.done(mapsDump(env.ctx(), opts));
    });
  registerMapsViews(maps, env);
}

function registerValidate(program: Command, { ctx, done }: CliEnv): void {
  program
    .command('validate')
    .summary('Validate manifest files: policies, Lists, v1 Pods and Namespaces')
    .description('Validate manifest files (multi-document YAML or JSON, kind: List as kubectl get -o yaml prints it: NetworkPolicy, CiliumNetworkPolicy, CiliumClusterwideNetworkPolicy, ClusterNetworkPolicy, v1 Pod and Namespace; built-in kinds without policy such as Deployment or Service are skipped with a warning, any other kind is refused); exit 2 naming the file, document and field of the first error in each file')
    .argument('[paths...]', 'manifest files, directories (their *.yaml/*.yml/*.json files) or - for stdin')
    .option('-f, --filename <path>', 'manifest file, directory or - (repeatable, as kubectl)', (v: string, prev: string[]) => [...prev, v], [] as string[])
    .addOption(outputOption())
    .action((files: string[], opts: { filename: string[]; output: OutputFormat }) => {
      done(validate(ctx(), [...files, ...opts.filename], opts.output));
    });
}

/** Run as the `distill` bin (not when imported, e.g. by the tests). */
function isMain(): boolean {
  const script = process.argv[1];
  if (script === undefined) return false;
  try {
    return import.meta.url === pathToFileURL(realpathSync(script)).href;
  } catch {
    return false;
  }
}

if (isMain()) {
  // A closed pipe (`distill gen … | head`) ends the output, as for any Unix filter: exit quietly.
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code !== 'EPIPE') throw e;
    process.exit(process.exitCode ?? 0);
  });
  process.exitCode = runCli(process.argv.slice(2), {
    out: (s) => process.stdout.write(s),
    err: (s) => process.stderr.write(s),
    ...(process.stderr.isTTY ? { progress: process.stderr } : {}),
  });
}
