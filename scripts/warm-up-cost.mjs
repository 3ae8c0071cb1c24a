// What the start-up warm-up costs in a fresh process (perf22tail): DIST's warmUpEngine with trace-
// shaped policies (what `distill replay` runs) or manifest-shaped ones (the agent's), wall ms, the main
// thread's CPU (/proc/thread-self/schedstat) and the process's (V8's compile threads included). One JSON line.
//   node scripts/warm-up-cost.mjs DIST trace|manifest
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const [dist, policies] = process.argv.slice(2);
const { warmUpEngine } = await import(`${pathToFileURL(resolve(dist)).href}/churn/warm-up.js`);
const sched = () => Number(readFileSync('/proc/thread-self/schedstat', 'latin1').split(' ')[0]) / 1e6;
const m0 = sched();
const c0 = process.cpuUsage();
const r = warmUpEngine({ policies });
const c = process.cpuUsage(c0);
process.stdout.write(`${JSON.stringify({ policies, wallMs: r.ms, mainCpuMs: Math.round(sched() - m0), processCpuMs: Math.round((c.user + c.system) / 1000), events: r.events, ...(r.error ? { error: r.error } : {}), load1: Number(readFileSync('/proc/loadavg', 'utf8').split(' ')[0]) })}\n`);
