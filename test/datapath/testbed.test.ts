import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
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

/** What this machine has of testbeds right now: namespaces and pin dirs. */
function leftovers(): string[] {
  return [...listNetns(TESTBED_NETNS_PREFIX), ...readdirSync('/sys/fs/bpf').filter((d) => `/sys/fs/bpf/${d}`.startsWith(TESTBED_PIN_PREFIX))].sort();
}

const before = existsSync('/sys/fs/bpf') ? leftovers() : [];

kernel('testbed', () => {
  for (const file of SUBSET) {
    it(`agrees with reach on every probe of ${file}, with real packets`, () => {
      const real = cli(['testbed', '--scenario', file, '--json']);
      const reach = cli(['reach', '--scenario', file, '--json']);
      expect(real.err).toMatch(/probes in/);
      expect(real.out.trim().split('\n').length).toBeGreaterThan(0);
      expect(real.out).toBe(reach.out);
      expect(real.exit).toBe(reach.exit);
    });
  }

  it('is not vacuous: the subset has probes of both verdicts and redirected ones', () => {
    const lines = SUBSET.flatMap((f) => cli(['testbed', '--scenario', f, '--json']).out.trim().split('\n'));
    const results = lines.map((l) => JSON.parse(l) as { allowed: boolean; proxied: boolean });
    expect(results.some((r) => r.allowed)).toBe(true);
    expect(results.some((r) => !r.allowed)).toBe(true);
    expect(results.some((r) => r.proxied)).toBe(true);
  }, 120_000);

  it('leaves no namespace, veth or pin behind, after a run, and after SIGTERM or kill -9 mid-run', async () => {
    expect(leftovers()).toEqual(before);
    const child = spawn(process.execPath, ['dist/cli/main.js', 'testbed', '--scenario', 'fixtures/scenarios/cilium-docs', '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
    // Wait until the run has built something, then signal it.
    for (let i = 0; i < 200 && leftovers().length === before.length; i++) await new Promise((r) => setTimeout(r, 50));
    expect(leftovers().length).toBeGreaterThan(before.length);
    child.kill('SIGTERM');
    const code = await new Promise<number | null>((r) => child.on('exit', (c, sig) => r(sig === 'SIGTERM' ? -15 : c)));
    expect(code).toBe(-15);
    expect(leftovers()).toEqual(before);
    const links = spawnSync('ip', ['-o', 'link'], { encoding: 'utf8' }).stdout;
    expect(links).not.toMatch(/\bv\d+@/); // no testbed veth ever lands in the host namespace
  }, 120_000);

  it('names every run uniquely: two runs at once do not collide', async () => {
    const run = (): Promise<string> =>
      new Promise((resolve) => {
        const c = spawn(process.execPath, ['dist/cli/main.js', 'testbed', '--scenario', 'fixtures/scenarios/cilium-docs/l4.yaml', '--json'], { stdio: ['ignore', 'pipe', 'ignore'] });
        let out = '';
        c.stdout.on('data', (d: Buffer) => (out += d.toString()));
        c.on('exit', () => resolve(out));
      });
    const [a, b] = await Promise.all([run(), run()]);
    const reach = cli(['reach', '--scenario', 'fixtures/scenarios/cilium-docs/l4.yaml', '--json']).out;
    expect(a).toBe(reach);
    expect(b).toBe(reach);
    expect(leftovers()).toEqual(before);
  }, 120_000);
});

