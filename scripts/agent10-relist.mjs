// A recorded relist of many pods, read by the agent: one `kubectl get -o json` List and the API
// server's paged List (pages of 500, client-go's tools/pager default). Usage:
//   node scripts/agent10-relist.mjs gen DIR PODS PAD        writes DIR/ns.json, DIR/kubectl.json, DIR/pages.json, DIR/events.json
//     (events.json: the same pods as ADDED watch events, the reference for what the mirror keeps)
//   ONLY_EVENTS=1 ... gen writes events.json only; FORMATS=kubectl.json,pages.json (default) picks the files `ab` runs
//   node scripts/agent10-relist.mjs ab DIR RUNS DIST_A DIST_B  alternating fresh processes (node --expose-gc) per build and format
//   node --expose-gc scripts/agent10-relist.mjs run DIST NSFILE FILE   one run: a JSON line
import { openSync, writeSync, closeSync, existsSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { resolve, join } from 'node:path';

const [mode, ...args] = process.argv.slice(2);
const NS = 100;

function podJson(i, pad, withKind) {
  const ns = `ns-${i % NS}`;
  const o = {
    ...(withKind ? { apiVersion: 'v1', kind: 'Pod' } : {}),
    metadata: { name: `pod-${i}`, namespace: ns, uid: `uid-${i}`, resourceVersion: String(1000 + i), labels: { app: `app-${i % 50}`, tier: i % 2 ? 'web' : 'db' }, annotations: { note: 'x'.repeat(pad) } },
    spec: { nodeName: `node-${i % 300}`, containers: [{ name: 'c', image: 'registry.example/app:1', ports: [{ containerPort: 8080, protocol: 'TCP' }] }] },
    status: { phase: 'Running', podIP: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`, podIPs: [{ ip: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}` }] },
  };
  return JSON.stringify(o);
}

function gen(dir, pods, pad) {
  const w = (name, fn) => {
    const fd = openSync(join(dir, name), 'w');
    fn((s) => writeSync(fd, s));
    closeSync(fd);
  };
  w('ns.json', (out) => {
    for (let n = 0; n < NS; n++) out(JSON.stringify({ type: 'ADDED', object: { apiVersion: 'v1', kind: 'Namespace', metadata: { name: `ns-${n}`, resourceVersion: String(n + 1), labels: { team: `t${n % 7}` } } } }) + '\n');
  });
  // kubectl get pods -A -o json: keys sorted, items carry their kind.
  w('kubectl.json', (out) => {
    out('{\n    "apiVersion": "v1",\n    "items": [\n');
    for (let i = 0; i < pods; i++) out((i ? ',\n' : '') + podJson(i, pad, true));
    out('\n    ],\n    "kind": "List",\n    "metadata": {\n        "resourceVersion": ""\n    }\n}\n');
  });
  // The API server's pages: kind first, items without TypeMeta, continue on all but the last.
  w('pages.json', (out) => {
    for (let p = 0; p * 500 < pods; p++) {
      const rest = pods - (p + 1) * 500;
      const md = rest > 0 ? { resourceVersion: '999999', continue: `tok-${p + 1}`, remainingItemCount: rest } : { resourceVersion: '999999' };
      out(`{"kind":"PodList","apiVersion":"v1","metadata":${JSON.stringify(md)},"items":[`);
      for (let i = p * 500; i < Math.min(pods, (p + 1) * 500); i++) out((i > p * 500 ? ',' : '') + podJson(i, pad, false));
      out(']}\n');
    }
  });
  genEvents(dir, pods, pad);
}

function genEvents(dir, pods, pad) {
  const fd = openSync(join(dir, 'events.json'), 'w');
  for (let i = 0; i < pods; i++) writeSync(fd, `{"type":"ADDED","object":${podJson(i, pad, true)}}\n`);
  closeSync(fd);
}

async function run(dist, nsFile, file) {
  const { Agent } = await import(resolve(dist, 'agent/agent.js'));
  const { MemoryBackend } = await import(resolve(dist, 'backend/memory.js'));
  const { pino } = await import('pino');
  const { Registry } = await import('prom-client');
  globalThis.gc?.();
  const t0 = process.hrtime.bigint();
  const c0 = process.cpuUsage();
  const agent = new Agent({ node: 'node-0', watch: [nsFile, file], backend: new MemoryBackend(), logger: pino({ level: 'silent' }), registry: new Registry(), exitAtEof: true });
  await agent.run();
  await agent.stop();
  const c = process.cpuUsage(c0);
  const wallMs = Number(process.hrtime.bigint() - t0) / 1e6;
  const r = process.resourceUsage();
  console.log(JSON.stringify({ wallMs: Math.round(wallMs), cpuMs: Math.round((c.user + c.system) / 1000), maxRssMB: Math.round(r.maxRSS / 1024), transactions: agent.summary.transactions, refusals: agent.summary.refusals, events: agent.summary.events, unreadableStreams: agent.summary.unreadableStreams, relists: agent.mirror.counts.relists, localEndpoints: agent.mirror.localEndpoints().length, notReady: agent.notReady ?? null }));
  process.exit(0);
}

function ab(dir, runs, builds) {
  const out = [];
  for (let r = 0; r < runs; r++) {
    for (const format of (process.env.FORMATS ?? 'kubectl.json,pages.json').split(',')) {
      for (const dist of builds) {
        const p = spawnSync(process.execPath, ['--expose-gc', '--max-old-space-size=16384', new URL(import.meta.url).pathname, 'run', dist, join(dir, 'ns.json'), join(dir, format)], { encoding: 'utf8', maxBuffer: 1 << 24 });
        const line = { run: r, format, dist, ...(p.status === 0 ? JSON.parse(p.stdout.trim().split('\n').pop()) : { failed: p.status, stderr: p.stderr.slice(-400) }) };
        console.log(JSON.stringify(line));
        out.push(line);
      }
    }
  }
  return out;
}

if (mode === 'gen' && process.env.ONLY_EVENTS) genEvents(args[0], Number(args[1]), Number(args[2]));
else if (mode === 'gen') gen(args[0], Number(args[1]), Number(args[2]));
else if (mode === 'run') await run(args[0], args[1], args[2]);
else if (mode === 'ab') ab(args[0], Number(args[1]), args.slice(2));
else throw new Error('usage: gen DIR PODS PAD | ab DIR RUNS DIST... | run DIST NSFILE FILE');
if (mode === 'gen' && !existsSync(join(args[0], 'pages.json'))) throw new Error('not written');
