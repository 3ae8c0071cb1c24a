import type { IpAddress } from '../model/cidr.js';
import { RESERVED_IDENTITIES } from '../model/identity.js';
import type { EngineContext } from './context.js';
import type { IdentityRecord, IdentityTable } from './identities.js';

interface NodeRecord {
  readonly ips: readonly IpAddress[];
  readonly local: boolean;
}

/**
 * Cluster nodes and their addresses: each address is an ipcache host entry with the reserved
 * identity `host` (the agent's own node) or `remote-node` (Cilium's node manager,
 * pkg/node/manager/manager.go upsertIntoIDMD). Reserved identities always exist and every
 * selector already knows them, so a node changes the ipcache only, never a policy map.
 */
export class NodeTable {
  private readonly nodes = new Map<string, NodeRecord>();
  /** Address text → the address and the nodes holding it (two Node objects may list one address). */
  private readonly ips = new Map<string, { readonly ip: IpAddress; readonly holders: Map<string, boolean> }>();

  constructor(
    private readonly ctx: EngineContext,
    private readonly identities: IdentityTable,
  ) {}

  upsert(name: string, ips: readonly IpAddress[], local: boolean): void {
    if (this.nodes.has(name)) this.delete(name);
    const rec: NodeRecord = { ips, local };
    for (const ip of ips) this.ctx.touchIpcacheHost(ip);
    this.add(name, rec);
    this.ctx.onUndo(() => this.forget(name, rec));
  }

  delete(name: string): void {
    const rec = this.nodes.get(name);
    if (!rec) throw new Error(`internal: node "${name}" vanished`);
    for (const ip of rec.ips) this.ctx.touchIpcacheHost(ip);
    this.forget(name, rec);
    this.ctx.onUndo(() => this.add(name, rec));
  }

  private add(name: string, rec: NodeRecord): void {
    this.nodes.set(name, rec);
    for (const ip of rec.ips) {
      let e = this.ips.get(ip.text);
      if (!e) this.ips.set(ip.text, (e = { ip, holders: new Map() }));
      e.holders.set(name, rec.local);
    }
  }

  private forget(name: string, rec: NodeRecord): void {
    this.nodes.delete(name);
    for (const ip of rec.ips) {
      const e = this.ips.get(ip.text);
      if (e?.holders.delete(name) && e.holders.size === 0) this.ips.delete(ip.text);
    }
  }

  /** The identity of a node's address, if some node holds it: host if the agent's own node does, else remote-node. */
  at(ipText: string): IdentityRecord | undefined {
    const e = this.ips.get(ipText);
    return e && this.identityOf(e.holders);
  }

  private identityOf(holders: ReadonlyMap<string, boolean>): IdentityRecord {
    const local = [...holders.values()].some((l) => l);
    const identity = this.identities.get(RESERVED_IDENTITIES[local ? 'host' : 'remote-node']);
    if (!identity) throw new Error('internal: reserved node identity missing');
    return identity;
  }

  *entries(): IterableIterator<{ ip: IpAddress; identity: IdentityRecord }> {
    for (const { ip, holders } of this.ips.values()) yield { ip, identity: this.identityOf(holders) };
  }
}
