import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { applyChangeSet } from '../../src/backend/backend.js';
import { BpfBackend, bpfUnavailableReason, pinName } from '../../src/backend/bpf.js';
import { Engine } from '../../src/engine/engine.js';
import type { EngineEvent, MapDelta } from '../../src/engine/events.js';
import { parseIp } from '../../src/model/cidr.js';
import { parseManifestFile } from '../../src/policy/manifest.js';
import { reconcile } from '../../src/node/restart.js';

/**
 * Review 24b, checked and held: checkSpec's disarm of a replaced map (finding 1810) seen by a
 * reader holding the old map, as the endpoint program does (test/datapath/lookup-watch.mjs on a
 * second pin of it): web admits the client at L3 and TCP/80 through the proxy, plus 4,000 SCTP
 * allows walked between them; client -> web TCP/80 never reads as a plain allow.
 */
const kernel = bpfUnavailableReason() ? describe.skip : describe;
const pod = (name: string, labels: Record<string, string>, ip: string): EngineEvent => ({
  type: 'upsertPod',
  local: name === 'web',
  pod: { namespace: 'prod', name, labels, ip: parseIp(ip), serviceAccount: 'default', ports: [] },
});
const POLICY = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: web, namespace: prod}
spec:
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: client}}]
  - fromEndpoints: [{matchLabels: {app: client}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}], rules: {http: [{method: GET}]}}]
`;

kernel('review24b: the disarm of a replaced map under a concurrent reader', () => {
  it('never shows a redirected port as a plain allow', async () => {
    const root = mkdtempSync('/sys/fs/bpf/distill-test-review24b-');
    try {
      const pinDir = join(root, 'policy');
      const engine = new Engine({ mapCapacity: 8192 });
      const b1 = new BpfBackend({ pinDir, capacity: 8192 });
      applyChangeSet(b1, engine.apply([pod('web', { app: 'web' }, '10.250.0.1'), pod('client', { app: 'client' }, '10.250.0.2'), { type: 'upsertPolicy', policy: parseManifestFile(POLICY, 'web.yaml')[0]! }]));
      const client = engine.identityOfIp(parseIp('10.250.0.2'));
      const sctp: MapDelta[] = Array.from({ length: 4000 }, (_, i) => ({ endpoint: 'prod/web', op: 'upsert', key: { identity: client, direction: 'ingress', protocol: 132, port: i + 1, portPrefixLen: 16 }, entry: { deny: false, proxyPort: 0, precedence: 0 } }));
      b1.apply('prod/web', sctp);
      expect(b1.lookup('prod/web', client, 'ingress', 6, 80)?.entry.proxyPort).toBeGreaterThan(0);
      b1.close();
      const heldDir = join(root, 'held');
      mkdirSync(dirname(join(heldDir, pinName('prod/web'))), { recursive: true });
      execFileSync('bpftool', ['map', 'pin', 'pinned', join(pinDir, pinName('prod/web')), join(heldDir, pinName('prod/web'))]);
      const watch = spawn(process.execPath, [join(import.meta.dirname, '../datapath/lookup-watch.mjs'), heldDir, 'prod/web', String(client), '6', '80'], { stdio: ['pipe', 'pipe', 'inherit'] });
      let out = '';
      watch.stdout.on('data', (d: Buffer) => (out += d.toString()));
      const exited = new Promise((r) => watch.once('exit', r));
      for (let i = 0; i < 3000 && !out.includes('ready'); i++) await new Promise((r) => setTimeout(r, 10));
      await new Promise((r) => setTimeout(r, 100));
      const b2 = new BpfBackend({ pinDir, capacity: 16384 });
      reconcile(engine, b2);
      b2.close();
      await new Promise((r) => setTimeout(r, 100));
      watch.stdin.end();
      await exited;
      expect(out).toMatch(/lookups [1-9]/);
      expect(out.includes('open'), 'a plain allow was read for client -> web:80 during the disarm').toBe(false);
      const held = new BpfBackend({ pinDir: heldDir, capacity: 8192, readOnly: true });
      expect(held.lookup('prod/web', client, 'ingress', 6, 80), 'the old map admits nothing after').toBeUndefined();
      held.close();
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  }, 120_000);
});
