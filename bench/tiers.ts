/**
 * Tier benchmark (issue 15): the cilium-ci profile's initial cluster plus 100 Admin-tier
 * ClusterNetworkPolicies, then the cost of one priority change and of one rule reorder (median
 * and range of 3 runs in one process, each on a fresh engine), and of one NetworkPolicy change
 * without and with an Admin Pass above it. Work counters and deltas are exact;
 * milliseconds depend on the machine. Writes bench/results/tiers.json.
 *
 *   node dist-bench/bench/tiers.js
 */
import { execSync } from 'node:child_process';
import { cpus } from 'node:os';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { generateTrace } from '../src/churn/profiles.js';
import { parseTrace } from '../src/churn/trace.js';
import { Engine } from '../src/engine/engine.js';
import type { EngineEvent } from '../src/engine/events.js';
import { parseManifest } from '../src/policy/manifest.js';

const repo = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const RUNS = 3;
const POLICIES = 100;

function ns(name: string): Record<string, unknown> {
  return { namespaces: { matchLabels: { 'kubernetes.io/metadata.name': name } } };
}

/**
 * Admin policy i: four rules on namespaces i+1, i+2. Every subject is `ns-0`, the namespace of the
 * profile's local endpoints: each of them is selected by all 100 policies (the node's worst case).
 */
function adminPolicy(i: number, namespaces: readonly string[], priority: number, swapped = false): EngineEvent {
  const at = (k: number): string => namespaces[(i + k) % namespaces.length] as string;
  const rules = [
    { name: 'deny-80', action: 'Deny', from: [ns(at(1))], protocols: [{ tcp: { destinationPort: { number: 80 } } }] },
    { name: 'accept-n1', action: 'Accept', from: [ns(at(1))] },
    { name: 'accept-n2-web', action: 'Accept', from: [ns(at(2))], protocols: [{ tcp: { destinationPort: { range: { start: 8000, end: 8099 } } } }] },
    { name: 'deny-n2', action: 'Deny', from: [ns(at(2))] },
  ];
  if (swapped) [rules[0], rules[1]] = [rules[1] as (typeof rules)[number], rules[0] as (typeof rules)[number]];
  const manifest = { apiVersion: 'policy.networking.k8s.io/v1alpha2', kind: 'ClusterNetworkPolicy', metadata: { name: `admin-${i}` }, spec: { tier: 'Admin', priority, subject: ns(namespaces[0] as string), ingress: rules } };
  return { type: 'upsertPolicy', policy: parseManifest(manifest, `admin-${i}`) };
}

interface Sample {
  ms: number;
  deltas: number;
  mapEntriesVisited: number;
  policyResolutions: number;
  selectorEvaluations: number;
}

function measure(engine: Engine, events: EngineEvent[]): Sample {
  const t = process.hrtime.bigint();
  const cs = engine.apply(events);
  const ms = Number(process.hrtime.bigint() - t) / 1e6;
  return { ms, deltas: cs.deltas.length, mapEntriesVisited: cs.work.mapEntriesVisited, policyResolutions: cs.work.policyResolutions, selectorEvaluations: cs.work.selectorEvaluations };
}

function summary(xs: readonly Sample[]): Record<string, { median: number; min: number; max: number }> {
  const out: Record<string, { median: number; min: number; max: number }> = Object.create(null);
  for (const k of ['ms', 'deltas', 'mapEntriesVisited', 'policyResolutions', 'selectorEvaluations'] as const) {
    const v = xs.map((x) => x[k]).sort((a, b) => a - b);
    out[k] = { median: v[Math.floor(v.length / 2)] as number, min: v[0] as number, max: v[v.length - 1] as number };
  }
  return out;
}

/** An Admin Pass at the top: ns-0's ingress from namespace `from` goes to the NetworkPolicy tier. */
function passPolicy(namespaces: readonly string[], from: string): EngineEvent {
  const manifest = { apiVersion: 'policy.networking.k8s.io/v1alpha2', kind: 'ClusterNetworkPolicy', metadata: { name: 'admin-pass' }, spec: { tier: 'Admin', priority: 1, subject: ns(namespaces[0] as string), ingress: [{ name: 'pass-n', action: 'Pass', from: [ns(from)] }] } };
  return { type: 'upsertPolicy', policy: parseManifest(manifest, 'admin-pass') };
}

/** A NetworkPolicy in ns-0 allowing tcp/80 from namespace `from` (the NP-tier change measured with and without a Pass above it). */
function npUnderPass(namespaces: readonly string[], from: string): EngineEvent {
  const manifest = { apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { name: 'np-under-pass', namespace: namespaces[0] }, spec: { podSelector: {}, ingress: [{ from: [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': from } } }], ports: [{ protocol: 'TCP', port: 80 }] }] } };
  return { type: 'upsertPolicy', policy: parseManifest(manifest, 'np-under-pass') };
}

function run(): { setup: Sample; priority: Sample; reorder: Sample; npAlone: Sample; passAdd: Sample; npUnderPass: Sample; endpoints: number; mapEntries: number } {
  const trace = parseTrace(generateTrace({ profile: 'cilium-ci', seed: 1 }), 'cilium-ci.jsonl');
  const firstChurn = trace.items.findIndex((i) => i.kind === 'phase' && i.name !== 'initial');
  const initial = trace.items.slice(0, firstChurn < 0 ? undefined : firstChurn).flatMap((i) => (i.kind === 'event' ? [i.event] : []));
  const engine = new Engine();
  engine.apply(initial);
  const namespaces = [...new Set(initial.flatMap((e) => (e.type === 'upsertNamespace' ? [e.name] : [])))].sort((a, b) => Number(a.slice(3)) - Number(b.slice(3)));
  // Priorities 10, 20, ... leave room for the change below to move one policy between two others.
  const setup = measure(engine, Array.from({ length: POLICIES }, (_, i) => adminPolicy(i, namespaces, 10 * (i + 1))));
  // Policy 50 moves to the top; policy 0 (the top one, whose rules no other policy hides) swaps its first two rules.
  const [p1, p2] = [50, 0];
  const priority = measure(engine, [adminPolicy(p1, namespaces, 5)]);
  const reorder = measure(engine, [adminPolicy(p2, namespaces, 10 * (p2 + 1), true)]);
  // The same NetworkPolicy change without, then with, an Admin Pass from that namespace above it.
  const from = namespaces[150] as string;
  const npAlone = measure(engine, [npUnderPass(namespaces, from)]);
  engine.apply([{ type: 'deletePolicy', ref: { kind: 'NetworkPolicy', namespace: namespaces[0] as string, name: 'np-under-pass' } }]);
  const passAdd = measure(engine, [passPolicy(namespaces, from)]);
  const withPass = measure(engine, [npUnderPass(namespaces, from)]);
  const mapEntries = engine.mapPressure().reduce((n, m) => n + m.entries, 0);
  return { setup, priority, reorder, npAlone, passAdd, npUnderPass: withPass, endpoints: engine.endpoints().length, mapEntries };
}

const runs = Array.from({ length: RUNS }, run);
const result = {
  bench: 'tiers: cilium-ci initial cluster + 100 Admin ClusterNetworkPolicies (4 ingress rules each)',
  commit: execSync('git rev-parse HEAD', { cwd: repo }).toString().trim(),
  node: process.version,
  cpu: `${cpus()[0]?.model ?? 'unknown'} x${cpus().length}`,
  date: new Date().toISOString(),
  note: 'machine shared with other sessions (2 cores, loaded): milliseconds are noisy, counters are exact',
  runs: RUNS,
  endpoints: runs[0]?.endpoints,
  mapEntries: runs[0]?.mapEntries,
  setup100: summary(runs.map((r) => r.setup)),
  priorityChange: summary(runs.map((r) => r.priority)),
  ruleReorder: summary(runs.map((r) => r.reorder)),
  npChangeAlone: summary(runs.map((r) => r.npAlone)),
  passAdd: summary(runs.map((r) => r.passAdd)),
  npChangeUnderPass: summary(runs.map((r) => r.npUnderPass)),
  raw: runs,
};
mkdirSync(join(repo, 'bench', 'results'), { recursive: true });
writeFileSync(join(repo, 'bench', 'results', 'tiers.json'), `${JSON.stringify(result, null, 2)}\n`);
process.stdout.write(`${JSON.stringify({ setup100: result.setup100, priorityChange: result.priorityChange, ruleReorder: result.ruleReorder, npChangeAlone: result.npChangeAlone, passAdd: result.passAdd, npChangeUnderPass: result.npChangeUnderPass, endpoints: result.endpoints, mapEntries: result.mapEntries })}\n`);
