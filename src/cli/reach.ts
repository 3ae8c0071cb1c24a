import { Command, Option } from 'commander';
import { stringify as stringifyYaml } from 'yaml';
import type { MapBackend } from '../backend/backend.js';
import { backendEngine } from '../datapath/backend-engine.js';
import { decideFlow } from '../naive/evaluator.js';
import { FlowDecider, runScenario, ScenarioRun, scenarioEngineOptions } from '../scenario/run.js';
import { backendOption, BackendOptions, openScenarioInputs, pinDirOption } from './backend-options.js';
import { CliEnv, CliIo, Ctx, EXIT_MISMATCH, outputOption, OutputFormat, readScenario, reportInputError } from './common.js';
import { explainJson, LEGEND, renderRun, resultJson } from './render.js';

interface ReachOptions extends BackendOptions {
  scenario: string[];
  json?: boolean;
  /** -o: json is --json, wide is --explain, yaml the JSON objects as one YAML list per scenario. */
  output: OutputFormat;
  explain?: boolean;
  naive?: boolean;
}

/** The engine answers by default (through the backend's maps); `--naive` asks the oracle. */
function scenarioDecider(naive: boolean, backend: MapBackend, options: ReturnType<typeof scenarioEngineOptions>): FlowDecider {
  return naive ? decideFlow : backendEngine(backend, options).decide;
}

/** One scenario's results: JSON lines, one YAML list, or the text table. */
function printRun(io: CliIo, run: ScenarioRun, file: string, opts: ReachOptions, many: boolean): void {
  if (opts.json) {
    const lines: unknown[] = [];
    for (const step of run.steps) {
      for (const r of step.results) {
        const extra = many ? { scenario: file } : {};
        const obj = resultJson(r, extra);
        if (opts.explain) obj.explain = explainJson(r);
        lines.push(opts.output === 'yaml' ? obj : JSON.stringify(obj));
      }
    }
    if (opts.output === 'yaml') io.out(`${many ? '---\n' : ''}${stringifyYaml(lines)}`);
    else if (lines.length > 0) io.out(lines.join('\n') + '\n');
  } else {
    io.out(`== ${file}${run.scenario.description ? `: ${run.scenario.description}` : ''}\n`);
    io.out(renderRun(run, opts.explain ?? false) + '\n');
  }
}

function reach(ctx: Ctx, given: ReachOptions): number {
  const { io } = ctx;
  const yaml = given.output === 'yaml';
  const opts: ReachOptions = { ...given, json: given.json === true || given.output === 'json' || yaml, explain: given.explain === true || given.output === 'wide' };
  let files: string[];
  let backend: MapBackend;
  try {
    ({ files, backend } = openScenarioInputs(opts.scenario, opts));
  } catch (e) {
    return reportInputError(io, e);
  }
  let exit = 0;
  let legendShown = opts.json === true;
  for (const file of files) {
    let run;
    try {
      const scenario = readScenario(ctx, file);
      run = runScenario(scenario, scenarioDecider(opts.naive ?? false, backend, scenarioEngineOptions(scenario)));
    } catch (e) {
      exit = Math.max(exit, reportInputError(io, e, file));
      continue;
    }
    if (!legendShown) io.out(`${LEGEND}\n\n`); // after the first scenario that reads: an input error alone prints no legend
    legendShown = true;
    printRun(io, run, file, opts, files.length > 1);
    const mismatches = run.steps.flatMap((s) => s.mismatches);
    if (mismatches.length > 0) exit = Math.max(exit, EXIT_MISMATCH);
    for (const m of mismatches) io.err(`${file}: step ${m.step} probe ${m.probe} ${m.pair}: expected ${m.expected}, got ${m.actual}\n`);
  }
  if (!opts.json && files.length > 1) {
    io.out(`${files.length} scenarios, ${exit === 0 ? 'all as expected' : 'SOME NOT AS EXPECTED'}\n`);
  }
  backend.close();
  return exit;
}

export function registerReach(program: Command, { ctx, done }: CliEnv): void {
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
