// A trace's cold start taken apart by subtraction: the initial phase, and sub-phases of it with one
// kind of event left out, each applied by a new Engine in a fresh process (cold-ab's child: its
// timer and measures), the parts alternating, RUNS rounds. The differences between parts bound what a
// structural cut of one part could save: `distinct` keeps the first policy of each spec (the
// others are content duplicates: they join an existing share and add no map entry), so
// full − distinct is the whole cost of the duplicates; distinct − pods is the cost of the distinct
// policies' map entries (contributions, settle, deltas) with their few policies.
// Parts: full, pods (no policy), policies (no pod), noLocal (no local pod: the policies stay
// pending, never compiled), noPeers (no remote pod: policies attached, no map entry), distinct;
// and two orders of the whole phase (same events, same end state): localLast (local pods after
// everything else: their subject groups activate once, over every stored policy, as a deferred
// bulk attach would) and policiesFirst (namespaces, then policies, then pods).
// Usage: node scripts/cold-parts.mjs DIST TRACE [RUNS=3] [PART,...] > bench/results/NAME.jsonl
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** cold-ab's child: a part's file is a trace whose initial phase is the part. */
const COLD_AB = fileURLToPath(new URL('./cold-ab.mjs', import.meta.url));

const KEEP = {
  full: () => true,
  pods: (o) => o.type !== 'upsertPolicy',
  policies: (o) => o.type !== 'upsertPod',
  noLocal: (o) => !(o.type === 'upsertPod' && o.local === true),
  noPeers: (o) => !(o.type === 'upsertPod' && o.local !== true),
  distinct: (o, seen) => {
    if (o.type !== 'upsertPolicy') return true;
    const { metadata, ...rest } = o.manifest ?? o.policy ?? {};
    const key = JSON.stringify([metadata?.namespace, rest]);
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  },
};

/** Rank of an event in a reordered part (a stable sort by rank keeps each rank's own order). */
const ORDER = {
  localLast: (o) => (o.type === 'upsertPod' && o.local === true ? 1 : 0),
  policiesFirst: (o) => (o.type === 'upsertNamespace' ? 0 : o.type === 'upsertPolicy' ? 1 : 2),
};

/** The trace's header and initial phase, with the lines PART keeps, in PART's order. */
function partText(lines, part) {
  const seen = new Set();
  const head = [];
  const events = [];
  for (const line of lines) {
    const o = JSON.parse(line);
    if (o.type === 'phase' && o.name !== 'initial') break;
    if (o.type === undefined || o.type === 'phase') head.push(line);
    else if (part in ORDER || KEEP[part](o, seen)) events.push({ line, rank: part in ORDER ? ORDER[part](o) : 0 });
  }
  events.sort((a, b) => a.rank - b.rank);
  return `${[...head, ...events.map((e) => e.line)].join('\n')}\n`;
}

const [dist, trace, runsArg, partsArg] = process.argv.slice(2);
const parts = (partsArg ?? Object.keys(KEEP).join(',')).split(',');
if (!dist || !trace || parts.some((p) => !(p in KEEP) && !(p in ORDER))) {
  process.stderr.write(`usage: node scripts/cold-parts.mjs DIST TRACE [RUNS=3] [${[...Object.keys(KEEP), ...Object.keys(ORDER)].join(',')}]\n`);
  process.exit(2);
}
const lines = readFileSync(trace, 'utf8').split('\n').filter((l) => l.trim() !== '');
const dir = mkdtempSync(join(tmpdir(), 'cold-parts-'));
try {
  const files = new Map(parts.map((p) => [p, join(dir, `${p}.jsonl`)]));
  for (const [p, f] of files) writeFileSync(f, partText(lines, p));
  const commit = execFileSync('git', ['-C', resolve(dist, '..'), 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();
  process.stdout.write(`${JSON.stringify({ header: { date: new Date().toISOString(), node: process.version, cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length, commit, trace, load: loadavg() } })}\n`);
  for (let i = 0; i < Number(runsArg ?? 3); i++) {
    for (const [part, f] of files) {
      const out = execFileSync('node', ['--expose-gc', COLD_AB, '--child', dist, f], { encoding: 'utf8', maxBuffer: 1 << 26 });
      process.stdout.write(`${JSON.stringify({ part, run: i, load: loadavg()[0], ...JSON.parse(out) })}\n`);
    }
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
