// perf26 experiment (not a product build): run from /tmp/p26/bundle (entry.mjs, out/bundle.mjs there). See docs/benchmarks.md, twenty-sixth session.
import { rolldown } from '/work/main/node_modules/rolldown/dist/index.mjs';
const b = await rolldown({ input: process.argv[2] + '/cli/main.js', platform: 'node', external: [/^node:/, 'koffi'] });
await b.write({ dir: process.argv[3], format: 'esm' });
console.log('ok');
