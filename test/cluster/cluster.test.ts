import type { ClusterReport } from '../../src/cluster/run.js';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bpfUnavailableReason } from '../../src/backend/bpf.js';
import { generateTrace } from '../../src/churn/profiles.js';
import { kvLabels } from '../../src/agent/etcd-identities.js';
import { referenceMaps } from '../../src/cluster/run.js';
import { labelSetKey } from '../../src/kvstore/labels.js';
import { namespaceWithDefaults } from '../../src/model/cluster.js';
import { traceToWatch } from '../../src/cluster/watch-objects.js';
import { EtcdServer, requireEtcdOrSkip } from '../kvstore/etcd-server.js';

/** `distill cluster` and agent faults against a real etcd (needs dist/, built by npm test). */
const hasEtcd = requireEtcdOrSkip('distill cluster tests');
const suite = hasEtcd ? describe : describe.skip;
const noBpf = bpfUnavailableReason();
if (noBpf && process.env.DISTILL_REQUIRE_BPF === '1') throw new Error(`DISTILL_REQUIRE_BPF=1 but ${noBpf}`);
if (noBpf) process.stderr.write(`SKIPPING agent kill -9 pinned-map test: ${noBpf}\n`);
const PIN = `/sys/fs/bpf/distill-test-cluster-${process.pid}`;
const dir = mkdtempSync(join(tmpdir(), 'distill-cluster-'));

let etcd: EtcdServer;
beforeAll(async () => {
  if (hasEtcd) etcd = await EtcdServer.start();
}, 30_000);
afterAll(async () => {
  await etcd?.destroy();
  rmSync(dir, { recursive: true, force: true });
  if (!noBpf) rmSync(PIN, { recursive: true, force: true });
});

const traceFile = (name: string, nodes: number, seed: number): string => {
  const p = join(dir, name);
  writeFileSync(p, generateTrace({ profile: 'small', seed, nodes }));
  return p;
};

type Report = Omit<ClusterReport, 'mapMismatches' | 'kills'>;

const cluster = (args: string[]): Report => {
  const r = spawnSync('node', ['dist/cli/main.js', 'cluster', '--etcd', etcd.url, '--json', ...args], { encoding: 'utf8' });
  expect(r.status, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as Report;
};

suite('distill cluster', () => {
  it('3 agents agree on every id and each node has the maps of a single-process engine', () => {
    const r = cluster(['--nodes', '3', traceFile('t3.jsonl', 3, 5)]);
    expect(r).toMatchObject({ nodes: 3, duplicates: 0, disagreements: 0, mapsVerified: 3 });
    expect(r.identities).toBeGreaterThan(5);
    expect(r.entries).toBeGreaterThan(0);
    expect(r.events).toBeGreaterThan(100);
  }, 120_000);

  it('agents killed with kill -9 every 40 events and restarted still agree and verify', () => {
    const r = cluster(['--nodes', '3', '--kill-agent-every', '40', traceFile('k3.jsonl', 3, 6)]);
    expect(r).toMatchObject({ nodes: 3, duplicates: 0, disagreements: 0, mapsVerified: 3 });
    expect(r.entries).toBeGreaterThan(0);
  }, 180_000);

  it('--etcd local --restart-etcd-at: etcd stopped mid-trace and restarted, the agents converge and verify', () => {
    const r = spawnSync('node', ['dist/cli/main.js', 'cluster', '--etcd', 'local', '--nodes', '3', '--restart-etcd-at', '50', '--json', traceFile('r3.jsonl', 3, 8)], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/etcd stopped after 50 events[\s\S]*etcd restarted/);
    expect(JSON.parse(r.stdout)).toMatchObject({ nodes: 3, duplicates: 0, disagreements: 0, mapsVerified: 3 });
    const remote = spawnSync('node', ['dist/cli/main.js', 'cluster', '--etcd', etcd.url, '--restart-etcd-at', '5', traceFile('r1.jsonl', 2, 8)], { encoding: 'utf8' });
    expect(remote.status).toBe(2);
    expect(remote.stderr).toMatch(/--restart-etcd-at needs --etcd local/);
  }, 180_000);

  it('the map check can fail: another identity table gives other maps', () => {
    const feed = traceToWatch(generateTrace({ profile: 'small', seed: 5, nodes: 2 }), 't', 2);
    const table: Record<string, string> = Object.create(null) as Record<string, string>;
    const swapped: Record<string, string> = Object.create(null) as Record<string, string>;
    const pods = feed.items.flatMap((i) => (i.type === 'ADDED' && i.object.kind === 'Pod' ? [i.object] : []));
    expect(pods.length).toBeGreaterThan(2);
    const nsLabels = new Map(feed.items.flatMap((i) => (i.type === 'ADDED' && i.object.kind === 'Namespace' ? [[(i.object.metadata as { name: string }).name, (i.object.metadata as { labels: Record<string, string> }).labels]] : [])));
    const labelsOf = (p: Record<string, unknown>): string => {
      const md = p.metadata as { name: string; namespace: string; labels: Record<string, string> };
      const pod = { namespace: md.namespace, name: md.name, labels: md.labels, serviceAccount: 'default', ip: '10.0.0.1', ports: [] };
      return labelSetKey(kvLabels(pod as never, namespaceWithDefaults(md.namespace, nsLabels.get(md.namespace) ?? {}).labels));
    };
    const sets = [...new Set(pods.map(labelsOf))];
    sets.forEach((s, i) => {
      table[String(300 + i)] = s;
      swapped[String(300 + ((i + 1) % sets.length))] = s;
    });
    const entries = (maps: unknown[]): number => (maps as { entries: unknown[] }[]).reduce((n, m) => n + m.entries.length, 0);
    expect(entries(referenceMaps('node-0', feed.items, table))).toBeGreaterThan(0);
    expect(JSON.stringify(referenceMaps('node-0', feed.items, table))).not.toBe(JSON.stringify(referenceMaps('node-0', feed.items, swapped)));
  });
});

(hasEtcd && !noBpf ? describe : describe.skip)('agent kill -9 with pinned maps', () => {
  it('restarted, it re-learns the ids from etcd and reconciles its pinned maps writing 0 entries', async () => {
    const feed = traceToWatch(generateTrace({ profile: 'small', seed: 7, nodes: 1 }), 't', 1);
    const input = join(dir, 'node0.json');
    writeFileSync(input, feed.items.map((i) => JSON.stringify(i)).join('\n'));
    const run = (kill: boolean): Promise<{ reconciled: { upserts: number; deletes: number; created: number }; entries: number }> =>
      new Promise((resolve, reject) => {
        const args = ['dist/cli/main.js', 'agent', '--node', 'node-0', '--identities', 'etcd', '--etcd', etcd.url, '--backend', 'bpf', '--pin-dir', PIN, '--watch', input, '--exit-at-eof', '--json'];
        const p = spawn('node', args, { env: { ...process.env, DISTILL_LOG_LEVEL: 'info' } });
        let out = '';
        let err = '';
        p.stderr.on('data', (d: Buffer) => (err += d.toString()));
        p.stdout.on('data', (d: Buffer) => {
          out += d.toString();
          if (kill && out.endsWith('\n')) p.kill('SIGKILL');
        });
        p.on('exit', (code, signal) => {
          if (!(kill ? signal === 'SIGKILL' || code === 0 : code === 0)) return reject(new Error(`agent exited ${signal ?? code}: ${err}`));
          const line = err.split('\n').find((l) => l.includes('pinned maps reconciled'));
          if (!line || out === '') return reject(new Error(`no reconcile log or summary: ${err}`));
          resolve({ reconciled: JSON.parse(line) as { upserts: number; deletes: number; created: number }, entries: (JSON.parse(out) as { entries: number }).entries });
        });
      });
    // A restarted agent keeps the proxy ports its pinned maps use (proxyPortsFromMaps), so even
    // the first restart writes nothing, whatever order the ids arrived in the first run.
    const fresh = await run(false);
    expect(fresh.entries).toBeGreaterThan(0);
    const killed = await run(true);
    expect(killed.reconciled).toMatchObject({ upserts: 0, deletes: 0, created: 0 });
    const restarted = await run(false);
    expect(restarted.entries).toBe(fresh.entries);
    expect(restarted.reconciled).toMatchObject({ upserts: 0, deletes: 0, created: 0 });
  }, 120_000);
});
