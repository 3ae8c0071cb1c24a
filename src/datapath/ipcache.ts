import { join } from 'node:path';
import { bpf, BPF_CMD, BPF_F_NO_PREALLOC, BPF_MAP_TYPE_LPM_TRIE, closeFd, ERRNO, NativeBuffer } from '../backend/bpf-syscall.js';
import { BpfError } from '../backend/bpf.js';
import { Cidr, IpFamily, parseCidr } from '../model/cidr.js';
import type { IdentityId } from '../model/identity.js';

/** One ipcache change: a prefix now maps to `identity`, or (null) is gone. */
export interface IpcacheDelta {
  readonly cidr: string;
  readonly identity: IdentityId | null;
}

const ADDR_BYTES: Record<IpFamily, number> = { ipv4: 4, ipv6: 16 };
export const IPCACHE_CAPACITY = 65536;

/** The kernel key: u32 prefix length (host order), then the address in network order. */
export function encodeIpcacheKey(c: Cidr, out: Buffer): void {
  const n = ADDR_BYTES[c.family];
  out.writeUInt32LE(c.prefixLength, 0);
  let v = c.network;
  for (let i = n - 1; i >= 0; i--) {
    out[4 + i] = Number(v & 0xffn);
    v >>= 8n;
  }
}

/**
 * The datapath's ipcache: one LPM trie per family (address prefix → peer identity), pinned as
 * `ipcache4` / `ipcache6` in the given directory, which the endpoint programs reuse by name.
 * Addresses no entry covers are world to the program.
 */
export class IpcacheMaps {
  private readonly fds = new Map<IpFamily, number>();
  private readonly content = new Map<string, IdentityId>();
  private readonly attr = new NativeBuffer(128);
  private readonly key = new NativeBuffer(20);
  private readonly value = new NativeBuffer(4);
  private readonly path = new NativeBuffer(4096);

  constructor(readonly pinDir: string) {
    for (const family of ['ipv4', 'ipv6'] as const) this.fds.set(family, this.createPinned(family));
  }

  static pinPath(pinDir: string, family: IpFamily): string {
    return join(pinDir, family === 'ipv4' ? 'ipcache4' : 'ipcache6');
  }

  private createPinned(family: IpFamily): number {
    const a = this.attr.buf;
    a.fill(0);
    a.writeUInt32LE(BPF_MAP_TYPE_LPM_TRIE, 0);
    a.writeUInt32LE(4 + ADDR_BYTES[family], 4);
    a.writeUInt32LE(4, 8);
    a.writeUInt32LE(IPCACHE_CAPACITY, 12);
    a.writeUInt32LE(BPF_F_NO_PREALLOC, 16);
    a.write(family === 'ipv4' ? 'ipcache4' : 'ipcache6', 28, 'ascii');
    const r = bpf(BPF_CMD.MAP_CREATE, this.attr);
    if (r.ret < 0) throw new BpfError('MAP_CREATE', r.errno, `ipcache ${family}`);
    const path = IpcacheMaps.pinPath(this.pinDir, family);
    Buffer.from(`${path}\0`).copy(this.path.buf);
    a.fill(0);
    a.writeBigUInt64LE(this.path.address, 0);
    a.writeUInt32LE(r.ret, 8);
    const p = bpf(BPF_CMD.OBJ_PIN, this.attr);
    if (p.ret < 0) {
      closeFd(r.ret);
      throw new BpfError('OBJ_PIN', p.errno, path);
    }
    return r.ret;
  }

  private elem(cmd: number, c: Cidr, identity: number): void {
    const fd = this.fds.get(c.family);
    if (fd === undefined) throw new Error(`ipcache: no map for ${c.family}`);
    encodeIpcacheKey(c, this.key.buf);
    this.value.buf.writeUInt32LE(identity >>> 0, 0);
    const a = this.attr.buf;
    a.fill(0);
    a.writeUInt32LE(fd, 0);
    a.writeBigUInt64LE(this.key.address, 8);
    // DELETE_ELEM refuses an attr with anything past the key set.
    if (cmd === BPF_CMD.MAP_UPDATE_ELEM) a.writeBigUInt64LE(this.value.address, 16);
    const r = bpf(cmd, this.attr);
    if (r.ret < 0 && !(cmd === BPF_CMD.MAP_DELETE_ELEM && r.errno === ERRNO.ENOENT)) throw new BpfError(cmd === BPF_CMD.MAP_DELETE_ELEM ? 'MAP_DELETE_ELEM' : 'MAP_UPDATE_ELEM', r.errno, `ipcache ${c.text}`);
  }

  /** Applies changes in order; returns how many changed the map. */
  applyDelta(deltas: readonly IpcacheDelta[]): number {
    let changed = 0;
    for (const d of deltas) {
      const c = parseCidr(d.cidr);
      const old = this.content.get(c.text);
      if (d.identity === null) {
        if (old === undefined) continue;
        this.elem(BPF_CMD.MAP_DELETE_ELEM, c, 0);
        this.content.delete(c.text);
      } else {
        if (old === d.identity) continue;
        this.elem(BPF_CMD.MAP_UPDATE_ELEM, c, d.identity);
        this.content.set(c.text, d.identity);
      }
      changed++;
    }
    return changed;
  }

  /** Makes the maps hold exactly `wanted` (prefix text → identity): writes before deletes. */
  sync(wanted: ReadonlyMap<string, IdentityId>): number {
    const deltas: IpcacheDelta[] = [];
    const canonical = new Map<string, IdentityId>();
    for (const [cidr, id] of wanted) canonical.set(parseCidr(cidr).text, id);
    for (const [cidr, id] of canonical) deltas.push({ cidr, identity: id });
    for (const cidr of this.content.keys()) if (!canonical.has(cidr)) deltas.push({ cidr, identity: null });
    return this.applyDelta(deltas);
  }

  entries(): ReadonlyMap<string, IdentityId> {
    return this.content;
  }

  close(): void {
    for (const fd of this.fds.values()) closeFd(fd);
    this.fds.clear();
    for (const b of [this.attr, this.key, this.value, this.path]) b.free();
  }
}
