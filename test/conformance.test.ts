import { existsSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { bpfUnavailableReason } from '../src/backend/bpf.js';
import { kernelDecider, verdicts } from './backend/kernel-decider.js';
import { Engine } from '../src/engine/engine.js';
import { decideFlow } from '../src/naive/evaluator.js';
import { parseManifestFile } from '../src/policy/manifest.js';
import { parseScenario } from '../src/scenario/format.js';
import { runScenario, scenarioEngineOptions } from '../src/scenario/run.js';
import { EngineDecider } from '../src/harness/engine-decider.js';

/**
 * The independent conformance corpus (fixtures/conformance/): expectations written by hand from
 * Cilium's and Kubernetes' sources, each case citing them. Every scenario runs through the oracle,
 * the engine and (where bpf() is permitted; CI requires it) real kernel maps. `refuse/` holds
 * inputs that must be refused (`# expect-error: <text>` on the first line), `accept/` inputs that
 * must be accepted (`# expect-valid`).
 */
const ROOT = 'fixtures/conformance';
/** A citation: a Go source or test file, a docs page, an API reference, an issue or pull request. */
const SOURCE = /\.go\b|\.rst\b|docs\.cilium\.io|kubernetes\.io|Documentation\/|pkg\/|network-policy-api|cilium#\d+|#\d{3,}|_test\b|Test[A-Z]\w+|e2e/;

function files(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir).sort().flatMap((e) => {
    const p = join(dir, e);
    return statSync(p).isDirectory() ? files(p) : /\.ya?ml$/.test(p) ? [p] : [];
  });
}

/** `pending/` holds cases distill fails today (README there); they are not run. */
const all = files(ROOT).filter((f) => !f.startsWith(join(ROOT, 'pending')));
const refusals = all.filter((f) => f.startsWith(join(ROOT, 'refuse')));
const accepted = all.filter((f) => f.startsWith(join(ROOT, 'accept')));
const scenarios = all.filter((f) => !refusals.includes(f) && !accepted.includes(f));

const unavailable = bpfUnavailableReason();
if (unavailable && process.env.DISTILL_REQUIRE_BPF === '1') throw new Error(`DISTILL_REQUIRE_BPF=1 but ${unavailable}`);
if (unavailable) process.stderr.write(`SKIPPING the conformance corpus through kernel maps: ${unavailable}\n`);
const PIN_DIR = `/sys/fs/bpf/distill-test-conformance-${process.pid}`;
afterAll(() => {
  if (!unavailable) rmSync(PIN_DIR, { recursive: true, force: true });
});


/** What the first lines of a refusal or acceptance file say it expects. */
function header(text: string, tag: string): string | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`# ${tag}`));
  return line === undefined ? undefined : line.slice(`# ${tag}`.length).replace(/^:\s*/, '').trim();
}

/** Manifests are validated; a scenario (it has pods or steps) is also run through the engine. */
function readAndRun(file: string, text: string): void {
  if (/^(pods|steps|namespaces):/m.test(text)) {
    const s = parseScenario(text, file);
    runScenario(s, new EngineDecider(new Engine(scenarioEngineOptions(s))).decide);
    return;
  }
  parseManifestFile(text, file);
}

describe('conformance corpus: expectations from the sources', () => {
  it('has the corpus the fidelity issue asks for', () => {
    expect(scenarios.length + refusals.length + accepted.length).toBeGreaterThanOrEqual(60);
  });
  for (const file of scenarios) {
    it(file, () => {
      const scenario = parseScenario(readFileSync(file, 'utf8'), file);
      expect(scenario.description ?? '', `${file} must cite its source in description`).toMatch(SOURCE);
      expect(scenario.steps.reduce((n, s) => n + s.expect.length, 0)).toBeGreaterThan(0);
      const naive = runScenario(scenario, decideFlow);
      const engine = runScenario(scenario, new EngineDecider(new Engine(scenarioEngineOptions(scenario))).decide);
      expect(naive.steps.flatMap((s) => s.mismatches), 'oracle').toEqual([]);
      expect(engine.steps.flatMap((s) => s.mismatches), 'engine').toEqual([]);
      expect(verdicts(engine)).toEqual(verdicts(naive));
      if (unavailable) return;
      const k = kernelDecider(PIN_DIR, scenarioEngineOptions(scenario));
      try {
        const kernel = runScenario(scenario, k.decide);
        expect(kernel.steps.flatMap((s) => s.mismatches), 'kernel maps').toEqual([]);
      } finally {
        k.close();
      }
    });
  }
  for (const file of refusals) {
    it(`refused: ${file}`, () => {
      const text = readFileSync(file, 'utf8');
      const expected = header(text, 'expect-error');
      expect(expected, `${file} needs a first line "# expect-error: <text>"`).toBeTruthy();
      expect(() => readAndRun(file, text)).toThrow(expected as string);
    });
  }
  for (const file of accepted) {
    it(`accepted: ${file}`, () => {
      const text = readFileSync(file, 'utf8');
      expect(header(text, 'expect-valid'), `${file} needs a first line "# expect-valid"`).toBeDefined();
      expect(() => readAndRun(file, text)).not.toThrow();
    });
  }
});
