// The kernel ipcache's writes for a trace as `distill agent --backend bpf` makes them, for two
// builds (fresh process per run, builds alternating; root, real LPM maps under /sys/fs/bpf): the
// cold start (`reconcile` with the ipcache synced between the phases) and the churn (one
// `applyChangeSet` per event, its deltas at the phase boundary). Per build and run: writes (update
// and delete syscalls) and the CPU ms spent in the ipcache step (the local endpoints' addresses apart), for
// the cold start and the churn, and a hash of the per-transaction write counts (equal hashes:
// equal writes in every transaction). Policy maps are a MemoryBackend (only the ipcache is timed).
// Usage: node scripts/ipcache-writes-ab.mjs OLD_DIST NEW_DIST TRACE [RUNS=3]
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runAb } from './ab-runner.mjs';
import { initialEvents } from './initial-events.mjs';

const cpuMs = (c) => (c.user + c.system) / 1000;

async function child(dist, tracePath) {
  const imp = (p) => import(resolve(dist, p));
  const { parseTrace } = await imp('churn/trace.js');
  const { Engine } = await imp('engine/engine.js');
  const { MemoryBackend } = await imp('backend/memory.js');
  const { applyChangeSet } = await imp('backend/backend.js');
  const { reconcile } = await imp('node/restart.js');
  const { KernelIpcache } = await imp('backend/ipcache.js');
  const content = await imp('backend/ipcache-content.js');
  // A build without the guard takes no local addresses (an extra argument is ignored).
  const local = (engine, created) => content.localEndpointAddresses?.(engine, created);
  let writes = 0;
  const elem = KernelIpcache.prototype.elem;
  KernelIpcache.prototype.elem = function (cmd, c, id) {
    if (cmd === 2 || cmd === 3) writes++;
    return elem.call(this, cmd, c, id);
  };
  const trace = parseTrace(readFileSync(tracePath, 'utf8'), tracePath, { manifests: false });
  const initial = initialEvents(trace);
  const firstChurn = trace.items.findIndex((i) => i.kind === 'phase' && i.name !== 'initial');
  const churn = trace.items.slice(firstChurn).flatMap((i) => (i.kind === 'event' ? [i.event] : []));
  const pinDir = `/sys/fs/bpf/distill-test-fix1120b-ab-${process.pid}`;
  mkdirSync(pinDir);
  const ipcache = KernelIpcache.fresh(pinDir);
  try {
    const engine = new Engine();
    const backend = new MemoryBackend({ capacity: 65536 });
    const perTxn = createHash('sha256');
    const timed = (fn) => {
      const c = process.cpuUsage();
      fn();
      return cpuMs(process.cpuUsage(c));
    };
    engine.apply(initial);
    let coldCpuMs = 0;
    const had = new Set(backend.endpoints());
    reconcile(engine, backend, () => (coldCpuMs = timed(() => ipcache.sync(content.kernelIpcacheContent(engine), local(engine, new Set(engine.endpoints().filter((ep) => !had.has(ep))))))));
    const coldWrites = writes;
    perTxn.update(`${coldWrites},`);
    let churnCpuMs = 0;
    let churnLocalCpuMs = 0;
    let churnDeltas = 0;
    for (const e of churn) {
      const cs = engine.apply([e]);
      churnDeltas += cs.ipcache.length;
      const before = writes;
      const created = new Set(cs.endpointsAdded);
      applyChangeSet(backend, cs, () => {
        let l;
        churnLocalCpuMs += timed(() => (l = local(engine, created)));
        churnCpuMs += timed(() => ipcache.apply(content.kernelIpcacheDeltas(cs.ipcache), l));
      });
      perTxn.update(`${writes - before},`);
    }
    process.stdout.write(JSON.stringify({ coldWrites, coldCpuMs: Math.round(coldCpuMs), churnTxns: churn.length, churnDeltas, churnWrites: writes - coldWrites, churnCpuMs: Math.round(churnCpuMs), churnLocalCpuMs: Math.round(churnLocalCpuMs), perTxnWrites: perTxn.digest('hex').slice(0, 16) }));
  } finally {
    ipcache.close();
    rmSync(pinDir, { recursive: true, force: true });
  }
}

await runAb(fileURLToPath(import.meta.url), child);
