import { DEFAULT_MAP_CAPACITY } from '../model/policy-map.js';
import { existsSync, mkdirSync, readdirSync, renameSync, rmdirSync, unlinkSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import type { MapDelta } from '../engine/events.js';
import type { Direction } from '../model/rules.js';
import { BackendError, checkCapacity, emptyWriteStats, MapBackend, MapRecord, WriteStats } from './backend.js';
import { bpf, BPF_CMD, BPF_F_NO_PREALLOC, BPF_F_RDONLY, BPF_MAP_TYPE_LPM_TRIE, BpfError, closeFd, ERRNO, FullTrieOverwrite, lpmFullTrieOverwrite, MapInfo, mapInfo, NativeBuffer } from './bpf-syscall.js';
import { MapWalker } from './map-walk.js';
import { PinDirError, PinDirLock, preparePinDir } from './pin-dir.js';
import { decodeKey, decodeValue, DecodedValue, encodeKey, encodePacketKey, encodeValue, KEY_SIZE, VALUE_SIZE } from './encoding.js';
import { ipcachePinPath } from './ipcache.js';

export { PinDirError } from './pin-dir.js';

/** Where the bpf backend pins endpoint maps unless told otherwise. */
export const DEFAULT_PIN_DIR = '/sys/fs/bpf/distill';
/** Entries per batched syscall. */
const BATCH_SIZE = 1024;
const PIN_PREFIX = 'pol_';

/** NAME_MAX: the longest file name bpffs (any Linux filesystem) takes. */
const NAME_MAX = 255;

/**
 * The pin's path under the pin dir. bpffs file names may not contain '/' or '.': everything
 * outside [a-z0-9-] is escaped as _xx. A name longer than NAME_MAX (a pod name may have 253
 * characters, each '.' escaped to three) is cut into NAME_MAX-byte directories ('+'-ended) and a last pin
 * file: one over-long pod name must not make its map impossible to pin (ENAMETOOLONG), which
 * refused every later transaction of the node and every reconcile.
 */
export function pinName(endpoint: string): string {
  const flat = PIN_PREFIX + endpoint.replace(/[^a-z0-9-]/g, (c) => `_${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
  // A directory's name ends in '+', which no escaped name has: no pin file stands where another pin needs a directory.
  const parts: string[] = [];
  let i = 0;
  for (; flat.length - i > NAME_MAX; i += NAME_MAX - 1) parts.push(`${flat.slice(i, i + NAME_MAX - 1)}+`);
  parts.push(flat.slice(i));
  return parts.join('/');
}

function endpointOfPinName(name: string): string | undefined {
  if (!name.startsWith(PIN_PREFIX)) return undefined;
  return name
    .slice(PIN_PREFIX.length)
    .replaceAll('+/', '')
    .replace(/_([0-9a-f]{2})/g, (_m, h: string) => String.fromCharCode(parseInt(h, 16)));
}

/** The pins under `dir` whose first component starts with the prefix, as paths relative to it (directories of cut names walked). */
function pinPaths(dir: string, rel = ''): string[] {
  const out: string[] = [];
  for (const e of readdirSync(join(dir, rel), { withFileTypes: true })) {
    if (rel === '' && !e.name.startsWith(PIN_PREFIX)) continue;
    const path = rel === '' ? e.name : `${rel}/${e.name}`;
    if (e.isDirectory()) out.push(...pinPaths(dir, path));
    else out.push(path);
  }
  return out;
}

/** Whether an element is exactly as `encodeKey`/`encodeValue` write the record it decodes to. */
function isCanonical(key: Buffer, value: Buffer): boolean {
  const k = decodeKey(key);
  return encodeKey(k).equals(key) && encodeValue(decodeValue(value).entry, k).equals(value);
}

/** bpf() commands that change maps or pins: refused by a read-only backend. */
const WRITE_CMDS: ReadonlySet<number> = new Set([BPF_CMD.MAP_CREATE, BPF_CMD.OBJ_PIN, BPF_CMD.MAP_UPDATE_ELEM, BPF_CMD.MAP_DELETE_ELEM, BPF_CMD.MAP_UPDATE_BATCH, BPF_CMD.MAP_DELETE_BATCH]);

/** Options of the bpf backend. */
export interface BpfBackendOptions {
  /** Entries per endpoint map (default 16,384, as Cilium's). */
  readonly capacity?: number;
  /** A directory on bpffs (default `DEFAULT_PIN_DIR`). */
  readonly pinDir?: string;
  /** Use BPF_MAP_UPDATE_BATCH / DELETE_BATCH (default: when the kernel supports them). */
  readonly batch?: boolean;
  /**
   * Only read the pinned maps: takes no writer lock, creates and mounts nothing, and refuses every
   * write. Without it the backend holds an exclusive lock on the pin dir until close().
   */
  readonly readOnly?: boolean;
  /**
   * Whether the kernel's LPM tries take an overwrite while full (`lpmFullTrieOverwrite`, probed
   * when absent; tests set it). 'needs-room': each map gets one element more than `capacity`.
   */
  readonly fullTrieOverwrite?: FullTrieOverwrite;
}

/**
 * Real kernel maps: one BPF_MAP_TYPE_LPM_TRIE per local endpoint, pinned under `pinDir` so they
 * outlive the process, written through the raw bpf() syscall (koffi, no native build).
 */
export class BpfBackend implements MapBackend {
  readonly kind = 'bpf' as const;
  readonly capacity: number;
  /** The pin dir as given, resolved to an absolute path without symlinks. */
  readonly pinDir: string;
  readonly readOnly: boolean;
  private readonly lock: PinDirLock | undefined;
  private batchSupported: boolean;
  private readonly fds = new Map<string, number>();
  /** Entries in each open map, so writes can be ordered for capacity. */
  private readonly sizes = new Map<string, number>();
  /**
   * Maps replaced at open that lost entries (`checkSpec`): deltas computed against what the map
   * held before would write a subset of the policy, so `apply` refuses them until a `dump` for a
   * diff (`reconcile`); a dump for anything else (applyChangeSet's write planning) does not count.
   */
  private readonly unread = new Set<string>();
  /**
   * Pins `endpoints` listed whose path is not the one `pinName` gives their name: an older layout's
   * (66f8b574 cut long names without the '+') or another writer's. No write reaches them, so a
   * program still loaded with one kept its allows for good (attack finding 2481): `remove` of the
   * name they read as disarms and unlinks them. A map of another encoding is only unlinked: no
   * program of bpf/datapath.c can hold it.
   */
  private readonly stray = new Map<string, string[]>();
  private readonly attr = new NativeBuffer(128);
  private readonly keys = new NativeBuffer(KEY_SIZE * BATCH_SIZE);
  private readonly values = new NativeBuffer(VALUE_SIZE * BATCH_SIZE);
  /** Whole-map reads (BPF_MAP_LOOKUP_BATCH, or key by key where the kernel lacks it); its bpf() calls count in `syscalls`. */
  private readonly walker = new MapWalker(KEY_SIZE, VALUE_SIZE, (cmd, attr) => {
    this.syscalls++;
    return bpf(cmd, attr);
  });
  private readonly path = new NativeBuffer(4096);
  /** bpf() calls made so far. */
  syscalls = 0;
  /** Set by `close`: the native buffers are freed and the pin-dir lock released (finding 1520). */
  private closed = false;
  private fullTrieOverwrite: FullTrieOverwrite | undefined;

  constructor(options: BpfBackendOptions = {}) {
    this.capacity = checkCapacity(options.capacity ?? DEFAULT_MAP_CAPACITY);
    this.batchSupported = options.batch ?? true;
    this.readOnly = options.readOnly ?? false;
    this.fullTrieOverwrite = options.fullTrieOverwrite;
    try {
      this.pinDir = preparePinDir(options.pinDir ?? DEFAULT_PIN_DIR, this.readOnly);
      this.lock = this.readOnly ? undefined : PinDirLock.acquire(this.pinDir);
    } catch (e) {
      this.freeBuffers();
      throw e;
    }
  }

  private refuseIfReadOnly(what: string): void {
    if (this.readOnly) throw new PinDirError(this.pinDir, `pin dir ${this.pinDir} was opened read-only: ${what} refused`);
  }

  /**
   * After `close` the native buffers are freed (a bpf() call would read its attributes from memory
   * the allocator may have handed out again) and another writer may hold the pin dir: refused.
   */
  private refuseIfClosed(what: string): void {
    if (this.closed) throw new PinDirError(this.pinDir, `the backend of ${this.pinDir} is closed: ${what} refused`);
  }

  private call(cmd: number, what: string): { ret: number; errno: number } {
    this.refuseIfClosed(what);
    if (WRITE_CMDS.has(cmd)) this.refuseIfReadOnly(`writing maps (${what})`);
    this.syscalls++;
    return bpf(cmd, this.attr);
  }

  private setPath(p: string): void {
    const bytes = Buffer.from(`${p}\0`, 'utf8');
    if (bytes.length > this.path.size) throw new Error(`pin path too long: ${p}`);
    bytes.copy(this.path.buf);
  }

  private pinPath(endpoint: string): string {
    return join(this.pinDir, pinName(endpoint));
  }

  endpoints(): string[] {
    this.refuseIfClosed('listing the maps');
    const out = new Set<string>();
    this.stray.clear();
    for (const path of pinPaths(this.pinDir)) {
      const ep = endpointOfPinName(path);
      if (ep === undefined) continue;
      out.add(ep);
      if (pinName(ep) !== path) this.stray.set(ep, [...(this.stray.get(ep) ?? []), path]);
    }
    return [...out].sort();
  }

  private removeStray(endpoint: string): void {
    for (const rel of this.stray.get(endpoint) ?? []) {
      const path = join(this.pinDir, rel);
      if (!existsSync(path)) continue;
      this.setPath(path);
      const a = this.attr.buf;
      a.fill(0);
      a.writeBigUInt64LE(this.path.address, 0);
      // A pin that is no map (another writer's program) cannot be disarmed, and must not stop every reconcile.
      const r = this.call(BPF_CMD.OBJ_GET, 'OBJ_GET');
      if (r.ret >= 0) {
        try {
          const info = mapInfo(r.ret);
          if ('type' in info && info.type === BPF_MAP_TYPE_LPM_TRIE && info.keySize === KEY_SIZE && info.valueSize === VALUE_SIZE) this.disarm(endpoint, r.ret, this.walker.entries(r.ret, endpoint));
        } finally {
          closeFd(r.ret);
        }
      }
      unlinkSync(path);
      this.removeEmptyDirs(rel);
    }
    this.stray.delete(endpoint);
  }

  /** A cut name's directories, innermost first, as far as they are empty. */
  private removeEmptyDirs(rel: string): void {
    for (let dir = dirname(rel); dir !== '.'; dir = dirname(dir)) {
      const abs = join(this.pinDir, dir);
      if (!existsSync(abs) || readdirSync(abs).length > 0) break;
      rmdirSync(abs);
    }
  }

  create(endpoint: string): void {
    this.refuseIfClosed(`creating the map of ${endpoint}`);
    this.refuseIfReadOnly(`creating the map of ${endpoint}`);
    if (existsSync(this.pinPath(endpoint))) this.remove(endpoint);
    const fd = this.createMap(endpoint);
    if (pinName(endpoint).includes('/')) mkdirSync(dirname(this.pinPath(endpoint)), { recursive: true });
    this.pin(fd, this.pinPath(endpoint));
    this.fds.set(endpoint, fd);
    this.sizes.set(endpoint, 0);
    this.unread.delete(endpoint);
  }

  /**
   * The spec every policy map has (Cilium's objCheck compares the same fields). The write plan
   * keeps a map within `capacity` entries at every step and counts an overwrite as needing no room;
   * a kernel whose full LPM trie refuses an overwrite (ENOSPC, before Linux 532d6b36b2bf) would
   * then refuse a tighten phase's allow-to-deny overwrite, and the deny-all fallback's, whenever the
   * map holds `capacity` entries, in every retry: the revoked allow stayed in force and no later
   * run converged (attack finding 2340). There the map gets one element of headroom, so it is never
   * full when distill writes it. A read-only backend creates nothing and takes every capacity.
   */
  private get spec(): MapInfo {
    if (!this.readOnly) this.fullTrieOverwrite ??= lpmFullTrieOverwrite();
    const maxEntries = this.capacity + (this.fullTrieOverwrite === 'needs-room' ? 1 : 0);
    return { type: BPF_MAP_TYPE_LPM_TRIE, keySize: KEY_SIZE, valueSize: VALUE_SIZE, maxEntries, flags: BPF_F_NO_PREALLOC };
  }

  private createMap(endpoint: string): number {
    const a = this.attr.buf;
    const spec = this.spec;
    a.fill(0);
    a.writeUInt32LE(spec.type, 0);
    a.writeUInt32LE(spec.keySize, 4);
    a.writeUInt32LE(spec.valueSize, 8);
    a.writeUInt32LE(spec.maxEntries, 12);
    a.writeUInt32LE(spec.flags, 16);
    a.write('distill_policy', 28, 'ascii');
    const r = this.call(BPF_CMD.MAP_CREATE, 'MAP_CREATE');
    if (r.ret < 0) throw new BpfError('MAP_CREATE', r.errno, endpoint);
    return r.ret;
  }

  /** Pins `fd` at `path`; closes it if that fails. */
  private pin(fd: number, path: string): void {
    this.setPath(path);
    const a = this.attr.buf;
    a.fill(0);
    a.writeBigUInt64LE(this.path.address, 0);
    a.writeUInt32LE(fd, 8);
    const p = this.call(BPF_CMD.OBJ_PIN, 'OBJ_PIN');
    if (p.ret < 0) {
      closeFd(fd);
      throw new BpfError('OBJ_PIN', p.errno, path);
    }
  }

  /**
   * A pinned map whose type, key or value size, max_entries or flags differ from the spec
   * (an older or foreign writer's) is replaced, as Cilium's OpenOrCreateMap does (objCheck,
   * pkg/bpf/bpf_linux.go: "Removing map to allow for property upgrade"); read-only, one of another
   * encoding is refused (its entries would be misread).
   * The new map is filled first and renamed over the old pin in one step. It holds the old
   * entries when their encoding is the same and all of them fit, else none: an empty map admits
   * nothing, so it is never looser than the old or the new policy (reconcile then fills it).
   * An endpoint program holds the map it was loaded with, not the pin, and keeps reading the old
   * map until it is reloaded (Cilium's too, until the endpoint regenerates), which no later write
   * reaches: the old map's allows and redirects are deleted, so it admits nothing (finding 1810).
   */
  private checkSpec(endpoint: string, fd: number, path: string): number {
    const info = mapInfo(fd);
    if (!('type' in info)) {
      closeFd(fd);
      throw new BpfError('OBJ_GET_INFO_BY_FD', info.errno, path);
    }
    const want = this.spec;
    const diff = (Object.keys(want) as (keyof MapInfo)[]).filter((k) => info[k] !== want[k]).map((k) => `${k} ${info[k]} (expected ${want[k]})`);
    if (diff.length === 0) return fd;
    const sameEncoding = info.type === want.type && info.keySize === want.keySize && info.valueSize === want.valueSize;
    if (this.readOnly && sameEncoding) return fd; // only its capacity or flags differ: it reads the same
    if (this.readOnly) {
      closeFd(fd);
      throw new BackendError(`the map pinned at ${path} is not a distill policy map: ${diff.join(', ')}`, endpoint, 0);
    }
    const old = sameEncoding ? this.walker.entries(fd, endpoint) : [];
    // An element distill never writes may decode to a live key (a direction byte of 2 read as ingress): nothing is copied then.
    const copy: MapDelta[] = old.length <= this.capacity && old.every(([k, v]) => isCanonical(k, v)) ? old.map(([k, v]) => ({ endpoint, op: 'upsert', key: decodeKey(k), entry: decodeValue(v).entry })) : [];
    let fresh: number | undefined;
    try {
      // Disarmed before the rename (review 1892): a failed disarm, or a crash after it, leaves the pin on
      // the old map, whose spec is still wrong, so the next open replaces it again.
      this.disarm(endpoint, fd, old);
      fresh = this.replaceMap(endpoint, path, copy);
      if (!sameEncoding || copy.length < old.length) this.unread.add(endpoint);
      return fresh;
    } catch (e) {
      if (fresh !== undefined) closeFd(fresh);
      throw e;
    } finally {
      closeFd(fd);
    }
  }

  /**
   * Deletes every allow and redirect of a map no writer will reach again (its pin now names
   * another), for the programs still loaded with it: they then admit nothing. Allows go first,
   * then redirects (one deleted earlier could expose an allow under it); denies stay, so no delete
   * unshadows an allow.
   */
  private disarm(endpoint: string, fd: number, entries: readonly [Buffer, Buffer][]): void {
    const values = entries.map(([k, v]) => [k, decodeValue(v).entry] as const);
    this.deleteRawKeys(endpoint, fd, values.filter(([, e]) => !e.deny && e.proxyPort === 0).map(([k]) => k));
    this.deleteRawKeys(endpoint, fd, values.filter(([, e]) => !e.deny && e.proxyPort !== 0).map(([k]) => k));
  }

  /** Deletes elements by their exact key bytes, in order: batched where the kernel can, else (or on any refusal) one by one. */
  private deleteRawKeys(endpoint: string, fd: number, keys: readonly Buffer[]): void {
    for (let i = 0; i < keys.length; i += BATCH_SIZE) {
      const chunk = keys.slice(i, i + BATCH_SIZE);
      if (this.batchSupported && this.deleteRawBatch(endpoint, fd, chunk)) continue;
      // Keys a refused batch deleted already are ENOENT now, which deleteRaw accepts.
      for (const k of chunk) this.deleteRaw(endpoint, fd, k);
    }
  }

  private deleteRawBatch(endpoint: string, fd: number, keys: readonly Buffer[]): boolean {
    keys.forEach((k, i) => k.copy(this.keys.buf, i * KEY_SIZE));
    const a = this.attr.buf;
    a.fill(0);
    a.writeBigUInt64LE(this.keys.address, 16);
    a.writeUInt32LE(keys.length, 32);
    a.writeUInt32LE(fd, 36);
    return this.call(BPF_CMD.MAP_DELETE_BATCH, endpoint).ret === 0;
  }

  /** A new map holding `copy`, renamed over the pin at `path` in one step; returns its fd. */
  private replaceMap(endpoint: string, path: string, copy: readonly MapDelta[]): number {
    const fresh = this.createMap(endpoint);
    const temp = join(this.pinDir, `tmp_${process.pid}_${PIN_PREFIX}replace`);
    if (existsSync(temp)) unlinkSync(temp);
    this.pin(fresh, temp);
    try {
      if (copy.length > 0 && this.writeSingles(fresh, copy, 0, copy.length) < copy.length) throw new BpfError('MAP_UPDATE_ELEM', this.lastErrno, `copying ${path} into its replacement`);
      renameSync(temp, path);
    } catch (e) {
      unlinkSync(temp);
      closeFd(fresh);
      throw e;
    }
    return fresh;
  }

  /** The map's fd, opening the pinned map on first use (as after a restart). */
  private fd(endpoint: string): number {
    this.refuseIfClosed(`using the map of ${endpoint}`);
    const known = this.fds.get(endpoint);
    if (known !== undefined) return known;
    const path = this.pinPath(endpoint);
    if (!existsSync(path)) throw new BackendError(`no policy map for endpoint ${endpoint} (${path})`, endpoint, 0);
    this.setPath(path);
    const a = this.attr.buf;
    a.fill(0);
    a.writeBigUInt64LE(this.path.address, 0);
    if (this.readOnly) a.writeUInt32LE(BPF_F_RDONLY, 12); // file_flags: the kernel refuses writes too
    const r = this.call(BPF_CMD.OBJ_GET, 'OBJ_GET');
    if (r.ret < 0) throw new BpfError('OBJ_GET', r.errno, path);
    const fd = this.checkSpec(endpoint, r.ret, path);
    this.fds.set(endpoint, fd);
    this.sizes.set(endpoint, this.walker.entries(fd, endpoint).length);
    return fd;
  }

  apply(endpoint: string, deltas: readonly MapDelta[]): WriteStats {
    const fd = this.fd(endpoint);
    if (this.unread.has(endpoint) && deltas.length > 0) {
      throw new BackendError(`policy map of ${endpoint} was replaced when opened and lost its entries (${this.pinPath(endpoint)} had another layout or more entries than fit): deltas against its old content would write a subset of the policy; reconcile it first (a dump for a diff)`, endpoint, 0);
    }
    const stats = emptyWriteStats();
    const before = this.syscalls;
    const ordered = deltas;
    let done = 0;
    let i = 0;
    while (i < ordered.length) {
      const op = (ordered[i] as MapDelta).op;
      let j = i;
      while (j < ordered.length && j - i < BATCH_SIZE && (ordered[j] as MapDelta).op === op) j++;
      const n = this.batchSupported ? this.writeBatch(endpoint, fd, ordered, i, j) : this.writeSingles(fd, ordered, i, j);
      let grown = 0;
      if (op === 'upsert') for (let k = i; k < i + n; k++) if ((ordered[k] as MapDelta).previous === undefined) grown++;
      this.sizes.set(endpoint, (this.sizes.get(endpoint) as number) + (op === 'upsert' ? grown : -n));
      if (op === 'upsert') stats.upserts += n;
      else stats.deletes += n;
      done += n;
      if (n < j - i) throw new BackendError(`policy map of ${endpoint}: ${op} stopped after ${done} of ${ordered.length} operations`, endpoint, done, this.lastErrno);
      i = j;
    }
    stats.syscalls = this.syscalls - before;
    return stats;
  }

  private lastErrno = 0;

  size(endpoint: string): number {
    this.fd(endpoint);
    return this.sizes.get(endpoint) as number;
  }

  /** Writes ops[from, to) in one batched call; returns how many took effect. */
  private writeBatch(endpoint: string, fd: number, ops: readonly MapDelta[], from: number, to: number): number {
    const op = (ops[from] as MapDelta).op;
    const keys = this.keys.buf;
    if (op === 'delete') {
      for (let k = from; k < to; k++) encodeKey((ops[k] as MapDelta).key, keys, (k - from) * KEY_SIZE);
    } else {
      const values = this.values.buf;
      for (let k = from; k < to; k++) {
        const d = ops[k] as MapDelta;
        encodeKey(d.key, keys, (k - from) * KEY_SIZE);
        encodeValue(d.entry, d.key, values, (k - from) * VALUE_SIZE);
      }
    }
    const a = this.attr.buf;
    a.fill(0);
    a.writeBigUInt64LE(this.keys.address, 16);
    if (op === 'upsert') a.writeBigUInt64LE(this.values.address, 24);
    a.writeUInt32LE(to - from, 32);
    a.writeUInt32LE(fd, 36);
    const r = this.call(op === 'upsert' ? BPF_CMD.MAP_UPDATE_BATCH : BPF_CMD.MAP_DELETE_BATCH, endpoint);
    if (r.ret === 0) return to - from;
    const processed = a.readUInt32LE(32);
    if (processed === 0 && (r.errno === ERRNO.EINVAL || r.errno === ERRNO.EOPNOTSUPP || r.errno === ERRNO.ENOTSUPP)) {
      // This kernel has no batch ops for LPM tries: fall back to one call per entry.
      this.batchSupported = false;
      return this.writeSingles(fd, ops, from, to);
    }
    // A batch refused for memory (ENOMEM) is finished one call per element, in the same order: a
    // batch's in-kernel allocations can fail where single calls succeed (a BPF_F_NO_PREALLOC trie's
    // bpf_mem_alloc cache is refilled between syscalls, not inside one: amazon-linux-2023 issue 1129,
    // 6.18, at the second element of every batch). Stopping there failed every retry at the same
    // element, and no transaction of more than one upsert ever completed (attack finding 2342).
    if (processed < to - from && r.errno === ERRNO.ENOMEM) return processed + this.writeSingles(fd, ops, from + processed, to);
    this.lastErrno = r.errno;
    return processed;
  }

  /** Writes ops[from, to) one call each; returns how many took effect. */
  private writeSingles(fd: number, ops: readonly MapDelta[], from: number, to: number): number {
    for (let k = from; k < to; k++) {
      const d = ops[k] as MapDelta;
      encodeKey(d.key, this.keys.buf, 0);
      if (d.op === 'upsert') encodeValue(d.entry, d.key, this.values.buf, 0);
      const a = this.attr.buf;
      a.fill(0);
      a.writeUInt32LE(fd, 0);
      a.writeBigUInt64LE(this.keys.address, 8);
      if (d.op === 'upsert') a.writeBigUInt64LE(this.values.address, 16);
      const r = this.call(d.op === 'upsert' ? BPF_CMD.MAP_UPDATE_ELEM : BPF_CMD.MAP_DELETE_ELEM, d.op);
      if (r.ret < 0) {
        this.lastErrno = r.errno;
        return k - from;
      }
    }
    return to - from;
  }

  dump(endpoint: string, purpose?: 'diff'): MapRecord[] {
    const fd = this.fd(endpoint);
    const raw = this.walker.entries(fd, endpoint);
    if (purpose !== 'diff') return this.decode(raw);
    this.unread.delete(endpoint);
    if (this.readOnly || raw.every(([k, v]) => isCanonical(k, v))) return this.decode(raw);
    // An element distill never writes (another writer's, e.g. a prefix length under 40 that covers every
    // identity, or forged value bits) decodes to some other record: the diff could neither see nor delete
    // it. Such a map is cleaned in place (the endpoint's program holds this map, not its pin): every allow
    // goes first, then every redirect (the trie walks a key's longer prefixes first, so in walk order a
    // redirect went before the allow under it, finding 1812), then the foreign denies, so no step
    // unshadows an allow; the diff then writes what the policy wants. Between the two the endpoint
    // admits less than either policy, never more.
    this.disarm(endpoint, fd, raw);
    const denies = raw.filter(([k, v]) => decodeValue(v).entry.deny && isCanonical(k, v));
    this.deleteRawKeys(endpoint, fd, raw.filter(([k, v]) => decodeValue(v).entry.deny && !isCanonical(k, v)).map(([k]) => k));
    this.sizes.set(endpoint, denies.length);
    return this.decode(denies);
  }

  /** Deletes one element by its exact key bytes (ENOENT: already gone). */
  private deleteRaw(endpoint: string, fd: number, key: Buffer): void {
    key.copy(this.keys.buf, 0);
    const a = this.attr.buf;
    a.fill(0);
    a.writeUInt32LE(fd, 0);
    a.writeBigUInt64LE(this.keys.address, 8);
    const r = this.call(BPF_CMD.MAP_DELETE_ELEM, endpoint);
    if (r.ret < 0 && r.errno !== ERRNO.ENOENT) throw new BpfError('MAP_DELETE_ELEM', r.errno, `removing an element distill never writes from ${this.pinPath(endpoint)}`);
  }

  private decode(raw: [Buffer, Buffer][]): MapRecord[] {
    return raw
      .sort(([a], [b]) => Buffer.compare(a, b))
      .map(([k, v]) => ({ key: decodeKey(k), entry: decodeValue(v).entry }));
  }

  /** A real kernel LPM lookup with a full-length key: the trie returns the longest match. */
  lookup(endpoint: string, identity: number, direction: Direction, protocol: number, port: number): DecodedValue | undefined {
    const fd = this.fd(endpoint);
    encodePacketKey(identity, direction, protocol, port, this.keys.buf);
    const a = this.attr.buf;
    a.fill(0);
    a.writeUInt32LE(fd, 0);
    a.writeBigUInt64LE(this.keys.address, 8);
    a.writeBigUInt64LE(this.values.address, 16);
    const r = this.call(BPF_CMD.MAP_LOOKUP_ELEM, 'MAP_LOOKUP_ELEM');
    if (r.ret < 0) {
      if (r.errno === ERRNO.ENOENT) return undefined;
      throw new BpfError('MAP_LOOKUP_ELEM', r.errno, endpoint);
    }
    return decodeValue(this.values.buf);
  }

  /**
   * Unpins the endpoint's map. A program loaded with it (an endpoint that left the engine while its
   * veth lives on: a force-deleted pod's sandbox, or one the next state adds back) keeps reading it,
   * and no write reaches it any more: it is disarmed first (finding 1811).
   */
  remove(endpoint: string): void {
    this.refuseIfClosed(`removing the map of ${endpoint}`);
    this.refuseIfReadOnly(`removing the map of ${endpoint}`);
    const path = this.pinPath(endpoint);
    // Through the fd it holds when the pin is gone already (unlinked by another hand: review 1893).
    if (this.fds.has(endpoint) || existsSync(path)) {
      const open = this.fd(endpoint);
      this.disarm(endpoint, open, this.walker.entries(open, endpoint));
    }
    const fd = this.fds.get(endpoint);
    if (fd !== undefined) closeFd(fd);
    this.fds.delete(endpoint);
    this.sizes.delete(endpoint);
    this.unread.delete(endpoint);
    if (existsSync(path)) unlinkSync(path);
    this.removeEmptyDirs(pinName(endpoint));
    this.removeStray(endpoint);
  }

  /** Closes the fds (maps stay pinned) and frees native memory; once (a second call does nothing), and every call after it is refused. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const fd of this.fds.values()) closeFd(fd);
    this.fds.clear();
    this.sizes.clear();
    this.lock?.release();
    this.freeBuffers();
  }

  private freeBuffers(): void {
    for (const b of [this.attr, this.keys, this.values, this.path]) b.free();
    this.walker.free();
  }
}

/**
 * Whether this process may create BPF maps: null if it can, else why not. Probes with a real
 * one-entry map, so CAP_BPF without root counts, and a kernel or seccomp refusal is reported.
 */
export function bpfUnavailableReason(): string | null {
  if (process.platform !== 'linux') return `bpf() needs Linux (this is ${process.platform})`;
  let attr: NativeBuffer | undefined;
  try {
    attr = new NativeBuffer(128);
    const a = attr.buf;
    a.writeUInt32LE(BPF_MAP_TYPE_LPM_TRIE, 0);
    a.writeUInt32LE(KEY_SIZE, 4);
    a.writeUInt32LE(VALUE_SIZE, 8);
    a.writeUInt32LE(1, 12);
    a.writeUInt32LE(BPF_F_NO_PREALLOC, 16);
    const r = bpf(BPF_CMD.MAP_CREATE, attr);
    if (r.ret >= 0) {
      closeFd(r.ret);
      return null;
    }
    return r.errno === ERRNO.EPERM ? 'bpf() is not permitted (needs root or CAP_BPF)' : `bpf(BPF_MAP_CREATE) fails with errno ${r.errno}`;
  } catch (e) {
    return `cannot call bpf(): ${(e as Error).message}`;
  } finally {
    attr?.free();
  }
}

/**
 * Removes distill's pinned maps from one pin dir, holding its lock: every policy map it recognises as its own
 * (`BpfBackend.remove`, disarmed first) and the ipcache tries beside them, nothing else. Returns what it removed.
 */
export function removeDistillMaps(pinDir: string): string[] {
  const removed: string[] = [];
  const backend = new BpfBackend({ pinDir });
  try {
    for (const ep of backend.endpoints()) {
      backend.remove(ep);
      removed.push(`${backend.pinDir}: ${ep}`);
    }
    // The kernel ipcache pinned beside them (bpf runs write it): else the dir cannot be removed.
    for (const family of ['ipv4', 'ipv6'] as const) {
      const path = ipcachePinPath(backend.pinDir, family);
      if (!existsSync(path)) continue;
      unlinkSync(path);
      removed.push(`${backend.pinDir}: ${basename(path)}`);
    }
  } finally {
    backend.close();
  }
  return removed;
}
