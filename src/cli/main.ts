#!/usr/bin/env node
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { DistillCommand } from './command.js';
import { createRequire } from 'node:module';
import { realpathSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { registerIdentityGc } from './identity-gc.js';
import { registerAgent } from './agent.js';
import { registerCluster } from './cluster.js';
import { registerTestbed } from './testbed.js';
import { registerTestbedAgent } from './testbed-agent.js';
import { DEFAULT_MAX_INPUT_BYTES, parseByteSize } from './input.js';
import { BAD_INPUT_ERRORS, CliEnv, CliIo, EXIT_BAD_INPUT, EXIT_INTERNAL, RegisterCommand, reportInputError } from './common.js';
import { registerReach } from './reach.js';
import { registerVerify } from './verify.js';
import { registerTrace } from './trace.js';
import { registerPlan } from './plan.js';
import { registerGen } from './gen.js';
import { registerReplay } from './replay.js';
import { registerMaps } from './maps-dump.js';
import { registerValidate } from './validate.js';
import { registerViews } from './views.js';

export type { CliIo } from './common.js';

const VERSION = (createRequire(import.meta.url)('../../package.json') as { version: string }).version;

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
  const program = new DistillCommand();
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
