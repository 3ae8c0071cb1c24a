import { existsSync } from 'node:fs';
import { describe } from 'vitest';
import { bpfUnavailableReason } from '../../src/backend/bpf.js';
import { DATAPATH_OBJECT, PROBE_TOOL } from '../../src/datapath/loader.js';

/**
 * The datapath tests need root, bpf(), the clang-built object (bpf/build.sh, run by npm test) and
 * ip/tc/nsenter. They skip saying why; DISTILL_REQUIRE_BPF=1 (CI) makes the skip a failure.
 */
function reason(): string | undefined {
  const bpf = bpfUnavailableReason();
  if (bpf) return bpf;
  if (process.getuid?.() !== 0) return 'network namespaces need root';
  for (const f of [DATAPATH_OBJECT, PROBE_TOOL]) if (!existsSync(f)) return `${f} is not built (bash bpf/build.sh)`;
  return undefined;
}

export const unavailable = reason();
if (unavailable && process.env.DISTILL_REQUIRE_BPF === '1') throw new Error(`DISTILL_REQUIRE_BPF=1 but ${unavailable}`);
if (unavailable) process.stderr.write(`SKIPPING datapath tests: ${unavailable}\n`);
export const kernel: typeof describe.skip = unavailable ? describe.skip : describe;
