import { ChangeSet } from '../../src/engine/events.js';
import { cidrContainsIp, IpAddress, parseCidr } from '../../src/model/cidr.js';
import { LookupResult, policyKeyString } from '../../src/model/policy-map.js';

/** What a kernel holds after the change sets: one policy map per endpoint and the ipcache. */
export class Kernel {
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
  /** Longest-prefix match, world of the address family when nothing matches. */
  identityOf(ip: IpAddress): number {
    let best = -1;
    let id = ip.family === 'ipv4' ? 9 : 10;
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
