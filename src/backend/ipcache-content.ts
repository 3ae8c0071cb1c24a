import type { IpcacheDelta } from '../engine/events.js';
import type { IpAddress } from '../model/cidr.js';
import { DEFAULT_STACK_MODE, IdentityId, RESERVED_IDENTITIES, StackMode, worldName } from '../model/identity.js';

/** The engine's public queries the ipcache is computed from. */
export interface IpcacheSource {
  /** Pod IPs (host prefixes), learnt FQDN IPs and CIDR identities' prefixes. */
  ipcache(): { prefix: string; identity: IdentityId }[];
  /** The engine's stack mode (absent: single, the engine's default). */
  readonly stack?: StackMode;
}

/**
 * The datapath's ipcache miss is plain world (bpf/datapath.c), while the engine gives an address
 * no entry covers the world identity of its stack mode and family (pkg/identity
 * `GetWorldIdentityFromIP`: world single-stack, world-ipv4 / world-ipv6 dual-stack): a /0 entry per
 * family makes the kernel agree.
 */
const worldBaseOf = (stack: StackMode): ReadonlyMap<string, IdentityId> =>
  new Map([
    ['0.0.0.0/0', kernelWorldIdentity(stack, 'ipv4')],
    ['::/0', kernelWorldIdentity(stack, 'ipv6')],
  ]);
const WORLD_BASE: Readonly<Record<StackMode, ReadonlyMap<string, IdentityId>>> = { single: worldBaseOf('single'), dual: worldBaseOf('dual') };

/** The identity the kernel gives an address its ipcache holds no entry for (the /0 entries' as `kernelIpcacheContent` writes them). */
export function kernelWorldIdentity(stack: StackMode, family: 'ipv4' | 'ipv6'): IdentityId {
  return RESERVED_IDENTITIES[worldName(stack, family)];
}

/**
 * The identity an address holds in the kernel ipcache while a transaction moves it (finding 1120,
 * `ipcacheWriteOrder`): the datapath and `backendLookup` drop it in both directions before any
 * policy lookup, as Cilium's datapath drops a packet whose identity it cannot trust before
 * deciding policy (bpf/bpf_overlay.c: a tunnel packet claiming the source identity HOST_ID,
 * DROP_INVALID_IDENTITY of bpf/lib/drop_reasons.h); the barrier itself is distill's own. 2^32 - 1 is outside every scope an engine
 * identity has (cluster 256..2^24 - 1, node-local bit 24, remote-node bit 25), so no policy-map
 * entry and no engine answer ever carries it. bpf/datapath.c's TRANSITION_IDENTITY is the same number.
 */
export const TRANSITION_IDENTITY: IdentityId = 0xffffffff;

/** What the kernel ipcache must hold for an engine: world at /0 per family, then the engine's entries. */
export function kernelIpcacheContent(engine: IpcacheSource): Map<string, IdentityId> {
  const out = new Map(WORLD_BASE[engine.stack ?? DEFAULT_STACK_MODE]);
  for (const { prefix, identity } of engine.ipcache()) out.set(prefix, identity);
  return out;
}

/**
 * A change set's ipcache deltas as the kernel ipcache (holding `kernelIpcacheContent`) takes them:
 * an entry the engine drops at a /0 falls back to world instead of going.
 */
export function kernelIpcacheDeltas(deltas: readonly IpcacheDelta[], stack: StackMode = DEFAULT_STACK_MODE): IpcacheDelta[] {
  const base = WORLD_BASE[stack];
  return deltas.map((d) => {
    const world = base.get(d.prefix);
    return d.op === 'delete' && world !== undefined ? { op: 'upsert', prefix: d.prefix, identity: world, previous: d.identity } : d;
  });
}

/** The engine's queries the transition barrier's guard is computed from. */
export interface EndpointAddressSource {
  endpoints(): string[];
  endpointAddresses(endpoint: string): readonly IpAddress[];
  /** Changes whenever the local endpoints' addresses may have. */
  localEndpointsVersion(): number;
}

/** The local endpoints' addresses (host prefix texts) after a write, for the ipcache's transition barrier. */
export interface LocalAddresses {
  /** Every local endpoint's: what the next write's endpoints held before it. */
  readonly all: ReadonlySet<string>;
  /**
   * Those of endpoints whose maps were there before this write. A map the write creates starts
   * empty and its tighten phase lowers no rank, so it drops every packet until the loosen phase,
   * which comes after the ipcache write: its endpoint is no end of a half-moved pair.
   */
  readonly kept: ReadonlySet<string>;
}

/** Per engine, its local endpoints' addresses at a `localEndpointsVersion` (most transactions move no local pod). */
const addressMemo = new WeakMap<EndpointAddressSource, { version: number; all: ReadonlySet<string> }>();

/** `created`: the endpoints whose maps the write creates. */
export function localEndpointAddresses(engine: EndpointAddressSource, created: ReadonlySet<string>): LocalAddresses {
  const version = engine.localEndpointsVersion();
  const memo = addressMemo.get(engine);
  if (memo?.version === version && created.size === 0) return { all: memo.all, kept: memo.all };
  const all = new Set<string>();
  const kept = new Set<string>();
  for (const ep of engine.endpoints()) {
    const isNew = created.has(ep);
    for (const ip of engine.endpointAddresses(ep)) {
      const prefix = `${ip.text}/${ip.family === 'ipv4' ? 32 : 128}`;
      all.add(prefix);
      if (!isNew) kept.add(prefix);
    }
  }
  addressMemo.set(engine, { version, all });
  return { all, kept };
}
