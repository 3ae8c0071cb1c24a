// The churn's scavenges and the events they land on (issue 18, perf29tail). Runs a child `node
// --trace-gc [NODE_FLAGS] scripts/churn-gc.mjs --child DIST TRACE`: cold start, built-in warm-up,
// then one `engine.apply` per churn event (as `distill replay` without --backend), a marker line
// written around each event; V8's GC lines fall between the markers. Prints one JSON line: GCs
// before the churn, each churn scavenge's wall ms and the event (tag, trace line) it fell in, and
// the cold start's and the churn's process CPU ms.
//   node scripts/churn-gc.mjs DIST TRACE [NODE_FLAGS...]     e.g. --max-semi-space-size=4
import { execFileSync } from 'node:child_process';
import { readFileSync, writeSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { splitTrace } from './lib/initial.mjs';

const argv = process.argv.slice(2);
if (argv[0] === '--child') await child(argv[1], argv[2]);
else parent(argv[0], argv[1], argv.slice(2));

async function child(dist, tracePath) {
  const base = pathToFileURL(resolve(dist)).href;
  const { Engine } = await import(`${base}/engine/engine.js`);
  const { parseTrace } = await import(`${base}/churn/trace.js`);
  const { warmUpEngine } = await import(`${base}/churn/warm-up.js`);
  const { initial, churn } = splitTrace(parseTrace(readFileSync(tracePath, 'utf8'), tracePath));
  const ms = (u) => Math.round((u.user + u.system) / 1000);
  const c0 = process.cpuUsage();
  const engine = new Engine();
  engine.apply(initial);
  const coldCpuMs = ms(process.cpuUsage(c0));
  warmUpEngine({});
  writeSync(1, 'MARK churn\n');
  const c1 = process.cpuUsage();
  for (const item of churn) {
    writeSync(1, `B ${item.tag} ${item.line}\n`);
    engine.apply([item.event]);
    writeSync(1, 'E\n');
  }
  const churnCpuMs = ms(process.cpuUsage(c1));
  writeSync(1, `MARK end ${JSON.stringify({ coldCpuMs, churnCpuMs })}\n`);
}

function parent(dist, tracePath, nodeFlags) {
  if (!dist || !tracePath) {
    process.stderr.write('usage: node scripts/churn-gc.mjs DIST TRACE [NODE_FLAGS...]\n');
    process.exit(2);
  }
  const self = fileURLToPath(import.meta.url);
  const out = execFileSync(process.execPath, ['--trace-gc', ...nodeFlags, self, '--child', dist, tracePath], { encoding: 'utf8', maxBuffer: 1 << 28 });
  let inChurn = false;
  let event = '';
  let before = 0;
  let cpu = {};
  const churnGcs = [];
  for (const line of out.split('\n')) {
    if (line === 'MARK churn') inChurn = true;
    else if (line.startsWith('MARK end ')) {
      inChurn = false;
      cpu = JSON.parse(line.slice(9));
    } else if (line.startsWith('B ')) event = line.slice(2);
    else if (line === 'E') event = '';
    const gc = /: (Scavenge|Mark-Compact)[^,]*MB, ([\d.]+) \//.exec(line);
    if (!gc) continue;
    if (inChurn) churnGcs.push({ kind: gc[1], ms: Number(gc[2]), event: event || 'between' });
    else before++;
  }
  process.stdout.write(`${JSON.stringify({ dist, trace: tracePath, nodeFlags, gcsBeforeChurnEnd: before, churnGcs, ...cpu })}\n`);
}
