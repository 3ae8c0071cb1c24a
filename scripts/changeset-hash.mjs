// The ci replay's change-set hash (one transaction for the initial phase, one per churn event, as
// scripts/tail-attrib.mjs --hash computes it: `withWork`), and the same hash with the work counter
// mapEntriesVisited left out (`withoutVisits`): equal for two builds that differ only in how many
// raw entries a settle visits.
// Usage: node scripts/changeset-hash.mjs DIST TRACE
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { createHash } from 'node:crypto';
const dist = process.argv[2], tracePath = process.argv[3];
const { parseTrace } = await import(resolve(dist, 'churn/trace.js'));
const { Engine } = await import(resolve(dist, 'engine/engine.js'));
const trace = parseTrace(readFileSync(tracePath, 'utf8'), tracePath, { manifests: false });
const firstChurn = trace.items.findIndex((i) => i.kind === 'phase' && i.name !== 'initial');
const initial = trace.items.slice(0, firstChurn).flatMap((i) => (i.kind === 'event' ? [i.event] : []));
const churn = trace.items.slice(firstChurn).filter((i) => i.kind === 'event');
const engine = new Engine();
const withWork = createHash('sha256'), noWork = createHash('sha256');
const add = (cs) => { withWork.update(JSON.stringify(cs)); const { work, ...rest } = cs; const w = { ...work }; delete w.mapEntriesVisited; noWork.update(JSON.stringify({ ...rest, work: w })); };
add(engine.apply(initial));
for (const item of churn) add(engine.apply([item.event]));
console.log(JSON.stringify({ dist, events: churn.length, withWork: withWork.digest('hex').slice(0, 16), withoutVisits: noWork.digest('hex').slice(0, 16) }));
