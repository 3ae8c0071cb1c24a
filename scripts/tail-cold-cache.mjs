// How much of a delta relabel's time is the CPU caches (issue 18, perf27tail). Replays TRACE through
// DIST as `distill replay` does (cold start as one transaction, the built-in warm-up, then one
// transaction per churn event; no backend), and records the on-CPU µs (wall time minus the run-queue
// wait that /proc/thread-self/schedstat reports, as tail-classify.mjs does) of every pod relabel that emits a delta. After the churn,
// for each of those pods: the same relabel again with fresh `version` values (each allocates an
// identity that the same peer selector selects, as the trace's relabel did), first twice back to
// back and then ROUNDS times each "warm" (right after another such relabel) and "flushed" (right after
// walking a 64 MB buffer, which evicts the caches and the TLB). Prints one JSON line: header (commit,
// Node, CPU, date, load) and per relabel line { inReplay, firstAgain, secondAgain, warm, flushed }
// (medians over ROUNDS for the last two) plus the pod-add / pod-relabel on-CPU p50 of the replay.
// V8 tier and IC state are the same in the warm and flushed arms (they alternate): the gap is
// memory, not code generation. V8FLAGS (an experiment arm, perf28 2503): set with v8.setFlagsFromString
// after the cold start, right before the warm-up (e.g. `--interrupt-budget=8448`), in effect for the churn.
//   node scripts/tail-cold-cache.mjs DIST TRACE [ROUNDS=15] [V8FLAGS]
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { splitTrace } from './lib/initial.mjs';

const [dist, tracePath, roundsArg, v8Flags] = process.argv.slice(2);
if (!dist || !tracePath) {
  process.stderr.write('usage: node scripts/tail-cold-cache.mjs DIST TRACE [ROUNDS]\n');
  process.exit(2);
}
const rounds = Number(roundsArg ?? 15);
const base = pathToFileURL(resolve(dist)).href;
const { Engine } = await import(`${base}/engine/engine.js`);
const { parseTrace } = await import(`${base}/churn/trace.js`);
const { warmUpEngine } = await import(`${base}/churn/warm-up.js`);
const text = readFileSync(tracePath, 'utf8');
const { initial, churn } = splitTrace(parseTrace(text, tracePath));
const lines = text.split('\n');
const waitNs = () => Number(readFileSync('/proc/thread-self/schedstat', 'latin1').split(' ', 2)[1]);
/** µs on the CPU for `f()`: wall time minus the run-queue wait in it. */
const onCpuUs = (f) => {
  const w = waitNs();
  const t = process.hrtime.bigint();
  const r = f();
  const wall = Number(process.hrtime.bigint() - t) / 1e3;
  return [Math.max(0, wall - (waitNs() - w) / 1e3), r];
};
const r1 = (x) => Math.round(x * 10) / 10;
const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];

const engine = new Engine();
engine.apply(initial);
if (v8Flags) (await import('node:v8')).setFlagsFromString(v8Flags);
warmUpEngine();
const onCpu = new Map();
const deltaRelabels = [];
for (const item of churn) {
  const [us, cs] = onCpuUs(() => engine.apply([item.event]));
  if (!onCpu.has(item.tag)) onCpu.set(item.tag, []);
  onCpu.get(item.tag).push(us);
  if (item.tag === 'pod-relabel' && cs.deltas.length > 0) deltaRelabels.push({ line: item.line, us });
}

/** The trace line's pod event again, `n` times, each with a version of its own, read as the trace reader reads it. */
const again = (line, n) => {
  const raw = JSON.parse(lines[line - 1]);
  const out = [lines[0], '{"type":"phase","name":"churn"}'];
  for (let k = 0; k < n; k++) {
    raw.pod.labels.version = `cold-cache-${line}-${k}`;
    out.push(JSON.stringify(raw));
  }
  return splitTrace(parseTrace(out.join('\n'), 'cold-cache')).churn.map((i) => i.event);
};
const buf = new Uint8Array(64 << 20);
let sink = 0;
const flush = () => {
  for (let i = 0; i < buf.length; i += 64) sink += buf[i]++;
};
const timed = (e) => {
  const [us, cs] = onCpuUs(() => engine.apply([e]));
  if (cs.deltas.length === 0) throw new Error('a repeated relabel emitted no delta: not the delta path');
  return us;
};
const rows = [];
for (const d of deltaRelabels) {
  const evs = again(d.line, 2 + 2 * rounds);
  const firstAgain = timed(evs[0]);
  const secondAgain = timed(evs[1]);
  const warm = [];
  const flushed = [];
  for (let k = 0; k < rounds; k++) {
    warm.push(timed(evs[2 + 2 * k]));
    flush();
    flushed.push(timed(evs[3 + 2 * k]));
  }
  rows.push({ line: d.line, inReplay: r1(d.us), firstAgain: r1(firstAgain), secondAgain: r1(secondAgain), warm: r1(median(warm)), flushed: r1(median(flushed)) });
}
const commit = (() => {
  try {
    return execFileSync('git', ['-C', dirname(resolve(dist)), 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();
  } catch {
    return 'unknown';
  }
})();
const p50 = (tag) => r1(median(onCpu.get(tag) ?? [0]));
const header = { dist, commit, node: process.version, cpu: cpus()[0]?.model ?? 'unknown', date: new Date().toISOString(), load: loadavg()[0], rounds, v8Flags: v8Flags ?? null, sink: sink & 1 };
process.stdout.write(`${JSON.stringify({ header, podAddOnCpuP50: p50('pod-add'), podRelabelOnCpuP50: p50('pod-relabel'), rows })}\n`);
