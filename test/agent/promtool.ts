import { spawnSync } from 'node:child_process';

/**
 * `promtool check metrics` (Debian's `prometheus` package) on an exposition. Missing promtool is a
 * visible skip; CI sets DISTILL_REQUIRE_PROMTOOL=1 (and installs it), which turns the skip into a
 * failure.
 */
export const promtoolMissing: string | null = spawnSync('promtool', ['--version']).error ? 'promtool is not installed (apt-get install prometheus)' : null;
if (promtoolMissing && process.env.DISTILL_REQUIRE_PROMTOOL === '1') throw new Error(`DISTILL_REQUIRE_PROMTOOL=1 but ${promtoolMissing}`);
if (promtoolMissing) process.stderr.write(`SKIPPING promtool checks: ${promtoolMissing}\n`);

/** promtool's verdict: exit status and what it printed (problems, one a line). */
export function promtoolCheck(exposition: string): { status: number | null; output: string } {
  const r = spawnSync('promtool', ['check', 'metrics'], { input: exposition, encoding: 'utf8' });
  return { status: r.status, output: `${r.stdout}${r.stderr}`.trim() };
}
