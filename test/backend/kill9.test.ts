import { endpointMaps, sameEndpointMaps } from '../../src/harness/cluster-sync.js';
import { spawn } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { applyChangeSet, MapBackend, WriteStats } from '../../src/backend/backend.js';
import { BpfBackend, bpfUnavailableReason } from '../../src/backend/bpf.js';
import { MemoryBackend } from '../../src/backend/memory.js';
import { reconcile } from '../../src/node/restart.js';
import { Engine } from '../../src/engine/engine.js';
import type { EngineEvent, MapDelta } from '../../src/engine/events.js';
import { parseIp } from '../../src/model/cidr.js';
import { policyKeyString } from '../../src/model/policy-map.js';
import { parseManifestFile } from '../../src/policy/manifest.js';
import { FlowChecker, Maps } from './flow-check.js';
import { stage } from './kill9-scenario.mjs';

/**
 * kill -9 in the middle of a large transaction written to real kernel maps, one bpf() call per
 * entry: the maps left behind must allow no flow that neither the old nor the new state allows,
 * and a restart (new engine, same new state, `reconcile`) must converge to the new state, again
 * without such a flow at any step. Skips without bpf() like bpf.test.ts; DISTILL_REQUIRE_BPF=1
 * turns the skip into a failure.
 */
const unavailable = bpfUnavailableReason();
const required = process.env.DISTILL_REQUIRE_BPF === '1';
if (unavailable && required) throw new Error(`DISTILL_REQUIRE_BPF=1 but ${unavailable}`);
if (unavailable) process.stderr.write(`SKIPPING kill -9 test: ${unavailable}\n`);
const kernel = unavailable ? describe.skip : describe;

const TRIALS = process.env.DISTILL_LONG ? 96 : 24;
const CHILD = join(import.meta.dirname, 'kill9-child.mjs');
const DIST = join(import.meta.dirname, '../../dist/backend/write-plan.js');
const PIN_ROOT = `/sys/fs/bpf/distill-test-${process.pid}-${Math.floor(Math.random() * 1e9)}`;
afterAll(() => {
  if (!unavailable) rmSync(PIN_ROOT, { recursive: true, force: true });
});

const stageEvents = (n: 1 | 2): EngineEvent[] => stage(n, parseManifestFile, parseIp);

function dumpMaps(b: MapBackend): Maps {
  return new Map(b.endpoints().map((ep) => [ep, new Map(b.dump(ep).map((r) => [policyKeyString(r.key), r]))]));
}



/** A memory backend that records every write, to replay reconcile's order through a FlowChecker. */
class Recording extends MemoryBackend {
  readonly writes: { endpoint: string; ops: readonly MapDelta[] }[] = [];
  override apply(endpoint: string, ops: readonly MapDelta[]): WriteStats {
    this.writes.push({ endpoint, ops });
    return super.apply(endpoint, ops);
  }
}

/** Runs the child; kills it `delayMs` after it starts writing (never, if undefined). */
function runChild(pinDir: string, delayMs: number | undefined): Promise<{ killed: boolean; doneLine?: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CHILD, pinDir], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    let timer: NodeJS.Timeout | undefined;
    child.stdout.on('data', (b: Buffer) => {
      out += b.toString();
      if (delayMs !== undefined && timer === undefined && out.includes('writing\n')) timer = setTimeout(() => child.kill('SIGKILL'), delayMs);
    });
    child.stderr.on('data', (b: Buffer) => (err += b.toString()));
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      if (timer) clearTimeout(timer);
      const doneLine = out.split('\n').find((l) => l.startsWith('done '));
      if (signal === 'SIGKILL') resolve({ killed: true, ...(doneLine ? { doneLine } : {}) });
      else if (code === 0 && doneLine) resolve({ killed: false, doneLine });
      else reject(new Error(`kill -9 child exited with ${code ?? signal}: ${err}`));
    });
  });
}

kernel('kill -9 during a write to real kernel maps', () => {
  it(`${TRIALS} trials: the maps left behind are fail-closed, and a restart converges fail-closed`, async () => {
    expect(existsSync(DIST), `${DIST} is missing: run \`npm run build\` (npm test does) before this test`).toBe(true);
    const oldEngine = new Engine();
    const cs1 = oldEngine.apply(stageEvents(1));
    const old = endpointMaps(oldEngine);
    const newEngine = new Engine();
    newEngine.apply(stageEvents(1));
    newEngine.apply(stageEvents(2));
    const next = endpointMaps(newEngine);
    // Flows: the local endpoints with each other, and with a sample of the peer identities.
    const endpointIds = new Map(newEngine.endpoints().map((ep) => [ep, [newEngine.identityOfPod(ep) as number]]));
    const clients = Array.from({ length: 6 }, (_, i) => newEngine.identityOfPod(`prod/client-${i * 37}`) as number);
    const identities = [...newEngine.identities().filter((id) => id < 256), ...clients, ...[...endpointIds.values()].flat()];

    const outcomes = { old: 0, new: 0, between: 0 };
    let budget: number | undefined;
    let reconcileOps = 0;
    for (let trial = 0; trial < TRIALS; trial++) {
      const pinDir = join(PIN_ROOT, String(trial));
      try {
        const setup = new BpfBackend({ pinDir });
        applyChangeSet(setup, cs1);
        setup.close();
        // Trial 0 runs to the end and measures how long the writes take; the others are killed
        // at a random point of that span.
        const r = await runChild(pinDir, budget === undefined ? undefined : Math.random() * budget);
        if (budget === undefined) budget = Number(r.doneLine?.split(' ')[1]);
        const after = new BpfBackend({ pinDir });
        const left = dumpMaps(after);
        const outcome = sameEndpointMaps(left, old) ? 'old' : sameEndpointMaps(left, next) ? 'new' : 'between';
        outcomes[outcome]++;
        const crash = new FlowChecker(old, next, endpointIds, identities, left);
        expect(crash.counts().hard, `trial ${trial}: flows open after the kill (${outcome})`).toBe(0);

        // Restart: reconcile's writes, replayed on memory maps, stay fail-closed at every step...
        const mem = new Recording();
        for (const [ep, m] of left) {
          mem.create(ep);
          mem.apply(ep, [...m.values()].map((r) => ({ endpoint: ep, op: 'upsert' as const, key: r.key, entry: r.entry })));
        }
        mem.writes.length = 0;
        const restartedMem = new Engine();
        restartedMem.apply(stageEvents(1));
        restartedMem.apply(stageEvents(2));
        reconcile(restartedMem, mem);
        const replay = new FlowChecker(old, next, endpointIds, identities, left);
        for (const w of mem.writes) {
          for (const d of w.ops) expect(replay.apply(w.endpoint, d).hard, `trial ${trial}: reconcile opened a flow at ${d.op} ${policyKeyString(d.key)}`).toBe(0);
          reconcileOps += w.ops.length;
        }
        // ...and on the kernel maps they converge to the new state.
        const restarted = new Engine();
        restarted.apply(stageEvents(1));
        restarted.apply(stageEvents(2));
        reconcile(restarted, after);
        expect(sameEndpointMaps(dumpMaps(after), next), `trial ${trial}: maps after reconcile`).toBe(true);
        after.close();
      } finally {
        rmSync(pinDir, { recursive: true, force: true });
      }
    }
    process.stderr.write(
      `kill -9: ${TRIALS} trials (writes take ~${(budget ?? 0).toFixed(0)} ms single-element): left in the old state ${outcomes.old}, ` +
        `killed mid-write ${outcomes.between}, finished ${outcomes.new}; hard-rule violations 0; reconcile replayed ${reconcileOps} writes, 0 violations\n`,
    );
    expect(outcomes.between).toBeGreaterThan(0);
  }, 300_000);
});
