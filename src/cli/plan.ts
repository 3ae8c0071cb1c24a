import { Command, Option } from 'commander';
import { deletePolicy, upsertCidrGroup, upsertPolicy } from '../model/cluster.js';
import { POLICY_KINDS, PolicyKind, PolicyRef } from '../model/rules.js';
import { planChange, PlanPort, PlanResult, probePorts } from '../explain/plan.js';
import { CliEnv, Ctx, intOption, outputOption, OutputFormat, printData, readPolicies, readScenario, reportInputError, table } from './common.js';
import { scenarioState } from '../scenario/run.js';
import { checkStdinOnce, InputError } from './input.js';
import { parsePortProto } from './trace.js';
import { l7RowJson, labelsOfEngine, mapRecordJson } from '../backend/record-json.js';
import { hubbleVerdict, portProto, shownInTable } from '../explain/format.js';

/**
 * `KIND/NAMESPACE/NAME`, or `KIND/NAME` for the cluster-scoped kinds: CiliumClusterwideNetworkPolicy and
 * ClusterNetworkPolicy (network-policy-api's CRD is `scope: Cluster`; `validate` names it
 * `ClusterNetworkPolicy/NAME`, which `--delete` refused: attack finding 2124).
 */
function parsePolicyRef(text: string): PolicyRef {
  const parts = text.split('/');
  const kind = POLICY_KINDS.find((k) => k.toLowerCase() === (parts[0] ?? '').toLowerCase()) as PolicyKind | undefined;
  const clusterwide = kind === 'CiliumClusterwideNetworkPolicy' || kind === 'ClusterNetworkPolicy';
  if (kind === undefined || parts.length !== (clusterwide ? 2 : 3) || parts.some((p) => p === '')) {
    throw new InputError(`--delete: "${text}" is not KIND/NAMESPACE/NAME, or KIND/NAME for CiliumClusterwideNetworkPolicy and ClusterNetworkPolicy (kinds: ${POLICY_KINDS.join(', ')})`);
  }
  return clusterwide ? { kind, name: parts[1] as string } : { kind, namespace: parts[1] as string, name: parts[2] as string };
}

interface PlanOptions {
  scenario: string;
  step?: string;
  filename: string[];
  delete: string[];
  port: string[];
  output: OutputFormat;
}

/** The distinct PORT/PROTO the pod pairs were checked on. */
function checkedPorts(ports: readonly PlanPort[]): string[] {
  return [...new Set(ports.map((p) => `${p.port}/${p.protocol}`))];
}

/** Says which ports were checked: "no verdict changes" after checking none would mislead. */
function noChangesLine(ports: readonly PlanPort[]): string {
  if (ports.length === 0) return "no pod pairs checked: the scenario's steps have no probes (give --port PORT/PROTO to check every pod pair on a port)";
  return `no verdict changes (every pod pair checked on ${checkedPorts(ports).join(', ')})`;
}

function planJson(r: PlanResult, ports: readonly PlanPort[], wide: boolean): Record<string, unknown> {
  const labelsOf = labelsOfEngine(r.engine);
  const endpoints = Object.create(null) as Record<string, unknown>;
  for (const [ep, d] of r.endpoints) {
    endpoints[ep] = wide
      ? { upserts: d.upserts.map((x) => mapRecordJson(x, labelsOf)), deletes: d.deletes.map((x) => mapRecordJson(x, labelsOf)), l7: d.l7.map((x) => ({ op: x.op, ...l7RowJson(x, labelsOf) })) }
      : { upserts: d.upserts.length, deletes: d.deletes.length, l7: d.l7.length };
  }
  return {
    endpoints,
    ...(r.endpointsAdded.length ? { endpointsAdded: r.endpointsAdded } : {}),
    ...(r.endpointsRemoved.length ? { endpointsRemoved: r.endpointsRemoved } : {}),
    checkedPorts: checkedPorts(ports),
    verdictChanges: r.verdictChanges,
    pressure: Object.fromEntries(r.pressure),
    ...(r.refused ? { refused: r.refused } : {}),
  };
}

function planText(r: PlanResult, ports: readonly PlanPort[], wide: boolean): string {
  if (r.refused) return `REFUSED: ${r.refused.reason}${r.refused.culprits.length > 0 ? `\nculprits:\n${r.refused.culprits.map((c) => `  ${c}`).join('\n')}` : ''}`;
  const labelsOf = labelsOfEngine(r.engine);
  const out: string[] = [];
  const eps = [...r.endpoints].sort(([a], [b]) => (a < b ? -1 : 1));
  out.push(eps.length === 0 ? 'no map or L7 changes' : table(['ENDPOINT', 'UPSERTS', 'DELETES', 'L7', 'PRESSURE AFTER'], eps.map(([ep, d]) => [ep, String(d.upserts.length), String(d.deletes.length), String(d.l7.length), `${(100 * (r.pressure.get(ep) ?? 0)).toFixed(2)}%`])));
  if (wide) {
    for (const [ep, d] of eps) {
      for (const x of [...d.upserts, ...d.deletes]) out.push(`  ${ep} ${x.op === 'upsert' ? '+' : '-'} ${x.entry.deny ? 'Deny' : 'Allow'} ${x.key.direction} ${x.key.identity === 0 ? 'ANY' : labelsOf(x.key.identity).filter(shownInTable).join(',')} ${portProto(x.key)} ${hubbleVerdict(x.entry)}${x.entry.proxyPort ? ` proxy ${x.entry.proxyPort}` : ''}`);
    }
  }
  out.push('');
  if (r.verdictChanges.length === 0) out.push(noChangesLine(ports));
  else out.push(table(['FROM', 'TO', 'PORT/PROTO', 'REQUEST', 'BEFORE', 'AFTER'], r.verdictChanges.map((c) => [c.from, c.to, `${c.port}/${c.protocol}`, c.request ?? '-', c.before, `→ ${c.after}`])));
  return out.join('\n');
}

function plan(ctx: Ctx, opts: PlanOptions): number {
  try {
    if (opts.filename.length === 0 && opts.delete.length === 0) throw new InputError('plan: give the change: -f MANIFEST (file, directory or -) and/or --delete KIND/NAMESPACE/NAME');
    checkStdinOnce([opts.scenario, ...opts.filename]);
    const step = intOption(opts.step, '--step', 0);
    const scenario = readScenario(ctx, opts.scenario);
    const before = scenarioState(scenario, step);
    let after = before;
    for (const ref of opts.delete.map(parsePolicyRef)) after = deletePolicy(after, ref);
    const applied = readPolicies(ctx, opts.filename);
    for (const g of applied.cidrGroups) after = upsertCidrGroup(after, g);
    for (const p of applied.policies) after = upsertPolicy(after, p);
    const ports = [...probePorts(scenario), ...opts.port.map(parsePortProto)];
    const result = planChange(before, after, ports);
    const wide = opts.output !== 'text';
    if (!printData(ctx.io, opts.output, planJson(result, ports, wide))) ctx.io.out(`${planText(result, ports, opts.output === 'wide')}\n`);
    return result.refused ? 1 : 0;
  } catch (e) {
    return reportInputError(ctx.io, e, opts.scenario);
  }
}

const collect = (v: string, prev: string[]): string[] => [...prev, v];

export function registerPlan(program: Command, { ctx, done }: CliEnv): void {
  program
    .command('plan')
    .description('Dry-run a change: the map and L7 deltas per endpoint, every flow whose verdict changes, map pressure after; nothing is written. Exit 1 if the change would be refused')
    .addOption(new Option('--scenario <file>', 'the cluster: a scenario file').makeOptionMandatory())
    .option('--step <n>', 'the cluster after step n (default: after the last step)')
    .option('-f, --filename <path>', 'manifests to apply (file, directory or -; repeatable)', collect, [] as string[])
    .option('--delete <ref>', 'a policy to delete: KIND/NAMESPACE/NAME, or KIND/NAME for CiliumClusterwideNetworkPolicy and ClusterNetworkPolicy (repeatable)', collect, [] as string[])
    .option('--port <port/proto>', "also check every pod pair on this port (besides the scenario's probe ports; repeatable)", collect, [] as string[])
    .addOption(outputOption())
    .action((opts: PlanOptions) => {
      done(plan(ctx(), opts));
    });
}
