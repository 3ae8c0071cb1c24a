import { Command, Option } from 'commander';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { removeDistillMaps } from '../backend/bpf.js';
import { Engine } from '../engine/engine.js';
import type { ClusterState } from '../model/cluster.js';
import { CliEnv, Ctx, intOption, outputOption, OutputFormat, printData, readScenario, reportInputError, table } from './common.js';
import { scenarioEngine } from '../scenario/engine.js';
import { labelsOfEngine } from '../backend/record-json.js';

interface ClusterOptions {
  scenario: string;
  step?: string;
  output: OutputFormat;
}

/** The scenario's cluster at --step, built into an engine (memory only). */
function clusterEngine(ctx: Ctx, opts: ClusterOptions): { state: ClusterState; engine: Engine } {
  const { state, decider } = scenarioEngine(readScenario(ctx, opts.scenario), intOption(opts.step, '--step', 0));
  return { state, engine: decider.engine };
}

const RESERVED_MAX = 255;

/** Identities as `cilium identity list` shows them, with the pods that carry each and where they run. */
function identities(ctx: Ctx, opts: ClusterOptions): number {
  try {
    const { state, engine } = clusterEngine(ctx, opts);
    const labelsOf = labelsOfEngine(engine);
    const local = new Set(engine.endpoints());
    const podsOf = new Map<number, string[]>();
    for (const key of [...state.pods.keys()].sort()) {
      const id = engine.identityOfPod(key);
      if (id !== undefined) podsOf.set(id, [...(podsOf.get(id) ?? []), key]);
    }
    const rows = engine.identities().map((id) => {
      const pods = podsOf.get(id) ?? [];
      const scope = id <= RESERVED_MAX ? 'reserved' : pods.length === 0 ? 'cidr' : pods.some((p) => local.has(p)) ? 'local' : 'remote';
      return { id, labels: labelsOf(id), pods, scope };
    });
    if (!printData(ctx.io, opts.output, rows)) {
      const wide = opts.output === 'wide';
      ctx.io.out(`${table(['ID', 'LABELS', 'ENDPOINTS/PODS', 'SCOPE'], rows.map((r) => [String(r.id), (wide ? r.labels : r.labels.filter((l) => !l.startsWith('k8s:io.cilium.k8s.namespace.labels.'))).join(','), r.pods.join(',') || '-', r.scope]))}\n`);
    }
    return 0;
  } catch (e) {
    return reportInputError(ctx.io, e, opts.scenario);
  }
}

/**
 * The engine's peer selector cache, as `cilium-dbg policy selectors` lists it: SELECTOR, LABELS
 * (the policies using it), USERS (rules using it), IDENTITIES (those it selects now). A peer
 * selector is cached only while a local endpoint needs it, as in Cilium.
 */
function selectors(ctx: Ctx, opts: ClusterOptions): number {
  try {
    const { engine } = clusterEngine(ctx, opts);
    const out = engine
      .selectors()
      .filter((s) => s.kind === 'peer')
      .map((s) => ({ selector: s.selector, labels: s.policies, users: s.users, identities: s.identities }));
    if (!printData(ctx.io, opts.output, out)) {
      ctx.io.out(`${table(['SELECTOR', 'LABELS', 'USERS', 'IDENTITIES'], out.map((r) => [r.selector, r.labels.join(','), String(r.users), r.identities.join(' ') || '-']))}\n`);
    }
    return 0;
  } catch (e) {
    return reportInputError(ctx.io, e, opts.scenario);
  }
}

/** Each endpoint's map size and pressure, fullest first (`cilium bpf policy list` in brief). */
function mapsList(ctx: Ctx, opts: ClusterOptions): number {
  try {
    const { engine } = clusterEngine(ctx, opts);
    const rows = engine.mapPressure().map((p) => ({ endpoint: p.endpoint, entries: p.entries, capacity: p.capacity, pressure: p.pressure, redirects: engine.redirects(p.endpoint).length }));
    if (!printData(ctx.io, opts.output, rows)) {
      ctx.io.out(`${table(['ENDPOINT', 'ENTRIES', 'CAPACITY', 'PRESSURE', 'L7 REDIRECTS'], rows.map((r) => [r.endpoint, String(r.entries), String(r.capacity), `${(100 * r.pressure).toFixed(2)}%`, String(r.redirects)]))}\n`);
    }
    return 0;
  } catch (e) {
    return reportInputError(ctx.io, e, opts.scenario);
  }
}

/** The subdirectories of a pin dir distill's commands write: reach/maps dump, replay, agent. */
const PIN_SUBDIRS = ['scenario', 'replay', 'agent'] as const;

/** `maps clean`: distill's pinned maps removed (`removeDistillMaps`) from the pin dir and the subdirectories its commands use. */
function mapsClean(ctx: Ctx, opts: { pinDir: string; output: OutputFormat }): number {
  const removed: string[] = [];
  try {
    // Opening a backend creates its pin dir: a mistyped --pin-dir would be left behind, and look cleaned.
    if (!existsSync(opts.pinDir)) {
      if (!printData(ctx.io, opts.output, { removed })) ctx.io.out(`no distill maps under ${opts.pinDir}: no such directory\n`);
      return 0;
    }
    for (const dir of [opts.pinDir, ...PIN_SUBDIRS.map((sub) => join(opts.pinDir, sub))]) {
      if (dir === opts.pinDir || existsSync(dir)) removed.push(...removeDistillMaps(dir));
    }
    if (!printData(ctx.io, opts.output, { removed })) ctx.io.out(removed.length === 0 ? `no distill maps under ${opts.pinDir}\n` : `removed ${removed.length} maps:\n${removed.map((r) => `  ${r}`).join('\n')}\n`);
    return 0;
  } catch (e) {
    return reportInputError(ctx.io, e);
  }
}

function clusterCommand(parent: Command, name: string, description: string): Command {
  return parent
    .command(name)
    .description(description)
    .addOption(new Option('--scenario <file>', 'the cluster: a scenario file').makeOptionMandatory())
    .option('--step <n>', 'the cluster after step n (default: after the last step)')
    .addOption(outputOption());
}

/** `maps list` and `maps clean`, under the `maps` command main.ts creates. */
export function registerMapsViews(maps: Command, { ctx, done }: CliEnv): void {
  clusterCommand(maps, 'list', 'Every endpoint with its map entries, capacity, pressure and L7 redirects').action((opts: ClusterOptions) => {
    done(mapsList(ctx(), opts));
  });
  maps
    .command('clean')
    .description("Remove distill's pinned policy maps (only those) from a bpffs pin dir, holding its lock")
    .requiredOption('--pin-dir <dir>', 'the pin dir (its scenario/, replay/ and agent/ subdirectories too)')
    .addOption(outputOption())
    .action((opts: { pinDir: string; output: OutputFormat }) => {
      done(mapsClean(ctx(), opts));
    });
}

export function registerViews(program: Command, { ctx, done }: CliEnv): void {
  clusterCommand(program, 'identities', 'Security identities: ID, labels, the pods carrying each, scope (reserved, local, remote, cidr)').action((opts: ClusterOptions) => {
    done(identities(ctx(), opts));
  });
  clusterCommand(program, 'selectors', 'Peer selectors of every rule, as cilium-dbg policy selectors: SELECTOR, LABELS (policies), USERS (rules), IDENTITIES').action((opts: ClusterOptions) => {
    done(selectors(ctx(), opts));
  });
}
