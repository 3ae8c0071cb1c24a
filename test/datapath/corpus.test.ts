import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCli } from '../../src/cli/main.js';
import { unavailable } from './gate.js';

/**
 * The whole scenario corpus through `distill testbed` (real packets) against `distill reach`: too
 * slow for every `npm test` (a namespace per pod, a timeout per denied probe), so it runs with
 * DISTILL_TESTBED_CORPUS=1: `npm run test:testbed`, which CI runs.
 */
const enabled = process.env.DISTILL_TESTBED_CORPUS === '1';
if (enabled && unavailable) throw new Error(`DISTILL_TESTBED_CORPUS=1 but ${unavailable}`);
const CORPUS = ['fixtures/scenarios', 'fixtures/conformance/accept', 'fixtures/conformance/cilium', 'fixtures/conformance/k8s', 'fixtures/conformance/npapi'];

/**
 * Scenarios the testbed cannot send as written, each still checked on real kernel maps by
 * `verify --backend bpf` in .ci/run: a pod address whose owner changes between claimants (the
 * testbed builds one namespace per pod and routes a shared address to one of them, so the probe
 * and its reply can leave and return through different namespaces); a node's health and Ingress
 * addresses (the testbed's node namespaces carry only the node's InternalIP/ExternalIP addresses); an
 * IPv4-mapped IPv6 source (`::ffff:a.b.c.d`), which Linux drops on receipt whatever the maps say
 * (net/ipv6/ip6_input.c `ip6_rcv_core`, since "ipv6: drop incoming packets having a v4mapped source
 * address", 2019; RFC 4291 2.5.5.2).
 */
const NOT_IN_TESTBED = new Set([
  'fixtures/scenarios/ipcache/shared-ip-owner-deleted.yaml',
  'fixtures/scenarios/nodes/node-health-ingress.yaml',
  'fixtures/scenarios/attacks-14/ipv6-embedded-ipv4-cidr.yaml',
]);

function yamlFiles(dir: string): string[] {
  return readdirSync(dir)
    .sort()
    .filter((e) => !NOT_IN_TESTBED.has(join(dir, e)))
    .flatMap((e) => {
      const p = join(dir, e);
      return statSync(p).isDirectory() ? yamlFiles(p) : p.endsWith('.yaml') ? [p] : [];
    });
}

function cli(args: string[]): { out: string; err: string; exit: number } {
  let out = '';
  let err = '';
  const exit = runCli(args, { out: (s) => (out += s), err: (s) => (err += s) });
  return { out, err, exit };
}

(enabled ? describe : describe.skip)('testbed corpus', () => {
  it('agrees with reach on every probe of every scenario', () => {
    process.stderr.write(`testbed corpus: not sent as packets (kernel maps only, see NOT_IN_TESTBED): ${[...NOT_IN_TESTBED].join(', ')}\n`);
    const started = process.hrtime.bigint();
    let probes = 0;
    const disagreements: string[] = [];
    for (const file of CORPUS.flatMap(yamlFiles)) {
      const real = cli(['testbed', '--scenario', file, '--json']);
      const reach = cli(['reach', '--scenario', file, '--json']);
      probes += reach.out.split('\n').filter((l) => l !== '').length;
      if (real.out !== reach.out || real.exit !== reach.exit) disagreements.push(`${file}:\n${real.out}${real.err}--- reach:\n${reach.out}`);
    }
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    process.stderr.write(`testbed corpus: ${probes} probes, ${seconds.toFixed(1)} s including namespace set-up (${(probes / seconds).toFixed(1)} probes/s)\n`);
    expect(disagreements).toEqual([]);
    expect(probes).toBeGreaterThan(500);
  }, 3_600_000);
});
