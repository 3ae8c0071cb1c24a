import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { IpcacheDelta } from '../engine/events.js';
import { Cidr, cidrContainsCidr, hostCidr, IpAddress, IpFamily, nthAddress, parseCidr } from '../model/cidr.js';
import type { IdentityId } from '../model/identity.js';
import { LocalAddresses, TRANSITION_IDENTITY } from './ipcache-content.js';
import { bpf, BPF_CMD, BPF_F_NO_PREALLOC, BPF_F_WRONLY_PROG, BPF_MAP_TYPE_LPM_TRIE, BpfError, closeFd, ERRNO, mapInfo, NativeBuffer } from './bpf-syscall.js';
import { MapWalker } from './map-walk.js';

const ADDR_BYTES: Record<IpFamily, number> = { ipv4: 4, ipv6: 16 };
/** Entries per family (pod IPs, CIDR identities and learnt FQDN IPs). */
const IPCACHE_CAPACITY = 1 << 20;

/** `ipcache4` / `ipcache6` in the pin dir, beside the policy maps (the datapath helper's layout). */
export function ipcachePinPath(pinDir: string, family: IpFamily): string {
  return join(pinDir, family === 'ipv4' ? 'ipcache4' : 'ipcache6');
}

/** The kernel key: u32 prefix length (host order), then the address in network order. */
export function encodeIpcacheKey(c: Cidr, out: Buffer): void {
  out.fill(0);
  out.writeUInt32LE(c.prefixLength, 0);
  let v = c.network;
  for (let i = ADDR_BYTES[c.family] - 1; i >= 0; i--) {
    out[4 + i] = Number(v & 0xffn);
    v >>= 8n;
  }
}

/** The prefix a kernel key stands for (the inverse of `encodeIpcacheKey`). */
export function decodeIpcacheKey(family: IpFamily, key: Buffer): Cidr {
  const prefixLength = key.readUInt32LE(0);
  let network = 0n;
  for (let i = 0; i < ADDR_BYTES[family]; i++) network = (network << 8n) | BigInt(key[4 + i]!);
  const ip = nthAddress({ family, network: 0n, prefixLength: 0, text: '' }, network);
  return parseCidr(`${ip.text}/${prefixLength}`);
}

const prefixLength = (d: IpcacheDelta): number => Number(d.prefix.slice(d.prefix.lastIndexOf('/') + 1));
const isIpv6 = (d: IpcacheDelta): boolean => d.prefix.includes(':');

/**
 * What the transition barrier guards: the host prefixes (`10.244.0.2/32`) of every address a local
 * endpoint held before the write or holds after it (`localEndpointAddresses`), and the ipcache as
 * the write finds it (prefix text → identity). `'all'`: every address (a writer that does not know
 * its endpoints).
 */
export type BarrierGuard = 'all' | { readonly addresses: ReadonlySet<string>; readonly held: ReadonlyMap<string, IdentityId> };

/**
 * The deltas the barrier takes through the transition identity. A flow's verdict on this node is
 * read at a local endpoint's program, which reads the ipcache once, for the peer (bpf/datapath.c
 * `enforce`): a pair of half-moved addresses meets two such reads only when both ends are local
 * endpoints'. So a family needs the barrier only when two or more guarded addresses may change
 * identity, and then only for those addresses' own host prefix if a delta has it (at the transition
 * identity it hides every broader prefix), else for every delta covering them (a /24 changing under a
 * pod whose /32 is new or gone). An address is left out when its host prefix is in the ipcache
 * before and no delta touches it (it shields the address from every broader delta); any other
 * guarded address a delta covers counts as moving.
 */
function barredDeltas(deltas: readonly IpcacheDelta[], guard: BarrierGuard): ReadonlySet<IpcacheDelta> {
  const byFamily = new Map<boolean, IpcacheDelta[]>();
  if (guard === 'all') {
    for (const d of deltas) byFamily.set(isIpv6(d), [...(byFamily.get(isIpv6(d)) ?? []), d]);
    return new Set([...byFamily.values()].filter((l) => l.length > 1).flat());
  }
  if (guard.addresses.size === 0 || deltas.length < 2) return new Set();
  const host = new Map<string, IpcacheDelta>();
  const broader: { delta: IpcacheDelta; cidr: Cidr }[] = [];
  // The engine's prefixes are canonical text, as the guard's are: host prefixes compare as text.
  for (const d of deltas) {
    if (prefixLength(d) === (isIpv6(d) ? 128 : 32)) host.set(d.prefix, d);
    else broader.push({ delta: d, cidr: parseCidr(d.prefix) });
  }
  const moving = new Map<boolean, { count: number; covering: Set<IpcacheDelta> }>();
  for (const address of guard.addresses) {
    const own = host.get(address);
    if (!own && (broader.length === 0 || guard.held.has(address))) continue;
    // Its own host prefix at the transition identity hides every broader one: that write alone bars it.
    const covering = own ? [own] : broader.filter((b) => cidrContainsCidr(b.cidr, parseCidr(address))).map((b) => b.delta);
    if (covering.length === 0) continue;
    const v6 = address.includes(':');
    const m = moving.get(v6) ?? { count: 0, covering: new Set<IpcacheDelta>() };
    moving.set(v6, m);
    m.count++;
    for (const d of covering) m.covering.add(d);
  }
  return new Set([...moving.values()].filter((m) => m.count > 1).flatMap((m) => [...m.covering]));
}

/**
 * The writes that take the kernel ipcache through a change set's deltas, so that after every
 * single write (and so after a write that fails part-way) no flow meets an address pair the old
 * and the new state do not both hold.
 *
 * The barrier (finding 1120): the deltas `barredDeltas` picks are first all written to
 * `TRANSITION_IDENTITY`, which the datapath drops in both directions, and only then, with the
 * others, to their final values (or deleted). Every address is at its old, its new or the
 * transition identity at every step, and every moving guarded address at its old or the
 * transition one in the first pass and at the transition or its new one in the second: never a
 * pair of one local endpoint's new identity and another's old one, which the maps between their
 * tighten and loosen phases (safe for the whole old and the whole new ipcache, not for a mix) could
 * allow although both states deny it. The proof is in docs/attack-findings-20b.md (1420); a flow
 * with at most one local end reads one address, and old or new is safe for it.
 *
 * Within the second pass, upserts (new keys and overwrites) go longest prefix first, then deletes
 * shortest prefix first: that keeps every address at its old or its new identity (attack finding
 * 5's 10.0.0.10/32 and 10.0.0.8/29).
 */
export function ipcacheWriteOrder(deltas: readonly IpcacheDelta[], guard: BarrierGuard = 'all'): IpcacheDelta[] {
  const upserts = deltas.filter((d) => d.op === 'upsert').sort((a, b) => prefixLength(b) - prefixLength(a));
  const deletes = deltas.filter((d) => d.op === 'delete').sort((a, b) => prefixLength(a) - prefixLength(b));
  const final = [...upserts, ...deletes];
  const barred = barredDeltas(final, guard);
  if (barred.size === 0) return final;
  const barrier: IpcacheDelta[] = [];
  const after: IpcacheDelta[] = [];
  for (const d of final) {
    if (!barred.has(d)) {
      after.push(d);
      continue;
    }
    const was = d.op === 'delete' ? d.identity : d.previous;
    // Left at the transition identity by a writer that stopped part-way: already barred.
    if (was !== TRANSITION_IDENTITY) barrier.push({ op: 'upsert', prefix: d.prefix, identity: TRANSITION_IDENTITY, ...(was === undefined ? {} : { previous: was }) });
    after.push(d.op === 'delete' ? { ...d, identity: TRANSITION_IDENTITY } : { ...d, previous: TRANSITION_IDENTITY });
  }
  return [...barrier, ...after];
}

// Most writes move no local endpoint: the engine's memo hands the same set again, and it is not copied.
const union = <T>(a: ReadonlySet<T>, b: ReadonlySet<T>): ReadonlySet<T> => {
  if (a === b) return a;
  const out = new Set(a);
  for (const x of b) out.add(x);
  return out;
};

/**
 * `ipcacheWriteOrder` for one writer's successive writes: it remembers the local endpoints'
 * addresses after each write (`LocalAddresses.all`), which are those the next write's endpoints
 * held before it. `KernelIpcache` holds one; the write-order tests drive one on an ipcache model.
 */
export class BarrierMemory {
  /** Unknown (undefined) until this writer's first complete write with them: another writer's endpoints. */
  private before: ReadonlySet<string> | undefined;

  /**
   * The writes for `deltas` on an ipcache holding `held` (prefix text → identity); `local`: the
   * local endpoints' addresses after them. Guarded: the addresses endpoints held before and those
   * of the endpoints that keep their maps. Every address when the caller does not say, or when
   * maps are kept whose endpoints' earlier addresses this writer does not know (a restart).
   */
  order(deltas: readonly IpcacheDelta[], held: ReadonlyMap<string, IdentityId>, local: LocalAddresses | undefined): IpcacheDelta[] {
    const before = this.before;
    if (deltas.length === 0) return [];
    // Until `written`, the endpoints' addresses are those before or after this write (it may stop part-way).
    this.before = before && local ? union(before, local.all) : undefined;
    if (!local || (before === undefined && local.kept.size > 0)) return ipcacheWriteOrder(deltas, 'all');
    const addresses = deltas.length < 2 || before === undefined ? local.kept : union(before, local.kept);
    return ipcacheWriteOrder(deltas, { addresses, held });
  }

  /** The writes `order` gave were all made. */
  written(local: LocalAddresses | undefined): void {
    this.before = local?.all;
  }
}

/**
 * The ipcache in the kernel: one LPM trie per family (prefix → peer identity, u32), pinned beside
 * the policy maps and reopened if already pinned (a restart). It is written from
 * `ChangeSet.ipcache`, and `lookup` asks the kernel's longest-prefix match, as the datapath does
 * before it looks the identity up in the endpoint's policy map.
 */
/**
 * A pinned ipcache of another type or key/value size is refused: its entries would be misread, and
 * replacing it with an empty map would make every address world (fail-open). Another max_entries
 * is kept (a smaller one refuses new prefixes: the write order leaves every address its old, the
 * transition or its new identity, never old and new mixed). One the datapath may not read
 * (BPF_F_WRONLY_PROG, include/uapi/linux/bpf.h) is refused: distill filled it while no program
 * could be verified against it (finding 2341). BPF_F_RDONLY and BPF_F_WRONLY never show here: they
 * are the creating fd's, not the map's (kernel/bpf/syscall.c `bpf_map_flags_retain_permanent`).
 */
function checkIpcacheSpec(fd: number, family: IpFamily, path: string): number {
  const info = mapInfo(fd);
  const want = { type: BPF_MAP_TYPE_LPM_TRIE, keySize: 4 + ADDR_BYTES[family], valueSize: 4 };
  const diff = 'type' in info ? (Object.keys(want) as (keyof typeof want)[]).filter((k) => info[k] !== want[k]).map((k) => `${k} ${info[k]} (expected ${want[k]})`) : [];
  if ('type' in info && (info.flags & BPF_F_WRONLY_PROG) !== 0) diff.push(`flags 0x${info.flags.toString(16)} (BPF_F_WRONLY_PROG: programs may not read it)`);
  if ('type' in info && diff.length === 0) return fd;
  closeFd(fd);
  if (!('type' in info)) throw new BpfError('OBJ_GET_INFO_BY_FD', info.errno, path);
  throw new Error(`the map pinned at ${path} is not a distill ipcache: ${diff.join(', ')}; remove it (or start with a fresh ipcache)`);
}

export class KernelIpcache {
  private readonly fds = new Map<IpFamily, number>();
  /** What the maps hold (prefix text → identity), read back from the kernel at open and by `sync`, which diffs against it. */
  private readonly content = new Map<string, IdentityId>();
  private readonly barrier = new BarrierMemory();
  private readonly attr = new NativeBuffer(128);
  private readonly key = new NativeBuffer(20);
  private readonly value = new NativeBuffer(4);
  private readonly path = new NativeBuffer(4096);
  private closed = false;

  constructor(readonly pinDir: string) {
    try {
      for (const family of ['ipv4', 'ipv6'] as const) this.fds.set(family, this.open(family));
      // A restart: what an earlier writer pinned is what `sync` diffs against (stale entries go, unchanged ones stay).
      this.reload();
    } catch (e) {
      this.close();
      throw e;
    }
  }

  /** An empty ipcache in `pinDir` (a fresh run: whatever an earlier run pinned there goes). */
  static fresh(pinDir: string): KernelIpcache {
    for (const family of ['ipv4', 'ipv6'] as const) rmSync(ipcachePinPath(pinDir, family), { force: true });
    return new KernelIpcache(pinDir);
  }

  private setPath(p: string): void {
    this.path.buf.fill(0);
    Buffer.from(`${p}\0`).copy(this.path.buf);
  }

  private open(family: IpFamily): number {
    const path = ipcachePinPath(this.pinDir, family);
    const a = this.attr.buf;
    this.setPath(path);
    if (existsSync(path)) {
      a.fill(0);
      a.writeBigUInt64LE(this.path.address, 0);
      const r = bpf(BPF_CMD.OBJ_GET, this.attr);
      if (r.ret < 0) throw new BpfError('OBJ_GET', r.errno, path);
      return checkIpcacheSpec(r.ret, family, path);
    }
    a.fill(0);
    a.writeUInt32LE(BPF_MAP_TYPE_LPM_TRIE, 0);
    a.writeUInt32LE(4 + ADDR_BYTES[family], 4);
    a.writeUInt32LE(4, 8);
    a.writeUInt32LE(IPCACHE_CAPACITY, 12);
    a.writeUInt32LE(BPF_F_NO_PREALLOC, 16);
    a.write(family === 'ipv4' ? 'ipcache4' : 'ipcache6', 28, 'ascii');
    const r = bpf(BPF_CMD.MAP_CREATE, this.attr);
    if (r.ret < 0) throw new BpfError('MAP_CREATE', r.errno, `ipcache ${family}`);
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

  private elem(cmd: number, c: Cidr, identity: number): { ret: number; errno: number } {
    if (this.closed) throw new Error(`ipcache of ${this.pinDir} is closed`);
    const fd = this.fds.get(c.family);
    if (fd === undefined) throw new Error(`ipcache: no map for ${c.family} (closed?)`);
    encodeIpcacheKey(c, this.key.buf);
    this.value.buf.writeUInt32LE(identity >>> 0, 0);
    const a = this.attr.buf;
    a.fill(0);
    a.writeUInt32LE(fd, 0);
    a.writeBigUInt64LE(this.key.address, 8);
    // DELETE_ELEM refuses an attr with anything past the key set.
    if (cmd !== BPF_CMD.MAP_DELETE_ELEM) a.writeBigUInt64LE(this.value.address, 16);
    return bpf(cmd, this.attr);
  }

  private reload(): void {
    this.content.clear();
    for (const family of ['ipv4', 'ipv6'] as const) for (const [prefix, id] of this.read(family)) this.content.set(prefix, id);
  }

  /** Every entry of one family's trie, as the kernel holds it. */
  private read(family: IpFamily): Map<string, IdentityId> {
    const walker = new MapWalker(4 + ADDR_BYTES[family], 4);
    try {
      const out = new Map<string, IdentityId>();
      for (const [k, v] of walker.entries(this.fds.get(family)!, ipcachePinPath(this.pinDir, family))) out.set(decodeIpcacheKey(family, k).text, v.readUInt32LE(0));
      return out;
    } finally {
      walker.free();
    }
  }

  /**
   * Writes one change set's ipcache deltas, in `ipcacheWriteOrder`; `local`: the local endpoints'
   * addresses after it (without them every address is guarded). Returns the writes made.
   */
  apply(deltas: readonly IpcacheDelta[], local?: LocalAddresses): number {
    const writes = this.barrier.order(deltas, this.content, local);
    this.write(writes);
    this.barrier.written(local);
    return writes.length;
  }

  private write(writes: readonly IpcacheDelta[]): void {
    for (const d of writes) {
      const c = parseCidr(d.prefix);
      const cmd = d.op === 'upsert' ? BPF_CMD.MAP_UPDATE_ELEM : BPF_CMD.MAP_DELETE_ELEM;
      const r = this.elem(cmd, c, d.identity);
      if (r.ret < 0 && !(cmd === BPF_CMD.MAP_DELETE_ELEM && r.errno === ERRNO.ENOENT)) {
        throw new BpfError(cmd === BPF_CMD.MAP_DELETE_ELEM ? 'MAP_DELETE_ELEM' : 'MAP_UPDATE_ELEM', r.errno, `ipcache ${c.text}`);
      }
      if (d.op === 'upsert') this.content.set(c.text, d.identity);
      else this.content.delete(c.text);
    }
  }

  /**
   * Makes the maps hold exactly `wanted` (prefix → identity), writing only the difference with
   * what they hold (read back from the kernel, so a restart with nothing changed writes nothing), in
   * `ipcacheWriteOrder` (`local` as for `apply`). Returns how many entries changed.
   */
  sync(wanted: ReadonlyMap<string, IdentityId>, local?: LocalAddresses): number {
    if (this.closed) throw new Error(`ipcache of ${this.pinDir} is closed`);
    // Read again, not the content as written: another writer's entries (a 0.0.0.0/0 giving world a pod's identity) go too.
    this.reload();
    const deltas: IpcacheDelta[] = [];
    const canonical = new Map<string, IdentityId>();
    for (const [prefix, id] of wanted) canonical.set(parseCidr(prefix).text, id);
    for (const [prefix, id] of canonical) {
      const old = this.content.get(prefix);
      if (old !== id) deltas.push({ op: 'upsert', prefix, identity: id, ...(old === undefined ? {} : { previous: old }) });
    }
    for (const [prefix, id] of this.content) if (!canonical.has(prefix)) deltas.push({ op: 'delete', prefix, identity: id });
    this.apply(deltas, local);
    return deltas.length;
  }

  /** What the maps hold (read back at open and at each sync, then as written). */
  entries(): ReadonlyMap<string, IdentityId> {
    return this.content;
  }

  /** The kernel's longest-prefix match for an address; undefined: no entry covers it (world). */
  lookup(ip: IpAddress): IdentityId | undefined {
    const r = this.elem(BPF_CMD.MAP_LOOKUP_ELEM, hostCidr(ip), 0);
    if (r.ret < 0) {
      if (r.errno === ERRNO.ENOENT) return undefined;
      throw new BpfError('MAP_LOOKUP_ELEM', r.errno, `ipcache ${ip.text}`);
    }
    return this.value.buf.readUInt32LE(0);
  }

  /** Closes the fds and frees the native buffers, once: a second call would free them again (finding 1520). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const fd of this.fds.values()) closeFd(fd);
    this.fds.clear();
    for (const b of [this.attr, this.key, this.value, this.path]) b.free();
  }
}
