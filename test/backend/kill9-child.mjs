// Child of the kill -9 test: computes the old and new state like the parent, then writes the
// transaction to the pinned maps one bpf() call per entry (batch: false) until it is killed.
// Prints "writing" right before the first write (after the plan is made) and "done <ms> <deltas>"
// after the last.
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
class Marked extends BpfBackend {
  started = false;
  apply(endpoint, ops) {
    if (!this.started) {
      this.started = true;
      process.stdout.write('writing\n'); // synchronous on a pipe (Linux)
      t0 = performance.now();
    }
    return super.apply(endpoint, ops);
  }
}
let t0 = 0;
const backend = new Marked({ pinDir, batch: false });
applyChangeSet(backend, cs);
process.stdout.write(`done ${(performance.now() - t0).toFixed(1)} ${cs.deltas.length}\n`);
backend.close();
