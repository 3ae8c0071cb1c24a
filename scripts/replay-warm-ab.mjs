// Three arms alternating: OLD replay, NEW replay (its default: warm-up on), NEW replay --no-warm-up.
import { execFileSync } from 'node:child_process';
import { cpus, loadavg } from 'node:os';
import { dirname, resolve } from 'node:path';
const [oldDist, newDist, trace, runsArg] = process.argv.slice(2);
const commitOf = (d) => execFileSync('git', ['-C', dirname(resolve(d)), 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();
process.stdout.write(JSON.stringify({ header: { date: new Date().toISOString(), node: process.version, cpu: cpus()[0]?.model, cores: cpus().length, old: commitOf(oldDist), new: commitOf(newDist), trace, load: loadavg(), arms: ['old', 'new (warm-up, default)', 'new --no-warm-up'] } }) + '\n');
for (let i = 0; i < Number(runsArg ?? 3); i++) {
  for (const [build, dist, args] of [['old', oldDist, []], ['new', newDist, []], ['new-no-warm-up', newDist, ['--no-warm-up']]]) {
    const r = JSON.parse(execFileSync('node', [resolve(dist, 'cli/main.js'), 'replay', trace, '--json', ...args], { encoding: 'utf8', maxBuffer: 1 << 26 }));
    const pick = (q) => Object.fromEntries(Object.entries(r.latencyUs).map(([t, l]) => [t, l[q]]));
    process.stdout.write(JSON.stringify({ build, run: i, coldMs: r.coldStart.ms ?? r.coldStart, ...(r.warmUpMs === undefined ? {} : { warmUpMs: r.warmUpMs }), peakHeapMB: Math.round(r.peakHeapBytes / 2 ** 20), p50: pick('p50'), p99: pick('p99'), load: loadavg()[0] }) + '\n');
  }
}
