#!/usr/bin/env node
import { Command, Option } from 'commander';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { decideFlow, UnknownEndpointError } from '../naive/evaluator.js';
import { ManifestError } from '../policy/errors.js';
import { parseManifestFile } from '../policy/manifest.js';
import { parseScenario } from '../scenario/format.js';
import { FlowDecider, runScenario, ScenarioRun } from '../scenario/run.js';
import { EngineDecider } from '../engine/decide.js';
import { Engine } from '../engine/engine.js';
import { EngineError } from '../engine/events.js';
import { explainJson, LEGEND, renderRun, resultJson } from './render.js';

const EXIT_MISMATCH = 1;
const EXIT_BAD_INPUT = 2;

/** Bad input is the user's to fix: print what and where, no stack trace. */
function reportInputError(e: unknown): number {
  if (e instanceof ManifestError || e instanceof UnknownEndpointError || e instanceof EngineError) {
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

interface ReachOptions {
  scenario: string[];
  json?: boolean;
  explain?: boolean;
  naive?: boolean;
}

/** The engine answers by default (datapath lookup on its map state); `--naive` asks the oracle. */
function decider(naive: boolean): FlowDecider {
  return naive ? decideFlow : new EngineDecider(new Engine()).decide;
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
  if (!opts.json) process.stdout.write(`${LEGEND}\n\n`);
  for (const file of files) {
    let run;
    try {
      run = runScenario(parseScenario(readFileSync(file, 'utf8'), file), decider(opts.naive ?? false));
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
  return exit;
}

interface VerifyOptions {
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
  for (const file of files) {
    let engineRun: ScenarioRun;
    let naiveRun: ScenarioRun;
    try {
      const scenario = parseScenario(readFileSync(file, 'utf8'), file);
      engineRun = runScenario(scenario, decider(false));
      naiveRun = runScenario(scenario, decider(true));
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
  const summary = { scenarios: files.length, results: total, disagreements };
  process.stdout.write(opts.json ? `${JSON.stringify(summary)}\n` : `${files.length} scenarios, ${total} results, ${disagreements === 0 ? 'engine and naive evaluator agree on all' : `${disagreements} DISAGREEMENTS`}\n`);
  return exit;
}

function validate(files: string[]): number {
  let exit = 0;
  for (const file of files) {
    try {
      const policies = parseManifestFile(readFileSync(file, 'utf8'), file);
      const rules = policies.reduce((n, p) => n + p.rules.length, 0);
      process.stdout.write(`${file}: ${policies.length} policies, ${rules} rules, valid\n`);
    } catch (e) {
      exit = Math.max(exit, reportInputError(e));
    }
  }
  return exit;
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
    .action((opts: ReachOptions) => {
      process.exitCode = reach(opts);
    });
  program
    .command('verify')
    .description('Answer every probe with the engine and with the reference evaluator; exit 1 on any disagreement')
    .addOption(new Option('--scenario <path...>', 'scenario file(s) or directories').makeOptionMandatory())
    .option('--json', 'a JSON summary on stdout, one JSON object per disagreement on stderr')
    .action((opts: VerifyOptions) => {
      process.exitCode = verify(opts);
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
