import type { ClusterState } from '../model/cluster.js';
import type { Flow } from '../model/flow.js';
import type { FlowProtocol } from '../model/ports.js';
import { decideFlow } from '../naive/evaluator.js';
import type { Scenario } from '../scenario/format.js';
import { Engine } from '../engine/engine.js';
import type { ChangeSet, L7Delta, MapDelta } from '../engine/events.js';
import { EngineError, MapCapacityError } from '../engine/events.js';
import { ProxyPortsExhaustedError } from '../engine/proxy-ports.js';
import { L7ParserConflictError } from '../engine/rule-units.js';
import { clusterEvents, initialEvents } from '../harness/cluster-sync.js';
import { describeRequest, formatOrigin } from './format.js';

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

export interface PlanResult {
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
  for (const p of distinctPorts(ports)) {
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
  const engine = new Engine({ ...(before.allowLocalhost ? { allowLocalhost: before.allowLocalhost } : {}), ...(before.stack ? { stack: before.stack } : {}) });
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
export function probePorts(scenario: Scenario): PlanPort[] {
  return distinctPorts(scenario.steps.flatMap((s) => s.probes.map((p): PlanPort => ({ port: p.port, protocol: p.protocol, ...(p.request ? { request: p.request } : {}) }))));
}

/** Each port (with its request) once, in first-use order: a `--port` that a probe already uses is checked once. */
function distinctPorts(ports: readonly PlanPort[]): PlanPort[] {
  const seen = new Map<string, PlanPort>();
  for (const p of ports) {
    const key = `${p.port}/${p.protocol} ${JSON.stringify(p.request ?? null)}`;
    if (!seen.has(key)) seen.set(key, p);
  }
  return [...seen.values()];
}
