import { ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BpfBackend, bpfUnavailableReason, PinDirError } from '../../src/backend/bpf.js';
import { BPFFS_ROOT, devMajorMinor, flockHolders, MountEntry, mountOf, parseMountinfo, PinDirLock, planPinDir, preparePinDir } from '../../src/backend/pin-dir.js';

const unavailable = bpfUnavailableReason();
const required = process.env.DISTILL_REQUIRE_BPF === '1';
if (unavailable && required) throw new Error(`DISTILL_REQUIRE_BPF=1 but ${unavailable}`);
if (unavailable) process.stderr.write(`SKIPPING pin dir kernel tests: ${unavailable}\n`);
const kernel = unavailable ? describe.skip : describe;

const m = (mountPoint: string, fsType: string): MountEntry => ({ mountPoint, fsType, source: fsType });
const HOST: MountEntry[] = [m('/', 'ext4'), m('/sys', 'sysfs'), m('/dev/shm', 'tmpfs'), m('/sys/fs/bpf', 'bpf')];
const plan = (dir: string, mounts: MountEntry[], onBpffs = false) => planPinDir(dir, onBpffs, mountOf(dir, mounts), mounts);

describe('pin dir rules (pure)', () => {
  it('parses /proc/self/mountinfo, unescaping octal escapes in mount points', () => {
    const text = [
      '22 27 0:21 / /proc rw,relatime - proc proc rw',
      '42 23 0:39 / /sys/fs/bpf rw,relatime shared:7 master:1 - bpf bpf rw',
      '43 27 0:40 / /mnt/with\\040space\\134x rw - tmpfs my\\040src rw',
      '',
    ].join('\n');
    expect(parseMountinfo(text)).toEqual([
      { mountPoint: '/proc', fsType: 'proc', source: 'proc' },
      { mountPoint: '/sys/fs/bpf', fsType: 'bpf', source: 'bpf' },
      { mountPoint: '/mnt/with space\\x', fsType: 'tmpfs', source: 'my src' },
    ]);
  });

  it('finds the mount a path is on: longest mount point, topmost of stacked mounts, whole components only', () => {
    const mounts = [...HOST, m('/sys/fs/bpf', 'tmpfs')];
    expect(mountOf('/sys/fs/bpf/distill', mounts)?.fsType).toBe('tmpfs');
    expect(mountOf('/sys/fs/bpfx', HOST)?.fsType).toBe('sysfs');
    expect(mountOf('/dev/shm', HOST)?.fsType).toBe('tmpfs');
    expect(mountOf('/home/x', HOST)?.fsType).toBe('ext4');
  });

  it('a dir on bpffs is used; one elsewhere is refused with what is wrong and how to fix it', () => {
    expect(plan('/sys/fs/bpf/distill', HOST, true)).toEqual({ action: 'use' });
    expect(plan('/dev/shm/pins', HOST)).toEqual({
      action: 'refuse',
      reason: 'pin dir /dev/shm/pins is not on a bpf filesystem (it is on tmpfs, mounted at /dev/shm); use a directory under /sys/fs/bpf, where bpffs is mounted',
    });
  });

  it('never mounts over anything at /sys/fs/bpf, bpffs or not', () => {
    const foreign = [...HOST.slice(0, 3), m('/sys/fs/bpf', 'tmpfs')];
    const p = plan('/sys/fs/bpf/distill', foreign);
    expect(p.action).toBe('refuse');
    expect(p.action === 'refuse' && p.reason).toMatch(/\/sys\/fs\/bpf has a tmpfs filesystem mounted, which distill will not mount over/);
  });

  it('mounts only on an empty /sys/fs/bpf, and only for a dir under it', () => {
    const bare = HOST.slice(0, 3);
    expect(plan('/sys/fs/bpf/distill', bare)).toEqual({ action: 'mount' });
    expect(plan('/sys/fs/bpf', bare)).toEqual({ action: 'mount' });
    expect(plan('/sys/fs/bpfx/distill', bare).action).toBe('refuse');
    expect(plan('/dev/shm/pins', bare).action).toBe('refuse');
  });

  it('property: the plan is "mount" exactly when nothing is mounted at /sys/fs/bpf, the dir is under it and not on bpffs', () => {
    const point = fc.constantFrom('/', '/sys', '/sys/fs', '/sys/fs/bpf', '/sys/fs/bpf/x', '/dev/shm', '/run');
    const entry = fc.record({ mountPoint: point, fsType: fc.constantFrom('bpf', 'tmpfs', 'ext4', 'sysfs'), source: fc.constant('s') });
    const dir = fc.constantFrom('/sys/fs/bpf', '/sys/fs/bpf/a', '/sys/fs/bpf/x/y', '/sys/fs/bpfa', '/dev/shm/p', '/run/p', '/');
    fc.assert(
      fc.property(fc.array(entry, { maxLength: 6 }), dir, fc.boolean(), (mounts, d, onBpffs) => {
        const p = planPinDir(d, onBpffs, mountOf(d, mounts), mounts);
        const rootTaken = mounts.some((e) => e.mountPoint === BPFFS_ROOT);
        const under = d === BPFFS_ROOT || d.startsWith(`${BPFFS_ROOT}/`);
        expect(p.action === 'mount').toBe(!onBpffs && !rootTaken && under);
        if (onBpffs) expect(p.action).toBe('use');
      }),
    );
  });

  it('reads flock holders from /proc/locks by device and inode, skipping waiters and other lock kinds', () => {
    const text = [
      '1: POSIX  ADVISORY  WRITE 10 00:27:16766 0 EOF',
      '2: FLOCK  ADVISORY  WRITE 4242 00:27:16766 0 EOF',
      '2: -> FLOCK  ADVISORY  WRITE 77 00:27:16766 0 EOF',
      '3: FLOCK  ADVISORY  WRITE 99 00:27:16767 0 EOF',
      '4: FLOCK  ADVISORY  WRITE 98 01:27:16766 0 EOF',
      '5: FLOCK  ADVISORY  READ  55 103:12a:16766 0 EOF',
    ].join('\n');
    expect(flockHolders(text, 0, 0x27, 16766n)).toEqual([4242]);
    expect(flockHolders(text, 0x103, 0x12a, 16766n)).toEqual([55]);
  });

  it('decodes st_dev into major and minor as /proc/locks prints them', () => {
    const encode = (major: number, minor: number): bigint => BigInt((minor & 0xff) | (major << 8) | ((minor & ~0xff) << 12));
    expect(devMajorMinor(39n)).toEqual([0, 39]);
    expect(devMajorMinor(encode(259, 300))).toEqual([259, 300]);
  });
});

/** bpf mounts this process sees, by mount point. */
const bpfMounts = (): string[] =>
  parseMountinfo(readFileSync('/proc/self/mountinfo', 'utf8'))
    .filter((e) => e.fsType === 'bpf')
    .map((e) => e.mountPoint);

const PIN_ROOT = `/sys/fs/bpf/distill-pindir-test-${process.pid}`;
const scratch: string[] = [];
const tmp = (): string => {
  const d = mkdtempSync(join(tmpdir(), 'distill-pindir-'));
  scratch.push(d);
  return d;
};
const umountIfMounted = (dir: string): void => {
  if (parseMountinfo(readFileSync('/proc/self/mountinfo', 'utf8')).some((e) => e.mountPoint === dir)) execFileSync('umount', [dir]);
};
/** Processes blocked waiting for a flock on `dir` (`->` lines of /proc/locks). */
const lockWaiters = (dir: string): number => {
  const st = statSync(dir, { bigint: true });
  const [major, minor] = devMajorMinor(st.dev);
  const id = `${major.toString(16).padStart(2, '0')}:${minor.toString(16).padStart(2, '0')}:${st.ino}`;
  return readFileSync('/proc/locks', 'utf8')
    .split('\n')
    .filter((l) => l.includes('->') && l.includes(' FLOCK ') && l.includes(` ${id} `)).length;
};
const expectPinDirError = (f: () => unknown, message: RegExp): void => {
  let caught: unknown;
  try {
    f();
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeInstanceOf(PinDirError);
  expect((caught as Error).message).toMatch(message);
};

kernel('pin dir rules (kernel)', () => {
  beforeAll(() => {
    // Mounts bpffs on /sys/fs/bpf only if nothing at all is mounted there (the one allowed case).
    new BpfBackend({ pinDir: join(PIN_ROOT, 'setup') }).close();
    expect(bpfMounts()).toContain(BPFFS_ROOT);
  });
  afterAll(() => {
    rmSync(PIN_ROOT, { recursive: true, force: true });
    for (const d of scratch) rmSync(d, { recursive: true, force: true });
  });

  it('refuses pin dirs on tmpfs and ext4, creating nothing and mounting nothing', () => {
    const before = bpfMounts();
    for (const dir of [`/dev/shm/distill-pindir-${process.pid}/pins`, join(tmp(), 'pins')]) {
      expectPinDirError(() => new BpfBackend({ pinDir: dir }), /is not on a bpf filesystem \(it is on \w+, mounted at .*\); use a directory under \/sys\/fs\/bpf, where bpffs is mounted/);
      expect(existsSync(dir)).toBe(false);
    }
    expect(bpfMounts()).toEqual(before);
  });

  it('resolves symlinks: a link into bpffs is used, a link out of bpffs is refused', () => {
    const real = join(PIN_ROOT, 'real');
    mkdirSync(real, { recursive: true });
    const link = join(tmp(), 'link');
    symlinkSync(real, link);
    const b = new BpfBackend({ pinDir: join(link, 'sub') });
    expect(b.pinDir).toBe(join(real, 'sub'));
    b.create('prod/web');
    b.close();
    expect(existsSync(join(real, 'sub'))).toBe(true);

    const outside = tmp();
    symlinkSync(outside, join(PIN_ROOT, 'escape'));
    const before = bpfMounts();
    expectPinDirError(() => new BpfBackend({ pinDir: join(PIN_ROOT, 'escape', 'sub') }), /is not on a bpf filesystem \(it is on/);
    expect(bpfMounts()).toEqual(before);
  });

  it('mounts bpffs on an empty mount point once, never over a filesystem already there', () => {
    const root = tmp();
    try {
      preparePinDir(join(root, 'pins', 'a'), false, root);
      preparePinDir(join(root, 'pins', 'b'), false, root);
      expect(bpfMounts().filter((p) => p === root)).toHaveLength(1);
    } finally {
      umountIfMounted(root);
    }
    execFileSync('mount', ['-t', 'tmpfs', 'distill-test', root]);
    try {
      const before = bpfMounts();
      expectPinDirError(() => preparePinDir(join(root, 'pins'), false, root), /has a tmpfs filesystem mounted, which distill will not mount over/);
      expect(bpfMounts()).toEqual(before);
    } finally {
      umountIfMounted(root);
    }
  });

  it('concurrent processes finding the mount point empty mount bpffs once, not stacked', async () => {
    const parent = tmp();
    const root = join(parent, 'root');
    mkdirSync(root);
    // Hold the mount lock so that every child decides "mount" first and then queues on the lock.
    const gate = PinDirLock.acquire(parent);
    const N = 3;
    const script = `import { preparePinDir } from ${JSON.stringify(join(process.cwd(), 'dist/backend/pin-dir.js'))}; preparePinDir(process.env.PIN_DIR, false, process.env.ROOT);`;
    const children = Array.from({ length: N }, (_, i) => spawn(process.execPath, ['--input-type=module', '-e', script], { env: { ...process.env, PIN_DIR: join(root, `p${i}`), ROOT: root }, stdio: 'inherit' }));
    const codes = children.map((c) => new Promise<number | null>((resolve) => c.on('exit', resolve)));
    try {
      while (lockWaiters(parent) < N) await new Promise((r) => setTimeout(r, 20));
      gate.release();
      expect(await Promise.all(codes)).toEqual(Array(N).fill(0));
      expect(bpfMounts().filter((p) => p === root)).toHaveLength(1);
      for (let i = 0; i < N; i++) expect(existsSync(join(root, `p${i}`))).toBe(true);
    } finally {
      gate.release();
      for (const c of children) c.kill('SIGKILL');
      await Promise.all(codes);
      while (bpfMounts().includes(root)) execFileSync('umount', [root]);
    }
  });

  it('refuses a pin dir that is not a directory', () => {
    const dir = join(PIN_ROOT, 'file-parent');
    const b = new BpfBackend({ pinDir: dir });
    b.create('prod/web');
    b.close();
    expectPinDirError(() => new BpfBackend({ pinDir: join(dir, 'pol_prod_2fweb', 'sub') }), /pol_prod_2fweb is not a directory/);
  });

  it('a failed mount reports its real errno, not EPERM', () => {
    const file = join(tmp(), 'not-a-dir');
    writeFileSync(file, '');
    expectPinDirError(() => preparePinDir(join(file, 'pins'), false, file), /mount -t bpf bpf .* failed: ENOTDIR \(errno 20\)$/);
  });

  it('one writer per pin dir: a second backend fails naming the PID; readers need no lock and cannot write', () => {
    const dir = join(PIN_ROOT, 'lock');
    const first = new BpfBackend({ pinDir: dir });
    first.create('prod/web');
    expectPinDirError(() => new BpfBackend({ pinDir: dir }), new RegExp(`pin dir ${dir} is in use by PID ${process.pid} \\(this process`));
    const reader = new BpfBackend({ pinDir: dir, readOnly: true });
    expect(reader.endpoints()).toEqual(['prod/web']);
    expect(reader.dump('prod/web')).toEqual([]);
    const upsert = { endpoint: 'prod/web', op: 'upsert' as const, key: { identity: 5, direction: 'ingress' as const, protocol: 6, port: 80, portPrefixLen: 16 }, entry: { deny: false, proxyPort: 0, precedence: 1 } };
    expectPinDirError(() => reader.apply('prod/web', [upsert]), /opened read-only: writing maps/);
    expectPinDirError(() => reader.create('prod/db'), /opened read-only/);
    expectPinDirError(() => reader.remove('prod/web'), /opened read-only/);
    expect(reader.endpoints()).toEqual(['prod/web']);
    reader.close();
    first.close();
    new BpfBackend({ pinDir: dir }).close(); // released by close()
    expectPinDirError(() => new BpfBackend({ pinDir: join(PIN_ROOT, 'missing'), readOnly: true }), /does not exist/);
    expect(existsSync(join(PIN_ROOT, 'missing'))).toBe(false);
  });

  it('a writer in another process makes the CLI exit 2 naming its PID; SIGKILL frees the lock', async () => {
    const dir = join(PIN_ROOT, 'cli');
    const holder = spawn(
      process.execPath,
      ['--input-type=module', '-e', `import { BpfBackend } from ${JSON.stringify(join(process.cwd(), 'dist/backend/bpf.js'))}; new BpfBackend({ pinDir: process.env.PIN_DIR }); process.stdout.write('locked\\n'); setInterval(() => {}, 1 << 30);`],
      { env: { ...process.env, PIN_DIR: join(dir, 'scenario') }, stdio: ['ignore', 'pipe', 'inherit'] },
    );
    const exited = new Promise<void>((resolve) => holder.on('exit', () => resolve()));
    try {
      await lineFrom(holder);
      const cli = spawnSync(process.execPath, ['dist/cli/main.js', 'reach', '--scenario', 'fixtures/scenarios/k8s-e2e/default-deny-ingress-tcp.yaml', '--backend', 'bpf', '--pin-dir', dir], { encoding: 'utf8' });
      expect(cli.status).toBe(2);
      expect(cli.stderr).toContain(`error: pin dir ${join(dir, 'scenario')} is in use by PID ${holder.pid} (node)`);
    } finally {
      holder.kill('SIGKILL');
      await exited;
    }
    new BpfBackend({ pinDir: join(dir, 'scenario') }).close();
  });
});

function lineFrom(child: ChildProcess): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('\n')) resolve(out);
    });
    child.on('exit', (code) => reject(new Error(`lock holder exited with ${code} before taking the lock`)));
  });
}
