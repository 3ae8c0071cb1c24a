import { join } from 'node:path';
import { bpf, BPF_CMD, BpfError, closeFd, ERRNO, NativeBuffer } from '../backend/bpf-syscall.js';
import { MapWalker } from '../backend/map-walk.js';
import type { IpAddress } from '../model/cidr.js';

/** struct ct_key in bpf/datapath.c: saddr[16], daddr[16], then ports, ifindex, protocol, direction. */
const KEY_BYTES = 44;
/** struct ct_entry: expires, flags_seen[2], closing[2], seen_non_syn, pad[3]. */
const VALUE_BYTES = 16;
const ADDR_BYTES = 16;

export function ctPinPath(pinRoot: string): string {
  return join(pinRoot, 'ct');
}

/** An address as ct_fill writes it: IPv4 in the first 4 bytes and zeros after, IPv6 whole. */
function keyAddress(a: IpAddress): Buffer {
  const out = Buffer.alloc(ADDR_BYTES);
  const n = a.family === 'ipv4' ? 4 : 16;
  for (let i = 0; i < n; i++) out[i] = Number((a.value >> BigInt((n - 1 - i) * 8)) & 0xffn);
  return out;
}

/**
 * Deletes every conntrack entry whose source or destination is one of `addresses`, in every
 * endpoint's flows: what Cilium does for an endpoint's addresses when it is removed and when a new
 * endpoint first regenerates (pkg/endpoint/bpf.go `scrubIPsInConntrackTableLocked`, a
 * `ctmap.GCFilter` with `MatchIPs`; called from `leaveLocked` and `runPreCompilationSteps`:
 * "any pre-existing connections using that IP are now invalid"). Without it, a flow tracked with
 * a deleted pod passes a new pod on its address as replies (attack finding 1010). An IPv4
 * address also matches the IPv6 address with the same first 4 bytes and zeros after (the key has
 * no family): an entry deleted too many is a reply decided by policy, never one let through.
 * Returns how many entries went.
 */
export function scrubConntrack(pinRoot: string, addresses: readonly IpAddress[]): number {
  const wanted = addresses.map(keyAddress);
  const matches = (k: Buffer): boolean => wanted.some((w) => w.equals(k.subarray(0, ADDR_BYTES)) || w.equals(k.subarray(ADDR_BYTES, 2 * ADDR_BYTES)));
  const attr = new NativeBuffer(128);
  const key = new NativeBuffer(KEY_BYTES);
  const path = new NativeBuffer(4096);
  const walker = new MapWalker(KEY_BYTES, VALUE_BYTES);
  let fd = -1;
  try {
    Buffer.from(`${ctPinPath(pinRoot)}\0`).copy(path.buf);
    attr.buf.writeBigUInt64LE(path.address, 0);
    const r = bpf(BPF_CMD.OBJ_GET, attr);
    if (r.ret < 0) throw new BpfError('OBJ_GET', r.errno, ctPinPath(pinRoot));
    fd = r.ret;
    // Every key is read before any is deleted.
    const doomed = walker.keysOf(fd, 'ct').filter(matches);
    for (const k of doomed) {
      k.copy(key.buf);
      attr.buf.fill(0);
      attr.buf.writeUInt32LE(fd, 0);
      attr.buf.writeBigUInt64LE(key.address, 8);
      const d = bpf(BPF_CMD.MAP_DELETE_ELEM, attr);
      // ENOENT: the entry expired into an LRU eviction meanwhile.
      if (d.ret < 0 && d.errno !== ERRNO.ENOENT) throw new BpfError('MAP_DELETE_ELEM', d.errno, 'ct');
    }
    return doomed.length;
  } finally {
    if (fd >= 0) closeFd(fd);
    for (const b of [attr, key, path]) b.free();
    walker.free();
  }
}
