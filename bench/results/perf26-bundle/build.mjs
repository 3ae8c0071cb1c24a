// perf26 experiment (not a product build): run from /tmp/p26/bundle (entry.mjs, out/bundle.mjs there). See docs/benchmarks.md, twenty-sixth session.
import { rolldown } from '/work/main/node_modules/rolldown/dist/index.mjs';
const b = await rolldown({ input: '/tmp/p26/bundle/entry.mjs', platform: 'node', external: [/^node:/] });
await b.write({ file: '/tmp/p26/bundle/out/bundle.mjs', format: 'esm' });
console.log('ok');
