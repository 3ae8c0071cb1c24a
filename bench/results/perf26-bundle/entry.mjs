// perf26 experiment (not a product build): run from /tmp/p26/bundle (entry.mjs, out/bundle.mjs there). See docs/benchmarks.md, twenty-sixth session.
export { parseTrace } from '/work/h-perf26/dist/churn/trace.js';
export { Engine } from '/work/h-perf26/dist/engine/engine.js';
export { MemoryBackend } from '/work/h-perf26/dist/backend/memory.js';
export { applyChangeSet } from '/work/h-perf26/dist/backend/backend.js';
