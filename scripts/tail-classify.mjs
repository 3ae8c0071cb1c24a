// What the slowest 1 % of each churn event kind ARE (issue 18, perf19). Replays TRACE through DIST
// as `distill replay` does (cold start as one transaction; then per churn event `engine.apply` +
// `applyChangeSet` to a MemoryBackend timed with hrtime, the heap sampled every 64 events), and
// records per event: its tag, wall µs, run-queue wait (/proc/thread-self/schedstat; wall minus wait
// is on-CPU), bytes allocated (heap readings outside the timer), the engine's work counters
// (engine.stats() after minus before), deltas, the GCs overlapping it (PerformanceObserver 'gc',
// kind and µs inside the event) and, run under `node --trace-deopt --trace-opt` with `--mark`, the
// deoptimisations and TurboFan jobs inside it (a marker line is written to fd 1 before and after each
// event, synchronously and outside the timer, so V8's trace lines fall between them; `--read` then
// classifies from that output). Prints one JSON line: per tag n, p50, p99 (replay.ts's percentile),
// on-CPU p50/p99, the events over 5× the on-CPU p50 counted by class, the events ranked at or above
// the p99 (by wall and by on-CPU time) with their class, and churn totals (GCs per 1,000 events, KB
// allocated per event, deopts, events with a TurboFan job).
//   stdbuf -o0 node --trace-deopt --trace-opt scripts/tail-classify.mjs DIST TRACE --mark > /tmp/out.txt
//   node scripts/tail-classify.mjs --read /tmp/out.txt        (classifies from the marked output)
//   node scripts/tail-classify.mjs DIST TRACE                  (no deopt counts)
// --lean: no backend, work counters or heap readings per event, so the churn allocates what
// `distill replay` (no --backend) allocates and its GCs fall as there (no `work` class then).
// --warm=TRACE2 (an experiment): before the timed churn, a scratch engine replays TRACE2 whole.
// --warm-up: before the timed churn, DIST's built-in warm-up (churn/warm-up.js, what `distill replay`
// runs unless --no-warm-up). --gc-after-warm-up (needs node --expose-gc; an experiment arm): then
// a full GC, outside any timed region. --warm-up-workload=JSON: warmUpEngine's workload argument
// instead of the built-in one (an experiment arm: sizes and rounds).
// Classes, first that applies: wait (run-queue wait ≥ half the wall time: the machine, not the code),
// gc (a GC overlaps the event for ≥ half its on-CPU time), first (first event of its kind: lazy
// compilation and feedback allocation), deopt (a deoptimisation inside it), jit (with --trace-opt: a
// TurboFan job started or was installed inside it), work (it evaluated a
// selector, visited a map entry or emitted a delta), cold (none of these: code or data out of cache,
// e.g. after a namespace relabel; `prev` names the event before it).
import { readFileSync, writeSync } from 'node:fs';
import { resolve } from 'node:path';
import { getHeapStatistics } from 'node:v8';
import { performance, PerformanceObserver, constants } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { splitTrace } from './lib/initial.mjs';

/** --lean: no backend, no work counters, no heap readings per event (as `distill replay` without --backend allocates). */
const NO_WORK = {};
const WORK = ['selectorEvaluations', 'policyResolutions', 'mapStateUpdates', 'mapEntriesVisited', 'identitiesAllocated', 'identitiesReleased', 'deltas'];
const percentileIndex = (n, p) => Math.min(n - 1, Math.ceil((p / 100) * n) - 1);
const r1 = (x) => Math.round(x * 10) / 10;
const countBy = (xs) => Object.fromEntries([...new Set(xs)].map((x) => [x, xs.filter((y) => y === x).length]));
const mean = (xs) => r1(xs.reduce((s, x) => s + x, 0) / xs.length);

/** Runs the replay loop; returns the per-event records (with `--mark`, marker lines go to fd 1). */
async function run(dist, tracePath, mark, warm, builtIn, gcAfter, workload, lean) {
  const base = pathToFileURL(resolve(dist)).href;
  const { Engine } = await import(`${base}/engine/engine.js`);
  const { parseTrace } = await import(`${base}/churn/trace.js`);
  const { applyChangeSet } = await import(`${base}/backend/backend.js`);
  const { MemoryBackend } = await import(`${base}/backend/memory.js`);
  const gcs = [];
  const obs = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) gcs.push({ start: e.startTime, end: e.startTime + e.duration, kind: e.detail?.kind ?? e.kind });
  });
  obs.observe({ entryTypes: ['gc'] });
  const sched = () => readFileSync('/proc/thread-self/schedstat', 'latin1').split(' ', 2).map(Number);
  const { initial, churn } = splitTrace(parseTrace(readFileSync(tracePath, 'utf8'), tracePath));
  const backend = new MemoryBackend();
  const engine = new Engine();
  let warmCpuMs;
  applyChangeSet(backend, engine.apply(initial));
  initial.length = 0;
  if (warm) {
    // Experiment, not what `distill replay` does: a scratch engine replays another (small) trace in
    // full, so the churn paths are compiled, deoptimised and re-optimised before the timed churn.
    const w = splitTrace(parseTrace(readFileSync(warm, 'utf8'), warm));
    const warm0 = process.cpuUsage();
    const scratch = new Engine();
    const scratchBackend = new MemoryBackend();
    applyChangeSet(scratchBackend, scratch.apply(w.initial));
    for (const item of w.churn) applyChangeSet(scratchBackend, scratch.apply([item.event]));
    const u = process.cpuUsage(warm0);
    warmCpuMs = Math.round((u.user + u.system) / 1000);
  }
  if (builtIn) {
    const { warmUpEngine } = await import(`${base}/churn/warm-up.js`);
    const warm0 = process.cpuUsage();
    const w = warmUpEngine(workload ? { workload: JSON.parse(workload) } : {});
    if (w.error) throw new Error(`warm-up: ${w.error}`);
    if (gcAfter) globalThis.gc();
    const u = process.cpuUsage(warm0);
    warmCpuMs = Math.round((u.user + u.system) / 1000);
  }
  if (mark) writeSync(1, 'MARK churn\n');
  const events = [];
  const cpu0 = process.cpuUsage();
  for (let i = 0; i < churn.length; i++) {
    const item = churn[i];
    const w0 = lean ? NO_WORK : engine.stats();
    const c0 = sched();
    if (mark) writeSync(1, `MARK b ${i}\n`);
    const a0 = lean ? 0 : getHeapStatistics().used_heap_size;
    const t0 = performance.now();
    const h = process.hrtime.bigint();
    const cs = engine.apply([item.event]);
    if (!lean) applyChangeSet(backend, cs);
    const us = Number(process.hrtime.bigint() - h) / 1e3;
    const t1 = performance.now();
    const a1 = lean ? 0 : getHeapStatistics().used_heap_size;
    if (mark) writeSync(1, `MARK e ${i}\n`);
    const c1 = sched();
    const w1 = lean ? NO_WORK : engine.stats();
    const work = {};
    for (const k of WORK) work[k] = w1[k] - w0[k];
    events.push({ i, tag: item.tag, line: item.line, t0, t1, us, waitUs: (c1[1] - c0[1]) / 1e3, allocB: a1 - a0, deltas: cs.deltas.length, work });
    if ((i & 63) === 0) getHeapStatistics(); // replay.ts's peak-heap sample
    if (lean) events[i].work = NO_WORK;
  }
  const churnCpu = process.cpuUsage(cpu0);
  const churnCpuMs = Math.round((churnCpu.user + churnCpu.system) / 1000);
  await new Promise((r) => setTimeout(r, 50));
  obs.disconnect();
  const kindName = (k) => ({ [constants.NODE_PERFORMANCE_GC_MINOR]: 'scavenge', [constants.NODE_PERFORMANCE_GC_MAJOR]: 'mark-compact', [constants.NODE_PERFORMANCE_GC_INCREMENTAL]: 'incremental-mark', [constants.NODE_PERFORMANCE_GC_WEAKCB]: 'weak-cb' })[k] ?? String(k);
  const churnStart = events[0]?.t0 ?? 0;
  const churnGcs = gcs.filter((g) => g.end > churnStart).map((g) => ({ ...g, kind: kindName(g.kind) }));
  for (const e of events) {
    e.gc = churnGcs.filter((g) => g.end > e.t0 && g.start < e.t1).map((g) => ({ kind: g.kind, us: Math.round((Math.min(g.end, e.t1) - Math.max(g.start, e.t0)) * 1e3) }));
    delete e.t0;
    delete e.t1;
  }
  return { events, churnGcs: churnGcs.map((g) => ({ kind: g.kind, ms: r1(g.end - g.start) })), churnCpuMs, warmCpuMs };
}

// The script's own functions (their compiles are not the engine's).
// Node's own used by the script's markers, schedstat reads and timers count as the script's.
const SCRIPT_FUNCTIONS = new Set(['run', 'sched', 'deoptsByEvent', 'classify', 'report', 'row', 'countBy', 'mean', 'r1', 'percentileIndex', 'writeSync', 'readSync', 'readFileSync', 'openSync', 'validateOffset', 'isURL', 'isFileType', 'isEncoding', 'normalizeEncoding', 'getEncodingOps', 'hrtimeBigInt', 'getHeapStatistics', 'now', 'toString', 'subarray', 'allocUnsafe', 'alignPool', 'adjustOffset', 'FastBuffer', 'slowCases', 'concat']);

/** Deopt trace lines between each event's markers (index → lines), from a `--mark` run's stdout. */
function deoptsByEvent(text) {
  const by = new Map();
  const opt = new Map();
  let inside = -1;
  let churn = false;
  let churnTotal = 0;
  let between = 0;
  let compiled = 0;
  let compiledNotScript = 0;
  for (const line of text.split('\n')) {
    if (line === 'MARK churn') churn = true;
    else if (line.startsWith('MARK b ')) inside = Number(line.slice(7));
    else if (line.startsWith('MARK e ')) inside = -1;
    if (churn && line.startsWith('[completed compiling')) {
      compiled++;
      if (!SCRIPT_FUNCTIONS.has(/<JSFunction ([^ >]*)/.exec(line)?.[1] ?? '')) compiledNotScript++;
    }
    if (line.startsWith('MARK')) continue;
    if (churn && inside >= 0 && (line.startsWith('[completed compiling') || line.startsWith('[compiling method'))) {
      // --trace-opt: a TurboFan job started or finished (installed) on the main thread inside the event.
      if (!opt.has(inside)) opt.set(inside, []);
      opt.get(inside).push(/<JSFunction ([^ >]*)/.exec(line)?.[1] ?? '?');
    } else if (churn && (line.startsWith('[bailout') || line.startsWith('[marking dependent code'))) {
      churnTotal++;
      if (inside < 0) between++;
      else {
        const fn = /<JSFunction ([^ >]*)/.exec(line)?.[1];
        const reason = /reason: ([^)\]]*)/.exec(line)?.[1];
        if (!by.has(inside)) by.set(inside, []);
        by.get(inside).push(line.startsWith('[bailout') ? `${fn}(${reason})` : `lazy(${reason})`);
      }
    }
  }
  return { by, opt, churnTotal, between, compiled, compiledNotScript };
}

function classify(e, first) {
  const cpu = e.us - e.waitUs;
  const gcUs = e.gc.reduce((s, g) => s + g.us, 0);
  if (e.waitUs >= e.us / 2) return 'wait';
  if (gcUs >= cpu / 2) return 'gc';
  if (first) return 'first';
  if (e.deopts?.length) return 'deopt';
  if (e.opt?.length) return 'jit';
  if (e.deltas > 0 || e.work.selectorEvaluations > 0 || e.work.mapEntriesVisited > 0) return 'work';
  return 'cold';
}

function report({ events, churnGcs, churnCpuMs, warmCpuMs }, deopts) {
  const byTag = new Map();
  const seen = new Set();
  for (const e of events) {
    e.first = !seen.has(e.tag);
    seen.add(e.tag);
    e.prev = events[e.i - 1]?.tag;
    if (deopts) e.deopts = deopts.by.get(e.i) ?? [];
    if (deopts) e.opt = deopts.opt.get(e.i) ?? [];
    if (!byTag.has(e.tag)) byTag.set(e.tag, []);
    byTag.get(e.tag).push(e);
  }
  const tags = {};
  for (const [tag, list] of byTag) {
    const sorted = [...list].sort((a, b) => a.us - b.us);
    const at = percentileIndex(sorted.length, 99);
    const top = sorted.slice(at).reverse();
    const cpuP50 = [...list].map((e) => e.us - e.waitUs).sort((a, b) => a - b)[percentileIndex(list.length, 50)];
    const withWork = list.filter((e) => e.deltas > 0 || e.work.selectorEvaluations > 0).length;
    tags[tag] = {
      n: list.length,
      p50: r1(sorted[percentileIndex(sorted.length, 50)].us),
      p99: r1(sorted[at].us),
      onCpuP50: r1(cpuP50),
      onCpuP99: r1([...list].map((e) => e.us - e.waitUs).sort((a, b) => a - b)[at]),
      allocKBMean: mean(list.filter((e) => e.gc.length === 0).map((e) => e.allocB / 1024)),
      eventsWithWork: withWork,
      // Events over 5× the kind's on-CPU p50 (quiet, the target is ~5× the p50; under load absolute µs mislead), by class.
      over5xP50OnCpu: countBy(list.filter((e) => e.us - e.waitUs > 5 * cpuP50).map((e) => classify({ ...e, waitUs: 0, us: e.us - e.waitUs }, e.first))),
      top: top.map(row),
      // Under load the wall ranking is the run queue's: the same slots ranked by on-CPU time.
      topOnCpu: [...list].sort((a, b) => b.us - b.waitUs - (a.us - a.waitUs)).slice(0, top.length).map(row),
    };
  }
  function row(e) {
    return { class: classify(e, e.first), line: e.line, us: Math.round(e.us), cpuUs: Math.round(e.us - e.waitUs), waitUs: Math.round(e.waitUs), prev: e.prev, gc: e.gc.map((g) => `${g.kind}:${g.us}`).join(','), deltas: e.deltas, sel: e.work.selectorEvaluations, visited: e.work.mapEntriesVisited, allocKB: r1(e.allocB / 1024), ...(e.deopts ? { deopts: e.deopts.slice(0, 4).join(' '), opt: e.opt.slice(0, 4).join(' ') } : {}) };
  }
  const n = events.length;
  const scav = churnGcs.filter((g) => g.kind === 'scavenge');
  return {
    tags,
    churn: {
      events: n,
      cpuMs: churnCpuMs,
      ...(warmCpuMs === undefined ? {} : { warmCpuMs }),
      gcsPer1000: r1((churnGcs.length / n) * 1000),
      gcs: churnGcs.length,
      scavenges: scav.length,
      scavengeMs: scav.map((g) => g.ms),
      otherGcs: churnGcs.filter((g) => g.kind !== 'scavenge').map((g) => `${g.kind}:${g.ms}`),
      allocKBPerEvent: mean(events.filter((e) => e.gc.length === 0).map((e) => e.allocB / 1024)),
      ...(deopts ? { deopts: deopts.churnTotal, deoptsBetweenEvents: deopts.between, eventsWithDeopt: deopts.by.size, eventsWithOptimisation: deopts.opt.size, compilesFinished: deopts.compiled, compilesFinishedNotScript: deopts.compiledNotScript } : {}),
    },
  };
}

const argv = process.argv.slice(2);
if (argv[0] === '--read') {
  const text = readFileSync(argv[1], 'utf8');
  const json = text.split('\n').find((l) => l.startsWith('RESULT '));
  process.stdout.write(`${JSON.stringify(report(JSON.parse(json.slice(7)), deoptsByEvent(text)))}\n`);
} else {
  const mark = argv.includes('--mark');
  const [dist, trace] = argv.filter((a) => !a.startsWith('--'));
  const warm = argv.find((a) => a.startsWith('--warm='))?.slice(7);
  const result = await run(dist, trace, mark, warm, argv.includes('--warm-up'), argv.includes('--gc-after-warm-up'), argv.find((a) => a.startsWith('--warm-up-workload='))?.slice(19), argv.includes('--lean'));
  if (mark) writeSync(1, `RESULT ${JSON.stringify(result)}\n`);
  else process.stdout.write(`${JSON.stringify(report(result))}\n`);
}
