// A whole-process CPU profile split by phase: the innermost frame on the stack that names a phase wins
// (--cpu-prof output of e.g. `node --cpu-prof --cpu-prof-dir=DIR dist/cli/main.js replay TRACE --limit 0 --no-warm-up`), ms per profile
// by phase. The inspector samples on a wall-clock timer: under load the ms include waiting for a core.
// Usage: node scripts/profile-phases.mjs DIR
import fs from 'node:fs';
const dir = process.argv[2];
const phases = [
  ['engine.apply', (f) => f.functionName === 'apply' && f.url.endsWith('engine/engine.js')],
  ['write plan + backend (applyChangeSet)', (f) => f.functionName === 'applyChangeSet'],
  ['parse trace', (f) => f.functionName === 'parseTrace'],
  ['module load/compile', (f) => /internal\/modules|cjs-module-lexer|compileSourceTextModule|internal\/bootstrap/.test(f.url) || f.functionName === 'compileSourceTextModule'],
];
const tot = new Map(); let all = 0; const perFile = [];
for (const f of fs.readdirSync(dir)) {
  const p = JSON.parse(fs.readFileSync(dir + '/' + f)); const byId = new Map(p.nodes.map((n) => [n.id, n])); const parent = new Map();
  for (const n of p.nodes) for (const c of n.children || []) parent.set(c, n.id);
  const dts = p.timeDeltas; let ms = 0; const mine = new Map();
  p.samples.forEach((s, i) => {
    const dt = (dts[i + 1] ?? 0) / 1000; // time until the next sample, ms
    let x = s, ph = 'other';
    const leaf = byId.get(s).callFrame.functionName;
    if (leaf === '(idle)') ph = '(idle)'; else if (leaf === '(garbage collector)') ph = 'gc (outside the phases below)';
    const stack = []; while (x !== undefined) { stack.push(byId.get(x).callFrame); x = parent.get(x); }
    for (const fr of stack) { const hit = phases.find(([, t]) => t(fr)); if (hit) { ph = hit[0]; break; } }
    if (leaf === '(program)') ph = '(program): compile, ICs, runtime';
    mine.set(ph, (mine.get(ph) ?? 0) + dt); ms += dt;
  });
  perFile.push([ms, mine]); all += ms; for (const [k, v] of mine) tot.set(k, (tot.get(k) ?? 0) + v);
}
console.log('profiles', perFile.length, 'total ms per profile', perFile.map(([m]) => m.toFixed(0)).join(', '));
for (const [k, v] of [...tot].sort((a, b) => b[1] - a[1])) console.log(`${(v / perFile.length).toFixed(1).padStart(7)} ms  ${(100 * v / all).toFixed(1).padStart(5)} %  ${k}   [${perFile.map(([, m]) => (m.get(k) ?? 0).toFixed(0)).join(', ')}]`);
