import { ChildProcess, spawn } from 'node:child_process';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { Agent } from '../agent/agent.js';
import { MemoryBackend } from '../backend/memory.js';
import { summary } from '../agent/summary.js';
import type { WatchItem } from '../k8s/watch.js';
import { parseLabelSetKey } from '../kvstore/labels.js';
import type { ClusterFeed } from './watch-objects.js';

/** What `distill cluster` is told. */
export interface ClusterOptions {
  readonly etcd: string;
  readonly nodes: number;
  /** The command that runs distill (node + script), agents are `<cmd> agent ...`. */
  readonly distill: readonly string[];
  /** Kill -9 one agent (round robin) after every K events, and restart it (it relists). */
  readonly killAgentEvery?: number;
  readonly log?: (line: string) => void;
  /** Stop etcd after this many events and start it again halfway through the rest (needs etcdControl). */
  readonly restartEtcdAt?: number;
  readonly etcdControl?: { stop(): Promise<void>; start(): Promise<void> };
}

/** The checks and measurements of one run. */
export interface ClusterReport {
  nodes: number;
  events: number;
  identities: number;
  duplicates: number;
  disagreements: number;
  mapsVerified: number;
  /** Map entries over all nodes (0 would mean every endpoint is default deny: nothing was checked). */
  entries: number;
  mapMismatches: string[];
  kills: number;
  allocationUs: { p50: number; p99: number };
  eventsPerSec: number;
}

interface AgentOut {
  entries: number;
  maps: unknown[];
  identities: Record<string, string>;
  allocationUs: number[];
}

const lines = (items: readonly WatchItem[]): string => items.map((i) => JSON.stringify(i)).join('\n') + '\n';

function startAgent(opts: ClusterOptions, node: string): { proc: ChildProcess; out: Promise<AgentOut> } {
  const [cmd, ...pre] = opts.distill;
  const args = [...pre, 'agent', '--node', node, '--identities', 'etcd', '--etcd', opts.etcd, '--watch', '-', '--exit-at-eof', '--json'];
  const proc = spawn(cmd!, args, { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, DISTILL_LOG_LEVEL: 'error' } });
  let stdout = '';
  let stderr = '';
  proc.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
  proc.stdin!.on('error', () => undefined);
  const out = new Promise<AgentOut>((resolve, reject) => {
    proc.once('exit', (code, signal) => {
      if (code === 0) return resolve(JSON.parse(stdout) as AgentOut);
      reject(new Error(`agent ${node} exited with ${signal ?? code}: ${stderr.trim()}`));
    });
  });
  out.catch(() => undefined);
  return { proc, out };
}

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

/**
 * Runs N agent processes on one etcd, streams the feed to each (as the API server would), waits
 * until each has settled (its pods hold ids, every pod it knows has one), then checks agreement
 * and each node's maps against a single-process engine fed the same identity table.
 */
export async function runCluster(feed: ClusterFeed, opts: ClusterOptions): Promise<ClusterReport> {
  const names = Array.from({ length: opts.nodes }, (_, i) => `node-${i}`);
  const t0 = process.hrtime.bigint();
  const agents = names.map((n) => startAgent(opts, n));
  let kills = 0;
  const every = opts.killAgentEvery ?? 0;
  const n = feed.items.length;
  const at = new Set<number>();
  if (every > 0) for (let k = every; k < n; k += every) at.add(k);
  const stopAt = opts.restartEtcdAt;
  // etcd is down from E to halfway through the rest: agents keep enforcing, new pods wait.
  const startAt = stopAt !== undefined ? stopAt + Math.max(1, Math.floor((n - stopAt) / 2)) : undefined;
  if (stopAt !== undefined && startAt !== undefined) at.add(stopAt).add(Math.min(startAt, n));
  let from = 0;
  for (const to of [...at, n].filter((x) => x > 0 && x <= n).sort((a, b) => a - b)) {
    if (to > from) {
      const chunk = lines(feed.items.slice(from, to));
      for (const a of agents) a.proc.stdin!.write(chunk);
      from = to;
    }
    if (to === stopAt && opts.etcdControl) {
      await opts.etcdControl.stop();
      opts.log?.(`etcd stopped after ${to} events`);
    }
    if (to === Math.min(startAt ?? -1, n) && opts.etcdControl) {
      // Give the agents time to take what was written while etcd is down (not a measured wait).
      await new Promise((r) => setTimeout(r, 1000));
      await opts.etcdControl.start();
      opts.log?.(`etcd restarted after ${to} events`);
    }
    if (every > 0 && to % every === 0 && to < n) {
      const i = kills++ % opts.nodes;
      const victim = agents[i]!;
      victim.proc.kill('SIGKILL');
      await victim.out.catch(() => undefined);
      opts.log?.(`killed agent ${names[i]} (kill -9) after ${to} events; restarting it`);
      agents[i] = startAgent(opts, names[i]!);
      agents[i]!.proc.stdin!.write(lines(feed.items.slice(0, to)));
    }
  }
  for (const a of agents) a.proc.stdin!.end();
  const outs = await Promise.all(agents.map((a) => a.out));
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  return check(feed, names, outs, kills, seconds);
}

function check(feed: ClusterFeed, names: string[], outs: AgentOut[], kills: number, seconds: number): ClusterReport {
  const byLabels = new Map<string, Set<string>>();
  const perNode = outs.map((o) => {
    const m = new Map<string, number>();
    for (const [id, key] of Object.entries(o.identities)) {
      byLabels.set(key, (byLabels.get(key) ?? new Set()).add(id));
      m.set(key, Math.min(Number(id), m.get(key) ?? Infinity));
    }
    return m;
  });
  const duplicates = [...byLabels.values()].filter((ids) => ids.size > 1).length;
  let disagreements = 0;
  for (const key of byLabels.keys()) {
    const seen = new Set(perNode.map((m) => m.get(key)).filter((id) => id !== undefined));
    if (seen.size > 1) disagreements++;
  }
  const mapMismatches: string[] = [];
  outs.forEach((o, i) => {
    const want = referenceMaps(names[i]!, feed.items, o.identities);
    if (comparable(want) !== comparable(o.maps)) mapMismatches.push(names[i]!);
  });
  const lat = outs.flatMap((o) => o.allocationUs).sort((a, b) => a - b);
  return {
    nodes: names.length,
    events: feed.events,
    identities: byLabels.size,
    duplicates,
    disagreements,
    mapsVerified: names.length - mapMismatches.length,
    entries: outs.reduce((n, o) => n + o.entries, 0),
    mapMismatches,
    kills,
    allocationUs: { p50: percentile(lat, 50), p99: percentile(lat, 99) },
    eventsPerSec: Math.round(feed.events / seconds),
  };
}

/**
 * A node's maps as text, proxy ports renumbered in order of first appearance: which port a
 * redirect got depends on the order redirects came and went (as in replay's comparableMaps).
 */
export function comparable(maps: readonly unknown[]): string {
  const ports = new Map<number, number>();
  return JSON.stringify(maps, (key, value: unknown) => {
    if (key !== 'proxyPort' || typeof value !== 'number' || value === 0) return value;
    if (!ports.has(value)) ports.set(value, ports.size + 1);
    return ports.get(value);
  });
}

/** One node computed by a single in-process engine with external identities fed `table` as CiliumIdentity objects. */
export function referenceMaps(node: string, items: readonly WatchItem[], table: Readonly<Record<string, string>>): unknown[] {
  const backend = new MemoryBackend();
  const agent = new Agent({ node, watch: [], backend, logger: pino({ level: 'silent' }), registry: new Registry(), identities: 'external' });
  for (const i of items) agent.mirror.observe(i, 'trace');
  for (const [id, key] of Object.entries(table)) {
    const labels = Object.fromEntries(parseLabelSetKey(key).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
    agent.mirror.observe({ type: 'ADDED', object: { apiVersion: 'cilium.io/v2', kind: 'CiliumIdentity', metadata: { name: id, resourceVersion: '1' }, 'security-labels': labels } }, 'etcd');
  }
  agent.flush();
  return (JSON.parse(summary(agent, backend, true)) as { maps: unknown[] }).maps;
}
