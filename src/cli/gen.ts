import { Command, Option } from 'commander';
import { GEN_PROFILES, generateTrace } from '../churn/profiles.js';
import { ManifestError } from '../policy/errors.js';
import { CliEnv, Ctx, reportInputError } from './common.js';

interface GenOptions {
  profile: string;
  seed: string;
  scale?: string;
  churn?: string;
  nodes?: string;
}

/** A non-negative number option of `gen` (`what`: its flag), or undefined when not given. */
function genNumber(v: string | undefined, what: string): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new ManifestError('distill gen', what, `"${v}" is not a non-negative number`);
  return n;
}

function gen({ io, maxInputBytes }: Ctx, opts: GenOptions): number {
  try {
    const scale = genNumber(opts.scale, '--scale');
    const churnEvents = genNumber(opts.churn, '--churn');
    const nodes = genNumber(opts.nodes, '--nodes');
    const text = generateTrace({ profile: opts.profile, seed: genNumber(opts.seed, '--seed') ?? 1, ...(nodes !== undefined ? { nodes } : {}), ...(scale !== undefined ? { scale } : {}), ...(churnEvents !== undefined ? { churnEvents } : {}), maxBytes: maxInputBytes });
    io.out(text);
    return 0;
  } catch (e) {
    return reportInputError(io, e);
  }
}

export function registerGen(program: Command, { ctx, done }: CliEnv): void {
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
