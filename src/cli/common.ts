import { Command, Option } from 'commander';
import { stringify } from 'yaml';
import { UnknownEndpointError } from '../model/flow.js';
import { ClusterChangeError } from '../model/cluster.js';
import { formatWarning, policyRefKey, type Policy } from '../model/rules.js';
import type { CidrGroup } from '../model/cidr-group.js';
import { ManifestError } from '../policy/errors.js';
import { readManifestFile } from '../policy/manifest.js';
import { parseScenario, Scenario } from '../scenario/format.js';
import { BackendError } from '../backend/backend.js';
import { PinDirError } from '../backend/bpf.js';
import { BpfError } from '../backend/bpf-syscall.js';
import { EngineError, MapCapacityError } from '../engine/events.js';
import { ProxyPortsExhaustedError } from '../engine/proxy-ports.js';
import { L7ParserConflictError } from '../engine/rule-units.js';
import { TraceTooLargeError } from '../churn/generate.js';
import { GenerateOptionsError } from '../churn/profiles.js';
import { UnknownPeerError } from '../explain/trace.js';
import { collectFiles, InputError, inputName, readInputText } from './input.js';

/** Shared by every command: how they read input, report errors and print data. */

export const EXIT_MISMATCH = 1;
export const EXIT_BAD_INPUT = 2;
/** EX_SOFTWARE: a bug in distill, not in the input. */
export const EXIT_INTERNAL = 70;

/** Where the CLI writes; `progress` (a TTY) gets the replay progress bar. */
export interface CliIo {
  out(s: string): void;
  err(s: string): void;
  readonly progress?: NodeJS.WritableStream;
}

export interface Ctx {
  readonly io: CliIo;
  readonly maxInputBytes: number;
}

/** What a command's `register` function gets: the program, and how to run an action. */
export interface CliEnv {
  readonly ctx: () => Ctx;
  /** Each action passes its exit code here (nothing sets process.exitCode). */
  readonly done: (exit: number) => void;
}

export type RegisterCommand = (program: Command, env: CliEnv) => void;

export const BAD_INPUT_ERRORS = [ManifestError, UnknownEndpointError, EngineError, MapCapacityError, L7ParserConflictError, BpfError, PinDirError, BackendError, TraceTooLargeError, ProxyPortsExhaustedError, ClusterChangeError, InputError, GenerateOptionsError, UnknownPeerError];

/** A stack overflow while reading a file is the file's nesting, not a bug (`[[[[...` 100k deep). */
function isStackOverflow(e: unknown): boolean {
  return e instanceof RangeError && /call stack size/i.test(e.message);
}

/**
 * Bad input is the user's to fix: print what and where, no stack trace. `file` names the input
 * being read when the error itself cannot (a stack overflow). Anything else is a bug: rethrown.
 */
export function reportInputError(io: CliIo, e: unknown, file?: string): number {
  if (BAD_INPUT_ERRORS.some((c) => e instanceof c)) {
    // ManifestError, InputError and UnknownPeerError name their source; the engine's errors do not know the file.
    const where = file === undefined || e instanceof ManifestError || e instanceof InputError || e instanceof UnknownPeerError ? '' : `${inputName(file)}: `;
    io.err(`error: ${where}${(e as Error).message}\n`);
    return EXIT_BAD_INPUT;
  }
  if (isStackOverflow(e)) {
    io.err(`error: ${file === undefined ? 'input' : inputName(file)}: nested too deeply to read\n`);
    return EXIT_BAD_INPUT;
  }
  throw e;
}

/** Reads a scenario; what it accepted but would rather say (pod labels dropped) goes to stderr. */
export function readScenario(ctx: Ctx, file: string): Scenario {
  const scenario = parseScenario(readInputText(file, ctx.maxInputBytes), inputName(file));
  for (const w of scenario.warnings) ctx.io.err(`warning: ${w}\n`);
  return scenario;
}

export const isManifestFile = (f: string): boolean => /\.(ya?ml|json)$/.test(f);

/**
 * Policies and CiliumCIDRGroup objects of `-f FILE|DIR|-` (repeatable; directories recurse over
 * .yaml/.yml/.json; `kind: List` and multi-document files), read as `distill validate` and scenarios read
 * them (group peers included: finding 2174, where `validate` took a file `trace -f` and `plan -f` refused).
 * `sources` maps each policy's key (`Kind/ns/name`) to the file and document it was read from (the last
 * one, when several hold it: the one applied).
 */
export function readPolicies(ctx: Ctx, paths: readonly string[]): { policies: Policy[]; cidrGroups: CidrGroup[]; sources: Map<string, string> } {
  const policies: Policy[] = [];
  const sources = new Map<string, string>();
  const cidrGroups: CidrGroup[] = [];
  let objects = 0;
  for (const file of collectFiles(paths, isManifestFile)) {
    const read = readManifestFile(readInputText(file, ctx.maxInputBytes), inputName(file), undefined, { cidrGroups: true });
    if (read.objects.length > 0) ctx.io.err(`warning: ${inputName(file)}: ${read.objects.length} pods and namespaces ignored (only policies and CIDR groups are applied)\n`);
    for (const w of read.skipped) ctx.io.err(`${formatWarning(w)}\n`);
    policies.push(...read.policies);
    read.policies.forEach((p, i) => sources.set(policyRefKey(p.ref), read.policySources[i] ?? inputName(file)));
    cidrGroups.push(...read.cidrGroups);
    objects += read.policies.length + read.cidrGroups.length + read.objects.length + read.skipped.length;
  }
  // kubectl apply -f refuses an input without objects ("no objects passed to apply"): an empty pipe or
  // folder is a mistake upstream, not a change of nothing (attack finding 1543).
  if (paths.length > 0 && objects === 0) throw new InputError(`${paths.map(inputName).join(', ')}: no objects passed to apply (-f read no manifest), as kubectl refuses it`);
  return { policies, cidrGroups, sources };
}

export type OutputFormat = 'text' | 'wide' | 'json' | 'yaml';

export function outputOption(): Option {
  return new Option('-o, --output <format>', 'text (default), wide (more columns), json or yaml').choices(['text', 'wide', 'json', 'yaml']).default('text');
}

/** Prints data as JSON (one line) or YAML; false for the text formats, which the command renders. */
export function printData(io: CliIo, format: OutputFormat, data: unknown): boolean {
  if (format === 'json') io.out(`${JSON.stringify(data)}\n`);
  else if (format === 'yaml') io.out(stringify(data));
  else return false;
  return true;
}

/** Parses an integer option (`--step`), naming it (`name`, e.g. `distill replay --limit`) when it is not one. */
export function intOption(text: string | undefined, name: string, min: number): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!/^\s*\d+\s*$/.test(text) || !Number.isSafeInteger(n) || n < min) throw new InputError(`${name}: "${text}" is not an integer >= ${min}`);
  return n;
}

/** Columns padded to their widest cell, two spaces apart (like kubectl and cilium-dbg). */
export function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]): string => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0))).join('  ').trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}
