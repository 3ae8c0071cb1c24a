// The agent's List reader (src/k8s/watch.ts, hand-written) against streaming JSON libraries, on one
// big PodList: each reader hands out the List's items one at a time. The libraries are not
// dependencies: install them in a scratch dir and pass it.
//   mkdir /tmp/sj && (cd /tmp/sj && npm init -y && npm install stream-json@3 @streamparser/json@0.0.26)
//   node scripts/list-reader-bench.mjs gen /tmp/sj/list.json 30000
//   node scripts/list-reader-bench.mjs ab DIST /tmp/sj /tmp/sj/list.json RUNS > results.jsonl
// One fresh process per reader and run, readers alternating; CPU ms, wall ms and peak RSS per run.
import fs from 'node:fs';
import os from 'node:os';
import { execFileSync } from 'node:child_process';
import { pathToFileURL } from 'node:url';
import { join, resolve } from 'node:path';

const [cmd, ...args] = process.argv.slice(2);
const readers = ['distill', 'stream-json', '@streamparser/json', 'JSON.parse (whole)'];

function podOf(i) {
  const ip = `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
  return {
    metadata: { name: `p${i}`, namespace: `ns${i % 50}`, uid: `u-${i}`, resourceVersion: String(i + 2), labels: { app: `a${i % 300}`, tier: 'web', 'pod-template-hash': `abc${i}` }, annotations: { 'kubectl.kubernetes.io/last-applied-configuration': 'x'.repeat(2000) } },
    spec: { nodeName: `node${i % 100}`, containers: [{ name: 'c', image: 'nginx', ports: [{ name: 'http', containerPort: 80 }], env: Array.from({ length: 10 }, (_, k) => ({ name: `E${k}`, value: 'v'.repeat(50) })) }] },
    status: { phase: 'Running', podIP: ip, podIPs: [{ ip }] },
  };
}

function gen(file, n) {
  const fd = fs.openSync(file, 'w');
  fs.writeSync(fd, '{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"1"},"items":[');
  for (let i = 0; i < n; i++) fs.writeSync(fd, (i ? ',' : '') + JSON.stringify(podOf(i)));
  fs.writeSync(fd, ']}\n');
  fs.closeSync(fd);
}

async function one(reader, dist, libs, file) {
  const t0 = process.cpuUsage();
  const w0 = performance.now();
  const mod = (p) => import(pathToFileURL(join(libs, 'node_modules', p)).href);
  let n = 0;
  await new Promise((done, fail) => {
    const s = fs.createReadStream(file, reader === 'distill' ? { encoding: 'utf8' } : {});
    s.on('error', fail);
    if (reader === 'distill') {
      import(pathToFileURL(resolve(dist, 'k8s/watch.js')).href).then(({ WatchStreamParser }) => {
        const p = new WatchStreamParser('bench');
        s.on('data', (c) => p.push(c, (it) => { if (it.type === 'LIST_ITEM') n++; }));
        s.on('end', () => { p.end(); done(); });
      }, fail);
    } else if (reader === 'stream-json') {
      Promise.all([mod('stream-json/src/index.js'), mod('stream-json/src/filters/pick.js'), mod('stream-json/src/streamers/stream-array.js'), mod('stream-chain/src/index.js')]).then(([{ parser }, { pick }, { streamArray }, chain]) => {
        const pl = chain.default([s, parser(), pick({ filter: 'items' }), streamArray()]);
        pl.on('data', () => n++);
        pl.on('end', done);
        pl.on('error', fail);
      }, fail);
    } else if (reader === '@streamparser/json') {
      mod('@streamparser/json/dist/mjs/index.js').then(({ JSONParser }) => {
        const p = new JSONParser({ paths: ['$.items.*'], keepStack: false });
        p.onValue = () => n++;
        s.on('data', (c) => p.write(c));
        s.on('end', done);
      }, fail);
    } else {
      s.close();
      n = JSON.parse(fs.readFileSync(file, 'utf8')).items.length;
      done();
    }
  });
  const c = process.cpuUsage(t0);
  return { reader, items: n, cpuMs: Math.round((c.user + c.system) / 1000), wallMs: Math.round(performance.now() - w0), peakRssMB: Math.round(process.resourceUsage().maxRSS / 1024) };
}

if (cmd === 'gen') gen(args[0], Number(args[1]));
else if (cmd === 'one') console.log(JSON.stringify(await one(args[0], args[1], args[2], args[3])));
else if (cmd === 'ab') {
  const [dist, libs, file, runs] = args;
  const commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();
  console.log(JSON.stringify({ header: true, commit, node: process.version, cpu: os.cpus()[0]?.model, date: new Date().toISOString(), bytes: fs.statSync(file).size, load: os.loadavg() }));
  for (let r = 0; r < Number(runs); r++) {
    for (const reader of readers) {
      const out = execFileSync(process.execPath, [process.argv[1], 'one', reader, dist, libs, file], { encoding: 'utf8' });
      console.log(JSON.stringify({ run: r, ...JSON.parse(out), load: os.loadavg()[0] }));
    }
  }
} else {
  console.error('usage: list-reader-bench.mjs gen FILE N | ab DIST LIBS FILE RUNS');
  process.exit(2);
}
