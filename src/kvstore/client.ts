import { ExponentialBackoff, IBackoff, noop } from 'cockatiel';
import { Etcd3, type IKeyValue, GRPCDeadlineExceededError, GRPCGenericError, GRPCUnavailableError, isRecoverableError } from 'etcd3';

/** etcd could not be reached (down, restarting, partitioned); the caller keeps its last state. */
export class KvstoreUnavailableError extends Error {
  constructor(readonly url: string, op: string, cause: unknown) {
    super(`etcd at ${url} unavailable during ${op}: ${cause instanceof Error ? cause.message : String(cause)}`);
  }
}

export interface KvstoreOptions {
  /** Deadline of each unary call, ms: a stopped etcd turns into an error after this long, not a hang. */
  readonly callTimeoutMs?: number;
  /** First delay before a broken watch stream reconnects, ms (doubles up to 20x). */
  readonly watchBackoffMs?: number;
}

/**
 * One etcd connection. Fault handling is ours (the allocator's retry with backoff), not the
 * client's default retry/circuit-breaker, so an unreachable etcd surfaces as one clear error;
 * watch streams reconnect with a short backoff and resume from the last seen revision.
 */
export function connectEtcd(url: string, opts: KvstoreOptions = {}): Etcd3 {
  const timeout = opts.callTimeoutMs ?? 2000;
  const backoff = opts.watchBackoffMs ?? 50;
  return new Etcd3({
    hosts: url,
    dialTimeout: timeout,
    defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + timeout }),
    faultHandling: {
      host: () => noop,
      global: noop,
      // etcd3 calls .next() on it like on a factory; its declared type says IBackoff.
      watchBackoff: new ExponentialBackoff({ initialDelay: backoff, maxDelay: backoff * 20 }) as unknown as IBackoff<unknown>,
    },
  });
}

/** True for errors that mean "etcd unreachable" rather than a refused request. */
export function isUnavailable(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  if (err instanceof GRPCUnavailableError || err instanceof GRPCDeadlineExceededError) return true;
  return err instanceof GRPCGenericError && isRecoverableError(err);
}

/** The exclusive end of the range of all keys starting with `prefix` (etcd's prefix range_end). */
export function prefixEnd(prefix: Buffer): Buffer {
  const end = Buffer.from(prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    const byte = end[i] as number;
    if (byte < 0xff) {
      end[i] = byte + 1;
      return end.subarray(0, i + 1);
    }
  }
  return Buffer.from([0]);
}

/** Keys per page of a list: Cilium's `ListBatchSize` (pkg/kvstore/etcd.go `newClient`). */
const LIST_BATCH = 256;

/**
 * Every key starting with `prefix`, in pages of 256 keys read at the first page's revision, as
 * Cilium's `paginatedList` (pkg/kvstore/etcd.go: `WithLimit(listBatchSize)`, `WithRev(revision)`,
 * the next page from the last key + "\x00"). One response for all of them fails once it is over
 * grpc-js's 4 MiB receive limit (some 25,000 identities, attack-findings-19w 1142).
 */
export async function listPrefix(client: Etcd3, prefix: string): Promise<{ kvs: IKeyValue[]; revision: string }> {
  const end = prefixEnd(Buffer.from(prefix));
  let start = Buffer.from(prefix);
  let revision: string | undefined;
  const kvs: IKeyValue[] = [];
  for (;;) {
    const res = await client.kv.range({ key: start, range_end: end, limit: LIST_BATCH, sort_target: 'Key', sort_order: 'Ascend', ...(revision === undefined ? {} : { revision }) });
    revision = res.header.revision;
    kvs.push(...res.kvs);
    const last = res.kvs[res.kvs.length - 1];
    if (!res.more || last === undefined) return { kvs, revision };
    start = Buffer.concat([last.key, Buffer.from([0])]);
  }
}
