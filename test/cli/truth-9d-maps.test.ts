import { rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.js';
import { EngineDecider } from '../../src/harness/engine-decider.js';
import { runScenario } from '../../src/scenario/run.js';
import { cli } from '../cli-helpers.js';
import { corpus, CorpusScenario, LONG } from './truth-9-corpus.js';
import { l7RowJson, labelsOfEngine, mapRecordJson } from '../../src/backend/record-json.js';

/** Every endpoint's map and L7 table after the scenario's last step, from the engine reach runs. */
function engineMaps(c: CorpusScenario): Map<string, { entries: unknown[]; l7: unknown[] }> {
  const engine = new Engine(c.scenario.dnsProxy ? { dns: c.scenario.dnsProxy } : {});
  runScenario(c.scenario, new EngineDecider(engine).decide);
  const labelsOf = labelsOfEngine(engine);
  const key = (x: unknown): string => JSON.stringify(x);
  return new Map(
    engine.endpoints().map((ep) => [
      ep,
      {
        entries: [...engine.mapState(ep).values()].map((r) => mapRecordJson(r, labelsOf)).sort((a, b) => (key(a) < key(b) ? -1 : 1)),
        l7: engine.l7Table(ep).map((row) => l7RowJson(row, labelsOf)),
      },
    ]),
  );
}

function dumped(c: CorpusScenario, backend: string[]): Map<string, { entries: unknown[]; l7: unknown[] }> | string {
  const r = cli('maps', 'dump', '--scenario', c.file, '--all', '-o', 'json', ...backend);
  if (r.code !== 0) return `exit ${r.code}: ${r.err}`;
  const key = (x: unknown): string => JSON.stringify(x);
  const rows = r.out.trim() === '' ? [] : r.out.trim().split('\n').map((l) => JSON.parse(l) as { endpoint: string; entries: unknown[]; l7: unknown[] });
  return new Map(rows.map((x) => [x.endpoint, { entries: [...x.entries].sort((a, b) => (key(a) < key(b) ? -1 : 1)), l7: x.l7 }]));
}

const asObject = (m: Map<string, unknown> | string): unknown => (typeof m === 'string' ? m : Object.fromEntries(m));

describe('maps dump shows the engine map state (memory, and the kernel maps read back)', () => {
  const all = corpus().filter((c) => c.scenario.steps.length > 0);
  it(`memory backend: ${LONG ? 'every scenario' : 'every third scenario'}`, () => {
    for (const c of all.filter((_, i) => LONG || i % 3 === 0)) expect(asObject(dumped(c, [])), c.file).toEqual(asObject(engineMaps(c)));
  });
  it.runIf(process.getuid?.() === 0)(`bpf backend: ${LONG ? 'every scenario' : 'one scenario in 25'}`, () => {
    const pinDir = `/sys/fs/bpf/distill-test-truth9-${randomBytes(4).toString('hex')}`;
    try {
      for (const c of all.filter((_, i) => LONG || i % 25 === 0)) expect(asObject(dumped(c, ['--backend', 'bpf', '--pin-dir', pinDir])), c.file).toEqual(asObject(engineMaps(c)));
    } finally {
      rmSync(pinDir, { recursive: true, force: true });
    }
  });
});
