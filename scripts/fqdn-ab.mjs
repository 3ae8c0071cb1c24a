#!/usr/bin/env node
// A/B of the fqdn benchmark: alternating builds, a fresh process per run, same machine and session.
//   node scripts/fqdn-ab.mjs OLD_REPO NEW_REPO NAMES IPS_PER_NAME RUNS OUT.jsonl [MAX_OLD_SPACE_MB]
// Each repo needs `npx tsc -p tsconfig.bench.json` run first (dist-bench/bench/fqdn.js).
// Appends one JSON line per run to OUT.jsonl ({label, run, ...the bench's result}) and prints medians.
import { execFileSync } from 'node:child_process';
import { appendFileSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const [oldRepo, newRepo, names, ips, runs, out, heapMb = '8192'] = process.argv.slice(2);
if (!out) {
  console.error('usage: node scripts/fqdn-ab.mjs OLD_REPO NEW_REPO NAMES IPS_PER_NAME RUNS OUT.jsonl [MAX_OLD_SPACE_MB]');
  process.exit(2);
}
const results = { old: [], new: [] };
for (let run = 1; run <= Number(runs); run++) {
  for (const [label, repo] of [['old', oldRepo], ['new', newRepo]]) {
    const tmp = join(tmpdir(), `fqdn-ab-${process.pid}-${label}-${run}.json`);
    execFileSync(process.execPath, ['--expose-gc', `--max-old-space-size=${heapMb}`, join(resolve(repo), 'dist-bench/bench/fqdn.js')], {
      env: { ...process.env, BENCH_NAMES: names, BENCH_IPS_PER_NAME: ips, BENCH_OUT: tmp },
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    const r = JSON.parse(readFileSync(tmp, 'utf8'));
    rmSync(tmp);
    appendFileSync(out, `${JSON.stringify({ label, run, ...r })}\n`);
    results[label].push(r);
    console.error(`${label} run ${run}: new name p50/p99 ${r.firstAnswerOfNewName.p50_us}/${r.firstAnswerOfNewName.p99_us} µs, new IP ${r.newIpsOfKnownName.p50_us}/${r.newIpsOfKnownName.p99_us} µs, heap ${r.heapMb.withPoolLearnt} MB`);
  }
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
for (const label of ['old', 'new']) {
  const rs = results[label];
  const pick = (f) => `${median(rs.map(f))} (${Math.min(...rs.map(f))}–${Math.max(...rs.map(f))})`;
  console.log(label, JSON.stringify({
    newName_p50: pick((r) => r.firstAnswerOfNewName.p50_us),
    newName_p99: pick((r) => r.firstAnswerOfNewName.p99_us),
    newName_cpu_p99: pick((r) => r.firstAnswerOfNewName.cpu_p99_us),
    newIp_p50: pick((r) => r.newIpsOfKnownName.p50_us),
    newIp_p99: pick((r) => r.newIpsOfKnownName.p99_us),
    newIp_cpu_p99: pick((r) => r.newIpsOfKnownName.cpu_p99_us),
    heapMb: pick((r) => r.heapMb.withPoolLearnt),
  }));
}
