// The A/B driver the bench scripts share: `node SCRIPT OLD_DIST NEW_DIST TRACE [RUNS]` runs
// `node [nodeArgs] SCRIPT --child DIST TRACE` alternately for the old and the new build, RUNS times,
// and prints one JSON line per run (after a header line naming both commits, Node, CPU and load).
// The child prints one JSON object; `child(dist, trace)` is the script's own measurement.
import { execFileSync } from 'node:child_process';
import { cpus, loadavg } from 'node:os';
import { dirname, resolve } from 'node:path';

const commitOf = (dist) => execFileSync('git', ['-C', dirname(resolve(dist)), 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();

export async function runAb(self, child, { nodeArgs = [] } = {}) {
  const argv = process.argv.slice(2);
  if (argv[0] === '--child') return child(argv[1], argv[2]);
  const [oldDist, newDist, trace, runsArg] = argv;
  if (!oldDist || !newDist || !trace) {
    process.stderr.write(`usage: node ${self.slice(self.lastIndexOf('/scripts/') + 1)} OLD_DIST NEW_DIST TRACE [RUNS]\n`);
    process.exit(2);
  }
  const header = { date: new Date().toISOString(), node: process.version, cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length, old: commitOf(oldDist), new: commitOf(newDist), trace, load: loadavg() };
  process.stdout.write(`${JSON.stringify({ header })}\n`);
  for (let i = 0; i < Number(runsArg ?? 3); i++) {
    for (const [build, dist] of [['old', oldDist], ['new', newDist]]) {
      const out = execFileSync('node', [...nodeArgs, self, '--child', dist, trace], { encoding: 'utf8', maxBuffer: 1 << 26 });
      process.stdout.write(`${JSON.stringify({ build, run: i, load: loadavg()[0], ...JSON.parse(out) })}\n`);
    }
  }
}
