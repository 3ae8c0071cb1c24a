import { readFileSync } from 'node:fs';
import { expect, it } from 'vitest';
import { runCli } from '../../src/cli/main.js';
import { Engine } from '../../src/engine/engine.js';
import { EngineDecider } from '../../src/harness/engine-decider.js';
import { parseScenario } from '../../src/scenario/format.js';
import { runScenario } from '../../src/scenario/run.js';
import { kernel } from './gate.js';

/** Attack round 25d (docs/attack-findings-25d.md). */
const MAX_IPS = 'fixtures/scenarios/fqdn/max-ips-per-hostname.yaml';

function cli(args: string[]): { exit: number; out: string; err: string } {
  let out = '';
  let err = '';
  const exit = runCli(args, { out: (s) => (out += s), err: (s) => (err += s) });
  return { exit, out, err };
}

it('1900. an engine decider built without the scenario\'s dnsProxy refuses its states instead of keeping an evicted answer', () => {
  const scenario = parseScenario(readFileSync(MAX_IPS, 'utf8'), MAX_IPS);
  const decider = new EngineDecider(new Engine());
  expect(() => runScenario(scenario, decider.decide)).toThrow(/dnsProxy \{minTtl: 0, maxIpsPerHostname: 2\}, the engine was built with \{minTtl: 0, maxIpsPerHostname: 1000\}/);
});

kernel('25d testbed', () => {
  // The first is judged through the runner's trail (1875): it fails on a testbed syncing end states
  // only; the second fails on a testbed on the trail whose engine lacks the scenario's dnsProxy (1900).
  for (const file of ['fixtures/conformance/cilium-dns14/query-judged-by-rules-in-force-at-its-time.yaml', MAX_IPS]) {
    it(`1900. the testbed, on the runner's trail, agrees with reach on every probe of ${file}`, () => {
      const real = cli(['testbed', '--scenario', file, '--json']);
      const reach = cli(['reach', '--scenario', file, '--json']);
      expect(real.err).toMatch(/probes in/);
      expect(real.out.trim().split('\n').length).toBeGreaterThan(2);
      expect(real.out).toBe(reach.out);
      expect(real.exit).toBe(0);
    });
  }
});
