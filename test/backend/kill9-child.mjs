// Child of the kill -9 test: computes the old and new state like the parent, then writes the
// transaction to the pinned maps one bpf() call per entry (batch: false) until it is killed.
// Prints "writing" before the first write and "done <ms>" after the last.
import { applyChangeSet } from '../../dist/backend/backend.js';
import { BpfBackend } from '../../dist/backend/bpf.js';
import { Engine } from '../../dist/engine/engine.js';
import { parseIp } from '../../dist/model/cidr.js';
import { parseManifestFile } from '../../dist/policy/manifest.js';
import { stage } from './kill9-scenario.mjs';

const pinDir = process.argv[2];
const engine = new Engine();
engine.apply(stage(1, parseManifestFile, parseIp));
const cs = engine.apply(stage(2, parseManifestFile, parseIp));
const backend = new BpfBackend({ pinDir, batch: false });
for (const ep of engine.endpoints()) backend.size(ep); // open the maps before the clock starts
process.stdout.write('writing\n');
const t0 = performance.now();
applyChangeSet(backend, cs);
process.stdout.write(`done ${(performance.now() - t0).toFixed(1)} ${cs.deltas.length}\n`);
backend.close();
