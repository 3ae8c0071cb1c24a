#!/usr/bin/env node
import { Command, Option } from 'commander';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { decideFlow, UnknownEndpointError } from '../naive/evaluator.js';
import { ManifestError } from '../policy/errors.js';
import { parseManifestFile } from '../policy/manifest.js';
import { parseScenario } from '../scenario/format.js';
import { runScenario } from '../scenario/run.js';
import { explainJson, LEGEND, renderRun, resultJson } from './render.js';

const EXIT_MISMATCH = 1;
const EXIT_BAD_INPUT = 2;

/** Bad input is the user's to fix: print what and where, no stack trace. */
function reportInputError(e: unknown): number {
  if (e instanceof ManifestError || e instanceof UnknownEndpointError) {
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
      run = runScenario(parseScenario(readFileSync(file, 'utf8'), file), decideFlow);
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
    .action((opts: ReachOptions) => {
      process.exitCode = reach(opts);
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
