/**
 * A minimal node agent embedding distill: Kubernetes watch streams in (files, or `-` for stdin,
 * as `kubectl get pods -A --watch --output-watch-events -o json` prints them; kubectl watches one
 * resource type at a time, so one stream each for namespaces, pods and networkpolicies), one engine transaction per batch of what arrived together, maps written, metrics
 * on a prom-client registry. Run: node minimal-agent.js NODE-NAME STREAM...
 */
import { createReadStream } from 'node:fs';
import { Registry } from 'prom-client';
import { applyChangeSet, ClusterMirror, Engine, InstrumentedEngine, MemoryBackend, reconcile, WatchStreamParser, type EngineEvent } from 'distill';

const [nodeName = 'node-a', ...files] = process.argv.slice(2);
const registry = new Registry();
const engine = new Engine();
const agent = new InstrumentedEngine(engine, { registry });
const backend = new MemoryBackend();
const mirror = new ClusterMirror({ nodeName, warn: (msg, fields) => console.error(msg, fields) });
let first = true;
let pending = false;

function flush(): void {
  pending = false;
  const batch = mirror.flush();
  // Identity events are for engines with external identities; this one allocates its own.
  const events = batch.events.filter((e): e is EngineEvent => e.type !== 'upsertIdentity' && e.type !== 'deleteIdentity');
  if (events.length === 0) return batch.commit();
  const outcome = agent.apply(events);
  if (!outcome.ok) {
    console.error(`refused: ${outcome.error.message}`);
    return batch.rollback();
  }
  batch.commit();
  // The first transaction brings pinned maps (after a restart) to the engine's state.
  if (first) reconcile(engine, backend);
  else applyChangeSet(backend, outcome.changes);
  first = false;
}

let open = files.length;
for (const file of files) {
  const parser = new WatchStreamParser(file);
  // Decode UTF-8 in the stream, never per chunk: a character split across two chunks would become two U+FFFD.
  const stream = file === '-' ? process.stdin.setEncoding('utf8') : createReadStream(file, 'utf8');
  stream.on('data', (chunk: string | Buffer) => {
    for (const item of parser.push(String(chunk))) mirror.observe(item, file);
    if (!pending) (pending = true), setImmediate(flush);
  });
  stream.on('end', () => {
    parser.end();
    mirror.endStream(file);
    if (--open > 0) return;
    flush();
    for (const ep of backend.endpoints()) console.log(`${ep}: ${backend.size(ep)} map entries`);
    registry.metrics().then((text) => console.log(text.split('\n').filter((l) => l.startsWith('distill_policy_change_total')).join('\n')));
  });
}
