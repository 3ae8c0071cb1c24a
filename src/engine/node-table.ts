import type { IpAddress } from '../model/cidr.js';
import { NODE_ROLE_ORDER, nodeAddresses, NodeAddressRole, NodeEndpointAddresses } from '../model/cluster.js';
import { RESERVED_IDENTITIES } from '../model/identity.js';
import type { EngineContext } from './context.js';
import type { IdentityRecord, IdentityTable } from './identities.js';

interface NodeRecord extends NodeEndpointAddresses {
  readonly ips: readonly IpAddress[];
  readonly local: boolean;
}

const rank = (role: NodeAddressRole): number => NODE_ROLE_ORDER.indexOf(role);

/**
 * Cluster nodes and their addresses: each address is an ipcache host entry with the reserved
 * identity `host` (the agent's own node) or `remote-node` (Cilium's node manager,
 * pkg/node/manager/policy.go updatePolicy.Upsert), and its health endpoint's and Ingress's
 * addresses `health` and `ingress` (same function). Reserved identities always exist and every
 * selector already knows them, so a node changes the ipcache only, never a policy map.
 */
export class NodeTable {
  private readonly nodes = new Map<string, NodeRecord>();
  /** Address text → the address and the nodes holding it, with the role each gives it (two Node objects may list one address). */
  private readonly ips = new Map<string, { readonly ip: IpAddress; readonly holders: Map<string, NodeAddressRole> }>();

  constructor(
    private readonly ctx: EngineContext,
    private readonly identities: IdentityTable,
  ) {}

  upsert(name: string, ips: readonly IpAddress[], local: boolean, endpoints: NodeEndpointAddresses = {}): void {
    if (this.nodes.has(name)) this.delete(name);
    const rec: NodeRecord = { ips, local, ...endpoints };
    for (const { ip } of nodeAddresses(rec)) this.ctx.touchIpcacheHost(ip);
    this.add(name, rec);
    this.ctx.onUndo(() => this.forget(name, rec));
  }

  delete(name: string): void {
    const rec = this.nodes.get(name);
    if (!rec) throw new Error(`internal: node "${name}" vanished`);
    for (const { ip } of nodeAddresses(rec)) this.ctx.touchIpcacheHost(ip);
    this.forget(name, rec);
    this.ctx.onUndo(() => this.add(name, rec));
  }

  private add(name: string, rec: NodeRecord): void {
    this.nodes.set(name, rec);
    for (const { ip, role } of nodeAddresses(rec)) {
      let e = this.ips.get(ip.text);
      if (!e) this.ips.set(ip.text, (e = { ip, holders: new Map() }));
      // One node listing an address twice: its own address before its health, then Ingress address.
      const held = e.holders.get(name);
      if (held === undefined || rank(role) < rank(held)) e.holders.set(name, role);
    }
  }

  private forget(name: string, rec: NodeRecord): void {
    this.nodes.delete(name);
    for (const { ip } of nodeAddresses(rec)) {
      const e = this.ips.get(ip.text);
      if (e?.holders.delete(name) && e.holders.size === 0) this.ips.delete(ip.text);
    }
  }

  /** The identity of a node's address, if some node holds it: of several holders' roles, the first in NODE_ROLE_ORDER. */
  at(ipText: string): IdentityRecord | undefined {
    const e = this.ips.get(ipText);
    return e && this.identityOf(e.holders);
  }

  private identityOf(holders: ReadonlyMap<string, NodeAddressRole>): IdentityRecord {
    const role = NODE_ROLE_ORDER[Math.min(...[...holders.values()].map(rank))];
    const identity = role === undefined ? undefined : this.identities.get(RESERVED_IDENTITIES[role]);
    if (!identity) throw new Error(`internal: reserved node identity ${String(role)} missing`);
    return identity;
  }

  *entries(): IterableIterator<{ ip: IpAddress; identity: IdentityRecord }> {
    for (const { ip, holders } of this.ips.values()) yield { ip, identity: this.identityOf(holders) };
  }
}
