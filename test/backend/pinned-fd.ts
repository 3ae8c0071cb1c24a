import { bpf, BPF_CMD, NativeBuffer } from '../../src/backend/bpf-syscall.js';

/** An fd on the map pinned at `path` (BPF_OBJ_GET), as a loaded program holds one; the caller closes it. */
export function openPinned(path: string): number {
  const attr = new NativeBuffer(128);
  const p = new NativeBuffer(4096);
  try {
    Buffer.from(`${path}\0`).copy(p.buf);
    attr.buf.writeBigUInt64LE(p.address, 0);
    const r = bpf(BPF_CMD.OBJ_GET, attr);
    if (r.ret < 0) throw new Error(`OBJ_GET ${path}: errno ${r.errno}`);
    return r.ret;
  } finally {
    attr.free();
    p.free();
  }
}
