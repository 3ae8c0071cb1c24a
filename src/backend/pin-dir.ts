import { closeSync, constants, existsSync, mkdirSync, openSync, readFileSync, realpathSync, statfsSync, statSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { ERRNO, flockFd, LOCK, mountBpffs } from './bpf-syscall.js';

/** Where bpffs lives by convention; the only place distill ever mounts it. */
export const BPFFS_ROOT = '/sys/fs/bpf';
/** statfs(2) f_type of bpffs (include/uapi/linux/magic.h). */
const BPF_FS_MAGIC = 0xcafe4a11;

/** A pin dir that cannot be used: on the wrong filesystem, missing, or held by another writer. */
export class PinDirError extends Error {
  override readonly name = 'PinDirError';
  constructor(
    readonly dir: string,
    message: string,
  ) {
    super(message);
  }
}

function errnoName(errno: number): string {
  const name = Object.entries(osConstants.errno).find(([, n]) => n === errno)?.[0];
  return name ? `${name} (errno ${errno})` : `errno ${errno}`;
}

export interface MountEntry {
  readonly mountPoint: string;
  readonly fsType: string;
  readonly source: string;
}

/** mountinfo escapes space, tab, newline and backslash in paths as \040, \011, \012, \134. */
function unescapeMountPath(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_m, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

/**
 * Parses /proc/self/mountinfo (proc(5)), one mount per line, in mount order:
 *   `36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue`
 * mount id, parent id, major:minor, root, mount point, options, optional fields, `-`, fs type, source, super options.
 */
export function parseMountinfo(text: string): MountEntry[] {
  const out: MountEntry[] = [];
  for (const line of text.split('\n')) {
    const fields = line.split(' ');
    const sep = fields.indexOf('-', 6);
    if (sep < 0 || fields.length < sep + 3) continue;
    out.push({ mountPoint: unescapeMountPath(fields[4] as string), fsType: fields[sep + 1] as string, source: unescapeMountPath(fields[sep + 2] as string) });
  }
  return out;
}

const isUnder = (path: string, dir: string): boolean => path === dir || path.startsWith(dir === '/' ? '/' : `${dir}/`);

/** The mount `path` is on: the longest mount point above it; of mounts stacked on one point, the last (topmost). */
export function mountOf(path: string, mounts: readonly MountEntry[]): MountEntry | undefined {
  let best: MountEntry | undefined;
  for (const m of mounts) if (isUnder(path, m.mountPoint) && (!best || m.mountPoint.length >= best.mountPoint.length)) best = m;
  return best;
}

/** An absolute pin dir without symlinks: the realpath of its nearest existing ancestor, plus the missing components. */
function resolvePinDir(dir: string): { resolved: string; existing: string } {
  let existing = resolve(dir);
  const missing: string[] = [];
  while (!existsSync(existing)) {
    missing.unshift(basename(existing));
    existing = dirname(existing);
  }
  existing = realpathSync(existing);
  return { resolved: join(existing, ...missing), existing };
}

export type PinDirPlan = { readonly action: 'use' } | { readonly action: 'mount' } | { readonly action: 'refuse'; readonly reason: string };

/**
 * What to do with a pin dir whose nearest existing ancestor is (or is not) on bpffs. Never mounts
 * over anything: bpffs is mounted only on an empty `root`, and only for a pin dir under it.
 */
export function planPinDir(dir: string, onBpffs: boolean, fsOfDir: MountEntry | undefined, mounts: readonly MountEntry[], root = BPFFS_ROOT): PinDirPlan {
  if (onBpffs) return { action: 'use' };
  const where = fsOfDir ? ` (it is on ${fsOfDir.fsType}, mounted at ${fsOfDir.mountPoint})` : '';
  const wrong = `pin dir ${dir} is not on a bpf filesystem${where}`;
  const atRoot = mounts.filter((m) => m.mountPoint === root);
  const top = atRoot[atRoot.length - 1];
  if (top?.fsType === 'bpf') return { action: 'refuse', reason: `${wrong}; use a directory under ${root}, where bpffs is mounted` };
  if (top) {
    return { action: 'refuse', reason: `${wrong}, and ${root} has a ${top.fsType} filesystem mounted, which distill will not mount over; mount bpffs elsewhere (mount -t bpf bpf <dir>) and use a directory there` };
  }
  if (!isUnder(dir, root)) return { action: 'refuse', reason: `${wrong}; use a directory under ${root} (nothing is mounted there: distill mounts bpffs on it)` };
  return { action: 'mount' };
}

function readMounts(): MountEntry[] {
  return parseMountinfo(readFileSync('/proc/self/mountinfo', 'utf8'));
}

function currentPlan(dir: string, root: string): PinDirPlan {
  const { resolved, existing } = resolvePinDir(dir);
  const mounts = readMounts();
  return planPinDir(resolved, statfsSync(existing).type === BPF_FS_MAGIC, mountOf(existing, mounts), mounts, root);
}

/** Runs `fn` holding an exclusive flock on `dir`, so concurrent distill processes mount bpffs once, not stacked. */
function withDirLock<T>(dir: string, fn: () => T): T {
  const fd = openSync(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    const r = flockFd(fd, LOCK.EX);
    if (r.ret < 0) throw new PinDirError(dir, `flock on ${dir} failed: ${errnoName(r.errno)}`);
    return fn();
  } finally {
    closeSync(fd);
  }
}

function mountRoot(dir: string, root: string): void {
  withDirLock(dirname(root), () => {
    const again = currentPlan(dir, root); // another process may have mounted it meanwhile
    if (again.action !== 'mount') return;
    const r = mountBpffs(root);
    if (r.ret < 0) {
      const why = r.errno === ERRNO.EPERM ? ': mounting needs root or CAP_SYS_ADMIN' : '';
      throw new PinDirError(dir, `pin dir ${dir} needs bpffs, and mount -t bpf bpf ${root} failed: ${errnoName(r.errno)}${why}`);
    }
  });
}

/**
 * Checks that `dir` is on bpffs (mounting bpffs on an empty /sys/fs/bpf for a dir under it) and
 * creates it unless `readOnly`. Returns the resolved path. Throws PinDirError with what to fix.
 */
export function preparePinDir(dir: string, readOnly: boolean, root = BPFFS_ROOT): string {
  let plan = currentPlan(dir, root);
  if (plan.action === 'mount') {
    if (readOnly) throw new PinDirError(dir, `pin dir ${dir} does not exist: no bpffs is mounted at ${root}`);
    mountRoot(dir, root);
    plan = currentPlan(dir, root);
  }
  if (plan.action === 'refuse') throw new PinDirError(dir, plan.reason);
  if (plan.action === 'mount') throw new PinDirError(dir, `pin dir ${dir}: bpffs was mounted on ${root} but ${dir} is still not on it`);
  const { resolved, existing } = resolvePinDir(dir);
  if (!statSync(existing).isDirectory()) throw new PinDirError(dir, `pin dir ${dir}: ${existing} is not a directory`);
  if (readOnly) {
    if (!existsSync(resolved)) throw new PinDirError(dir, `pin dir ${dir} does not exist`);
  } else {
    mkdirSync(resolved, { recursive: true });
  }
  return resolved;
}

/** Major and minor of a Linux st_dev (the kernel's new_encode_dev). */
export function devMajorMinor(dev: bigint): [number, number] {
  return [Number((dev >> 8n) & 0xfffn), Number((dev & 0xffn) | ((dev >> 12n) & 0xfff00n))];
}

/**
 * PIDs holding flock(2) locks on one inode, from /proc/locks (fs/locks.c, lock_get_status), e.g.
 *   `1: FLOCK  ADVISORY  WRITE 4242 00:1f:1234 0 EOF`
 * ordinal, class (FLOCK, POSIX, OFDLCK, LEASE, ...), ADVISORY or MANDATORY, READ or WRITE, pid,
 * major:minor:inode (major and minor in hex, inode in decimal), start, end. Waiters blocked on a
 * lock have `->` after the ordinal: they hold nothing and are skipped.
 */
export function flockHolders(text: string, major: number, minor: number, ino: bigint): number[] {
  const pids: number[] = [];
  for (const line of text.split('\n')) {
    const m = /^\s*\d+:\s+FLOCK\s+\S+\s+\S+\s+(-?\d+)\s+([0-9a-f]+):([0-9a-f]+):(\d+)\s/.exec(line);
    if (!m || parseInt(m[2] as string, 16) !== major || parseInt(m[3] as string, 16) !== minor || BigInt(m[4] as string) !== ino) continue;
    pids.push(Number(m[1]));
  }
  return pids;
}

function describeHolder(dir: string): string {
  const st = statSync(dir, { bigint: true });
  const [major, minor] = devMajorMinor(st.dev);
  let text = '';
  try {
    text = readFileSync('/proc/locks', 'utf8');
  } catch {
    // no /proc/locks: say so below rather than fail differently
  }
  const pid = flockHolders(text, major, minor, st.ino)[0];
  if (pid === undefined) return 'another process (its PID is not in /proc/locks)';
  if (pid === process.pid) return `PID ${pid} (this process: another backend on the same pin dir is still open)`;
  let comm = '';
  try {
    comm = ` (${readFileSync(`/proc/${pid}/comm`, 'utf8').trim()})`;
  } catch {
    // the holder may have just exited
  }
  return `PID ${pid}${comm}`;
}

/**
 * One writer per pin dir: an exclusive flock(2) on the pin directory itself (bpffs holds no
 * regular files, so there is no lock file). The kernel drops it when the fd is closed or the
 * process dies, even by SIGKILL; Node opens fds close-on-exec, so children never inherit it.
 */
export class PinDirLock {
  private fd: number;

  private constructor(fd: number) {
    this.fd = fd;
  }

  static acquire(dir: string): PinDirLock {
    const fd = openSync(dir, constants.O_RDONLY | constants.O_DIRECTORY);
    for (let attempt = 0; ; attempt++) {
      const r = flockFd(fd, LOCK.EX | LOCK.NB);
      if (r.ret === 0) return new PinDirLock(fd);
      if (r.errno !== ERRNO.EAGAIN) {
        closeSync(fd);
        throw new PinDirError(dir, `cannot lock pin dir ${dir}: flock failed with ${errnoName(r.errno)}`);
      }
      const holder = describeHolder(dir);
      // The holder may release between our flock and the read of /proc/locks: try once more.
      if (attempt === 0 && holder.startsWith('another process')) continue;
      closeSync(fd);
      throw new PinDirError(dir, `pin dir ${dir} is in use by ${holder}, which writes its maps; two writers would overwrite each other's maps: wait for it to finish or use another --pin-dir`);
    }
  }

  release(): void {
    if (this.fd < 0) return;
    closeSync(this.fd);
    this.fd = -1;
  }
}
