import { Command, Option } from 'commander';
import { stringify as stringifyYaml } from 'yaml';
import type { MapBackend } from '../backend/backend.js';
import { backendEngine } from '../datapath/backend-engine.js';
import { decideFlow } from '../naive/evaluator.js';
import { compareRuns, Disagreement } from '../scenario/compare.js';
import { runScenario, scenarioEngineOptions } from '../scenario/run.js';
import { backendOption, BackendOptions, openScenarioInputs, pinDirOption } from './backend-options.js';
import { CliEnv, CliIo, Ctx, EXIT_MISMATCH, outputOption, OutputFormat, readScenario, reportInputError } from './common.js';

interface VerifyOptions extends BackendOptions {
  scenario: string[];
  json?: boolean;
  output: OutputFormat;
}

function printDisagreement(io: CliIo, file: string, d: Disagreement, json: boolean): void {
  io.err(json ? `${JSON.stringify({ scenario: file, ...d })}\n` : `${file}: step ${d.step} probe ${d.probe} ${d.from} -> ${d.to} ${d.port}/${d.protocol}: engine ${d.engine}, naive ${d.naive}\n`);
}

/** Runs each scenario through the engine and through the oracle and compares every result. */
function verify(ctx: Ctx, given: VerifyOptions): number {
  const { io } = ctx;
  const json = given.json === true || given.output === 'json';
  let files: string[];
  let backend: MapBackend;
  try {
    ({ files, backend } = openScenarioInputs(given.scenario, given));
  } catch (e) {
    return reportInputError(io, e);
  }
  let exit = 0;
  let total = 0;
  let disagreements = 0;
  let unread = 0;
  for (const file of files) {
    let compared;
    try {
      const scenario = readScenario(ctx, file);
      compared = compareRuns(runScenario(scenario, backendEngine(backend, scenarioEngineOptions(scenario)).decide), runScenario(scenario, decideFlow));
    } catch (e) {
      exit = Math.max(exit, reportInputError(io, e, file));
      unread++;
      continue;
    }
    for (const d of compared.disagreements) printDisagreement(io, file, d, json);
    total += compared.results;
    disagreements += compared.disagreements.length;
    if (compared.disagreements.length > 0) exit = Math.max(exit, EXIT_MISMATCH);
  }
  backend.close();
  // A scenario that could not be read was not verified: never "agree on all" (attack finding 1541).
  const summary = { scenarios: files.length, results: total, disagreements, unread };
  if (given.output === 'yaml') io.out(stringifyYaml(summary));
  else io.out(json ? `${JSON.stringify(summary)}\n` : `${verifySummaryText(summary)}\n`);
  return exit;
}

function verifySummaryText(s: { scenarios: number; results: number; disagreements: number; unread: number }): string {
  const verdict = s.disagreements > 0 ? `${s.disagreements} DISAGREEMENTS` : s.unread === 0 ? 'engine and naive evaluator agree on all' : 'engine and naive evaluator agree on the scenarios read';
  return `${s.scenarios} scenarios, ${s.results} results, ${verdict}${s.unread > 0 ? `; ${s.unread} NOT READ (errors on stderr)` : ''}`;
}

export function registerVerify(program: Command, { ctx, done }: CliEnv): void {
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
