import { Command } from 'commander';
import { formatWarning, policyRefKey } from '../model/rules.js';
import { samePriorityWarnings } from '../policy/clusternetworkpolicy.js';
import { ManifestError } from '../policy/errors.js';
import { readManifestFile } from '../policy/manifest.js';
import { parseScenario } from '../scenario/format.js';
import { CliEnv, Ctx, isManifestFile, outputOption, OutputFormat, printData, reportInputError } from './common.js';
import { checkStdinOnce, collectFiles, InputError, inputName, readInputText } from './input.js';

/** Every document of one file that `validate` refused. */
class ManifestErrors extends Error {
  constructor(readonly errors: readonly ManifestError[]) {
    super(errors.map((e) => e.message).join('; '));
  }
}

/** One file's outcome, as `validate -o json|yaml` prints it. */
type ValidateResult = { file: string; valid: true; policies: number; rules: number; podsAndNamespaces: number; cidrGroups?: number; skipped: number; names: string[] } | { file: string; valid: false; error: string; errors: string[] };

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

/** Reads one manifest file, printing its warnings (and its text line); throws what it refuses. */
function validateFile(ctx: Ctx, file: string, format: OutputFormat): ValidateResult {
  const { io } = ctx;
  const refused: ManifestError[] = [];
  // Policies read as the agent reads them once it watches CiliumCIDRGroup objects (docs/embedding.md).
  const { policies, objects, skipped, cidrGroups } = readManifestFile(readInputText(file, ctx.maxInputBytes), inputName(file), refused, { cidrGroups: true });
  if (refused.length > 0) throw new ManifestErrors(refused);
  const rules = policies.reduce((n, p) => n + p.rules.length + (p.tiered?.rules.length ?? 0), 0);
  const tierWarnings = samePriorityWarnings(policies, inputName(file));
  for (const w of [...policies.flatMap((p) => p.warnings ?? []), ...objects.flatMap((o) => o.warnings), ...skipped, ...tierWarnings]) io.err(`${formatWarning(w)}\n`);
  const others = (objects.length > 0 ? `, ${objects.length} pods and namespaces` : '') + (cidrGroups.length > 0 ? `, ${cidrGroups.length} CIDR groups` : '');
  if (format === 'text' || format === 'wide') io.out(`${inputName(file)}: ${policies.length} policies, ${rules} rules${others}, valid\n`);
  return { file: inputName(file), valid: true, policies: policies.length, rules, podsAndNamespaces: objects.length, ...(cidrGroups.length > 0 ? { cidrGroups: cidrGroups.length } : {}), skipped: skipped.length, names: policies.map((p) => policyRefKey(p.ref)) };
}

/** A refused file: each refused document's error as printed, and a hint when the file is a scenario. */
function refusedFile(ctx: Ctx, file: string, e: unknown): { exit: number; result: ValidateResult } {
  const { io } = ctx;
  const errors: string[] = [];
  let exit = 0;
  for (const one of e instanceof ManifestErrors ? e.errors : [e]) {
    let error = '';
    exit = Math.max(exit, reportInputError({ out: io.out, err: (s) => (io.err(s), (error += s)) }, one, file));
    errors.push(error.replace(/^error: /, '').trimEnd());
  }
  if (isScenarioFile(ctx, file)) io.err(`hint: ${inputName(file)} is a distill scenario, not a manifest: check it with \`distill reach --scenario ${inputName(file)}\`\n`);
  return { exit, result: { file: inputName(file), valid: false, error: errors[0]!, errors } };
}

function validate(ctx: Ctx, paths: string[], format: OutputFormat = 'text'): number {
  const results: ValidateResult[] = [];
  let files: string[];
  try {
    if (paths.length === 0) throw new InputError('validate: give manifest files, directories or - (stdin), as arguments or with -f');
    checkStdinOnce(paths);
    files = collectFiles(paths, isManifestFile);
  } catch (e) {
    return reportInputError(ctx.io, e);
  }
  let exit = 0;
  for (const file of files) {
    try {
      results.push(validateFile(ctx, file, format));
    } catch (e) {
      const refused = refusedFile(ctx, file, e);
      exit = Math.max(exit, refused.exit);
      results.push(refused.result);
    }
  }
  printData(ctx.io, format, results);
  return exit;
}

export function registerValidate(program: Command, { ctx, done }: CliEnv): void {
  program
    .command('validate')
    .summary('Validate manifest files: policies, Lists, v1 Pods and Namespaces')
    .description('Validate manifest files (multi-document YAML or JSON, kind: List as kubectl get -o yaml prints it: NetworkPolicy, CiliumNetworkPolicy, CiliumClusterwideNetworkPolicy, ClusterNetworkPolicy, CiliumCIDRGroup, v1 Pod and Namespace; built-in kinds without policy such as Deployment or Service are skipped with a warning, any other kind is refused); exit 2 naming the file, document and field of each refused document (the other documents are still read)')
    .argument('[paths...]', 'manifest files, directories (their *.yaml/*.yml/*.json files) or - for stdin')
    .option('-f, --filename <path>', 'manifest file, directory or - (repeatable, as kubectl)', (v: string, prev: string[]) => [...prev, v], [] as string[])
    .addOption(outputOption())
    .action((files: string[], opts: { filename: string[]; output: OutputFormat }) => {
      done(validate(ctx(), [...files, ...opts.filename], opts.output));
    });
}
