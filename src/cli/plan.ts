import { Command, Option } from 'commander';
import { ClusterState, deletePolicy, upsertPolicy } from '../model/cluster.js';
import type { Flow } from '../model/flow.js';
import type { FlowProtocol } from '../model/ports.js';
import { POLICY_KINDS, PolicyKind, PolicyRef } from '../model/rules.js';
import { decideFlow } from '../naive/evaluator.js';
import type { Scenario } from '../scenario/format.js';
import { Engine } from '../engine/engine.js';
import type { ChangeSet, L7Delta, MapDelta } from '../engine/events.js';
import { EngineError, MapCapacityError } from '../engine/events.js';
import { ProxyPortsExhaustedError } from '../engine/proxy-ports.js';
import { L7ParserConflictError } from '../engine/rule-units.js';
import { clusterEvents, initialEvents } from '../harness/cluster-sync.js';
import { CliEnv, Ctx, intOption, outputOption, OutputFormat, printData, readPolicies, readScenario, reportInputError, scenarioState, table } from './common.js';
import { InputError } from './input.js';
import { parsePortProto } from './trace.js';
import { l7RowJson, labelsOfEngine, mapRecordJson } from '../backend/record-json.js';
import { describeRequest, formatOrigin, hubbleVerdict, portProto, shownInTable } from '../explain/format.js';

/** A port (with the request a probe carries there, if any) every pod pair is checked on. */
export interface PlanPort {
  readonly port: number;
  readonly protocol: FlowProtocol;
  readonly request?: Flow['request'];
}

interface VerdictChange {
  readonly from: string;
  readonly to: string;
  readonly port: number;
  readonly protocol: FlowProtocol;
  /** The request the flow carried (`GET /path`), when the probe had one. */
  readonly request?: string;
  readonly before: Verdict;
  readonly after: Verdict;
}

type Verdict = 'FORWARDED' | 'DROPPED' | 'REDIRECTED' | 'REDIRECTED, L7 DROPPED';

interface PlanResult {
  /** Per endpoint, the map and L7 deltas the change emits (empty when refused). */
  readonly endpoints: Map<string, { upserts: MapDelta[]; deletes: MapDelta[]; l7: L7Delta[] }>;
  readonly endpointsAdded: readonly string[];
  readonly endpointsRemoved: readonly string[];
  readonly verdictChanges: readonly VerdictChange[];
  readonly pressure: ReadonlyMap<string, number>;
  readonly refused?: { reason: string; culprits: string[] };
  /** The engine after the change (before it, when refused): for labels. */
  readonly engine: Engine;
}

function verdictOf(d: { allowed: boolean; proxied: boolean }): Verdict {
  return d.proxied ? (d.allowed ? 'REDIRECTED' : 'REDIRECTED, L7 DROPPED') : d.allowed ? 'FORWARDED' : 'DROPPED';
}

/** The refusals the engine types: the reason, and the rules or endpoint to blame. */
function refusal(e: unknown): { reason: string; culprits: string[] } | undefined {
  if (e instanceof MapCapacityError) return { reason: e.message, culprits: e.topContributors.map((c) => `${c.rule} (${c.entries} entries)`) };
  if (e instanceof L7ParserConflictError) return { reason: e.message, culprits: e.rules.map((r) => `${formatOrigin(r.origin)} (${r.parser})`) };
  if (e instanceof ProxyPortsExhaustedError) return { reason: e.message, culprits: [`${e.endpoint} ${e.redirect}`] };
  // A state the engine's maps cannot express (e.g. a `networks` CIDR on one address of a dual-stack pod): refused whole.
  if (e instanceof EngineError) return { reason: e.message, culprits: [] };
  return undefined;
}

function groupDeltas(cs: ChangeSet): PlanResult['endpoints'] {
  const out: PlanResult['endpoints'] = new Map();
  const of = (ep: string): { upserts: MapDelta[]; deletes: MapDelta[]; l7: L7Delta[] } => {
    let e = out.get(ep);
    if (!e) out.set(ep, (e = { upserts: [], deletes: [], l7: [] }));
    return e;
  };
  for (const d of cs.deltas) (d.op === 'upsert' ? of(d.endpoint).upserts : of(d.endpoint).deletes).push(d);
  for (const d of cs.l7Deltas) of(d.endpoint).l7.push(d);
  for (const ep of [...cs.endpointsAdded, ...cs.endpointsRemoved]) of(ep);
  return out;
}

/** Every ordered pair of distinct pods on each port: the oracle's verdict before and after, where they differ. */
function verdictChanges(before: ClusterState, after: ClusterState, ports: readonly PlanPort[]): VerdictChange[] {
  const pods = [...new Set([...before.pods.keys(), ...after.pods.keys()])].sort();
  const changes: VerdictChange[] = [];
  for (const p of ports) {
    for (const from of pods) {
      for (const to of pods) {
        if (from === to || !before.pods.has(from) || !before.pods.has(to) || !after.pods.has(from) || !after.pods.has(to)) continue;
        const flow: Flow = { from, to, port: p.port, protocol: p.protocol, ...(p.request ? { request: p.request } : {}) };
        const b = verdictOf(decideFlow(before, flow));
        const a = verdictOf(decideFlow(after, flow));
        if (a !== b) changes.push({ from, to, port: p.port, protocol: p.protocol, ...(p.request ? { request: describeRequest(p.request) } : {}), before: b, after: a });
      }
    }
  }
  return changes;
}

/**
 * Dry-runs `before → after` on a private engine (memory only, nothing written): the change set
 * the transition emits, verdict changes by the oracle, and map pressure after. A refusal by the
 * engine is reported, not thrown.
 */
export function planChange(before: ClusterState, after: ClusterState, ports: readonly PlanPort[]): PlanResult {
  const engine = new Engine(before.allowLocalhost ? { allowLocalhost: before.allowLocalhost } : {});
  engine.apply(initialEvents(before));
  let cs: ChangeSet;
  try {
    cs = engine.apply(clusterEvents(before, after));
  } catch (e) {
    const refused = refusal(e);
    if (!refused) throw e;
    return { endpoints: new Map(), endpointsAdded: [], endpointsRemoved: [], verdictChanges: [], pressure: pressureOf(engine), refused, engine };
  }
  return { endpoints: groupDeltas(cs), endpointsAdded: cs.endpointsAdded, endpointsRemoved: cs.endpointsRemoved, verdictChanges: verdictChanges(before, after, ports), pressure: pressureOf(engine), engine };
}

function pressureOf(engine: Engine): Map<string, number> {
  return new Map(engine.mapPressure().map((p) => [p.endpoint, p.pressure]));
}

/** The ports a scenario's probes use (each with its request), in first-use order. */
function probePorts(scenario: Scenario): PlanPort[] {
  const seen = new Map<string, PlanPort>();
  for (const step of scenario.steps) {
    for (const p of step.probes) {
      const port: PlanPort = { port: p.port, protocol: p.protocol, ...(p.request ? { request: p.request } : {}) };
      const key = JSON.stringify(port);
      if (!seen.has(key)) seen.set(key, port);
    }
  }
  return [...seen.values()];
}

/** `KIND/NAMESPACE/NAME`, or `CiliumClusterwideNetworkPolicy/NAME`. */
function parsePolicyRef(text: string): PolicyRef {
  const parts = text.split('/');
  const kind = POLICY_KINDS.find((k) => k.toLowerCase() === (parts[0] ?? '').toLowerCase()) as PolicyKind | undefined;
  const clusterwide = kind === 'CiliumClusterwideNetworkPolicy';
  if (kind === undefined || parts.length !== (clusterwide ? 2 : 3) || parts.some((p) => p === '')) {
    throw new InputError(`--delete: "${text}" is not KIND/NAMESPACE/NAME or CiliumClusterwideNetworkPolicy/NAME (kinds: ${POLICY_KINDS.join(', ')})`);
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

function planJson(r: PlanResult, wide: boolean): Record<string, unknown> {
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
    verdictChanges: r.verdictChanges,
    pressure: Object.fromEntries(r.pressure),
    ...(r.refused ? { refused: r.refused } : {}),
  };
}

function planText(r: PlanResult, wide: boolean): string {
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
  if (r.verdictChanges.length === 0) out.push('no verdict changes');
  else out.push(table(['FROM', 'TO', 'PORT/PROTO', 'REQUEST', 'BEFORE', 'AFTER'], r.verdictChanges.map((c) => [c.from, c.to, `${c.port}/${c.protocol}`, c.request ?? '-', c.before, `→ ${c.after}`])));
  return out.join('\n');
}

function plan(ctx: Ctx, opts: PlanOptions): number {
  try {
    if (opts.filename.length === 0 && opts.delete.length === 0) throw new InputError('plan: give the change: -f MANIFEST (file, directory or -) and/or --delete KIND/NAMESPACE/NAME');
    const step = intOption(opts.step, '--step', 0);
    const scenario = readScenario(ctx, opts.scenario);
    const before = scenarioState(scenario, step);
    let after = before;
    for (const ref of opts.delete.map(parsePolicyRef)) after = deletePolicy(after, ref);
    for (const p of readPolicies(ctx, opts.filename)) after = upsertPolicy(after, p);
    const ports = [...probePorts(scenario), ...opts.port.map(parsePortProto)];
    const result = planChange(before, after, ports);
    const wide = opts.output !== 'text';
    if (!printData(ctx.io, opts.output, planJson(result, wide))) ctx.io.out(`${planText(result, opts.output === 'wide')}\n`);
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
    .option('--delete <ref>', 'a policy to delete: KIND/NAMESPACE/NAME (repeatable)', collect, [] as string[])
    .option('--port <port/proto>', "also check every pod pair on this port (besides the scenario's probe ports; repeatable)", collect, [] as string[])
    .addOption(outputOption())
    .action((opts: PlanOptions) => {
      done(plan(ctx(), opts));
    });
}
