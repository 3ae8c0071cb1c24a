import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';

// A cold start runs mostly in V8's interpreter and baseline tiers, where every JavaScript call
// costs (docs/benchmarks.md, perf19b and perf22policy): the calls one more adopted policy makes
// are the measure, counted exactly by V8's precise coverage (deterministic, not a time). Counted
// on the build (npm test builds it first): the test runner's own transform adds helper calls.

describe('cold start calls', () => {
  it('an adopted plain CiliumNetworkPolicy costs at most 80 JavaScript calls in a cold start', () => {
    const out = JSON.parse(execFileSync(process.execPath, ['scripts/policy-calls.mjs', 'dist'], { encoding: 'utf8' })) as { callsPerPolicy: number };
    // Measured: 98 calls a policy at 7d066af; 67 after perf22policy (validation, the three stages
    // that ask one question of a plain policy, field initializers, getters, a notify helper).
    expect(out.callsPerPolicy).toBeLessThan(80);
  });
});
