import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { tmpFile } from './cli-helpers.js';

// Round 31u (docs/attack-findings-31u.md): a new operator's day with the agent.

const CLI = 'dist/cli/main.js';

const NS = { type: 'ADDED', object: { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'default', resourceVersion: '1', labels: { 'kubernetes.io/metadata.name': 'default' } } } };
const POD = {
  type: 'ADDED',
  object: {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'web', namespace: 'default', resourceVersion: '2', labels: { app: 'web' } },
    spec: { nodeName: 'node-a', containers: [{ name: 'c' }] },
    status: { phase: 'Running', podIP: '10.0.0.1' },
  },
};

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
