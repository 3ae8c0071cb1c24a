// On-CPU time of one call: wall time minus this thread's run-queue wait (/proc/thread-self/schedstat).
import { readFileSync } from 'node:fs';

const waitNs = () => Number(readFileSync('/proc/thread-self/schedstat', 'latin1').split(' ', 2)[1]);

/** [on-CPU µs, result] of `f()`. */
export const onCpuUs = (f) => {
  const w = waitNs();
  const t = process.hrtime.bigint();
  const r = f();
  const wall = Number(process.hrtime.bigint() - t) / 1e3;
  return [Math.max(0, wall - (waitNs() - w) / 1e3), r];
};
