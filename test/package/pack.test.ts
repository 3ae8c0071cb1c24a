import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

/**
 * The package as a consumer gets it: `npm pack`, installed into a fresh project (offline, from
 * the npm cache `npm ci` filled), then a TypeScript program importing only from 'distill' is
 * type-checked and run with plain node (no tsx), and examples/minimal-agent.ts type-checked.
 * Relies on dist/ being built (npm test runs tsc first).
 */
const ROOT = resolve('.');
const work = mkdtempSync(join(tmpdir(), 'distill-pack-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const run = (cmd: string, args: string[], cwd: string): string => execFileSync(cmd, args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

const PROGRAM = `
import { Engine, MemoryBackend, applyChangeSet, reconcile, parseManifest, parseIp, ClusterMirror, WatchStreamParser, EngineError, type EngineEvent, type ChangeSet } from 'distill';

const policy = parseManifest({ apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { name: 'p', namespace: 'ns' },
  spec: { podSelector: { matchLabels: { app: 'web' } }, ingress: [{ from: [{ podSelector: { matchLabels: { app: 'client' } } }] }] } }, 'inline');
const engine = new Engine();
const backend = new MemoryBackend();
const events: EngineEvent[] = [
  { type: 'upsertNamespace', name: 'ns', labels: {} },
  { type: 'upsertPod', local: true, pod: { namespace: 'ns', name: 'web', labels: { app: 'web' }, ip: parseIp('10.0.0.1'), serviceAccount: 'default', ports: [] } },
  { type: 'upsertPolicy', policy },
];
const cs: ChangeSet = engine.apply(events);
applyChangeSet(backend, cs);
const again = reconcile(engine, backend);
let refused = '';
try { engine.apply([{ type: 'deletePod', namespace: 'ns', name: 'nope' }]); } catch (e) { if (e instanceof EngineError) refused = e.name; }
const mirror = new ClusterMirror({ nodeName: 'n1' });
const parser = new WatchStreamParser('s');
for (const item of parser.push('{"type":"ADDED","object":{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"x","resourceVersion":"1"}}}')) mirror.observe(item, 's');
console.log(JSON.stringify({ endpoints: backend.endpoints(), entries: backend.size('ns/web'), rewritten: again.upserts + again.deletes, refused, mirrored: mirror.flush().events.map((e) => e.type) }));
`;

interface LockEntry {
  version?: string;
  dev?: boolean;
  [k: string]: unknown;
}

/**
 * A lockfile for a project depending on the tarball: distill's production dependencies pinned as
 * in distill's own lockfile, so `npm ci --offline` installs them from the cache `npm ci` filled.
 */
function consumerLock(spec: string): Record<string, unknown> {
  const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, LockEntry> };
  const root = lock.packages['']!;
  const packages: Record<string, LockEntry> = { '': { name: 'app', dependencies: { distill: spec } } };
  for (const [path, entry] of Object.entries(lock.packages)) {
    if (path === '' || entry.dev === true || entry.devOptional === true) continue;
    // The project's lockfile omits `resolved`; with it (and the integrity), npm finds the cached tarball offline.
    const name = path.slice(path.lastIndexOf('node_modules/') + 'node_modules/'.length);
    packages[path] = { resolved: `https://registry.npmjs.org/${name}/-/${name.slice(name.indexOf('/') + 1)}-${String(entry.version)}.tgz`, ...entry };
  }
  packages['node_modules/distill'] = { version: root.version, resolved: spec, dependencies: root.dependencies, engines: root.engines };
  return { name: 'app', lockfileVersion: 3, requires: true, packages };
}

describe('the npm package', () => {
  it('installs from its tarball and serves a TypeScript consumer importing only from distill', () => {
    run('npm', ['pack', '--ignore-scripts', '--pack-destination', work], ROOT);
    const tarball = readdirSync(work).find((f) => f.endsWith('.tgz'));
    expect(tarball).toBeDefined();
    const listing = run('tar', ['-tzf', join(work, tarball!)], work).split('\n');
    expect(listing).toContain('package/dist/index.d.ts');
    expect(listing.filter((f) => /^package\/(test|bench|fixtures)\//.test(f) || f.endsWith('.map'))).toEqual([]);

    const app = join(work, 'app');
    run('mkdir', ['-p', app], work);
    writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', private: true, type: 'module', dependencies: { distill: `file:../${tarball}` } }));
    writeFileSync(join(app, 'package-lock.json'), JSON.stringify(consumerLock(`file:../${tarball}`)));
    run('npm', ['ci', '--offline', '--no-audit', '--no-fund', '--ignore-scripts'], app);
    writeFileSync(join(app, 'main.ts'), PROGRAM);
    copyFileSync(join(ROOT, 'examples/minimal-agent.ts'), join(app, 'minimal-agent.ts'));
    writeFileSync(
      join(app, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: { target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, outDir: 'out', typeRoots: [join(ROOT, 'node_modules/@types')], types: ['node'], skipLibCheck: false },
        files: ['main.ts', 'minimal-agent.ts'],
      }),
    );
    run(join(ROOT, 'node_modules/.bin/tsc'), ['-p', 'tsconfig.json'], app);
    const out = JSON.parse(run('node', ['out/main.js'], app)) as Record<string, unknown>;
    expect(out).toEqual({ endpoints: ['ns/web'], entries: 2, rewritten: 0, refused: 'EngineError', mirrored: ['upsertNamespace'] });
  });
});
