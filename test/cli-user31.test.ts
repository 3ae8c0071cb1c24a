import { spawn, spawnSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tmpFile } from './cli-helpers.js';
import { EtcdServer, requireEtcdOrSkip } from './kvstore/etcd-server.js';

// Round 31u (docs/attack-findings-31u.md): a new operator's day with the agent.

const CLI = 'dist/cli/main.js';

const NS = { type: 'ADDED', object: { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'default', resourceVersion: '1', labels: { 'kubernetes.io/metadata.name': 'default' } } } };
/** A running pod of namespace default as a watch ADDED event. */
const podOn = (name: string, node: string, ip: string, rv: string) => ({
  type: 'ADDED',
  object: { apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: 'default', resourceVersion: rv, labels: { app: name } }, spec: { nodeName: node, containers: [{ name: 'c' }] }, status: { phase: 'Running', podIP: ip } },
});
const POD = podOn('web', 'node-a', '10.0.0.1', '2');

/** Runs `distill agent ARGS` until `until(stderr)` holds, then GETs each path and stops it. */
async function agentAnswers(args: string[], until: RegExp, paths: string[]): Promise<{ bodies: { code: number; body: string }[]; stderr: string }> {
  const child = spawn('node', [CLI, 'agent', '--node', 'node-a', '--metrics-addr', '127.0.0.1:0', '--no-warm-up', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  const ready = new Promise<void>((resolve) => {
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
      if (until.test(stderr) && /metrics on http/.test(stderr)) resolve();
    });
  });
  await Promise.race([ready, exited]);
  const url = /"url":"(http:\/\/[^/]+)\/metrics"/.exec(stderr)?.[1];
  const bodies: { code: number; body: string }[] = [];
  try {
    for (const p of paths) {
      const res = await fetch(`${url ?? 'http://127.0.0.1:1'}${p}`);
      bodies.push({ code: res.status, body: await res.text() });
    }
  } finally {
    child.kill('SIGTERM');
    await exited;
  }
  return { bodies, stderr };
}

describe('3140. (2947) a --watch stream that ended, without --exit-at-eof, is a warning on /healthz and a gauge', () => {
  it('/healthz stays 200 but names the stream after ok; ?format=json is Warning; distill_watch_streams_ended is 1', async () => {
    const events = tmpFile('events.json', `${JSON.stringify(NS)}\n${JSON.stringify(POD)}\n`);
    const { bodies, stderr } = await agentAnswers(['--watch', events], /watch stream ended/, ['/healthz', '/healthz?format=json', '/metrics']);
    const [plain, json, metrics] = bodies;
    expect(plain?.code, stderr).toBe(200);
    expect(plain?.body).toMatch(/^ok\nwarning: 1 watch stream\(s\) ended, .*restart the watch.*: .*events\.json\n$/);
    expect(json?.code).toBe(200);
    expect(JSON.parse(json!.body)).toMatchObject({ state: 'Warning', streamsEnded: 1, endedStreams: [events] });
    expect(metrics?.body).toMatch(/^distill_watch_streams_ended 1$/m);
  }, 30_000);
});

const hasEtcd = requireEtcdOrSkip('3141 (the --exit-at-eof etcd wait names pods and nodes)');
describe.skipIf(!hasEtcd)('3141. (2948) the --exit-at-eof etcd wait names the pods it waits for and their nodes', () => {
  let etcd: EtcdServer | undefined;
  beforeAll(async () => {
    etcd = await EtcdServer.start();
  }, 30_000);
  afterAll(async () => etcd?.destroy());

  it('the warning says which nodes\' agents to start and which pods lack an id (was: neither)', async () => {
    const events = tmpFile('events.json', [NS, POD, podOn('db', 'node-b', '10.0.1.2', '3'), podOn('cache', 'node-c', '10.0.2.2', '4')].map((e) => JSON.stringify(e)).join('\n') + '\n');
    const child = spawn('node', [CLI, 'agent', '--node', 'node-a', '--identities', 'etcd', '--etcd', etcd!.url, '--watch', events, '--exit-at-eof', '--no-warm-up'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
    const waiting = new Promise<void>((resolve) => {
      child.stderr.on('data', (d: Buffer) => {
        stderr += d.toString();
        if (/waiting for the identities of remote pods/.test(stderr)) resolve();
      });
    });
    await Promise.race([waiting, exited, new Promise((r) => setTimeout(r, 20_000))]);
    child.kill('SIGTERM');
    await exited;
    const line = stderr.split('\n').find((l) => l.includes('waiting for the identities of remote pods'));
    expect(line, stderr).toBeDefined();
    const o = JSON.parse(line!) as { msg: string; pods: string[]; nodes: string[]; podCount: number; nodeCount: number };
    expect(o.msg).toContain('start the agent of node(s) node-b, node-c (pods default/cache, default/db)');
    expect(o).toMatchObject({ pods: ['default/cache', 'default/db'], podCount: 2, nodes: ['node-b', 'node-c'], nodeCount: 2 });
  }, 40_000);
});

describe('3143. agent --help says what --exit-at-eof waits for and each exit code', () => {
  it('names the etcd wait for remote pods and exit 2 after a watch ERROR without relist (was: only 74)', () => {
    const r = spawnSync('node', [CLI, 'agent', '--help'], { encoding: 'utf8' });
    const help = r.stdout.replace(/\s+/g, ' ');
    expect(help).toContain("with --identities etcd, once every pod the streams name has an identity in etcd: remote pods wait for their own nodes' agents");
    expect(help).toContain('2 when a stream ended after a watch ERROR or inside a List without its relist');
  });
});
