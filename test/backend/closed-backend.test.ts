import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { bpfUnavailableReason } from '../../src/backend/bpf.js';

/**
 * Finding 1520 (docs/attack-findings-21w.md): `BpfBackend.close` freed its native buffers (koffi)
 * and released the pin-dir lock, but nothing stopped a later call: a second `close` freed them
 * again (glibc aborts the process: "double free detected"), and a write after `close` ran bpf()
 * with its attributes in freed memory (a segfault, or a syscall reading whatever the allocator put
 * there since) on a pin dir another writer may hold by then. Each case runs in a child process
 * (on the built package, as the kill -9 test does) because on the base it kills the process.
 */
const unavailable = bpfUnavailableReason();
const required = process.env.DISTILL_REQUIRE_BPF === '1';
if (unavailable && required) throw new Error(`DISTILL_REQUIRE_BPF=1 but ${unavailable}`);
const kernel = unavailable ? describe.skip : describe;

const DIST = join(import.meta.dirname, '../../dist/index.js');
const IPCACHE = join(import.meta.dirname, '../../dist/backend/ipcache.js');
const PIN = `/sys/fs/bpf/distill-test-att21agent-closed-${randomBytes(6).toString('hex')}`;
afterAll(() => {
  if (!unavailable) rmSync(PIN, { recursive: true, force: true });
});

/** Runs `body` after a backend on its own pin dir created a map and was closed; prints what each call did. */
function afterClose(name: string, body: string): { status: number | null; signal: NodeJS.Signals | null; out: string } {
  const script = `
    import { BpfBackend } from ${JSON.stringify(DIST)};
    import { KernelIpcache } from ${JSON.stringify(IPCACHE)};
    const dir = ${JSON.stringify(join(PIN, name))};
    const b = new BpfBackend({ pinDir: dir });
    b.create('x/a');
    b.close();
    const tryIt = (what, f) => { try { f(); console.log(what, 'ran'); } catch (e) { console.log(what, e.name); } };
    ${body}
    console.log('alive');
  `;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
  return { status: r.status, signal: r.signal, out: r.stdout };
}

kernel('1520. a BpfBackend after close', () => {
  it('a second close does nothing', () => {
    const r = afterClose('twice', `b.close(); console.log('closed twice');`);
    expect(r.out).toBe('closed twice\nalive\n');
    expect(r.status).toBe(0);
  });

  it('every call after close is refused (PinDirError), none touches the freed buffers or the maps', () => {
    const r = afterClose('calls', [
      `tryIt('size', () => b.size('x/a'));`,
      `tryIt('apply', () => b.apply('x/a', [{ endpoint: 'x/a', op: 'delete', key: { identity: 1, direction: 'ingress', protocol: 6, port: 80, portPrefixLen: 16 }, entry: { deny: false, proxyPort: 0, authType: 0, precedence: 0 } }]));`,
      `tryIt('lookup', () => b.lookup('x/a', 1, 'ingress', 6, 80));`,
      `tryIt('dump', () => b.dump('x/a', 'diff'));`,
      `tryIt('create', () => b.create('x/b'));`,
      `tryIt('remove', () => b.remove('x/a'));`,
      `tryIt('endpoints', () => b.endpoints());`,
      // The map is still pinned, as close leaves it: a new backend on the dir finds it unchanged.
      `const again = new BpfBackend({ pinDir: dir }); console.log('pinned', again.endpoints().join(','), again.size('x/a')); again.close();`,
    ].join('\n'));
    expect(r.signal).toBeNull();
    expect(r.out).toBe(['size', 'apply', 'lookup', 'dump', 'create', 'remove', 'endpoints'].map((w) => `${w} PinDirError\n`).join('') + 'pinned x/a 0\nalive\n');
  });

  it('a KernelIpcache closed twice does not free its buffers again', () => {
    const r = afterClose('ipcache', `const c = new KernelIpcache(dir); c.close(); c.close(); tryIt('sync', () => c.sync(new Map([['10.0.0.1/32', 300]])));`);
    expect(r.signal).toBeNull();
    expect(r.out).toBe('sync Error\nalive\n');
  });
});
