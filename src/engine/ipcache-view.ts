import type { Cidr, IpAddress } from '../model/cidr.js';
import type { IdentityId } from '../model/identity.js';
import type { IdentityTable } from './identities.js';
import type { NodeTable } from './node-table.js';
import type { PodTable } from './pod-table.js';

/**
 * The ipcache's current identity of a prefix, read from the stages that own its entries. A class,
 * not closures made per engine: every engine's calls then share one target, so optimised callers
 * (EngineContext.touchIpcacheHost, the commit's ipcacheDeltas) are not deoptimised when a second
 * engine (a rebuild's stages, another engine in the process) calls them (perf19c, "wrong call target").
 */
export class IpcacheView {
  constructor(
    private readonly nodes: NodeTable,
    private readonly pods: PodTable,
    private readonly identities: IdentityTable,
  ) {}

  /** An address's host prefix: a node's address, then pod IPs, the API server, learnt IPs, then CIDR identities. */
  hostAt(ip: IpAddress): IdentityId | undefined {
    const t = ip.text;
    const ids = this.identities;
    return (this.nodes.at(t) ?? this.pods.ipIdentityAt(t) ?? ids.ipcacheOfCidr(this.nodes.apiServerAt(t) ?? ids.fqdnHost(t) ?? ids.cidrHost(ip), ip) ?? ids.heldGroupEntry(ip))?.id;
  }

  /** An exact prefix shorter than a host prefix (CIDR identities). */
  prefixAt(prefix: Cidr): IdentityId | undefined {
    return (this.identities.ipcacheOfCidr(this.identities.cidrExact(prefix), prefix) ?? this.identities.heldGroupEntry(prefix))?.id;
  }
}
