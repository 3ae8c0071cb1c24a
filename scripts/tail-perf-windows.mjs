// Where chosen churn events spend their time, from `perf` samples (issue 18, eighth session).
// Record RUN times (CLOCK_MONOTONIC, the clock of process.hrtime):
//   perf record -g -F 30000 -k CLOCK_MONOTONIC -o gN.data node --perf-basic-prof \
//     --interpreted-frames-native-stack scripts/tail-attrib.mjs DIST TRACE 100 > goutN.json
//   perf script -i gN.data -F pid,tid,time,ip,sym --ns > gsN.txt
// then: node scripts/tail-perf-windows.mjs LINES N [FRAME]
// keeps the main thread's samples inside the events of trace LINES (comma-separated; they must be
// over tail-attrib's threshold to be listed with their hrtime window) and prints the share of
// samples per self symbol and per JS frame on the stack (inclusive); with FRAME, the callees
// directly under frames whose name contains FRAME.
import { readFileSync } from 'node:fs';

const [linesArg, runs, frame] = process.argv.slice(2);
const lines = new Set(linesArg.split(',').map(Number));
const self = new Map();
const incl = new Map();
const under = new Map();
let total = 0;
const bump = (m, k) => m.set(k, (m.get(k) ?? 0) + 1);
const clean = (l) => l.trim().replace(/^[0-9a-f]+\s+/, '').replace(/\s+\(.*$/, '').replace(/file:\/\/\S*\/dist\//, '').replace(/^JS:[*^~]/, 'JS:').slice(0, 80);
for (let i = 1; i <= Number(runs); i++) {
  const windows = JSON.parse(readFileSync(`gout${i}.json`, 'utf8')).slow.filter((s) => lines.has(s.line)).map((s) => s.hrUs);
  for (const block of readFileSync(`gs${i}.txt`, 'utf8').split('\n\n')) {
    const ls = block.split('\n').filter(Boolean);
    const m = ls[0]?.match(/^\s*(\d+)\/(\d+)\s+([\d.]+):/);
    if (!m || m[1] !== m[2]) continue;
    const t = Number(m[3]) * 1e6;
    if (!windows.some(([a, b]) => t >= a && t <= b)) continue;
    total++;
    const syms = ls.slice(1).map(clean);
    bump(self, syms[0] ?? '?');
    for (const s of new Set(syms)) if (s.startsWith('JS:')) bump(incl, s);
    if (frame) {
      const at = syms.findIndex((s) => s.includes(frame));
      if (at >= 0) bump(under, at === 0 ? '(self)' : syms[at - 1]);
    }
  }
}
const show = (title, m, n) => {
  process.stdout.write(`${title}\n`);
  for (const [k, v] of [...m].sort((a, b) => b[1] - a[1]).slice(0, n)) process.stdout.write(`${((100 * v) / total).toFixed(1).padStart(6)} % ${k}\n`);
};
process.stdout.write(`${total} samples\n`);
show('self', self, 25);
show('inclusive (JS frames)', incl, 40);
if (frame) show(`directly under ${frame}`, under, 20);
