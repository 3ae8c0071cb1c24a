import { ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, expect, it } from 'vitest';
import { PROBE_TOOL } from '../../src/datapath/loader.js';
import { listNetns } from '../../src/datapath/netns.js';
import { Testbed, TESTBED_NETNS_PREFIX } from '../../src/datapath/testbed.js';
import type { ClusterState } from '../../src/model/cluster.js';
import { parseScenario } from '../../src/scenario/format.js';
import { scenarioStates } from '../../src/scenario/run.js';
import { kernel } from './gate.js';
import { cnp } from './yaml.js';


/**
 * client → server:80 allowed by a rule, other → client:80 allowed by default; other → server:80
 * denied by default deny, client → other:80 by an explicit deny. The steps are churn distill keeps
 * writing while it runs: they rewrite the server's map, never a key the probed flows look up.
 */
const scenario = (serverPort: number): string => `
namespaces: [{name: x, labels: {}}]
pods:
  - {name: x/client, labels: {app: client}}
  - {name: x/server, labels: {app: server}}
  - {name: x/other, labels: {app: other}}
policies:
  - ${cnp('server-in', 'server', `ingress: [{fromEndpoints: [{matchLabels: {app: client}}], toPorts: [{ports: [{port: "${serverPort}", protocol: TCP}]}]}]`)}
  - ${cnp('other-deny', 'other', 'ingressDeny: [{fromEndpoints: [{matchLabels: {app: client}}]}]')}
steps:
  - changes:
      - apply: ${cnp('churn-a', 'server', 'ingress: [{fromEndpoints: [{matchLabels: {app: other}}], toPorts: [{ports: [{port: "81", protocol: TCP}]}]}]')}
  - changes:
      - apply: ${cnp('churn-b', 'server', 'ingress: [{fromEndpoints: [{matchLabels: {app: client}}], toPorts: [{ports: [{port: "8080", endPort: 8095, protocol: TCP}]}]}]')}
  - changes: [{delete: {kind: CiliumNetworkPolicy, namespace: x, name: churn-a}}]
  - changes: [{delete: {kind: CiliumNetworkPolicy, namespace: x, name: churn-b}}]
`;

const FLOWS = [
  { from: 'x/client', to: 'x/server', allowed: true },
  { from: 'x/other', to: 'x/client', allowed: true },
  { from: 'x/other', to: 'x/server', allowed: false },
  { from: 'x/client', to: 'x/other', allowed: false },
] as const;
const ROUNDS = 6;

function states(text: string): ClusterState[] {
  const out = scenarioStates(parseScenario(text, 'restart.yaml'));
  return out;
}

interface Attempt {
  readonly start: bigint;
  readonly end: bigint;
  readonly connected: boolean;
}

/** Connections attempted back to back from one namespace, for as long as the test runs. */
class ProbeLoop {
  readonly attempts: Attempt[] = [];
  private readonly child: ChildProcess;
  private rest = '';

  /**
   * `timeoutMs`: an allowed flow gets long enough for a loaded machine but less than TCP's 1 s
   * SYN retransmission, so a dropped SYN is never masked by its retransmission.
   */
  constructor(bed: Testbed, from: string, to: string, timeoutMs: number) {
    const src = bed.address(from, 'ipv4');
    const dst = bed.address(to, 'ipv4');
    this.child = spawn(PROBE_TOOL, ['loop', src.netns, 'TCP', dst.ip, '80', String(timeoutMs), '2000'], { stdio: ['ignore', 'pipe', 'inherit'] });
    this.child.stdout?.on('data', (d: Buffer) => {
      const lines = (this.rest + d.toString()).split('\n');
      this.rest = lines.pop() ?? '';
      for (const l of lines) {
        const [start, end, status] = l.split(' ');
        if (status !== '0' && status !== '1') throw new Error(`probe loop: ${l}`);
        this.attempts.push({ start: BigInt(start as string), end: BigInt(end as string), connected: status === '0' });
      }
    });
  }

  /** Attempts that started at or after `t` (and, when given, ended by `until`). */
  since(t: bigint, until?: bigint): Attempt[] {
    return this.attempts.filter((a) => a.start >= t && (until === undefined || a.end <= until));
  }

  stop(): void {
    this.child.kill('SIGKILL');
  }
}

async function until(what: string, cond: () => boolean): Promise<void> {
  for (let i = 0; i < 6000; i++) {
    if (cond()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`timed out waiting for ${what}`);
}

interface Started {
  readonly child: ChildProcess;
  readonly ready: bigint;
  readonly policy: { upserts: number; deletes: number; created: number; removed: number };
  /** ipcache entries the restart wrote (upserts and deletes). */
  readonly ipcacheWrites: number;
}

/** `distill testbed-agent` as a process of its own, once it has reconciled the pins. */
async function startDistill(pinRoot: string, file: string, churn: boolean): Promise<Started> {
  const child = spawn(process.execPath, ['dist/cli/main.js', 'testbed-agent', '--pin-root', pinRoot, '--scenario', file, ...(churn ? ['--churn'] : [])], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  let out = '';
  let err = '';
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
  await until('distill testbed-agent to be ready', () => out.includes('\n') || child.exitCode !== null);
  if (!out.includes('"ready":true')) throw new Error(`testbed-agent did not start (exit ${child.exitCode ?? '-'}): ${err}`);
  const line = JSON.parse(out.split('\n')[0] as string) as { policy: Started['policy']; ipcacheWrites: number };
  return { child, ready: process.hrtime.bigint(), policy: line.policy, ipcacheWrites: line.ipcacheWrites };
}

async function kill9(child: ChildProcess): Promise<void> {
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGKILL');
  await exited;
  children.delete(child);
}

const children = new Set<ChildProcess>();
const loops: ProbeLoop[] = [];
let bed: Testbed | undefined;
const dir = mkdtempSync(join(tmpdir(), 'distill-restart-'));

// A test that failed half-way leaves its distill running, holding the pin dir: the next test must not meet it.
afterEach(async () => {
  for (const c of [...children]) if (c.exitCode === null && c.signalCode === null) await kill9(c);
  children.clear();
});

afterAll(() => {
  for (const l of loops) l.stop();
  for (const c of children) c.kill('SIGKILL');
  bed?.close();
  rmSync(dir, { recursive: true, force: true });
});

kernel('datapath across kill -9 restarts of a separate distill process', () => {
  it(`no allowed connection fails and no denied one succeeds while distill is killed and restarted ${ROUNDS} times`, async () => {
    const file = join(dir, 'restart.yaml');
    writeFileSync(file, scenario(80));
    const all = states(scenario(80));
    const b = (bed = new Testbed({ listen: new Set(['TCP:80']) }));
    // In this process first: the verdicts are as expected with real packets, in every churn state.
    for (const s of [...all, all[0] as ClusterState]) {
      for (const f of FLOWS) expect(b.decide(s, { from: f.from, to: f.to, port: 80, protocol: 'TCP' }).allowed, `${f.from} -> ${f.to}`).toBe(f.allowed);
    }
    b.releaseMaps();
    loops.push(...FLOWS.map((f) => new ProbeLoop(b, f.from, f.to, f.allowed ? 800 : 100)));
    const windows: { killed: bigint; ready: bigint }[] = [];
    let rewritten = 0;
    let distill = await startDistill(b.pinRoot, file, true);
    for (let round = 0; round < ROUNDS; round++) {
      const live = distill.ready;
      // Probes while distill runs and churns, then kill -9 at a random point of its work.
      await until('probes while distill runs', () => loops.every((l) => l.since(live).length >= 2));
      await new Promise((r) => setTimeout(r, Math.floor(Math.random() * 50)));
      const killed = process.hrtime.bigint();
      await kill9(distill.child);
      // Probes while no distill runs at all: enforcement is the pinned programs' and maps' alone.
      await until('probes while distill is dead', () => loops.every((l) => l.since(killed).length >= 2));
      distill = await startDistill(b.pinRoot, file, round < ROUNDS - 1);
      windows.push({ killed, ready: distill.ready });
      rewritten += distill.policy.upserts + distill.policy.deletes;
      expect([distill.policy.created, distill.policy.removed]).toEqual([0, 0]); // the pinned maps were reopened, not replaced
    }
    await until('probes after the last restart', () => loops.every((l) => l.since(distill.ready).length >= 2));
    // A clean restart at the same state writes nothing: the restarted process left the maps as a fresh one wants them.
    await kill9(distill.child);
    distill = await startDistill(b.pinRoot, file, false);
    expect(distill.policy).toMatchObject({ upserts: 0, deletes: 0, created: 0, removed: 0 });
    expect(distill.ipcacheWrites).toBe(0); // the pinned ipcache was read back: nothing rewritten
    await kill9(distill.child);
    for (const l of loops) l.stop();

    FLOWS.forEach((f, i) => {
      const attempts = (loops[i] as ProbeLoop).attempts;
      const wrong = attempts.filter((a) => a.connected !== f.allowed);
      expect(wrong, `${f.from} -> ${f.to}: ${wrong.length} of ${attempts.length} attempts got the wrong verdict`).toEqual([]);
      for (const w of windows) expect((loops[i] as ProbeLoop).since(w.killed, w.ready).length).toBeGreaterThanOrEqual(2);
    });
    // Killed mid-churn, the restarted process had maps to bring back to its state: restarts wrote while connections ran.
    expect(rewritten).toBeGreaterThan(0);
    const total = loops.reduce((n, l) => n + l.attempts.length, 0);
    process.stderr.write(`restart: ${ROUNDS} kill -9 rounds, ${total} connection attempts, ${rewritten} entries rewritten by restarts\n`);
  }, 180_000);

  it('enforcement follows the separate process: a distill started on another state changes real verdicts', async () => {
    const b = bed as Testbed;
    const moved = join(dir, 'moved.yaml');
    writeFileSync(moved, scenario(81)); // the allow rule moves to port 81: client -> server:80 now denied
    const probe = (): Promise<boolean> => {
      const l = new ProbeLoop(b, 'x/client', 'x/server', 800);
      return until('one attempt', () => l.attempts.length > 0).then(() => {
        l.stop();
        return (l.attempts[0] as Attempt).connected;
      });
    };
    let d = await startDistill(b.pinRoot, moved, false);
    expect(d.policy.upserts + d.policy.deletes).toBeGreaterThan(0);
    expect(await probe()).toBe(false);
    await kill9(d.child);
    d = await startDistill(b.pinRoot, join(dir, 'restart.yaml'), false);
    expect(await probe()).toBe(true);
    await kill9(d.child);
  }, 60_000);

  it('removes every namespace and pin of the run, and a distill still running on it stops by itself', async () => {
    const b = bed as Testbed;
    const d = await startDistill(b.pinRoot, join(dir, 'restart.yaml'), true);
    const exited = new Promise<number | null>((r) => d.child.once('exit', r));
    expect(listNetns(`${TESTBED_NETNS_PREFIX}${b.id}-`).length).toBeGreaterThan(2);
    b.close();
    expect(listNetns(`${TESTBED_NETNS_PREFIX}${b.id}-`)).toEqual([]);
    expect(existsSync(b.pinRoot)).toBe(false);
    expect(await exited).toBe(1); // it saw its run's pin root go
    children.delete(d.child);
  }, 60_000);
});
