// Lists the named functions and methods in src/ (src/engine left out unless asked) longer than N
// lines, longest first: `node scripts/long-functions.mjs [N=60] [--engine]` (the developers' guide:
// functions that fit on a screen). The code is prettier-formatted, so a function that starts at an
// indentation ends at the first later line at that indentation that starts with `}`.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

const args = process.argv.slice(2);
const limit = Number(args.find((a) => /^\d+$/.test(a)) ?? 60);
const withEngine = args.includes('--engine');
const START = [
  /^(\s*)(?:export )?(?:default )?(?:async )?function\*? ?(\w+)/,
  /^(\s*)(?:export )?const (\w+)(?::[^=]+)? = (?:async )?(?:\([^)]*\)|\w+)(?:: [^=]+)? => \{$/,
  /^(\s+)(?:(?:private|public|protected|static|readonly|override|async|get|set) )*(#?\w+|constructor)(?:<[^>]*>)?\((?:.*\{)?$/,
];
const KEYWORDS = new Set(['if', 'for', 'while', 'switch', 'catch', 'return', 'function']);

function files(dir) {
  return readdirSync(dir).flatMap((e) => {
    const p = join(dir, e);
    return statSync(p).isDirectory() ? files(p) : p.endsWith('.ts') ? [p] : [];
  });
}

const rows = [];
for (const f of files('src')) {
  if (!withEngine && f.startsWith(join('src', 'engine'))) continue;
  const lines = readFileSync(f, 'utf8').split('\n');
  lines.forEach((line, i) => {
    const m = START.map((re) => re.exec(line)).find((x) => x && !KEYWORDS.has(x[2]));
    if (!m) return;
    const indent = m[1];
    let end = i + 1;
    while (end < lines.length && !(lines[end].startsWith(`${indent}}`) && !lines[end].startsWith(`${indent} `))) end++;
    const length = end - i + 1;
    if (length > limit) rows.push([length, `${f}:${i + 1}`, m[2]]);
  });
}
rows.sort((a, b) => b[0] - a[0]);
for (const r of rows) console.log(r.join('\t'));
