import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cli, tmpFile } from './cli-helpers.js';

// Round 19u (docs/attack-findings-19u.md): an operator running the agent and the CLI as the README says.

const asRoot = process.getuid?.() === 0 && existsSync('/sys/fs/bpf');
const watchEvent = (object: unknown): string => JSON.stringify({ type: 'ADDED', object });
const NAMESPACE = watchEvent({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop', resourceVersion: '1' } });
const localPod = (name: string, rv: number, node = 'node-a', labels: Record<string, string> = { app: name }): string =>
  watchEvent({ apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: 'shop', resourceVersion: String(rv), labels }, spec: { nodeName: node, containers: [{ name: 'c' }] }, status: { phase: 'Running', podIP: `10.0.0.${rv}` } });

describe('1260. maps clean --pin-dir DIR removes what `distill agent --backend bpf --pin-dir DIR` pinned', () => {
  it.skipIf(!asRoot)('the agent pins under DIR/agent: maps clean on DIR removes them (was: "no distill maps under DIR", exit 0, maps left)', () => {
    const pinDir = `/sys/fs/bpf/distill-test-user19-${randomBytes(6).toString('hex')}`;
    try {
      const stream = tmpFile('events.json', `${NAMESPACE}\n${localPod('a', 2)}\n`);
      const run = spawnSync('node', ['dist/cli/main.js', 'agent', '--node', 'node-a', '--watch', stream, '--backend', 'bpf', '--pin-dir', pinDir, '--exit-at-eof'], { encoding: 'utf8' });
      expect(run.status, run.stderr).toBe(0);
      expect(readdirSync(join(pinDir, 'agent')).length).toBeGreaterThan(0);
      const r = cli('maps', 'clean', '--pin-dir', pinDir, '-o', 'json');
      expect(r.code, r.err).toBe(0);
      expect((JSON.parse(r.out) as { removed: string[] }).removed).toEqual(expect.arrayContaining([`${join(pinDir, 'agent')}: shop/a`, `${join(pinDir, 'agent')}: ipcache4`]));
      expect(readdirSync(join(pinDir, 'agent'))).toEqual([]);
    } finally {
      rmSync(pinDir, { recursive: true, force: true });
    }
  });
});
