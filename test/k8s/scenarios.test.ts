import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Engine, type EngineOptions } from '../../src/engine/engine.js';
import type { EngineEvent } from '../../src/engine/events.js';
import { comparableMaps } from '../../src/harness/cluster-sync.js';
import { EngineDecider, engineDecision } from '../../src/harness/engine-decider.js';
import { ClusterMirror } from '../../src/k8s/mirror.js';
import type { WatchItem } from '../../src/k8s/watch.js';
import type { ClusterState } from '../../src/model/cluster.js';
import type { Flow } from '../../src/model/flow.js';
import { decideFlow } from '../../src/naive/evaluator.js';
import { parseScenario } from '../../src/scenario/format.js';
import { runScenario, ScenarioRun, scenarioEngineOptions } from '../../src/scenario/run.js';
import { FakeApiServer } from './wire.js';

/**
 * The adapters against the scenario runner on the same clusters: every scenario's states are
 * written as API objects and delivered as watch streams (in order; duplicated and replayed;
 * reordered; one transaction per event; as relists only). The engine fed through the adapters
 * must hold the same maps as the engine the scenario runner feeds, and decide every probe as the
 * reference evaluator does.
 */
function files(dir: string): string[] {
  return readdirSync(dir).sort().flatMap((e) => {
    const p = join(dir, e);
    return statSync(p).isDirectory() ? files(p) : p.endsWith('.yaml') ? [p] : [];
  });
}

type Mode = 'in-order' | 'duplicated-and-replayed' | 'reordered' | 'one-per-transaction' | 'relist-only';
const MODES: readonly Mode[] = ['in-order', 'duplicated-and-replayed', 'reordered', 'one-per-transaction', 'relist-only'];

function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
}

function shuffled<T>(xs: readonly T[], rnd: () => number): T[] {
  const out = [...xs];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

/** A flow decider whose engine is fed only through the adapters, checked against the runner's own engine at every state. */
function adapterDecider(mode: Mode, seed: number, options: EngineOptions = {}) {
  const engine = new Engine(options);
  // The fake API server carries every CiliumCIDRGroup (there may be none): `--cidr-groups`.
  const mirror = new ClusterMirror({ nodeName: 'node-a', cidrGroups: true });
  const server = new FakeApiServer();
  const reference = new EngineDecider(new Engine(options));
  const rnd = prng(seed);
  let last: ClusterState | undefined;
  const history: WatchItem[] = [];
  const counts = { transactions: 0, stateChanges: 0 };
  const apply = (): void => {
    const batch = mirror.flush();
    const events = batch.events as EngineEvent[];
    if (events.length > 0) engine.apply(events), counts.transactions++;
    batch.commit();
  };
  const feed = (items: readonly WatchItem[], each: boolean): void => {
    for (const item of items) {
      mirror.observe(item, 'test');
      if (each) apply();
    }
    while (!mirror.idle) apply();
  };
  const sync = (state: ClusterState): void => {
    if (state === last) return;
    last = state;
    counts.stateChanges++;
    const items = server.moveTo(state);
    if (mode === 'in-order') feed(items, false);
    if (mode === 'reordered') feed(shuffled(items, rnd), false);
    if (mode === 'one-per-transaction') feed(shuffled(items, rnd), true);
    if (mode === 'relist-only') feed(server.list(), false);
    if (mode === 'duplicated-and-replayed') {
      feed(items.flatMap((i) => [i, i]), false);
      feed(shuffled(history, rnd), false);
      history.push(...items);
    }
    reference.sync(state);
    expect(comparableMaps(engine)).toEqual(comparableMaps(reference.engine));
  };
  const decide = (state: ClusterState, flow: Flow) => {
    sync(state);
    return engineDecision(engine, state, flow);
  };
  return { decide, engine, mirror, counts };
}

const verdicts = (r: ScenarioRun): string[] => r.steps.flatMap((s) => s.results.map((x) => `${x.from}->${x.to} ${x.port}/${x.protocol} ${x.allowed} ${x.proxied}`));

describe('Kubernetes adapters against the scenario runner', () => {
  // ClusterNetworkPolicy and toFQDNs scenarios wait for engine support (test/network-policy-api.test.ts, test/fqdn.test.ts).
  // The adapters carry no DNS answers: a scenario with any (attacks-9/9b-*) is run by test/scenarios.test.ts only.
  // And the CiliumCIDRGroup scenarios of the conformance corpus (26g: the agent watches groups).
  // And the ClusterNetworkPolicy v1beta1 scenarios (26v): objects at v1beta1 and v1alpha2 through the mirror's served reading.
  const corpus = [...files('fixtures/scenarios'), ...files('fixtures/conformance/cilium-cidrgroup-25'), ...files('fixtures/conformance/npapi-v1beta1')].filter((f) => !f.includes('/network-policy-api/') && !f.includes('/fqdn/') && !f.includes('/fqdn-conformance/') && !readFileSync(f, 'utf8').includes('dnsResponse:'));
  it('covers the scenario corpus', () => expect(corpus.length).toBeGreaterThanOrEqual(40));
  for (const file of corpus) {
    it(file, () => {
      const scenario = parseScenario(readFileSync(file, 'utf8'), file);
      const naive = verdicts(runScenario(scenario, decideFlow));
      MODES.forEach((mode, i) => {
        const d = adapterDecider(mode, i + 1, scenarioEngineOptions(scenario));
        expect(verdicts(runScenario(scenario, d.decide)), mode).toEqual(naive);
        if (mode === 'duplicated-and-replayed') expect(d.mirror.counts.stale).toBeGreaterThan(0);
      });
    });
  }
});
