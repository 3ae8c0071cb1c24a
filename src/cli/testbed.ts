import { Command, Option } from 'commander';
import { readFileSync } from 'node:fs';
import { datapathBuildMissing } from '../datapath/loader.js';
import { Testbed } from '../datapath/testbed.js';
import { ManifestError } from '../policy/errors.js';
import { parseScenario, Scenario } from '../scenario/format.js';
import { runScenario, scenarioEngineOptions } from '../scenario/run.js';
import { collectFiles, InputError, isYamlFile } from './input.js';
import { renderRun, resultJson } from './render.js';

interface TestbedOptions {
  scenario: string[];
  json?: boolean;
  timeout: string;
}

/** The ports each namespace must listen on for a scenario's probes. */
function listenSet(scenario: Scenario): Set<string> {
  const out = new Set<string>();
  for (const step of scenario.steps) {
    for (const p of step.probes) if (p.protocol === 'TCP' || p.protocol === 'UDP' || p.protocol === 'SCTP') out.add(`${p.protocol}:${p.port}`);
  }
  return out;
}

export interface TestbedIo {
  out(s: string): void;
  err(s: string): void;
}

/**
 * Runs each scenario on a fresh testbed, every probe a real connection; prints what `reach`
 * prints (with --json, exactly its format). Exit 1 when an expectation fails.
 */
function runTestbed(io: TestbedIo, opts: TestbedOptions): number {
  const missing = datapathBuildMissing();
  if (missing) throw new InputError(`testbed: ${missing}`);
  const files = collectFiles(opts.scenario, isYamlFile);
  const many = files.length > 1;
  let exit = 0;
  let probes = 0;
  const started = process.hrtime.bigint();
  for (const file of files) {
    const scenario = parseScenario(readFileSync(file, 'utf8'), file);
    const bed = new Testbed({ listen: listenSet(scenario), timeoutMs: Number(opts.timeout), engineOptions: scenarioEngineOptions(scenario) });
    io.err(`testbed: run ${bed.id}: ${file}\n`);
    let run;
    try {
      run = runScenario(scenario, bed.decide);
    } catch (e) {
      if (!(e instanceof ManifestError)) throw e;
      io.err(`error: ${e.message}\n`);
      exit = Math.max(exit, 2);
      continue;
    } finally {
      probes += bed.probes;
      bed.close();
    }
    if (opts.json) {
      const lines = run.steps.flatMap((st) => st.results.map((r) => JSON.stringify(resultJson(r, many ? { scenario: file } : {}))));
      if (lines.length > 0) io.out(lines.join('\n') + '\n');
    } else {
      io.out(`== ${file}${scenario.description ? `: ${scenario.description}` : ''}\n${renderRun(run, false)}\n`);
    }
    for (const m of run.steps.flatMap((s) => s.mismatches)) {
      exit = Math.max(exit, 1);
      io.err(`${file}: step ${m.step} probe ${m.probe} ${m.pair}: expected ${m.expected}, got ${m.actual}\n`);
    }
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  io.err(`testbed: ${probes} probes in ${seconds.toFixed(1)} s (${(probes / seconds).toFixed(1)} probes/s)\n`);
  return exit;
}

export function registerTestbed(program: Command, io: TestbedIo, done: (code: number) => void): void {
  program
    .command('testbed')
    .description('Build a scenario as network namespaces with the eBPF datapath, and answer every probe with a real connection')
    .addOption(new Option('--scenario <path...>', 'scenario file(s) or directories').makeOptionMandatory())
    .option('--json', 'one JSON object per probe result, as reach --json prints')
    .option('--timeout <ms>', 'how long a probe waits for an answer', '150')
    .action((opts: TestbedOptions) => {
      done(runTestbed(io, opts));
    });
}
