import type { Policy } from './rules.js';

/*
 * Which of the peer kinds the engine's side stages act on a policy holds, found in one pass over
 * its rules: the node table (nodes peers, API server stand-ins, tiered networks), the network
 * splits (tiered networks, tiered egress named ports) and the FQDN stage (egress DNS rules). A
 * policy with none of them (almost all: cilium-2019's 3,000 have none) then costs each stage a
 * bit test, instead of a scan of its rules per stage.
 */

/** A `nodes` peer (CiliumNetworkPolicy `toNodes`/`fromNodes`, ClusterNetworkPolicy `nodes`). */
export const HAS_NODES = 1;
/** A peer standing in for the unknown API server addresses (rules.ts `hasApiServerStandIns`). */
export const HAS_STAND_INS = 2;
/** A ClusterNetworkPolicy `networks` peer. */
export const HAS_NETWORKS = 4;
/** A ClusterNetworkPolicy egress rule with a named port (`destinationNamedPort`). */
export const HAS_NAMED_EGRESS = 8;
/** An egress allow rule with DNS L7 rules (what the DNS proxy learns from). */
export const HAS_DNS = 16;

/** The HAS_* bits of a policy. */
export function policyPeerKinds(policy: Policy): number {
  let kinds = 0;
  const rules = policy.rules;
  for (let i = 0; i < rules.length; i++) {
    const r = rules[i] as Policy['rules'][number];
    for (let j = 0; j < r.peers.length; j++) {
      const p = r.peers[j] as (typeof r.peers)[number];
      if (p.kind === 'nodes') kinds |= HAS_NODES;
      else if (p.kind === 'selector' && p.apiServerStandIn === true) kinds |= HAS_STAND_INS;
    }
    if (r.direction !== 'egress' || r.verdict !== 'allow') continue;
    for (let j = 0; j < r.ports.length; j++) if ((r.ports[j] as (typeof r.ports)[number]).l7?.parser === 'dns') kinds |= HAS_DNS;
  }
  for (const r of policy.tiered?.rules ?? []) {
    for (const p of r.peers) {
      if (p.kind === 'nodes') kinds |= HAS_NODES;
      else if (p.kind === 'networks') kinds |= HAS_NETWORKS;
    }
    if (r.direction === 'egress' && r.protocols.some((p) => p.kind === 'named')) kinds |= HAS_NAMED_EGRESS;
  }
  return kinds;
}
