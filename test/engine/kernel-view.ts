import { ChangeSet } from '../../src/engine/events.js';
import { cidrContainsIp, IpAddress, parseCidr } from '../../src/model/cidr.js';
import { DEFAULT_STACK_MODE, type StackMode } from '../../src/model/identity.js';
import { LookupResult, policyKeyString } from '../../src/model/policy-map.js';

/** What a kernel holds after the change sets: one policy map per endpoint and the ipcache. */
export class Kernel {
  /**
   * `stack`: the engine's stack mode, which decides the world an unmatched address falls to (single, the
   * engine's default: 2; dual: 9 / 10), as the agent's /0 entries give it (backend/ipcache-content.ts).
   */
  constructor(private readonly stack: StackMode = DEFAULT_STACK_MODE) {}
  readonly maps = new Map<string, Map<string, LookupResult>>();
  readonly ipcache = new Map<string, number>();
  feed(cs: ChangeSet): void {
    for (const ep of cs.endpointsRemoved) this.maps.delete(ep);
    for (const ep of cs.endpointsAdded) this.maps.set(ep, new Map());
    for (const d of cs.deltas) {
      const m = this.maps.get(d.endpoint);
      if (!m) throw new Error(`delta for unknown endpoint ${d.endpoint}`);
      if (d.op === 'upsert') m.set(policyKeyString(d.key), { key: d.key, entry: d.entry });
      else m.delete(policyKeyString(d.key));
    }
    for (const d of cs.ipcache) {
      if (d.op === 'delete') this.ipcache.delete(d.prefix);
      else this.ipcache.set(d.prefix, d.identity);
    }
  }
  /** Longest-prefix match, the stack mode's world of the address family when nothing matches. */
  identityOf(ip: IpAddress): number {
    let best = -1;
    let id = this.stack === 'single' ? 2 : ip.family === 'ipv4' ? 9 : 10;
    for (const [prefix, identity] of this.ipcache) {
      const c = parseCidr(prefix);
      if (c.prefixLength > best && cidrContainsIp(c, ip)) {
        best = c.prefixLength;
        id = identity;
      }
    }
    return id;
  }
}
