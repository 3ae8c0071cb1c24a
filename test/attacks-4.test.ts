import { describe, expect, it } from 'vitest';
import { cli } from './cli-helpers.js';

/**
 * Attack round 4 (CLI): `trace` (and `identities`/`selectors`) built a fresh engine from the
 * scenario's cluster after --step, while `reach` takes the engine through every step. The
 * engine's state depends on its history: a DNS answer is judged by the policy in force when it
 * arrives (Cilium's DNS proxy, pkg/fqdn/dnsproxy ServeDNS / CheckAllowed) and the IP it taught
 * stays while the answer lives. After a step that deletes the policy that allowed the answer,
 * a fresh engine re-judged the old answer under the new policy: trace said DROPPED for a flow
 * `reach` (and Cilium) allow.
 */
const FQDN = 'fixtures/scenarios/fqdn/query-judged-as-a-flow.yaml';

describe('trace agrees with reach on a history-dependent flow', () => {
  it('a learned FQDN IP that outlives the policy that taught it', () => {
    const reach = cli('reach', '--scenario', FQDN, '--json');
    const r = reach.out
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { step: number; probe: number; allowed: boolean })
      .find((o) => o.step === 1 && o.probe === 0);
    expect(r?.allowed).toBe(true);
    const trace = cli('trace', '--scenario', FQDN, '--step', '1', '--from', 'default/app', '--to', '93.184.216.34', '--port', '443/TCP', '-o', 'json');
    expect(trace.code).toBe(0);
    expect((JSON.parse(trace.out) as { allowed: boolean; verdict: string }).verdict).toBe('FORWARDED');
    // The last step is the default.
    const last = cli('trace', '--scenario', FQDN, '--from', 'default/app', '--to', '93.184.216.34', '--port', '443/TCP', '-o', 'json');
    expect((JSON.parse(last.out) as { allowed: boolean }).allowed).toBe(true);
  });
});
