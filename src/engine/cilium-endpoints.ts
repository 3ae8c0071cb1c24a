import type { IpAddress } from '../model/cidr.js';
import type { EngineContext } from './context.js';

/** One CiliumEndpoint as the engine holds it: its identity number and the address texts it lists. */
export interface EndpointRecord {
  readonly identity: number;
  readonly ips: ReadonlySet<string>;
}

/** The key of a CiliumEndpoint event's pod, `namespace/name` (as `podKey`). */
export function endpointKey(e: { readonly namespace: string; readonly name: string }): string {
  return `${e.namespace}/${e.name}`;
}

/**
 * The CiliumEndpoints the engine was told, by pod key (`namespace/name`), and by identity number.
 * The pod table reads them (`PodTable.ipIdentity`): only a remote pod whose labels have no external
 * identity takes its endpoint's number, and only a readable external one (docs/semantics.md
 * "CiliumEndpoint identities").
 *
 * Contract: consumes upsertEndpoint/deleteEndpoint; emits nothing itself (the engine touches the
 * pod's addresses in the ipcache before every change). Every mutation records its undo.
 */
export class CiliumEndpoints {
  private readonly byKey = new Map<string, EndpointRecord>();
  private readonly byIdentity = new Map<number, Set<string>>();

  constructor(private readonly ctx: EngineContext) {}

  get size(): number {
    return this.byKey.size;
  }

  get(key: string): EndpointRecord | undefined {
    return this.byKey.get(key);
  }

  /** The pod keys whose endpoint names `id`. */
  keysOf(id: number): readonly string[] {
    const s = this.byIdentity.get(id);
    return s === undefined ? [] : [...s];
  }

  /** Sets (or, `identity` undefined, removes) the endpoint of pod `key`. */
  set(key: string, identity: number | undefined, ips: readonly IpAddress[] = []): void {
    const old = this.byKey.get(key);
    this.put(key, identity === undefined ? undefined : { identity, ips: new Set(ips.map((ip) => ip.text)) });
    this.ctx.onUndo(() => this.put(key, old));
  }

  private put(key: string, rec: EndpointRecord | undefined): void {
    const now = this.byKey.get(key);
    if (now !== undefined) this.unindex(key, now);
    if (rec === undefined) return void this.byKey.delete(key);
    this.byKey.set(key, rec);
    let s = this.byIdentity.get(rec.identity);
    if (s === undefined) this.byIdentity.set(rec.identity, (s = new Set()));
    s.add(key);
  }

  private unindex(key: string, rec: EndpointRecord): void {
    const s = this.byIdentity.get(rec.identity);
    s?.delete(key);
    if (s?.size === 0) this.byIdentity.delete(rec.identity);
  }
}
