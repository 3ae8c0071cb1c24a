// What a replay-shaped script needs from DIST: the trace split into its initial phase and churn, a
// fresh Engine and MemoryBackend, and the functions to apply and warm up (as `distill replay` does).
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { splitTrace } from './initial.mjs';

export async function replayParts(dist, tracePath) {
  const base = pathToFileURL(resolve(dist)).href;
  const { Engine } = await import(`${base}/engine/engine.js`);
  const { parseTrace } = await import(`${base}/churn/trace.js`);
  const { warmUpEngine } = await import(`${base}/churn/warm-up.js`);
  const { MemoryBackend } = await import(`${base}/backend/memory.js`);
  const { applyChangeSet } = await import(`${base}/backend/backend.js`);
  const { initial, churn } = splitTrace(parseTrace(readFileSync(tracePath, 'utf8'), tracePath));
  return { engine: new Engine(), backend: new MemoryBackend(), initial, churn, applyChangeSet, warmUpEngine };
}
