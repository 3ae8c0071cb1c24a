import { Command, Option } from 'commander';
import { BpfBackend } from '../backend/bpf.js';
import { l7RowJson, labelsOfEngine, mapRecordJson } from '../backend/record-json.js';
import { BackendEngine, backendEngine } from '../datapath/backend-engine.js';
import { renderMapRecords } from '../explain/format.js';
import type { MapBackend } from '../backend/backend.js';
import { UnknownEndpointError } from '../model/flow.js';
import { scenarioEngineOptions, scenarioState } from '../scenario/run.js';
import { backendOption, BackendOptions, openBackend, pinDirOption } from './backend-options.js';
import { CliEnv, CliIo, Ctx, intOption, outputOption, OutputFormat, printData, readScenario, reportInputError } from './common.js';
import { InputError } from './input.js';
import { renderL7Policies } from './render.js';
import { registerMapsViews } from './views.js';

interface DumpOptions extends BackendOptions {
  scenario: string;
  step?: string;
  endpoint?: string;
  all?: boolean;
  json?: boolean;
  output: OutputFormat;
}

/** One endpoint's map as data: what `--json` and `-o json|yaml` print. */
function dumpJson(run: BackendEngine, endpoint: string, labelsOf: (id: number) => string[]): Record<string, unknown> {
  const records = run.backend.dump(endpoint);
  const l7 = run.engine.l7Table(endpoint).map((row) => l7RowJson(row, labelsOf));
  return { endpoint, backend: run.backend.kind, capacity: run.backend.capacity, pressure: records.length / run.backend.capacity, entries: records.map((r) => mapRecordJson(r, labelsOf)), l7 };
}

function dumpText(io: CliIo, run: BackendEngine, endpoint: string, labelsOf: (id: number) => string[], wide: boolean): void {
  const { backend } = run;
  const records = backend.dump(endpoint);
  const where = backend instanceof BpfBackend ? ` (pinned under ${backend.pinDir})` : '';
  const pct = ((100 * records.length) / backend.capacity).toFixed(2);
  io.out(`policy map of ${endpoint}: ${records.length} / ${backend.capacity} entries (${pct}% full), ${backend.kind} backend${where}\n`);
  io.out(renderMapRecords(records, labelsOf, wide) + '\n');
  io.out(`\nL7 proxies (what each is told):\n${renderL7Policies(run.engine.l7Policies(endpoint), labelsOf)}\n`);
}

function printDump(io: CliIo, run: BackendEngine, endpoints: readonly string[], opts: DumpOptions): void {
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
}

/**
 * Builds the scenario's state after --step (default: the last) through the engine and a backend, step
 * by step as maps list and trace do, then dumps maps. Probes are not run: the state, not the last
 * probed step, is what is dumped (a scenario without steps, or ending in changes, included).
 */
function mapsDump(ctx: Ctx, opts: DumpOptions): number {
  let backend: MapBackend | undefined;
  try {
    if ((opts.endpoint === undefined) === (opts.all !== true)) throw new InputError('maps dump: give --endpoint NAMESPACE/NAME or --all (run `distill maps list --scenario FILE` to see the endpoints)');
    backend = openBackend(opts, 'scenario');
    const scenario = readScenario(ctx, opts.scenario);
    const run = backendEngine(backend, scenarioEngineOptions(scenario));
    run.sync(scenarioState(scenario, intOption(opts.step, '--step', 0), (_s, trail) => run.decide.syncThrough(trail)));
    const endpoints = opts.all ? backend.endpoints() : [opts.endpoint as string];
    for (const ep of endpoints) {
      if (!backend.endpoints().includes(ep)) throw new UnknownEndpointError(`no local endpoint "${ep}" (endpoints: ${backend.endpoints().join(', ')})`);
    }
    printDump(ctx.io, run, endpoints, opts);
    return 0;
  } catch (e) {
    return reportInputError(ctx.io, e, opts.scenario);
  } finally {
    backend?.close();
  }
}

export function registerMaps(program: Command, env: CliEnv): void {
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
