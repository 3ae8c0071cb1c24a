/**
 * Apply throughput of the eBPF backend (entries/s), single-element and batched, measured side by
 * side with a C program doing the same syscalls on the same map layout (built with the machine's
 * `cc` at benchmark time). Rounds alternate between C and TypeScript so machine noise hits both;
 * the report gives medians and the TS/C ratio of medians.
 *
 *   npm run bench:bpf            (root: it creates real kernel maps)
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BpfBackend } from '../src/backend/bpf.js';
import type { MapDelta } from '../src/engine/events.js';

const N = Number(process.env.BENCH_ENTRIES ?? 16384);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 11);
/** Untimed TypeScript rounds first: V8 compiles the write path on the way. */
const WARMUP = Number(process.env.BENCH_WARMUP ?? 5);
const here = dirname(fileURLToPath(import.meta.url));
const repo = join(here, '..', '..');

type Rates = { singleUpdate: number; singleDelete: number; batchUpdate: number; batchDelete: number };

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] as number;
}

function deltas(op: 'upsert' | 'delete'): MapDelta[] {
  return Array.from({ length: N }, (_, i) => ({
    endpoint: 'bench/ep',
    op,
    key: { identity: i + 1, direction: 'ingress' as const, protocol: 6, port: 80, portPrefixLen: 16 },
    entry: { deny: false, proxyPort: 0, precedence: 1 },
  }));
}

/** The same sequence as the C program: one map; single updates, single deletes, then batched. */
function tsRound(pinDir: string): Rates {
  const ups = deltas('upsert');
  const dels = deltas('delete');
  const out: Partial<Rates> = {};
  const rate = (ns: bigint): number => N / (Number(ns) / 1e9);
  // One writer per pin dir at a time (the backend locks it): the batched backend opens the map after.
  for (const [batch, names] of [
    [false, ['singleUpdate', 'singleDelete']],
    [true, ['batchUpdate', 'batchDelete']],
  ] as const) {
    const b = new BpfBackend({ capacity: N, pinDir, batch });
    if (batch) b.dump('bench/ep'); // opens the pinned map before timing
    else b.create('bench/ep');
    const t0 = process.hrtime.bigint();
    b.apply('bench/ep', ups);
    const t1 = process.hrtime.bigint();
    b.apply('bench/ep', dels);
    const t2 = process.hrtime.bigint();
    out[names[0]] = rate(t1 - t0);
    out[names[1]] = rate(t2 - t1);
    if (batch) b.remove('bench/ep');
    b.close();
  }
  return out as Rates;
}

function main(): void {
  const build = mkdtempSync(join(tmpdir(), 'distill-bench-'));
  const exe = join(build, 'bpf_apply');
  execFileSync('cc', ['-O2', '-o', exe, join(repo, 'bench', 'c', 'bpf_apply.c')]);
  const pinDir = `/sys/fs/bpf/distill-bench-${process.pid}`;
  const c: Rates[] = [];
  const ts: Rates[] = [];
  for (let w = 0; w < WARMUP; w++) tsRound(pinDir);
  for (let r = 0; r < ROUNDS; r++) {
    c.push(JSON.parse(execFileSync(exe, [String(N), '1'], { encoding: 'utf8' })) as Rates);
    ts.push(tsRound(pinDir));
  }
  rmSync(pinDir, { recursive: true, force: true });
  rmSync(build, { recursive: true, force: true });
  const rows = (['singleUpdate', 'singleDelete', 'batchUpdate', 'batchDelete'] as const).map((k) => {
    const cm = median(c.map((x) => x[k]));
    const tm = median(ts.map((x) => x[k]));
    return { operation: k, cEntriesPerSec: Math.round(cm), tsEntriesPerSec: Math.round(tm), ratio: Number((tm / cm).toFixed(2)) };
  });
  const report = { entries: N, rounds: ROUNDS, warmupRounds: WARMUP, map: 'BPF_MAP_TYPE_LPM_TRIE, 12-byte keys and values', batchSize: 1024, results: rows };
  console.table(rows);
  const outDir = join(repo, 'bench', 'results');
  mkdirSync(outDir, { recursive: true });
  writeFileSync(join(outDir, 'bpf-apply.json'), JSON.stringify(report, null, 2) + '\n');
}

main();
