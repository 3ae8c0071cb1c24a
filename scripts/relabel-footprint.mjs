// What a delta relabel touches and which part of its cold cost is code (issue 18, perf27relabel).
// Replays TRACE through DIST as tail-cold-cache.mjs does (cold start, built-in warm-up, one
// transaction per churn event; no backend) into engine A, and the same trace into a second engine B
// (same code, its own data). Picks the pod relabels that emit deltas ("delta") and, as a control, the
// first six after the trace's first delta relabel's line minus 300 that emit none ("plain"). For each: the same
// relabel again with fresh `version` values (as tail-cold-cache.mjs), ROUNDS times in three arms,
// on-CPU µs (wall minus run-queue wait):
//   warm     right after the previous relabel of the pod;
//   flushed  after walking a 64 MB buffer (caches and TLB evicted);
//   codeWarm after the same walk, then one such relabel on engine B: V8's code, bytecode, feedback
//            vectors, hidden classes and module-level tables are back in the caches, engine A's
//            objects (its tables, records, map states) are not.
// flushed − codeWarm is what the code and V8's metadata cost cold; codeWarm − warm, the engine's data.
// With --counts, no timing: V8's precise coverage from before the cold start (coverage started
// later misses the calls TurboFan inlined), then per pod relabel of the trace in place and per
// delta relabel repeated as above: the JavaScript calls, distinct functions and the largest count
// of any block (a loop over the cluster's selectors, identities or pods would show as a block run
// hundreds of times), and the Map/Set/WeakMap operations by the size of the table they hit (< 50,
// 50–999, ≥ 1000 entries), by wrapping the prototypes' get/set/has/add/delete, and `cold`: the
// distinct functions no event has run since the previous delta relabel in place (from the warm-up's
// end for the first), the code the event meets cold in the replay (perf30relabel). One JSON line.
//   node scripts/relabel-footprint.mjs DIST TRACE [ROUNDS=9 | --counts]
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { cpus, loadavg } from 'node:os';
import { dirname, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { splitTrace } from './lib/initial.mjs';
import { onCpuUs } from './lib/on-cpu.mjs';

const [dist, tracePath, roundsArg] = process.argv.slice(2);
if (!dist || !tracePath) {
  process.stderr.write('usage: node scripts/relabel-footprint.mjs DIST TRACE [ROUNDS | --counts]\n');
  process.exit(2);
}
const countsOnly = roundsArg === '--counts';
const rounds = countsOnly ? 0 : Number(roundsArg ?? 9);
const base = pathToFileURL(resolve(dist)).href;
const { Engine } = await import(`${base}/engine/engine.js`);
const { parseTrace } = await import(`${base}/churn/trace.js`);
const { warmUpEngine } = await import(`${base}/churn/warm-up.js`);
const text = readFileSync(tracePath, 'utf8');
const { initial, churn } = splitTrace(parseTrace(text, tracePath));
const lines = text.split('\n');
const r1 = (x) => Math.round(x * 10) / 10;
const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];

/** The trace line's pod event again, `n` times, each with a version of its own. */
const again = (line, n, tag) => {
  const raw = JSON.parse(lines[line - 1]);
  const out = [lines[0], '{"type":"phase","name":"churn"}'];
  for (let k = 0; k < n; k++) {
    raw.pod.labels.version = `footprint-${tag}-${line}-${k}`;
    out.push(JSON.stringify(raw));
  }
  return splitTrace(parseTrace(out.join('\n'), 'footprint')).churn.map((i) => i.event);
};
const commit = (() => {
  try {
    return execFileSync('git', ['-C', dirname(resolve(dist)), 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();
  } catch {
    return 'unknown';
  }
})();
const header = () => ({ dist, commit, node: process.version, cpu: cpus()[0]?.model ?? 'unknown', date: new Date().toISOString(), load: loadavg()[0], rounds });
const summary = (xs) => {
  const v = [...xs].sort((p, q) => p - q);
  return v.length === 0 ? null : { median: v[v.length >> 1], min: v[0], max: v[v.length - 1] };
};

if (countsOnly) {
  let counting = false;
  let ops = { small: 0, mid: 0, large: 0 };
  for (const C of [Map, Set, WeakMap]) {
    for (const name of ['get', 'set', 'has', 'add', 'delete']) {
      const original = C.prototype[name];
      if (original === undefined) continue;
      C.prototype[name] = function (...args) {
        if (counting) {
          const size = this.size ?? 0;
          ops[size >= 1000 ? 'large' : size >= 50 ? 'mid' : 'small']++;
        }
        return original.apply(this, args);
      };
    }
  }
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.startPreciseCoverage', { callCount: true, detailed: true });
  /** The footprint of exactly `apply()`: coverage counts and table operations. */
  const ran = (result, out) => {
    for (const script of result) {
      if (!script.url.includes('/dist/')) continue;
      for (const f of script.functions) if (f.ranges[0].count > 0) out.add(`${script.url}:${f.ranges[0].startOffset}`);
    }
    return out;
  };
  // Functions run since the last delta relabel in place (from the warm-up's end): what the next one finds warm.
  let since = new Set();
  const footprint = async (apply) => {
    ran((await session.post('Profiler.takePreciseCoverage')).result, since);
    ops = { small: 0, mid: 0, large: 0 };
    counting = true;
    const cs = apply();
    counting = false;
    const { result } = await session.post('Profiler.takePreciseCoverage');
    let calls = 0;
    let functions = 0;
    let maxBlock = 0;
    for (const script of result) {
      if (!script.url.includes('/dist/')) continue;
      for (const f of script.functions) {
        const n = f.ranges[0].count;
        if (n === 0) continue;
        calls += n;
        functions++;
        for (const r of f.ranges) maxBlock = Math.max(maxBlock, r.count);
      }
    }
    const own = ran(result, new Set());
    let cold = 0;
    for (const k of own) if (!since.has(k)) cold++;
    for (const k of own) since.add(k);
    if (cs.deltas.length > 0) since = new Set();
    return { deltas: cs.deltas.length, calls, functions, cold, maxBlock, tableOps: ops };
  };
  const engine = new Engine();
  engine.apply(initial);
  warmUpEngine();
  await session.post('Profiler.takePreciseCoverage');
  const inPlace = [];
  for (const item of churn) {
    if (item.tag !== 'pod-relabel') engine.apply([item.event]);
    else inPlace.push({ line: item.line, ...(await footprint(() => engine.apply([item.event]))) });
  }
  // The delta relabels repeated as the timing arms repeat them (each allocates an identity and frees the previous one).
  const repeated = [];
  for (const r of inPlace.filter((x) => x.deltas > 0)) {
    const [e1, e2] = again(r.line, 2, 'fp');
    engine.apply([e1]);
    repeated.push({ line: r.line, ...(await footprint(() => engine.apply([e2]))) });
  }
  const byKind = (xs) => ({
    n: xs.length,
    calls: summary(xs.map((x) => x.calls)),
    functions: summary(xs.map((x) => x.functions)),
    cold: summary(xs.map((x) => x.cold)),
    maxBlock: summary(xs.map((x) => x.maxBlock)),
    tableOps: summary(xs.map((x) => x.tableOps.small + x.tableOps.mid + x.tableOps.large)),
    largeTableOps: summary(xs.map((x) => x.tableOps.large)),
  });
  const inPlaceDelta = inPlace.filter((x) => x.deltas > 0);
  process.stdout.write(`${JSON.stringify({ header: header(), inPlace: { delta: byKind(inPlaceDelta), plain: byKind(inPlace.filter((x) => x.deltas === 0)) }, inPlaceDelta, repeated })}\n`);
  process.exit(0);
}

const a = new Engine();
a.apply(initial);
warmUpEngine();
const relabels = [];
for (const item of churn) {
  const [us, cs] = onCpuUs(() => a.apply([item.event]));
  if (item.tag === 'pod-relabel') relabels.push({ line: item.line, us, deltas: cs.deltas.length });
}
const b = new Engine();
b.apply(initial);
for (const item of churn) b.apply([item.event]);

const delta = relabels.filter((r) => r.deltas > 0);
const from = (delta[0]?.line ?? 0) - 300;
const plain = relabels.filter((r) => r.deltas === 0 && r.line > from).slice(0, 6);
const buf = new Uint8Array(64 << 20);
let sink = 0;
const flush = () => {
  for (let i = 0; i < buf.length; i += 64) sink += buf[i]++;
};
const timed = (e, want) => {
  const [us, cs] = onCpuUs(() => a.apply([e]));
  if ((cs.deltas.length > 0) !== want) throw new Error('a repeated relabel changed class');
  return us;
};
const rows = [];
for (const [kind, set] of [['delta', delta], ['plain', plain]]) {
  for (const r of set) {
    const evs = again(r.line, 2 + 3 * rounds, 'a');
    const evsB = again(r.line, rounds, 'b');
    const want = kind === 'delta';
    timed(evs[0], want);
    timed(evs[1], want);
    const warm = [];
    const flushed = [];
    const codeWarm = [];
    for (let k = 0; k < rounds; k++) {
      warm.push(timed(evs[2 + 3 * k], want));
      flush();
      flushed.push(timed(evs[3 + 3 * k], want));
      flush();
      b.apply([evsB[k]]);
      codeWarm.push(timed(evs[4 + 3 * k], want));
    }
    rows.push({ kind, line: r.line, inReplay: r1(r.us), warm: r1(median(warm)), flushed: r1(median(flushed)), codeWarm: r1(median(codeWarm)) });
  }
}
const arms = (kind) => {
  const xs = rows.filter((r) => r.kind === kind);
  return Object.fromEntries(['inReplay', 'warm', 'flushed', 'codeWarm'].map((k) => [k, summary(xs.map((r) => r[k]))]));
};
process.stdout.write(`${JSON.stringify({ header: { ...header(), sink: sink & 1 }, delta: arms('delta'), plain: arms('plain'), rows })}\n`);
