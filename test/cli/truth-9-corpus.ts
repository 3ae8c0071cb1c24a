import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Engine } from '../../src/engine/engine.js';
import { EngineDecider } from '../../src/harness/engine-decider.js';
import type { ClusterState } from '../../src/model/cluster.js';
import type { Flow, FlowDecision } from '../../src/model/flow.js';
import type { L7Request } from '../../src/model/l7.js';
import type { Scenario } from '../../src/scenario/format.js';
import { parseScenario } from '../../src/scenario/format.js';
import { ProbeResult, runScenario } from '../../src/scenario/run.js';
import { decideFlow } from '../../src/naive/evaluator.js';

/** DISTILL_TRUTH_LONG=1: every flow of every probe; else a deterministic sample. */
export const LONG = process.env.DISTILL_TRUTH_LONG === '1';

function walk(dir: string): string[] {
  return readdirSync(dir)
    .sort()
    .flatMap((n) => {
      const p = join(dir, n);
      return statSync(p).isDirectory() ? walk(p) : /\.ya?ml$/.test(n) ? [p] : [];
    });
}

export interface CorpusFlow {
  readonly file: string;
  readonly step: number;
  readonly probe: number;
  readonly flow: Flow;
  /** What `reach` (the engine through the scenario's history) decided. */
  readonly decision: FlowDecision;
  /** The oracle's (src/naive) decision of the same flow. */
  readonly oracle: FlowDecision;
  /** The cluster the flow was decided on (the step's state, with the probes' addresses added). */
  readonly state: ClusterState;
}

export interface CorpusScenario {
  readonly file: string;
  readonly scenario: Scenario;
  readonly flows: readonly CorpusFlow[];
}

let cached: CorpusScenario[] | undefined;

/** Every scenario of fixtures/scenarios and fixtures/conformance that runs (refusals and pending/ skipped), with reach's results. */
export function corpus(): CorpusScenario[] {
  if (cached) return cached;
  const out: CorpusScenario[] = [];
  // pending/ holds cases distill fails today (its README), where reach and the oracle may disagree by design.
  for (const file of [...walk('fixtures/scenarios'), ...walk('fixtures/conformance').filter((f) => !f.startsWith(join('fixtures/conformance', 'pending')))]) {
    let scenario: Scenario;
    let run;
    let naive;
    const states: ClusterState[] = [];
    try {
      scenario = parseScenario(readFileSync(file, 'utf8'), file);
      // As reach builds it: the scenario's DNS proxy options go to the engine.
      run = runScenario(scenario, new EngineDecider(new Engine(scenario.dnsProxy ? { dns: scenario.dnsProxy } : {})).decide);
      naive = runScenario(scenario, (st, fl) => {
        states.push(st);
        return decideFlow(st, fl);
      }).steps.flatMap((s) => s.results);
    } catch {
      continue; // a refusal case: nothing to trace
    }
    // A result is its flow plus the verdict (runScenario spreads the flow into it).
    const flows = run.steps.flatMap((s) => s.results as readonly (ProbeResult & Flow)[]).map((r, i) => ({ file, step: r.step, probe: r.probe, flow: { from: r.from, to: r.to, port: r.port, protocol: r.protocol, ...(r.request ? { request: r.request } : {}) }, decision: r.decision, oracle: (naive[i] as ProbeResult).decision, state: states[i] as ClusterState }));
    out.push({ file, scenario, flows });
  }
  cached = out;
  return out;
}

/** At most `n` flows per probe (all in long mode): the first, the last and evenly spread ones. */
export function sample<T extends CorpusFlow>(flows: readonly T[], n: number): T[] {
  if (LONG) return [...flows];
  const byProbe = new Map<string, T[]>();
  for (const f of flows) {
    const k = `${f.step}/${f.probe}`;
    byProbe.set(k, [...(byProbe.get(k) ?? []), f]);
  }
  return [...byProbe.values()].flatMap((fs) => (fs.length <= n ? fs : Array.from({ length: n }, (_, i) => fs[Math.floor((i * (fs.length - 1)) / (n - 1))] as T)));
}

/** trace's options for a flow's request. */
function requestArgs(r: L7Request | undefined): string[] {
  if (r === undefined) return [];
  if ('dns' in r) return ['--dns-name', r.dns.name];
  if ('kafka' in r) {
    const k = r.kafka;
    return ['--kafka-api-key', k.apiKey, ...(k.apiVersion !== undefined ? ['--kafka-api-version', String(k.apiVersion)] : []), ...(k.clientID !== undefined ? ['--kafka-client-id', k.clientID] : []), ...(k.topic !== undefined ? ['--kafka-topic', k.topic] : [])];
  }
  const h = r.http;
  return ['--http-method', h.method, '--http-path', h.path, ...(h.host !== undefined ? ['--http-host', h.host] : []), ...Object.entries(h.headers ?? {}).flatMap(([k, v]) => ['--http-header', `${k}: ${v}`])];
}

export function traceArgs(f: CorpusFlow): string[] {
  return ['trace', '--scenario', f.file, '--step', String(f.step), '--from', f.flow.from, '--to', f.flow.to, '--port', `${f.flow.port}/${f.flow.protocol}`, ...requestArgs(f.flow.request), '-o', 'json'];
}
