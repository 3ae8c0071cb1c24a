import { Command, Option } from 'commander';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { BpfBackend } from '../backend/bpf.js';
import { Engine } from '../engine/engine.js';
import { initialEvents } from '../harness/cluster-sync.js';
import type { ClusterState } from '../model/cluster.js';
import { cidrContainsCidr, parseCidr } from '../model/cidr.js';
import type { LabelSet } from '../model/labels.js';
import { Peer, policyRefKey } from '../model/rules.js';
import { selectorMatches } from '../model/selector.js';
import { CliEnv, Ctx, intOption, outputOption, OutputFormat, printData, readScenario, reportInputError, scenarioState, table } from './common.js';
import { labelsOfEngine } from './render.js';

interface ClusterOptions {
  scenario: string;
  step?: string;
  output: OutputFormat;
}

/** The scenario's cluster at --step, built into an engine (memory only). */
function clusterEngine(ctx: Ctx, opts: ClusterOptions): { state: ClusterState; engine: Engine } {
  const state = scenarioState(readScenario(ctx, opts.scenario), intOption(opts.step, '--step', 0));
  const engine = new Engine();
  engine.apply(initialEvents(state));
  return { state, engine };
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

interface SelectorRow {
  selector: string;
  labels: string[];
  users: number;
  identities: number[];
}

/** A CIDR identity's prefix (its `cidr:` label), if it is one. */
function cidrOf(labels: LabelSet): ReturnType<typeof parseCidr> | undefined {
  const l = labels.find((x) => x.source === 'cidr');
  return l ? parseCidr(l.key) : undefined;
}

/** Which identities a peer selects: label selectors by the identity's labels (CIDR label aside), CIDR peers by prefix. */
function peerSelects(peer: Peer, labels: LabelSet): boolean {
  if (peer.kind === 'selector') return selectorMatches(peer.selector, labels.filter((l) => l.source !== 'cidr'));
  const c = cidrOf(labels);
  return c !== undefined && cidrContainsCidr(peer.cidr, c) && !peer.except.some((x) => cidrContainsCidr(x, c));
}

function peerText(peer: Peer): string {
  if (peer.kind === 'cidr') return `cidr:${peer.cidr.text}${peer.except.length ? ` except ${peer.except.map((x) => x.text).join(',')}` : ''}`;
  return peer.entity !== undefined ? `entity:${peer.entity}` : peer.selector.key;
}

/**
 * The peer selectors of every rule, as `cilium-dbg policy selectors` lists its selector cache:
 * SELECTOR, LABELS (the policies using it), USERS (rules using it), IDENTITIES (those it selects
 * now). Computed from the policies' rules against the engine's identities.
 */
function selectors(ctx: Ctx, opts: ClusterOptions): number {
  try {
    const { state, engine } = clusterEngine(ctx, opts);
    const ids = engine.identities().map((id) => ({ id, labels: engine.identityLabels(id) ?? [] }));
    const rows = new Map<string, SelectorRow & { peer: Peer }>();
    for (const policy of state.policies.values()) {
      for (const rule of policy.rules) {
        for (const peer of rule.peers) {
          const text = peerText(peer);
          let row = rows.get(text);
          if (!row) rows.set(text, (row = { selector: text, labels: [], users: 0, identities: ids.filter((x) => peerSelects(peer, x.labels)).map((x) => x.id), peer }));
          row.users++;
          const ref = policyRefKey(policy.ref);
          if (!row.labels.includes(ref)) row.labels.push(ref);
        }
      }
    }
    const out: SelectorRow[] = [...rows.values()].sort((a, b) => (a.selector < b.selector ? -1 : 1)).map(({ peer: _peer, ...r }) => r);
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

/**
 * Removes distill's pinned maps (names it recognises as its own, nothing else) from the pin dir
 * and the subdirectories its commands use, each with the pin dir's lock held.
 */
function mapsClean(ctx: Ctx, opts: { pinDir: string; output: OutputFormat }): number {
  const removed: string[] = [];
  try {
    for (const dir of [opts.pinDir, join(opts.pinDir, 'scenario'), join(opts.pinDir, 'replay')]) {
      if (dir !== opts.pinDir && !existsSync(dir)) continue;
      const backend = new BpfBackend({ pinDir: dir });
      try {
        for (const ep of backend.endpoints()) {
          backend.remove(ep);
          removed.push(`${backend.pinDir}: ${ep}`);
        }
      } finally {
        backend.close();
      }
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
    .requiredOption('--pin-dir <dir>', 'the pin dir (its scenario/ and replay/ subdirectories too)')
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
