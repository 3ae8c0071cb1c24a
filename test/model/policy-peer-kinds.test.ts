import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { EngineEvent } from '../../src/engine/events.js';
import { HAS_DNS, HAS_NAMED_EGRESS, HAS_NETWORKS, HAS_NODES, HAS_STAND_INS, policyPeerKinds } from '../../src/model/policy-peer-kinds.js';
import type { Policy } from '../../src/model/rules.js';
import { allOp, toEvents } from '../engine/gen-all.js';
import { Op, opWithNodes, tierHeavyOp, toEvent } from '../engine/gen.js';

/** Each bit read off the policy with no shortcut: what the node table, network splits and FQDN stage scanned for before. */
function expected(p: Policy): number {
  const tiered = p.tiered?.rules ?? [];
  let k = 0;
  if (p.rules.some((r) => r.peers.some((x) => x.kind === 'nodes')) || tiered.some((r) => r.peers.some((x) => x.kind === 'nodes'))) k |= HAS_NODES;
  if (p.rules.some((r) => r.peers.some((x) => x.kind === 'selector' && x.apiServerStandIn === true))) k |= HAS_STAND_INS;
  if (tiered.some((r) => r.peers.some((x) => x.kind === 'networks'))) k |= HAS_NETWORKS;
  if (tiered.some((r) => r.direction === 'egress' && r.protocols.some((x) => x.kind === 'named'))) k |= HAS_NAMED_EGRESS;
  if (p.rules.some((r) => r.direction === 'egress' && r.verdict === 'allow' && r.ports.some((x) => x.l7?.parser === 'dns'))) k |= HAS_DNS;
  return k;
}

/** A kube-apiserver deny, whose peers stand in for the API server while its addresses are unknown (rules.ts). */
const kapiDeny = fc.constantFrom<Op>(
  ...(['egressDeny', 'ingressDeny'] as const).map((field) => ({
    k: 'policy' as const,
    manifest: { apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name: 'kapi', namespace: 'n0' }, spec: { endpointSelector: {}, [field]: [{ [field === 'egressDeny' ? 'toEntities' : 'fromEntities']: ['kube-apiserver'] }] } },
  })),
);

const policiesOf = (events: readonly EngineEvent[]): Policy[] => events.flatMap((e) => (e.type === 'upsertPolicy' ? [e.policy] : []));

describe('policyPeerKinds', () => {
  it('equals the per-kind scans on generated policies of every feature, and each bit occurs', () => {
    const seen = new Set<number>();
    const policies = fc.oneof(
      allOp.map((o) => policiesOf(toEvents(o))),
      fc.oneof(opWithNodes, tierHeavyOp, kapiDeny).map((o) => policiesOf([toEvent(o)])),
    );
    fc.assert(
      fc.property(policies, (ps) => {
        for (const p of ps) {
          const k = policyPeerKinds(p);
          expect(k).toBe(expected(p));
          for (const bit of [HAS_NODES, HAS_STAND_INS, HAS_NETWORKS, HAS_NAMED_EGRESS, HAS_DNS]) if (k & bit) seen.add(bit);
        }
      }),
      { numRuns: 3000, seed: 14 },
    );
    expect([...seen].sort((a, b) => a - b)).toEqual([HAS_NODES, HAS_STAND_INS, HAS_NETWORKS, HAS_NAMED_EGRESS, HAS_DNS]);
  });
});
