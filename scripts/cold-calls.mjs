// JavaScript function calls a cold start makes (engine.apply of the trace's initial phase), per
// build, counted by V8's precise coverage (call counts, a fresh process per build): a
// deterministic measure of how much code a cold start runs in the interpreter and baseline tiers,
// where every call costs (optimised code inlines most of them). Prints per build the total and the
// functions called; with TOP > 0, the TOP functions by calls with both builds' counts.
// Usage: node scripts/cold-calls.mjs TRACE [TOP=0] DIST...
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { initialEvents } from './initial-events.mjs';

async function child(dist, tracePath) {
  const { Session } = await import('node:inspector/promises');
  const { parseTrace } = await import(resolve(dist, 'churn/trace.js'));
  const { Engine } = await import(resolve(dist, 'engine/engine.js'));
  const trace = parseTrace(readFileSync(tracePath, 'utf8'), tracePath, { manifests: false });
  const initial = initialEvents(trace);
  const s = new Session();
  s.connect();
  await s.post('Profiler.enable');
  await s.post('Profiler.startPreciseCoverage', { callCount: true, detailed: false });
  await s.post('Profiler.takePreciseCoverage'); // resets the counts: what follows is the cold start only
  new Engine({}).apply(initial);
  const { result } = await s.post('Profiler.takePreciseCoverage');
  const calls = {};
  for (const script of result) {
    const file = script.url.match(/\/dist\/(.*)$/)?.[1];
    if (file === undefined) continue;
    for (const f of script.functions) {
      const n = f.ranges[0].count;
      if (n > 0) calls[`${f.functionName || '(anon)'} ${file}:${f.ranges[0].startOffset}`] = n;
    }
  }
  process.stdout.write(JSON.stringify(calls));
}

const argv = process.argv.slice(2);
if (argv[0] === '--child') {
  await child(argv[1], argv[2]);
} else {
  const [trace, topArg, ...dists] = argv;
  if (!trace || dists.length === 0) {
    process.stderr.write('usage: node scripts/cold-calls.mjs TRACE [TOP=0] DIST...\n');
    process.exit(2);
  }
  const self = fileURLToPath(import.meta.url);
  const byBuild = dists.map((d) => JSON.parse(execFileSync('node', [self, '--child', d, trace], { encoding: 'utf8', maxBuffer: 1 << 26 })));
  // Offsets move with the code: functions are compared by name and file.
  const byName = (calls) => {
    const m = new Map();
    for (const [k, n] of Object.entries(calls)) {
      const name = k.replace(/:\d+$/, '');
      m.set(name, (m.get(name) ?? 0) + n);
    }
    return m;
  };
  dists.forEach((d, i) => {
    const counts = Object.values(byBuild[i]);
    process.stdout.write(`${JSON.stringify({ dist: d, trace, calls: counts.reduce((a, b) => a + b, 0), functionsCalled: counts.length })}\n`);
  });
  const top = Number(topArg ?? 0);
  if (top > 0) {
    const maps = byBuild.map(byName);
    const names = [...new Set(maps.flatMap((m) => [...m.keys()]))].sort((a, b) => Math.max(...maps.map((m) => m.get(b) ?? 0)) - Math.max(...maps.map((m) => m.get(a) ?? 0)));
    for (const n of names.slice(0, top)) process.stdout.write(`${maps.map((m) => String(m.get(n) ?? 0).padStart(8)).join(' ')}  ${n}\n`);
  }
}
