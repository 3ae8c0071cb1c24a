// Summarizes .cpuprofile files (summed): self time by file and by function, inclusive time
// (--incl), or, with --callers PATTERN, the self time of the functions matching PATTERN by caller
// and caller's caller. Usage: node scripts/profile-summary.mjs [--incl | --callers PATTERN] FILE...
import { readFileSync } from 'node:fs';

const args = process.argv.slice(2);
const callersAt = args.indexOf('--callers');
const pattern = callersAt >= 0 ? args[callersAt + 1] : undefined;
const files = args.filter((a, i) => !a.startsWith('--') && (callersAt < 0 || i !== callersAt + 1));
const name = (n) => `${n.callFrame.functionName || '(anon)'} ${(n.callFrame.url || '(native)').replace(/.*\/dist\//, '')}:${n.callFrame.lineNumber + 1}`;
const self = new Map();
const byFile = new Map();
const incl = new Map();
const callers = new Map();
let total = 0;
const bump = (m, k, c) => m.set(k, (m.get(k) ?? 0) + c);
for (const f of files) {
  const p = JSON.parse(readFileSync(f, 'utf8'));
  const nodes = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const counts = new Map();
  for (const s of p.samples) bump(counts, s, 1);
  for (const [id, c] of counts) {
    const n = nodes.get(id);
    total += c;
    bump(self, name(n), c);
    bump(byFile, (n.callFrame.url || '(native)').replace(/.*\/dist\//, ''), c);
    if (pattern !== undefined && name(n).includes(pattern)) {
      const up = nodes.get(parent.get(id));
      const up2 = up && nodes.get(parent.get(up.id));
      bump(callers, `${up ? name(up) : '-'}  <-  ${up2 ? name(up2) : '-'}`, c);
    }
    const seen = new Set();
    for (let cur = id; cur !== undefined; cur = parent.get(cur)) {
      const k = name(nodes.get(cur));
      if (!seen.has(k)) bump(incl, k, c);
      seen.add(k);
    }
  }
}
const pct = (c) => ((100 * c) / total).toFixed(1).padStart(5);
const top = (m, n) => [...m].sort((a, b) => b[1] - a[1]).slice(0, n);
console.log('total samples', total);
if (pattern !== undefined) {
  for (const [k, c] of top(callers, 25)) console.log(pct(c), k);
} else {
  console.log('--- self, by file');
  for (const [k, c] of top(byFile, 25)) console.log(pct(c), k);
  console.log('--- self, by function');
  for (const [k, c] of top(self, 45)) console.log(pct(c), k);
  if (args.includes('--incl')) {
    console.log('--- inclusive');
    for (const [k, c] of top(incl, 70)) console.log(pct(c), k);
  }
}
