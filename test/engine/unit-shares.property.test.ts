import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { ClusterState } from '../../src/model/cluster.js';
import { labelSetKey } from '../../src/model/labels.js';
import { policyKeyString } from '../../src/model/policy-map.js';
import { policyRefKey, RuleOrigin } from '../../src/model/rules.js';
import { Engine } from '../../src/engine/engine.js';
import { diffEndpointMaps, endpointMaps, initialEvents } from '../../src/harness/cluster-sync.js';
import { INITIAL_CLUSTER, normalizedMaps, Op, op, REQUESTS, toEvent, trackLocality, modelAfter } from './gen.js';
import { fcRuns } from '../fc-knobs.js';

// Histories dense in equal rules (policy-resolver.ts UnitShare): each NetworkPolicy-tier policy
// comes with a copy under its sibling name, or with its rules twice, so shares form, lose their
// leaders and dissolve. After every transaction the engine must explain every entry and L7
// decision exactly as a fresh engine fed the final state (whose shares formed in another order).

const RUNS = fcRuns(process.env.DISTILL_LONG ? 1000 : 60);
const REPLAY = process.env.DISTILL_SEED ? { seed: Number(process.env.DISTILL_SEED), ...(process.env.DISTILL_PATH ? { path: process.env.DISTILL_PATH } : {}) } : {};
const SIBLING: Readonly<Record<string, string>> = { 'np-a': 'np-b', 'np-b': 'np-a', 'cnp-a': 'cnp-b', 'cnp-b': 'cnp-a' };

function withCopies(o: Op, how: number): Op[] {
  if (o.k !== 'policy') return [o];
  const m = o.manifest as { metadata: { name: string }; spec?: Record<string, unknown> };
  const sibling = SIBLING[m.metadata.name];
  if (!sibling || !m.spec) return [o];
  if (how === 0) return [o, { k: 'policy', manifest: { ...m, metadata: { ...m.metadata, name: sibling } } }];
  // The policy's rules twice over (equal units within one policy).
  const spec = Object.fromEntries(Object.entries(m.spec).map(([k, v]) => [k, Array.isArray(v) && k !== 'policyTypes' ? [...(v as unknown[]), ...(v as unknown[])] : v]));
  return how === 1 ? [{ k: 'policy', manifest: { ...m, spec } }] : [o];
}

const transaction = fc.array(fc.tuple(op, fc.nat({ max: 2 })), { minLength: 1, maxLength: 3 }).map((xs) => xs.flatMap(([o, how]) => withCopies(o, how)));

const rules = (origins: readonly (RuleOrigin | null)[]): string => origins.map((o) => (o ? `${policyRefKey(o.policy)} ${o.path}` : 'default')).sort().join(', ');

/** Every entry's contributors and every redirect's L7 `allowedBy`, identities by labels and proxy ports by redirect. */
function explained(engine: Engine): string[] {
  const who = (id: number): string => (id === 0 ? '*' : labelSetKey(engine.identityLabels(id) ?? []));
  const out: string[] = [];
  for (const ep of engine.endpoints()) {
    for (const { key } of engine.mapState(ep).values()) out.push(`${ep} ${who(key.identity)} ${policyKeyString({ ...key, identity: 0 })}: ${rules(engine.contributors(ep, key).map((c) => c.origin))}`);
    const peers = [...new Set(engine.l7Table(ep).map((row) => row.peer))];
    for (const r of engine.redirects(ep)) {
      for (const peer of peers) for (const [i, request] of REQUESTS.entries()) if (request) out.push(`${ep} L7 ${r.direction}/${r.protocol}/${r.port}/${r.parser} ${who(peer)} #${i}: ${rules(engine.l7AllowedBy(ep, r.proxyPort, peer, request, r.port))}`);
    }
  }
  return out.sort();
}

describe('equal rules: one contribution, every rule explained', () => {
  it('deltas = exact diff and explanations = a fresh engine, after every transaction', () => {
    let shared = 0;
    fc.assert(
      fc.property(fc.array(transaction, { minLength: 5, maxLength: 30 }), (txns: Op[][]) => {
        const engine = new Engine();
        let state: ClusterState = INITIAL_CLUSTER;
        const local = new Map<string, boolean>();
        for (const ops of txns) {
          const events = ops.map(toEvent);
          const next = modelAfter(state, events);
          if (next === null) continue;
          const before = endpointMaps(engine);
          const cs = engine.apply(events);
          for (const e of events) trackLocality(local, next, e);
          state = next;
          expect(cs.deltas.length).toBe(diffEndpointMaps(before, endpointMaps(engine)).length);
          const fresh = new Engine();
          fresh.apply(initialEvents(state, (p) => local.get(`${p.namespace}/${p.name}`) ?? false));
          expect(normalizedMaps(engine)).toEqual(normalizedMaps(fresh));
          const why = explained(engine);
          expect(why).toEqual(explained(fresh));
          shared += why.filter((line) => line.includes(', ')).length;
        }
      }),
      { numRuns: RUNS, ...REPLAY },
    );
    // Entries explained by two rules or more must really occur.
    expect(shared).toBeGreaterThan(RUNS);
  });
});
