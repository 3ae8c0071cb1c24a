import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli, tmpFile } from './cli-helpers.js';
import { EtcdServer, requireEtcdOrSkip } from './kvstore/etcd-server.js';

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

describe('1262. agent --identities etcd --exit-at-eof says what it waits for', () => {
  const hasEtcd = requireEtcdOrSkip('1262');
  let etcd: EtcdServer | undefined;
  beforeAll(async () => {
    if (hasEtcd) etcd = await EtcdServer.start();
  });
  const children: ReturnType<typeof spawn>[] = [];
  afterAll(async () => {
    for (const c of children) c.kill('SIGKILL');
    await etcd?.stop();
  });
  it.skipIf(!hasEtcd)('a remote pod whose node runs no agent: a warning names the wait (was: silence, for ever)', async () => {
    // shop/b runs on node-b, whose agent would allocate its identity; none runs, so the wait has no end.
    const stream = tmpFile('events.json', `${NAMESPACE}\n${localPod('a', 2)}\n${localPod('b', 3, 'node-b')}\n`);
    const child = spawn('node', ['dist/cli/main.js', 'agent', '--node', 'node-a', '--watch', stream, '--identities', 'etcd', '--etcd', etcd!.url, '--exit-at-eof'], { stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(child);
    let stderr = '';
    const warned = await new Promise<boolean>((resolve) => {
      child.stderr.on('data', (d: Buffer) => {
        stderr += d.toString('utf8');
        if (stderr.includes('waiting for the identities of remote pods')) resolve(true);
      });
      child.on('exit', () => resolve(false));
    });
    child.kill('SIGTERM');
    expect(warned, stderr).toBe(true);
    const line = stderr.split('\n').find((l) => l.includes('waiting for the identities'));
    expect(JSON.parse(line!)).toMatchObject({ level: 40 });
  }, 60_000);
});

describe('1263. plan on a scenario without probes says it checked no pod pair', () => {
  const SCENARIO = `namespaces: [{name: shop}]
pods:
  - {name: shop/backend, labels: {app: backend}}
  - {name: shop/db, labels: {app: db}, ports: [{name: pg, port: 5432}]}
`;
  const NP = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db-from-backend, namespace: shop}
spec:
  podSelector: {matchLabels: {app: db}}
  policyTypes: [Ingress]
  ingress: [{from: [{podSelector: {matchLabels: {app: backend}}}], ports: [{port: pg}]}]
`;
  it('text: not "no verdict changes" when no pair was checked (the change isolates shop/db)', () => {
    const r = cli('plan', '--scenario', tmpFile('s.yaml', SCENARIO), '-f', tmpFile('np.yaml', NP));
    expect(r.code, r.err).toBe(0);
    expect(r.out).not.toContain('no verdict changes');
    expect(r.out).toContain('no pod pairs checked');
    expect(r.out).toContain('--port');
  });
  it('json: checkedPorts tells an empty check from no changes', () => {
    const none = cli('plan', '--scenario', tmpFile('s.yaml', SCENARIO), '-f', tmpFile('np.yaml', NP), '-o', 'json');
    expect(JSON.parse(none.out)).toMatchObject({ checkedPorts: [], verdictChanges: [] });
    const some = cli('plan', '--scenario', tmpFile('s.yaml', SCENARIO), '-f', tmpFile('np.yaml', NP), '--port', '5432/TCP', '--port', '80/TCP', '-o', 'json');
    const out = JSON.parse(some.out) as { checkedPorts: string[]; verdictChanges: { from: string; to: string; port: number }[] };
    expect(out.checkedPorts).toEqual(['5432/TCP', '80/TCP']);
    expect(out.verdictChanges).toContainEqual(expect.objectContaining({ from: 'shop/backend', to: 'shop/db', port: 80 }));
  });
});

describe('1265. maps clean on a pin dir that does not exist creates nothing', () => {
  it.skipIf(!asRoot)('a mistyped --pin-dir: "no such directory", exit 0, and no directory left on bpffs (was: created, "no distill maps")', () => {
    const pinDir = `/sys/fs/bpf/distill-test-user19-${randomBytes(6).toString('hex')}`;
    try {
      const r = cli('maps', 'clean', '--pin-dir', pinDir);
      expect(r.code, r.err).toBe(0);
      expect(r.out).toContain('no such directory');
      expect(existsSync(pinDir)).toBe(false);
      expect(JSON.parse(cli('maps', 'clean', '--pin-dir', pinDir, '-o', 'json').out)).toEqual({ removed: [] });
      expect(existsSync(pinDir)).toBe(false);
    } finally {
      rmSync(pinDir, { recursive: true, force: true });
    }
  });
});

describe('1264. docs/cli.md "JSON output" says what each command prints', () => {
  const page = readFileSync('docs/cli.md', 'utf8');
  const section = page.slice(page.indexOf('## JSON output'), page.indexOf('## Usage errors'));
  /** The `{a, b?, c}` key lists of the bullet for `command`, in order. */
  const shapes = (command: string): string[][] => {
    const bullet = section.split('\n- ').find((b) => b.startsWith(`\`${command}\`:`)) ?? '';
    return [...bullet.matchAll(/\{([a-zA-Z0-9?, ]+)\}/g)].map((m) => m[1]!.split(',').map((k) => k.trim()));
  };
  /** Keys `obj` has agree with the documented list: every required one present, nothing undocumented. */
  const agrees = (documented: string[] | undefined, obj: object): void => {
    expect(documented, JSON.stringify(obj)).toBeDefined();
    const required = documented!.filter((k) => !k.endsWith('?'));
    const all = documented!.map((k) => k.replace(/\?$/, ''));
    expect(Object.keys(obj).filter((k) => !all.includes(k))).toEqual([]);
    expect(required.filter((k) => !(k in obj))).toEqual([]);
  };
  const S = `namespaces: [{name: shop}]
pods:
  - {name: shop/web, labels: {app: web}}
  - {name: shop/api, labels: {app: api}}
policies:
  - apiVersion: cilium.io/v2
    kind: CiliumNetworkPolicy
    metadata: {name: api, namespace: shop}
    spec:
      endpointSelector: {matchLabels: {app: api}}
      ingress:
        - fromEndpoints: [{matchLabels: {app: web}}]
          toPorts: [{ports: [{port: "80", protocol: TCP}], rules: {http: [{method: GET}]}}]
`;
  const json = (...args: string[]): unknown => {
    const r = cli(...args, '-o', 'json');
    expect(r.code, r.err).toBe(0);
    return JSON.parse(r.out) as unknown;
  };
  it('trace: the flow, each side, the matched entry, the L7 verdict', () => {
    const file = tmpFile('s.yaml', S);
    const t = json('trace', '--scenario', file, '--from', 'shop/web', '--to', 'shop/api', '--port', '80/TCP', '--http-path', '/') as { sides: { entry: object; l7?: object }[] };
    const [top, side, entry, l7] = shapes('trace');
    agrees(top, t);
    const ingress = t.sides[1]!;
    agrees(side, ingress);
    agrees(entry, ingress.entry);
    agrees(l7, ingress.l7!);
  });
  it('selectors, identities, maps list: lists of objects', () => {
    const file = tmpFile('s.yaml', S);
    for (const command of ['selectors', 'identities', 'maps list']) {
      const rows = json(...command.split(' '), '--scenario', file) as object[];
      expect(rows.length, command).toBeGreaterThan(0);
      for (const row of rows) agrees(shapes(command)[0], row);
    }
  });
  it('maps dump: the map, its entries and L7 rows; --all: one object per line', () => {
    const file = tmpFile('s.yaml', S);
    const d = json('maps', 'dump', '--scenario', file, '--endpoint', 'shop/api') as { entries: object[]; l7: object[] };
    const [top, entry, , l7] = shapes('maps dump');
    agrees(top, d);
    for (const e of d.entries) agrees(entry, e);
    expect(d.l7.length).toBeGreaterThan(0);
    for (const row of d.l7) agrees(l7, row);
    const all = cli('maps', 'dump', '--scenario', file, '--all', '-o', 'json').out.trim().split('\n');
    expect(all.map((l) => (JSON.parse(l) as { endpoint: string }).endpoint).sort()).toEqual(['shop/api', 'shop/web']);
  });
});
