/**
 * toFQDNs (issue 16): latency from a `dnsResponse` to its change set, for the first answer of a
 * new name and for new IPs of a known name, with NAMES names of IPS_PER_NAME IPs each learnt
 * (TTL one hour, so the whole pool stays live), and the heap with the pool learnt.
 * 100 local endpoints in 10 identities; DNS through the proxy (matchPattern "*"), every answer
 * from a DNS server pod (so each query is judged as a flow to it); one pattern
 * policy `*.s3.*.amazonaws.com` on 443 for all and 100 `matchName` policies.
 *
 *   npm run bench:fqdn      (writes bench/results/fqdn.json; BENCH_NAMES, BENCH_IPS_PER_NAME, BENCH_OUT)
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { PerformanceObserver } from 'node:perf_hooks';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Engine } from '../src/engine/engine.js';
import type { EngineEvent } from '../src/engine/events.js';
import { IpAddress, parseIp } from '../src/model/cidr.js';
import { parseManifest } from '../src/policy/manifest.js';

const NAMES = Number(process.env.BENCH_NAMES ?? 10_000);
const IPS_PER_NAME = Number(process.env.BENCH_IPS_PER_NAME ?? 1000);
const PER_ANSWER = 8;
const ENDPOINTS = 100;
const here = dirname(fileURLToPath(import.meta.url));
const repo = join(here, '..', '..');

const name = (i: number): string => `bucket-${i}.s3.us-east-1.amazonaws.com`;
/** What parseIp returns, built directly: the bench's own garbage (ipaddr.js) would land in the timed regions' GC. */
function ip(i: number, j: number): IpAddress {
  const v = 0x34000000 + i * IPS_PER_NAME + j;
  return { family: 'ipv4', value: BigInt(v), text: `${v >>> 24}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}` };
}
/** The DNS server every answer comes from: a pod the DNS rule selects. */
const SERVER = { ip: parseIp('10.1.255.53'), port: 53 };
const cnp = (n: string, spec: object) => parseManifest({ apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name: n, namespace: 'apps' }, spec }, `${n}.yaml`, { fqdn: true });

function setup(): Engine {
  const engine = new Engine();
  const events: EngineEvent[] = [{ type: 'upsertNamespace', name: 'apps', labels: {} }];
  for (let i = 0; i < ENDPOINTS; i++) {
    events.push({ type: 'upsertPod', local: true, pod: { namespace: 'apps', name: `client-${i}`, labels: { app: `client-${i % 10}` }, ip: parseIp(`10.1.${i >> 8}.${i & 255}`), serviceAccount: 'default', ports: [] } });
  }
  events.push({ type: 'upsertPod', local: false, pod: { namespace: 'apps', name: 'dns', labels: { app: 'dns' }, ip: SERVER.ip, serviceAccount: 'default', ports: [] } });
  const https = [{ ports: [{ port: '443', protocol: 'TCP' }] }];
  events.push({ type: 'upsertPolicy', policy: cnp('dns', { endpointSelector: {}, egress: [{ toEndpoints: [{}], toPorts: [{ ports: [{ port: '53', protocol: 'ANY' }], rules: { dns: [{ matchPattern: '*' }] } }] }] }) });
  events.push({ type: 'upsertPolicy', policy: cnp('s3', { endpointSelector: {}, egress: [{ toFQDNs: [{ matchPattern: '*.s3.*.amazonaws.com' }], toPorts: https }] }) });
  for (let i = 0; i < 100; i++) {
    events.push({ type: 'upsertPolicy', policy: cnp(`bucket-${i}`, { endpointSelector: { matchLabels: { app: `client-${i % 10}` } }, egress: [{ toFQDNs: [{ matchName: name(i) }], toPorts: https }] }) });
  }
  engine.apply(events);
  return engine;
}

interface Series {
  ns: number[];
  /** Process CPU time (user + system, µs) of the same transaction: what the machine's load does not add. */
  cpuUs: number[];
  /** The CPU time of the transactions that wrote policy-map entries (a new selector combination). */
  withPolicyDeltasCpuUs: number[];
  policyDeltas: number;
  ipcacheDeltas: number;
  l7Deltas: number;
}
const series = (): Series => ({ ns: [], cpuUs: [], withPolicyDeltasCpuUs: [], policyDeltas: 0, ipcacheDeltas: 0, l7Deltas: 0 });

function answer(engine: Engine, s: Series, i: number, from: number, k: number): void {
  const ips = [];
  for (let j = from; j < from + PER_ANSWER; j++) ips.push(ip(i, j));
  const e: EngineEvent = { type: 'dnsResponse', endpoint: `apps/client-${k % ENDPOINTS}`, name: name(i), ips, ttl: 3600, server: SERVER };
  const c0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  const cs = engine.apply([e]);
  s.ns.push(Number(process.hrtime.bigint() - t0));
  const c = process.cpuUsage(c0);
  s.cpuUs.push(c.user + c.system);
  s.policyDeltas += cs.deltas.length;
  if (cs.deltas.length > 0) s.withPolicyDeltasCpuUs.push(c.user + c.system);
  s.ipcacheDeltas += cs.ipcache.length;
  s.l7Deltas += cs.l7Deltas.length;
}

function combinations(s: Series) {
  const c = [...s.withPolicyDeltasCpuUs].sort((a, b) => a - b);
  return c.length === 0 ? {} : { newCombinations: { samples: c.length, cpu_p50_us: c[Math.floor(c.length / 2)], cpu_max_us: c[c.length - 1] } };
}

function summary(s: Series) {
  const sorted = [...s.ns].sort((a, b) => a - b);
  const q = (p: number): number => Math.round((sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? 0) / 100) / 10;
  const cpu = [...s.cpuUs].sort((a, b) => a - b);
  const qc = (p: number): number => cpu[Math.min(cpu.length - 1, Math.floor(p * cpu.length))] ?? 0;
  return { samples: sorted.length, p50_us: q(0.5), p99_us: q(0.99), max_us: q(1), cpu_p50_us: qc(0.5), cpu_p99_us: qc(0.99), ...combinations(s), policyMapDeltas: s.policyDeltas, ipcacheDeltas: s.ipcacheDeltas, l7Deltas: s.l7Deltas };
}

function gcHeapMb(): number {
  (globalThis as { gc?: () => void }).gc?.();
  return Math.round(process.memoryUsage().heapUsed / 2 ** 20);
}

/** GC pauses during the timed phases (V8's gc performance entries: kind 1 scavenge, 2 mark-compact, 4 incremental, 8 weak callbacks). */
const gcPauses: { kind: number; ms: number }[] = [];
const gcObserver = new PerformanceObserver((list) => {
  for (const e of list.getEntries()) gcPauses.push({ kind: (e as unknown as { detail?: { kind?: number } }).detail?.kind ?? 0, ms: e.duration });
});
function gcSummary() {
  const byKind = new Map<number, number[]>();
  for (const p of gcPauses) byKind.set(p.kind, [...(byKind.get(p.kind) ?? []), p.ms]);
  const out: Record<string, { count: number; totalMs: number; maxMs: number }> = Object.create(null) as Record<string, { count: number; totalMs: number; maxMs: number }>;
  const names: Record<number, string> = { 1: 'scavenge', 2: 'markCompact', 4: 'incremental', 8: 'weakCallbacks' };
  for (const [k, ms] of byKind) out[names[k] ?? `kind${k}`] = { count: ms.length, totalMs: Math.round(ms.reduce((a, b) => a + b, 0)), maxMs: Math.round(Math.max(...ms) * 10) / 10 };
  return out;
}

const loadStart = loadavg()[0] ?? 0;
const heapBefore = gcHeapMb();
const engine = setup();
gcObserver.observe({ entryTypes: ['gc'] });
const newName = series();
for (let i = 0; i < NAMES; i++) answer(engine, newName, i, 0, i);
const newIp = series();
let k = 0;
for (let from = PER_ANSWER; from < IPS_PER_NAME; from += PER_ANSWER) for (let i = 0; i < NAMES; i++) answer(engine, newIp, i, from, k++);
// The observer's entries arrive on the event loop: let it turn once.
await new Promise((resolve) => setTimeout(resolve, 10));
gcObserver.disconnect();
const heapWithPool = gcHeapMb();
// Read after the heap was measured: the engine must still be reachable when it is.
const transactions = engine.stats().transactions;
const result = {
  bench: 'fqdn',
  commit: execFileSync('git', ['rev-parse', 'HEAD'], { cwd: repo, encoding: 'utf8' }).trim(),
  node: process.version,
  cpu: cpus()[0]?.model ?? 'unknown',
  cpus: cpus().length,
  date: new Date().toISOString(),
  loadAverage1m: { start: Math.round(loadStart * 10) / 10, end: Math.round((loadavg()[0] ?? 0) * 10) / 10 },
  note: 'shared 2-core machine: wall-clock latencies include time the process waited for a core; cpu_* is the process CPU time of the same transaction',
  shape: { endpoints: ENDPOINTS, identities: 10, names: NAMES, ipsPerName: IPS_PER_NAME, ipsPerAnswer: PER_ANSWER, ttl: 3600, selectors: '1 pattern + 100 matchName' },
  firstAnswerOfNewName: summary(newName),
  newIpsOfKnownName: summary(newIp),
  liveIps: newName.ipcacheDeltas + newIp.ipcacheDeltas,
  gcDuringTimedPhases: gcSummary(),
  transactions,
  heapMb: { before: heapBefore, withPoolLearnt: heapWithPool },
  bytesPerLearntIp: 0,
};
result.bytesPerLearntIp = Math.round(((result.heapMb.withPoolLearnt - result.heapMb.before) * 2 ** 20) / result.liveIps);
mkdirSync(join(repo, 'bench', 'results'), { recursive: true });
writeFileSync(resolve(repo, 'bench', 'results', process.env.BENCH_OUT ?? 'fqdn.json'), `${JSON.stringify(result, null, 2)}\n`);
console.log(JSON.stringify(result, null, 2));
