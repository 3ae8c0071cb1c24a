import { ClusterState, podIps } from '../model/cluster.js';
import { IdentityId, RESERVED_IDENTITIES } from '../model/identity.js';
import type { IpAddress } from '../model/cidr.js';
import { SOURCE_CIDR, LabelSet } from '../model/labels.js';

/** The engine's public identity queries the ipcache is computed from. */
export interface IdentitySource {
  identityOfPod(key: string): IdentityId | undefined;
  identityOfIp(ip: IpAddress): IdentityId;
  identities(): IdentityId[];
  identityLabels(id: IdentityId): LabelSet | undefined;
}

function hostPrefix(ip: IpAddress): string {
  return `${ip.text}/${ip.family === 'ipv4' ? 32 : 128}`;
}

/**
 * What the kernel ipcache must hold for a cluster state, as Cilium fills it: every pod's address,
 * every CIDR identity's prefix, each external's address (its identity as the engine resolves it),
 * and world for everything else.
 */
export function ipcacheContent(engine: IdentitySource, state: ClusterState): Map<string, IdentityId> {
  const out = new Map<string, IdentityId>([
    ['0.0.0.0/0', RESERVED_IDENTITIES['world-ipv4']],
    ['::/0', RESERVED_IDENTITIES['world-ipv6']],
  ]);
  for (const id of engine.identities()) {
    for (const l of engine.identityLabels(id) ?? []) if (l.source === SOURCE_CIDR) out.set(l.key, id);
  }
  for (const ext of state.externals.values()) out.set(hostPrefix(ext.ip), engine.identityOfIp(ext.ip));
  for (const [key, pod] of state.pods) {
    const id = engine.identityOfPod(key);
    if (id !== undefined) for (const ip of podIps(pod)) out.set(hostPrefix(ip), id);
  }
  return out;
}
