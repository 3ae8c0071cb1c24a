import { getHeapStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/**
 * A function returning the live heap in bytes (two full GCs first), for tests that bound what a
 * structure retains. V8 flushes the bytecode of functions unused for a few GCs: freed between two
 * readings, it would be counted against what the test measures (the twentieth session's CI once
 * measured 494 B a pod event where every other run gave 263–272), so flushing is turned off.
 */
export function liveHeapReader(): () => number {
  setFlagsFromString('--expose-gc');
  setFlagsFromString('--no-flush-bytecode');
  const gc = runInNewContext('gc') as () => void;
  return () => {
    gc();
    gc();
    return getHeapStatistics().used_heap_size;
  };
}
