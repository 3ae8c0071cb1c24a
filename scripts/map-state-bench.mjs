// Micro-benchmark of one map state: 30,000 allow contributions (3,000 rules x 10 peers, 10,000
// distinct keys), then one settle(). Best of 15 runs. Run after `npm run build`:
//   node scripts/map-state-bench.mjs
import { MapState } from '../dist/engine/map-state.js';
import { emptyStats } from '../dist/engine/stats.js';

const ALLOW = { deny: false, proxyPort: 0, precedence: 1 };
// One contribution per rule, as the engine makes one per rule unit.
const rules = Array.from({ length: 3000 }, (_, s) => ({ origin: null, entry: ALLOW, label: `u${s}` }));
let bestAdd = Infinity;
let bestSettle = Infinity;
for (let run = 0; run < 15; run++) {
  const m = new MapState(emptyStats());
  const t0 = performance.now();
  for (let s = 0; s < 3000; s++) {
    for (let p = 0; p < 10; p++) {
      const key = { identity: 256 + ((s * 7 + p * 13) % 1000), direction: 'ingress', protocol: 6, port: 8000 + (s % 100), portPrefixLen: 16 };
      m.add(key, rules[s]);
    }
  }
  const t1 = performance.now();
  m.settle();
  const t2 = performance.now();
  bestAdd = Math.min(bestAdd, t1 - t0);
  bestSettle = Math.min(bestSettle, t2 - t1);
}
console.log(JSON.stringify({ addsMs: Number(bestAdd.toFixed(1)), settleMs: Number(bestSettle.toFixed(1)) }));
