import koffi from 'koffi';
import { arch } from 'node:os';

/** bpf(2) commands used here (include/uapi/linux/bpf.h). */
export const BPF_CMD = {
  MAP_CREATE: 0,
  MAP_LOOKUP_ELEM: 1,
  MAP_UPDATE_ELEM: 2,
  MAP_DELETE_ELEM: 3,
  MAP_GET_NEXT_KEY: 4,
  OBJ_PIN: 6,
  OBJ_GET: 7,
  OBJ_GET_INFO_BY_FD: 15,
  MAP_LOOKUP_BATCH: 24,
  MAP_UPDATE_BATCH: 26,
  MAP_DELETE_BATCH: 27,
} as const;

export const BPF_MAP_TYPE_LPM_TRIE = 11;
export const BPF_F_NO_PREALLOC = 1;
/** file_flags of BPF_OBJ_GET: a read-only fd. */
export const BPF_F_RDONLY = 1 << 3;
/** map_flags: programs may not read the map. */
export const BPF_F_WRONLY_PROG = 1 << 8;
export const ERRNO = { EPERM: 1, ENOENT: 2, E2BIG: 7, EBADF: 9, EAGAIN: 11, ENOMEM: 12, EEXIST: 17, EINVAL: 22, ENOSPC: 28, EOPNOTSUPP: 95, ENOTSUPP: 524 } as const;

/** An opaque native pointer handed out by koffi. */
type NativePointer = ReturnType<typeof koffi.alloc>;

interface Libc {
  syscall: (nr: number, cmd: number, attr: NativePointer, size: number) => number | bigint;
  close: (fd: number) => number;
  mount: (source: string, target: string, fstype: string, flags: number, data: null) => number;
  flock: (fd: number, operation: number) => number;
}

let libc: Libc | null = null;

/** Loaded on first use, so the memory backend never needs a C library. */
function lib(): Libc {
  if (!libc) {
    const l = koffi.load('libc.so.6');
    libc = {
      syscall: l.func('long syscall(long, long, void *, uint)') as Libc['syscall'],
      close: l.func('int close(int)') as Libc['close'],
      mount: l.func('int mount(const char *, const char *, const char *, unsigned long, const void *)') as Libc['mount'],
      flock: l.func('int flock(int, int)') as Libc['flock'],
    };
  }
  return libc;
}

const SYS_BPF = arch() === 'arm64' ? 280 : 321;

/**
 * Native memory with a Buffer view over it. The kernel reads pointers stored inside `bpf_attr`,
 * so keys and values must live at stable native addresses: koffi memory, freed explicitly.
 */
export class NativeBuffer {
  readonly ptr: NativePointer;
  readonly buf: Buffer;
  readonly address: bigint;

  constructor(readonly size: number) {
    this.ptr = koffi.alloc('uint8_t', size);
    this.buf = Buffer.from(koffi.view(this.ptr, size));
    this.address = koffi.address(this.ptr);
    this.buf.fill(0);
  }

  free(): void {
    koffi.free(this.ptr);
  }
}

/** A bpf() syscall failed: `op` names the command, `errno` the kernel's answer. */
export class BpfError extends Error {
  override readonly name = 'BpfError';
  constructor(
    readonly op: string,
    readonly errno: number,
    detail = '',
  ) {
    super(`bpf ${op} failed: errno ${errno}${errno === ERRNO.EPERM ? ' (EPERM: needs root or CAP_BPF)' : ''}${detail ? `: ${detail}` : ''}`);
  }
}

export interface SyscallResult {
  readonly ret: number;
  readonly errno: number;
}

export function bpf(cmd: number, attr: NativeBuffer): SyscallResult {
  const ret = Number(lib().syscall(SYS_BPF, cmd, attr.ptr, attr.size));
  return { ret, errno: ret < 0 ? koffi.errno() : 0 };
}

export function closeFd(fd: number): void {
  lib().close(fd);
}

export function mountBpffs(target: string): SyscallResult {
  const ret = lib().mount('bpf', target, 'bpf', 0, null);
  return { ret, errno: ret < 0 ? koffi.errno() : 0 };
}

/** What the kernel says of a map (struct bpf_map_info's first fields). */
export interface MapInfo {
  readonly type: number;
  readonly keySize: number;
  readonly valueSize: number;
  readonly maxEntries: number;
  readonly flags: number;
}

/** BPF_OBJ_GET_INFO_BY_FD on a map fd. */
export function mapInfo(fd: number): MapInfo | SyscallResult {
  const attr = new NativeBuffer(16);
  const info = new NativeBuffer(88);
  try {
    attr.buf.writeUInt32LE(fd, 0);
    attr.buf.writeUInt32LE(info.size, 4);
    attr.buf.writeBigUInt64LE(info.address, 8);
    const r = bpf(BPF_CMD.OBJ_GET_INFO_BY_FD, attr);
    if (r.ret < 0) return r;
    const b = info.buf;
    return { type: b.readUInt32LE(0), keySize: b.readUInt32LE(8), valueSize: b.readUInt32LE(12), maxEntries: b.readUInt32LE(16), flags: b.readUInt32LE(20) };
  } finally {
    attr.free();
    info.free();
  }
}

/** flock(2) operations (include/uapi/asm-generic/fcntl.h). */
export const LOCK = { SH: 1, EX: 2, NB: 4, UN: 8 } as const;

/** flock(2) on an fd opened by Node (a plain kernel fd, so libc can use it). */
export function flockFd(fd: number, operation: number): SyscallResult {
  const ret = lib().flock(fd, operation);
  return { ret, errno: ret < 0 ? koffi.errno() : 0 };
}

/** How this kernel's LPM tries take an update of a key they hold while full (`lpmFullTrieOverwrite`). */
export type FullTrieOverwrite = 'in-place' | 'needs-room';

let fullTrieOverwrite: FullTrieOverwrite | undefined;

/**
 * Whether an LPM trie holding max_entries elements takes an update of one of its own keys. Before
 * Linux commit 532d6b36b2bf ("bpf: Handle in-place update for full LPM trie correctly", v6.13,
 * backported to some stable trees) kernel/bpf/lpm_trie.c `trie_update_elem` checked
 * `n_entries == max_entries` before looking the key up, so it refused the overwrite with ENOSPC
 * (attack finding 2340). Probed once, on a throwaway trie of one element: its key written twice.
 * An error other than that ENOSPC (no CAP_BPF) is thrown, as every other bpf() failure is.
 */
export function lpmFullTrieOverwrite(): FullTrieOverwrite {
  if (fullTrieOverwrite) return fullTrieOverwrite;
  const attr = new NativeBuffer(128);
  const key = new NativeBuffer(8);
  const value = new NativeBuffer(4);
  let fd = -1;
  try {
    const a = attr.buf;
    a.writeUInt32LE(BPF_MAP_TYPE_LPM_TRIE, 0);
    a.writeUInt32LE(key.size, 4);
    a.writeUInt32LE(value.size, 8);
    a.writeUInt32LE(1, 12);
    a.writeUInt32LE(BPF_F_NO_PREALLOC, 16);
    const c = bpf(BPF_CMD.MAP_CREATE, attr);
    if (c.ret < 0) throw new BpfError('MAP_CREATE', c.errno, 'the full-trie overwrite probe');
    fd = c.ret;
    key.buf.writeUInt32LE(32, 0);
    const update = (): SyscallResult => {
      a.fill(0);
      a.writeUInt32LE(fd, 0);
      a.writeBigUInt64LE(key.address, 8);
      a.writeBigUInt64LE(value.address, 16);
      return bpf(BPF_CMD.MAP_UPDATE_ELEM, attr);
    };
    const first = update();
    if (first.ret < 0) throw new BpfError('MAP_UPDATE_ELEM', first.errno, 'the full-trie overwrite probe');
    const again = update();
    if (again.ret < 0 && again.errno !== ERRNO.ENOSPC) throw new BpfError('MAP_UPDATE_ELEM', again.errno, 'the full-trie overwrite probe');
    fullTrieOverwrite = again.ret < 0 ? 'needs-room' : 'in-place';
    return fullTrieOverwrite;
  } finally {
    if (fd >= 0) closeFd(fd);
    attr.free();
    key.free();
    value.free();
  }
}
