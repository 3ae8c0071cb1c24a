import {
  allocatePodIp,
  ClusterChangeError,
  ClusterState,
  deleteNamespace,
  deletePod,
  deletePolicy,
  deleteCidrGroup,
  upsertCidrGroup,
  EMPTY_CLUSTER,
  namespaceWithDefaults,
  NODE_PREFIX,
  Pod,
  podIps,
  deleteNode,
  setApiServer,
  upsertExternal,
  upsertNamespace,
  upsertNode,
  upsertPod,
  upsertPolicy,
  nodeEndpointsOf,
  nodeAddresses,
} from '../model/cluster.js';
import { familyMismatch, type Flow, type FlowDecision } from '../model/flow.js';
import type { DnsCacheOptions } from '../model/fqdn.js';
import type { AllowLocalhost } from '../model/localhost.js';
import type { StackMode } from '../model/identity.js';
import { advanceDnsClock, EMPTY_DNS_CACHE, withoutAnswersOf, withoutPodAnswers } from '../model/fqdn.js';
import { applyDnsAnswer } from '../naive/dns-learning.js';
import { ManifestError } from '../policy/errors.js';
import type { Change, Scenario } from './format.js';
import type { Probe } from './probes.js';

/**
 * Decides flows against a cluster state: the naive evaluator, or the engine. A decider whose state
 * depends on the order of changes (the engine's DNS learning) takes `syncThrough`: the states a step
 * passed through, in order (`StepTrail`), before its flows are decided.
 */
export type FlowDecider = ((state: ClusterState, flow: Flow) => FlowDecision) & { readonly syncThrough?: (states: readonly ClusterState[]) => void };

export interface ProbeResult {
  readonly step: number;
  readonly probe: number;
  readonly from: string;
  readonly to: string;
  readonly port: number;
  readonly protocol: string;
  readonly allowed: boolean;
  readonly proxied: boolean;
  readonly decision: FlowDecision;
}

interface Mismatch {
  readonly step: number;
  readonly probe: number;
  readonly pair: string;
  readonly expected: 'allow' | 'deny' | 'proxied' | 'not proxied';
  readonly actual: 'allow' | 'deny' | 'proxied' | 'not proxied';
}

/** What an expectation says of one result, if the result says otherwise. */
function expectationMismatch(kind: 'allow' | 'deny' | 'proxied', listed: boolean, r: { allowed: boolean; proxied: boolean }): Pick<Mismatch, 'expected' | 'actual'> | null {
  if (kind === 'proxied') {
    const actual = r.proxied ? 'proxied' : 'not proxied';
    const expected = listed ? 'proxied' : 'not proxied';
    return expected === actual ? null : { expected, actual };
  }
  const expected = listed ? kind : kind === 'deny' ? 'allow' : 'deny';
  const actual = r.allowed ? 'allow' : 'deny';
  return expected === actual ? null : { expected, actual };
}

interface StepRun {
  readonly step: number;
  readonly probes: readonly Probe[];
  readonly results: readonly ProbeResult[];
  readonly mismatches: readonly Mismatch[];
}

export interface ScenarioRun {
  readonly scenario: Scenario;
  readonly steps: readonly StepRun[];
  readonly finalState: ClusterState;
}

/**
 * Applies one change. Namespaces a pod refers to are created implicitly (with no labels) when the
 * scenario does not declare them, so small scenarios stay small.
 */
function applyChange(state: ClusterState, c: Change): ClusterState {
  switch (c.op) {
    case 'addNamespace':
      return upsertNamespace(state, namespaceWithDefaults(c.name, c.labels));
    case 'deleteNamespace': {
      const s = deleteNamespace(state, c.name);
      const dns = withoutAnswersOf(s.dns, (endpoint) => !s.pods.has(endpoint));
      return dns ? { ...s, dns } : s;
    }
    case 'setNamespaceLabels':
      if (!state.namespaces.has(c.name)) throw new ClusterChangeError(`namespace "${c.name}" does not exist`);
      return upsertNamespace(state, namespaceWithDefaults(c.name, c.labels));
    case 'addPod': {
      let s = state;
      if (!s.namespaces.has(c.pod.namespace)) s = upsertNamespace(s, namespaceWithDefaults(c.pod.namespace, {}));
      const key = `${c.pod.namespace}/${c.pod.name}`;
      const previous = s.pods.get(key);
      // A pod re-added without addresses keeps the ones it had.
      const ip = c.pod.ip ?? previous?.ip ?? allocatePodIp(s);
      const ips = c.pod.ip ? c.pod.ips : previous?.ips;
      const pod: Pod = { namespace: c.pod.namespace, name: c.pod.name, labels: c.pod.labels, ip, ...(ips ? { ips } : {}), serviceAccount: c.pod.serviceAccount, ports: c.pod.ports };
      return upsertPod(s, pod);
    }
    case 'deletePod': {
      // An endpoint that is gone takes its DNS history with it.
      const s = deletePod(state, c.key);
      const dns = withoutPodAnswers(s.dns, c.key);
      return dns ? { ...s, dns } : s;
    }
    case 'setPodLabels': {
      const pod = state.pods.get(c.key);
      if (!pod) throw new ClusterChangeError(`pod "${c.key}" does not exist`);
      return upsertPod(state, { ...pod, labels: c.labels });
    }
    case 'addExternal':
      return upsertExternal(state, { name: c.name, ip: c.ip });
    case 'addNode':
      return upsertNode(state, { name: c.name, ips: c.ips, local: c.local, ...nodeEndpointsOf(c), ...(c.labels ? { labels: c.labels } : {}) });
    case 'deleteNode':
      return deleteNode(state, c.name);
    case 'setApiServer':
      return setApiServer(state, c.addresses);
    case 'apply':
      return upsertPolicy(state, c.policy);
    case 'delete':
      return deletePolicy(state, c.ref);
    case 'applyCidrGroup':
      return upsertCidrGroup(state, c.group);
    case 'deleteCidrGroup':
      return deleteCidrGroup(state, c.name);
    case 'dnsResponse': {
      const a = c.answer;
      if (!state.pods.has(a.pod)) throw new ClusterChangeError(`pod "${a.pod}" does not exist`);
      if (a.server && !state.pods.has(a.server.to) && !state.externals.has(a.server.to)) throw new ClusterChangeError(`no pod or external named "${a.server.to}"`);
      return applyDnsAnswer(state, a.pod, a.name, a.ips, a.ttl, a.server);
    }
    case 'advanceTime':
      return { ...state, dns: advanceDnsClock(state.dns ?? EMPTY_DNS_CACHE, c.seconds) };
  }
}

/**
 * The states a run passed through since its decider last synced, in order: the state before and
 * after each DNS answer (the current state follows when the decider syncs). A DNS answer is judged by the rules in force where it
 * stands among the step's changes (Cilium's proxy judges each query when it arrives), which the
 * step's end state alone does not tell: an answer learnt before a later change of the same step
 * stops the query's redirect stays learnt (attack finding 1875).
 */
type StepTrail = ClusterState[];

function applyAll(state: ClusterState, changes: readonly Change[], source: string, trail?: StepTrail): ClusterState {
  let s = state;
  for (const c of changes) {
    try {
      if (trail && c.op === 'dnsResponse') passThrough(trail, s);
      s = applyChange(s, c);
      if (trail && c.op === 'dnsResponse') passThrough(trail, s);
    } catch (e) {
      if (e instanceof ClusterChangeError) throw new ManifestError(source, c.path, e.message);
      throw e;
    }
  }
  return s;
}

function passThrough(trail: StepTrail, s: ClusterState): void {
  if (trail[trail.length - 1] !== s) trail.push(s);
}

/**
 * At most this many flows per scenario run: a probe without from or to covers every ordered pair
 * of pods, so a small file could otherwise ask for millions (3,000 pods: 9 million flows, 3 GB;
 * 100,000 flows take ~50 s to verify here).
 * The whole corpus (62 scenarios) probes 774.
 */
const MAX_SCENARIO_FLOWS = 25_000;

/** The flows a scenario run may still probe. */
interface FlowBudget {
  left: number;
}

/** The flows a probe stands for, in a stable order (pods sorted by namespace/name). */
function expandProbe(state: ClusterState, probe: Probe, source: string, budget: FlowBudget = { left: MAX_SCENARIO_FLOWS }): Flow[] {
  const pods = [...state.pods.keys()].sort();
  const held = podAddresses(state);
  for (const [field, name, ip] of [['from', probe.from, probe.fromIp], ['to', probe.to, probe.toIp]] as const) {
    if (ip && !state.externals.has(ip.text) && !held.has(ip.text)) throw new ManifestError(source, `${probe.path}.${field}`, `internal: ${ip.text} was not added`);
    if (name !== undefined && name.startsWith(NODE_PREFIX) && !ip) {
      if (state.nodes?.has(name.slice(NODE_PREFIX.length)) !== true) throw new ManifestError(source, `${probe.path}.${field}`, `no node named "${name.slice(NODE_PREFIX.length)}"`);
    } else if (name !== undefined && !ip && !state.pods.has(name) && !state.externals.has(name)) {
      throw new ManifestError(source, `${probe.path}.${field}`, `no pod or external named "${name}"`);
    }
  }
  const froms = probe.from !== undefined ? [probe.from] : pods;
  const tos = probe.to !== undefined ? [probe.to] : pods;
  if (froms.length * tos.length > budget.left + Math.min(froms.length, tos.length)) {
    throw new ManifestError(source, probe.path, `covers ${froms.length * tos.length} pod pairs, over the ${MAX_SCENARIO_FLOWS} flows a scenario may probe (${MAX_SCENARIO_FLOWS - budget.left} used before it): give from or to`);
  }
  const flows: Flow[] = [];
  const mismatch = probe.from !== undefined && probe.to !== undefined ? familyMismatch(probe.from, probe.to) : undefined;
  if (mismatch !== undefined) throw new ManifestError(source, probe.path, mismatch);
  for (const from of froms) {
    for (const to of tos) {
      // A pod reached at one of its own addresses is the pod itself.
      if ((held.get(from) ?? from) === (held.get(to) ?? to)) continue;
      flows.push({ from, to, port: probe.port, protocol: probe.protocol, ...(probe.request ? { request: probe.request } : {}) });
    }
  }
  budget.left -= flows.length;
  return flows;
}

/** Every pod address (both of a dual-stack pod's) by text, to the key of the pod owning it (`ipOwner`). */
function podAddresses(state: ClusterState): Map<string, string> {
  const out = new Map<string, string>();
  for (const [key, p] of state.pods) for (const ip of podIps(p)) if (!state.unownedIps?.has(ip.text)) out.set(ip.text, key);
  // A node's address is held by the node (it wins over a pod claiming it, as resolveEndpoint says).
  for (const n of state.nodes?.values() ?? []) for (const { ip } of nodeAddresses(n)) out.set(ip.text, NODE_PREFIX + n.name);
  return out;
}

/** The scenario's cluster after its setup, then after each step. */
export function scenarioStates(sc: Scenario): ClusterState[] {
  let s = scenarioStart(sc);
  for (const c of sc.setup) s = applyChange(s, c);
  const out = [s];
  for (const step of sc.steps) {
    for (const c of step.changes) s = applyChange(s, c);
    out.push(s);
  }
  return out;
}

/**
 * The cluster after the scenario's setup and its steps 0..step (all steps when undefined); no probe
 * is run. `onStep` as in `runScenario`. A step the scenario does not have is the input's error.
 */
export function scenarioState(scenario: Scenario, step: number | undefined, onStep?: (state: ClusterState, trail: readonly ClusterState[]) => void): ClusterState {
  if (step !== undefined && step >= scenario.steps.length) {
    throw new ManifestError(scenario.source, 'steps', `has ${scenario.steps.length} steps: --step ${step} is not one of them (0 to ${scenario.steps.length - 1})`);
  }
  const steps = scenario.steps.slice(0, step === undefined ? undefined : step + 1).map((s) => ({ changes: s.changes, probes: [], expect: [] }));
  return runScenario({ ...scenario, steps }, () => {
    throw new Error('internal: a scenario without probes decided a flow');
  }, onStep).finalState;
}

/** Externals for the `{ip}` probe ends that no pod or external has yet, named by their address. */
function withProbeAddresses(state: ClusterState, probes: readonly Probe[]): ClusterState {
  let s = state;
  const held = podAddresses(state);
  for (const p of probes) {
    for (const ip of [p.fromIp, p.toIp]) if (ip && !held.has(ip.text) && !s.externals.has(ip.text)) s = upsertExternal(s, { name: ip.text, ip });
  }
  return s;
}

/** What an engine deciding `scenario` must be built with (its top-level `dnsProxy`, `allowLocalhost` and `stack`). */
export function scenarioEngineOptions(scenario: Scenario): { readonly dns?: DnsCacheOptions; readonly allowLocalhost?: AllowLocalhost; readonly stack?: StackMode } {
  return { ...(scenario.dnsProxy ? { dns: scenario.dnsProxy } : {}), ...(scenario.allowLocalhost ? { allowLocalhost: scenario.allowLocalhost } : {}), ...(scenario.stack ? { stack: scenario.stack } : {}) };
}

/** The empty cluster with the scenario's top-level `dnsProxy`, `allowLocalhost` and `stack`. */
function scenarioStart(scenario: Scenario): ClusterState {
  const withDns: ClusterState = scenario.dnsProxy ? { ...EMPTY_CLUSTER, dns: { ...EMPTY_DNS_CACHE, options: scenario.dnsProxy } } : EMPTY_CLUSTER;
  const withLocalhost = scenario.allowLocalhost ? { ...withDns, allowLocalhost: scenario.allowLocalhost } : withDns;
  return scenario.stack ? { ...withLocalhost, stack: scenario.stack } : withLocalhost;
}

/**
 * `onStep`: called with the cluster after each step's changes (before its probes), and the states
 * the step passed through since the last call (`StepTrail`, ending with that cluster).
 */
export function runScenario(scenario: Scenario, decide: FlowDecider, onStep?: (state: ClusterState, trail: readonly ClusterState[]) => void): ScenarioRun {
  let trail: StepTrail = [];
  let state = applyAll(scenarioStart(scenario), scenario.setup, scenario.source, trail);
  const steps: StepRun[] = [];
  const budget: FlowBudget = { left: MAX_SCENARIO_FLOWS };
  // The decider is brought through the trail right before its first flow (review 1895): an unprobed step
  // joins the next probed step's transaction as before 1875, and only the states around DNS answers
  // are kept in between.
  const synced = (): ClusterState => {
    if (trail.length > 0) decide.syncThrough?.([...trail, state]);
    trail = [];
    return state;
  };
  scenario.steps.forEach((step, si) => {
    state = applyAll(state, step.changes, scenario.source, trail);
    state = withProbeAddresses(state, step.probes);
    if (onStep) {
      onStep(state, [...trail, state]);
      trail = [];
    }
    const results: ProbeResult[] = [];
    step.probes.forEach((probe, pi) => {
      for (const flow of expandProbe(state, probe, scenario.source, budget)) {
        const decision = decide(synced(), flow);
        results.push({ step: si, probe: pi, ...flow, allowed: decision.allowed, proxied: decision.proxied, decision });
      }
    });
    const mismatches: Mismatch[] = [];
    for (const exp of step.expect) {
      const ofProbe = results.filter((r) => r.probe === exp.probe);
      const pairs = new Set(ofProbe.map((r) => `${r.from}->${r.to}`));
      exp.pairs.forEach((p, i) => {
        if (!pairs.has(p)) throw new ManifestError(scenario.source, `${exp.path}.${exp.listed}[${i}]`, `"${p}" is not a pair probe ${exp.probe} covers`);
      });
      const listed = new Set(exp.pairs);
      for (const r of ofProbe) {
        const pair = `${r.from}->${r.to}`;
        const mismatch = expectationMismatch(exp.listed, listed.has(pair), r);
        if (mismatch) mismatches.push({ step: si, probe: exp.probe, pair, ...mismatch });
      }
    }
    steps.push({ step: si, probes: step.probes, results, mismatches });
  });
  return { scenario, steps, finalState: state };
}
