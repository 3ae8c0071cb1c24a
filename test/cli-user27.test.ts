import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { cli, tmpFile } from './cli-helpers.js';

// Round 27u (docs/attack-findings-27u.md): an operator's view of the agent's logs and of why a flow
// is allowed when the policies come from several manifest files.

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

describe('2300. with --metrics-addr every line the agent logs on stderr is JSON', () => {
  // README "As a node agent": "Logs are JSON lines (pino) on stderr". The address line was plain text,
  // the first line a log shipper saw.
  it('the metrics address is a JSON log line (msg keeps "metrics on URL"), as are the lines around it', async () => {
    const child = spawn('node', [CLI, 'agent', '--node', 'node-a', '--watch', '-', '--metrics-addr', '127.0.0.1:0', '--no-warm-up'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stderr = '';
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    const listening = new Promise<void>((resolve) => {
      child.stderr.on('data', (d: Buffer) => {
        stderr += d.toString();
        if (/metrics on http:\/\/127\.0\.0\.1:\d+\/metrics/.test(stderr) && /maps reconciled/.test(stderr)) resolve();
      });
    });
    child.stdin.write(`${JSON.stringify(NS)}\n${JSON.stringify(POD)}\n`);
    await Promise.race([listening, exited]);
    child.kill('SIGTERM');
    await exited;
    const lines = stderr.split('\n').filter((l) => l.trim() !== '');
    expect(lines.length, stderr).toBeGreaterThanOrEqual(2);
    for (const l of lines) expect(() => JSON.parse(l) as unknown, l).not.toThrow();
    const addr = lines.map((l) => JSON.parse(l) as { msg?: string; url?: string; level?: number }).find((o) => o.msg?.startsWith('metrics on') === true);
    expect(addr?.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
    expect(addr?.level).toBe(30);
  }, 30_000);
});
