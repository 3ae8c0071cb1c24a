import { bpf, BPF_CMD, BpfError, ERRNO, NativeBuffer, SyscallResult } from './bpf-syscall.js';

/** How a walk issues its bpf() calls (the bpf backend counts them). */
export type BpfCall = (cmd: number, attr: NativeBuffer) => SyscallResult;

/** Elements per BPF_MAP_LOOKUP_BATCH. */
const BATCH_SIZE = 1024;

/** Errnos of a kernel (or map type) without BPF_MAP_LOOKUP_BATCH. */
const NO_BATCH: ReadonlySet<number> = new Set([ERRNO.EINVAL, ERRNO.EOPNOTSUPP, ERRNO.ENOTSUPP]);

/**
 * Reads whole maps of one key and value size through the raw bpf() syscall: BPF_MAP_LOOKUP_BATCH,
 * 1,024 elements a call, where the kernel has it for the map type; else BPF_MAP_GET_NEXT_KEY from
 * no key (an LPM trie starts at its leftmost node), with a BPF_MAP_LOOKUP_ELEM per key. Keys and
 * values live in native memory at stable addresses (the kernel reads pointers inside bpf_attr)
 * until `free()`.
 */
export class MapWalker {
  private readonly attr = new NativeBuffer(128);
  private readonly keys: NativeBuffer;
  private readonly values: NativeBuffer;
  private readonly tokenIn: NativeBuffer;
  private readonly tokenOut: NativeBuffer;

  constructor(
    readonly keySize: number,
    readonly valueSize: number,
    private readonly call: BpfCall = bpf,
  ) {
    this.keys = new NativeBuffer(keySize * BATCH_SIZE);
    this.values = new NativeBuffer(valueSize * BATCH_SIZE);
    this.tokenIn = new NativeBuffer(keySize);
    this.tokenOut = new NativeBuffer(keySize);
  }

  /** Every (key, value) of map `fd`, copied out; `what` names the map in errors. */
  entries(fd: number, what: string): [Buffer, Buffer][] {
    const out: [Buffer, Buffer][] = [];
    return this.batches(fd, what, (k, v) => out.push([k, v])) ? out : this.byKeys(fd, what, true);
  }

  /** Every key of map `fd`, copied out: all of them read before the caller changes the map. */
  keysOf(fd: number, what: string): Buffer[] {
    const out: Buffer[] = [];
    return this.batches(fd, what, (k) => out.push(k)) ? out : this.byKeys(fd, what, false).map(([k]) => k);
  }

  /** The map through BPF_MAP_LOOKUP_BATCH into `each`; false when the kernel has no batch lookup for it. */
  private batches(fd: number, what: string, each: (key: Buffer, value: Buffer) => void): boolean {
    const a = this.attr.buf;
    for (let first = true; ; first = false) {
      a.fill(0);
      a.writeBigUInt64LE(first ? 0n : this.tokenIn.address, 0);
      a.writeBigUInt64LE(this.tokenOut.address, 8);
      a.writeBigUInt64LE(this.keys.address, 16);
      a.writeBigUInt64LE(this.values.address, 24);
      a.writeUInt32LE(BATCH_SIZE, 32);
      a.writeUInt32LE(fd, 36);
      const r = this.call(BPF_CMD.MAP_LOOKUP_BATCH, this.attr);
      if (r.ret < 0 && r.errno !== ERRNO.ENOENT) {
        if (first && NO_BATCH.has(r.errno)) return false;
        throw new BpfError('MAP_LOOKUP_BATCH', r.errno, what);
      }
      const count = a.readUInt32LE(32);
      const { keySize: ks, valueSize: vs } = this;
      for (let k = 0; k < count; k++) each(Buffer.from(this.keys.buf.subarray(k * ks, (k + 1) * ks)), Buffer.from(this.values.buf.subarray(k * vs, (k + 1) * vs)));
      if (r.ret < 0) return true; // ENOENT: no more elements
      this.tokenOut.buf.copy(this.tokenIn.buf);
    }
  }

  /** BPF_MAP_GET_NEXT_KEY from no key, with each key's value (BPF_MAP_LOOKUP_ELEM) when `values` (else empty). */
  private byKeys(fd: number, what: string, values: boolean): [Buffer, Buffer][] {
    const out: [Buffer, Buffer][] = [];
    const a = this.attr.buf;
    const key = this.tokenIn;
    for (let first = true; ; first = false) {
      a.fill(0);
      a.writeUInt32LE(fd, 0);
      a.writeBigUInt64LE(first ? 0n : key.address, 8);
      a.writeBigUInt64LE(this.tokenOut.address, 16);
      const r = this.call(BPF_CMD.MAP_GET_NEXT_KEY, this.attr);
      if (r.ret < 0) {
        if (r.errno === ERRNO.ENOENT) return out;
        throw new BpfError('MAP_GET_NEXT_KEY', r.errno, what);
      }
      this.tokenOut.buf.copy(key.buf);
      out.push([Buffer.from(key.buf), values ? this.lookup(fd, what) : Buffer.alloc(0)]);
    }
  }

  /** The value of the key in `tokenIn`. */
  private lookup(fd: number, what: string): Buffer {
    const a = this.attr.buf;
    a.fill(0);
    a.writeUInt32LE(fd, 0);
    a.writeBigUInt64LE(this.tokenIn.address, 8);
    a.writeBigUInt64LE(this.values.address, 16);
    const v = this.call(BPF_CMD.MAP_LOOKUP_ELEM, this.attr);
    if (v.ret < 0) throw new BpfError('MAP_LOOKUP_ELEM', v.errno, what);
    return Buffer.from(this.values.buf.subarray(0, this.valueSize));
  }

  free(): void {
    for (const b of [this.attr, this.keys, this.values, this.tokenIn, this.tokenOut]) b.free();
  }
}
