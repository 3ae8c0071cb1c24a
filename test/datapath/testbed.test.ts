import { spawn, spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { expect, it } from 'vitest';
import { runCli } from '../../src/cli/main.js';
import { listNetns } from '../../src/datapath/netns.js';
import { TESTBED_NETNS_PREFIX, TESTBED_PIN_PREFIX } from '../../src/datapath/testbed.js';
import { kernel } from './gate.js';

/** Every probe of these scenarios, by real packets, must agree with `reach` (the whole corpus: npm run test:testbed). */
const SUBSET = [
  'fixtures/scenarios/cilium-docs/l4.yaml', // ports, TCP/UDP
  'fixtures/scenarios/cilium-docs/deny.yaml', // deny precedence
  'fixtures/scenarios/cilium-docs/icmp.yaml', // ICMP by type
  'fixtures/scenarios/cilium-docs/port-ranges.yaml', // port prefixes
  'fixtures/scenarios/cilium-docs/l7-http.yaml', // redirect verdicts
  'fixtures/scenarios/cilium-docs/cidr.yaml', // ipcache CIDR identities, externals
  'fixtures/conformance/cilium/cidr-v6.yaml', // IPv6
  'fixtures/scenarios/k8s-e2e/allow-from-pods-in-server-namespace.yaml',
];

function cli(args: string[]): { exit: number; out: string; err: string } {
  let out = '';
  let err = '';
  const exit = runCli(args, { out: (s) => (out += s), err: (s) => (err += s) });
  return { exit, out, err };
}

/** What is left on this machine of the given runs: namespaces and pin dirs. */
function leftovers(ids: readonly string[]): string[] {
  const mine = (name: string): boolean => ids.some((id) => name === `${TESTBED_NETNS_PREFIX}${id}-r` || name.startsWith(`${TESTBED_NETNS_PREFIX}${id}-`) || `/sys/fs/bpf/${name}` === `${TESTBED_PIN_PREFIX}${id}`);
  return [...listNetns(TESTBED_NETNS_PREFIX), ...readdirSync('/sys/fs/bpf')].filter(mine).sort();
}

/** The run ids a testbed run announced on stderr. */
function runIds(err: string): string[] {
  return [...err.matchAll(/testbed: run ([0-9a-f]+)/g)].map((m) => m[1] as string);
}

/** Every result of the agreement tests (vitest runs a file's tests in order). */
const seen: { allowed: boolean; proxied: boolean }[] = [];

kernel('testbed', () => {
  for (const file of SUBSET) {
    it(`agrees with reach on every probe of ${file}, with real packets`, () => {
      const real = cli(['testbed', '--scenario', file, '--json']);
      const reach = cli(['reach', '--scenario', file, '--json']);
      expect(real.err).toMatch(/probes in/);
      expect(real.out.trim().split('\n').length).toBeGreaterThan(0);
      expect(real.out).toBe(reach.out);
      expect(real.exit).toBe(reach.exit);
      seen.push(...real.out.trim().split('\n').map((l) => JSON.parse(l) as { allowed: boolean; proxied: boolean }));
    });
  }

  it('is not vacuous: the subset has probes of both verdicts and redirected ones', () => {
    const results = seen;
    expect(results.length).toBeGreaterThan(SUBSET.length);
    expect(results.some((r) => r.allowed)).toBe(true);
    expect(results.some((r) => !r.allowed)).toBe(true);
    expect(results.some((r) => r.proxied)).toBe(true);
  });

  it('leaves no namespace, veth or pin behind after a run', () => {
    const r = cli(['testbed', '--scenario', 'fixtures/scenarios/cilium-docs/l4.yaml', '--json']);
    const ids = runIds(r.err);
    expect(ids).toHaveLength(1);
    expect(leftovers(ids)).toEqual([]);
  });

  for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
    it(`leaves nothing behind after ${signal} mid-run`, async () => {
      const child = spawn(process.execPath, ['dist/cli/main.js', 'testbed', '--scenario', 'fixtures/scenarios/cilium-docs', '--json'], { stdio: ['ignore', 'ignore', 'pipe'] });
      let err = '';
      child.stderr.on('data', (d: Buffer) => (err += d.toString()));
      // Wait until the run has built namespaces, then signal it.
      for (let i = 0; i < 400 && !(runIds(err).length > 0 && leftovers(runIds(err)).length > 2); i++) await new Promise((r) => setTimeout(r, 25));
      const ids = runIds(err);
      expect(leftovers(ids).length).toBeGreaterThan(2);
      child.kill(signal);
      await new Promise((r) => child.on('exit', r));
      // The run's watchdog removes it once the process is gone.
      for (let i = 0; i < 100 && leftovers(ids).length > 0; i++) await new Promise((r) => setTimeout(r, 100));
      expect(leftovers(ids)).toEqual([]);
      expect(spawnSync('ip', ['-o', 'link'], { encoding: 'utf8' }).stdout).not.toMatch(/: v\d+@/); // no testbed veth in the host namespace
    }, 120_000);
  }

  it('names every run uniquely: two runs at once do not collide', async () => {
    const run = (): Promise<{ out: string; err: string }> =>
      new Promise((resolve) => {
        const c = spawn(process.execPath, ['dist/cli/main.js', 'testbed', '--scenario', 'fixtures/scenarios/cilium-docs/l4.yaml', '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
        let out = '';
        let err = '';
        c.stdout.on('data', (d: Buffer) => (out += d.toString()));
        c.stderr.on('data', (d: Buffer) => (err += d.toString()));
        c.on('exit', () => resolve({ out, err }));
      });
    const [a, b] = await Promise.all([run(), run()]);
    const reach = cli(['reach', '--scenario', 'fixtures/scenarios/cilium-docs/l4.yaml', '--json']).out;
    expect(a.out).toBe(reach);
    expect(b.out).toBe(reach);
    const ids = [...runIds(a.err), ...runIds(b.err)];
    expect(new Set(ids).size).toBe(2);
    expect(leftovers(ids)).toEqual([]);
  }, 120_000);
});
