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
  /** Address text → the node holding it and its identity. */
  private readonly ips = new Map<string, { readonly ip: IpAddress; readonly node: string; readonly identity: IdentityRecord }>();

  constructor(
    private readonly ctx: EngineContext,
    private readonly identities: IdentityTable,
  ) {}

  upsert(name: string, ips: readonly IpAddress[], local: boolean): void {
    if (this.nodes.has(name)) this.delete(name);
    const identity = this.identities.get(RESERVED_IDENTITIES[local ? 'host' : 'remote-node']);
    if (!identity) throw new Error('internal: reserved node identity missing');
    const rec: NodeRecord = { ips, local };
    for (const ip of ips) this.ctx.touchIpcacheHost(ip);
    this.nodes.set(name, rec);
    for (const ip of ips) this.ips.set(ip.text, { ip, node: name, identity });
    this.ctx.onUndo(() => this.forget(name, rec));
  }

  delete(name: string): void {
    const rec = this.nodes.get(name);
    if (!rec) throw new Error(`internal: node "${name}" vanished`);
    for (const ip of rec.ips) this.ctx.touchIpcacheHost(ip);
    this.forget(name, rec);
    this.ctx.onUndo(() => this.upsert(name, rec.ips, rec.local));
  }

  private forget(name: string, rec: NodeRecord): void {
    this.nodes.delete(name);
    for (const ip of rec.ips) if (this.ips.get(ip.text)?.node === name) this.ips.delete(ip.text);
  }

  /** The identity of a node's address, if some node holds it. */
  at(ipText: string): IdentityRecord | undefined {
    return this.ips.get(ipText)?.identity;
  }

  *entries(): IterableIterator<{ ip: IpAddress; identity: IdentityRecord }> {
    for (const { ip, identity } of this.ips.values()) yield { ip, identity };
  }
}
