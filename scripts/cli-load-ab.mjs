// Same-run A/B of the CLI's start-up for two builds: the cost of importing dist/cli/main.js (every
// command's module graph, as `distill <any command>` loads it before parsing its arguments), fresh
// process per run, builds alternating. Per run: main-thread and process CPU ms of the import (Linux
// schedstat; the rest of the process CPU is V8's helper threads), and the CommonJS modules it
// loaded (the npm dependencies; a deterministic count), by package. TRACE is not read (runAb's
// argument order). Usage: node scripts/cli-load-ab.mjs OLD_DIST NEW_DIST - [RUNS=3]
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runAb } from './ab-runner.mjs';

const mainThreadCpuMs = () => Number(readFileSync('/proc/thread-self/schedstat', 'utf8').split(' ')[0]) / 1e6;

async function child(dist) {
  const cache = createRequire(import.meta.url).cache;
  const before = new Set(Object.keys(cache));
  const c0 = process.cpuUsage();
  const m0 = mainThreadCpuMs();
  await import(resolve(dist, 'cli/main.js'));
  const main = mainThreadCpuMs() - m0;
  const cpu = process.cpuUsage(c0);
  const loaded = Object.keys(cache).filter((k) => !before.has(k));
  const packages = {};
  for (const k of loaded) {
    const m = /node_modules\/((@[^/]+\/)?[^/]+)/.exec(k);
    if (m) packages[m[1]] = (packages[m[1]] ?? 0) + 1;
  }
  process.stdout.write(JSON.stringify({ importMainCpuMs: Math.round(main), importCpuMs: Math.round((cpu.user + cpu.system) / 1000), cjsModules: loaded.length, packages }));
}

await runAb(fileURLToPath(import.meta.url), child);
