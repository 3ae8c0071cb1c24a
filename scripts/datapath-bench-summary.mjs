// Summarises bpf/bench-datapath.sh's raw results (JSON lines): per configuration the median and
// range over rounds of the flood's packets/s and of the request/response RTT, and, paired by round
// against the run without a program, the throughput ratio and the added latency.
// Usage: node scripts/datapath-bench-summary.mjs bench/results/datapath.jsonl
import { readFileSync } from 'node:fs';

const rows = readFileSync(process.argv[2], 'utf8').trim().split('\n').map((l) => JSON.parse(l));
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const fmt = (xs, d = 0) => `${median(xs).toFixed(d)} (${Math.min(...xs).toFixed(d)} to ${Math.max(...xs).toFixed(d)})`;
const byRound = new Map();
for (const r of rows) byRound.set(`${r.round}/${r.config}`, r);
const rounds = [...new Set(rows.map((r) => r.round))];
const first = rows[0];
console.log(`${first.commit}, Node ${first.node}, kernel ${first.kernel}, ${first.cpu} x${first.cores}, ${first.date}, ${rounds.length} rounds, load1 ${fmt(rows.map((r) => r.load1), 1)}`);
console.log('| program / policy map | flood packets/s | vs none (same round) | packets per CPU second | vs none (same round) | program ns/packet | RTT p50 µs | added p50 µs (same round) | RTT mean µs | RTT p99 µs |');
console.log('|---|---|---|---|---|---|---|---|---|---|');
for (const c of ['none', '1000', '16000']) {
  const rs = rounds.map((n) => byRound.get(`${n}/${c}`)).filter(Boolean);
  const base = rounds.map((n) => byRound.get(`${n}/none`));
  const ratio = rs.map((r, i) => r.pps / base[i].pps);
  const cpuRatio = rs.map((r, i) => r.ppsPerCpu / base[i].ppsPerCpu);
  const added = rs.map((r, i) => r.rttP50Us - base[i].rttP50Us);
  const name = c === 'none' ? 'none (no program)' : `program, ${Number(c).toLocaleString('en-US')} entries`;
  const vs = c === 'none' ? '1' : fmt(ratio, 2);
  const add = c === 'none' ? '0' : fmt(added, 1);
  const ns = c === 'none' ? '–' : fmt(rs.map((r) => r.programNsPerPacket));
  console.log(`| ${name} | ${fmt(rs.map((r) => r.pps))} | ${vs} | ${fmt(rs.map((r) => r.ppsPerCpu))} | ${c === 'none' ? '1' : fmt(cpuRatio, 2)} | ${ns} | ${fmt(rs.map((r) => r.rttP50Us), 1)} | ${add} | ${fmt(rs.map((r) => r.rttMeanUs), 1)} | ${fmt(rs.map((r) => r.rttP99Us), 0)} |`);
  if (c !== 'none' && rs.some((r) => r.programPasses < r.received)) console.log(`  WARNING: ${c}: the program counted fewer passes than packets received`);
}
