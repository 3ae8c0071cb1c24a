import { applyChangeSet, MapBackend } from '../../src/backend/backend.js';
import { BarrierMemory, type KernelIpcache } from '../../src/backend/ipcache.js';
import { backendLookup } from '../../src/backend/lookup.js';
import { MemoryBackend } from '../../src/backend/memory.js';
import { entryRank } from '../../src/backend/write-plan.js';
import { kernelIpcacheContent, kernelIpcacheDeltas, LocalAddresses, localEndpointAddresses } from '../../src/backend/ipcache-content.js';
import type { Engine } from '../../src/engine/engine.js';
import type { ChangeSet, IpcacheDelta } from '../../src/engine/events.js';
import { cidrContainsIp, IpAddress, parseCidr } from '../../src/model/cidr.js';
import { PROTOCOL_NUMBER } from '../../src/model/ports.js';
import type { Direction } from '../../src/model/rules.js';
import { EXTERNALS, PROBE_PORTS, toEvent } from '../engine/gen.js';
import { steppedBackend } from './stepped-backend.js';

/*
 * A node's policy maps and ipcache written one operation at a time, every flow between gen.ts's pod
 * addresses and externals decided after each as the datapath does (test/backend/ipcache-write-order.test.ts,
 * and its external-identity twin ipcache-write-order-external-27w.test.ts).
 */
/** The datapath's ipcache miss (bpf/datapath.c). */
const WORLD = 2;

interface Address {
  readonly ip: IpAddress;
  /** The pod's endpoint key, for pod addresses. */
  readonly endpoint?: string;
  /** Its prefixes, longest first (the LPM walk). */
  readonly prefixes: readonly string[];
}

function address(ip: IpAddress, endpoint?: string): Address {
  const bits = ip.family === 'ipv4' ? 32 : 128;
  const prefixes = Array.from({ length: bits + 1 }, (_, i) => parseCidr(`${ip.text}/${bits - i}`).text);
  return { ip, prefixes, ...(endpoint ? { endpoint } : {}) };
}

/** Every address a generated pod can have (as gen.ts's toEvent numbers them), and the externals. */
const ADDRESSES: readonly Address[] = [
  ...['n0', 'n1', 'n2'].flatMap((ns) =>
    ['p0', 'p1', 'p2', 'p3'].map((name) => {
      const e = toEvent({ k: 'pod', ns, name, labels: {}, ports: 0, local: true });
      if (e.type !== 'upsertPod') throw new Error('toEvent: a pod op gave no pod');
      return address(e.pod.ip, `${ns}/${name}`);
    }),
  ),
  ...EXTERNALS.map((e) => address(e.ip)),
];
const PROBES = PROBE_PORTS.filter((_, i) => i % 2 === 0).map((p) => ({ protocol: PROTOCOL_NUMBER[p.protocol], port: p.port }));

interface Flow {
  readonly src: number;
  readonly dst: number;
  readonly probe: number;
}
const FLOWS: readonly Flow[] = ADDRESSES.flatMap((_, src) => ADDRESSES.flatMap((__, dst) => (src === dst ? [] : PROBES.map((___, probe) => ({ src, dst, probe })))));
const FLOWS_OF: readonly number[][] = ADDRESSES.map((_, a) => FLOWS.flatMap((f, i) => (f.src === a || f.dst === a ? [i] : [])));
const ADDRESS_OF_ENDPOINT = new Map(ADDRESSES.flatMap((a, i) => (a.endpoint ? [[a.endpoint, i] as const] : [])));

export type Order = 'between phases' | 'after the maps' | 'before the maps';

export interface Totals {
  transactions: number;
  identityChanges: number;
  steps: number;
  violations: number;
  example?: string;
}

/** Policy maps and an ipcache as a node holds them, written one operation at a time and checked after each. */
export class SteppedNode {
  readonly maps = new MemoryBackend();
  readonly ipcache = new Map<string, number>(kernelIpcacheContent({ ipcache: () => [] }));
  private readonly identityOf: number[] = ADDRESSES.map((a) => this.resolve(a));
  private readonly sideMemo = new Map<string, Map<string, number>>();
  /** Endpoints of the old or the new state: the flows' enforcing sides in this transaction. */
  private sides = new Set<string>();
  private lowest: number[] = [];
  private dirty = new Set<number>();

  readonly stepped: MapBackend = steppedBackend(this.maps, (endpoint) => this.mapChanged(endpoint));

  /**
   * `kernel`: a real kernel ipcache (bpf LPM tries) written as the agent writes it (`KernelIpcache.apply`), each
   * of its writes one step, every address then resolved by the kernel's own longest-prefix lookup.
   */
  constructor(
    private readonly totals: Totals,
    private readonly kernel?: KernelIpcache,
  ) {
    if (!kernel) return;
    // The world bases, as the agent's start-up sync writes them.
    kernel.sync(this.ipcache);
    // Each kernel write alone, then the step it makes (KernelIpcache writes in the order `BarrierMemory.order` gives).
    const k = kernel as unknown as { write(writes: readonly IpcacheDelta[]): void };
    const write = k.write.bind(kernel);
    k.write = (writes) => {
      for (const d of writes) {
        write([d]);
        this.written(d);
      }
    };
  }

  /** Addresses resolved by the kernel's lookup that disagreed with the model's longest-prefix walk. */
  kernelDisagreements = 0;

  private resolve(a: Address): number {
    for (const p of a.prefixes) {
      const id = this.ipcache.get(p);
      if (id !== undefined) return id;
    }
    return WORLD;
  }

  private side(endpoint: string, direction: Direction, peer: number, probe: number): number {
    let memo = this.sideMemo.get(endpoint);
    if (!memo) this.sideMemo.set(endpoint, (memo = new Map()));
    const k = `${direction} ${peer} ${probe}`;
    let r = memo.get(k);
    if (r === undefined) {
      const p = PROBES[probe]!;
      const hit = this.maps.endpoints().includes(endpoint) ? backendLookup(this.maps, endpoint, peer, direction, p.protocol, p.port) : undefined;
      memo.set(k, (r = hit ? entryRank(hit.entry) : 2));
    }
    return r;
  }

  /** The flow's rank now, or undefined when no endpoint of this transaction enforces it. */
  rank(f: Flow): number | undefined {
    const src = ADDRESSES[f.src]!;
    const dst = ADDRESSES[f.dst]!;
    let r: number | undefined;
    if (src.endpoint && this.sides.has(src.endpoint)) r = this.side(src.endpoint, 'egress', this.identityOf[f.dst]!, f.probe);
    if (dst.endpoint && this.sides.has(dst.endpoint)) r = Math.max(r ?? 0, this.side(dst.endpoint, 'ingress', this.identityOf[f.src]!, f.probe));
    return r;
  }

  private mapChanged(endpoint: string): void {
    this.sideMemo.delete(endpoint);
    const a = ADDRESS_OF_ENDPOINT.get(endpoint);
    if (a !== undefined) this.step(FLOWS_OF[a]!);
  }

  /** As `KernelIpcache` remembers the local endpoints' addresses across writes. */
  private readonly barrier = new BarrierMemory();

  writeIpcache(deltas: readonly IpcacheDelta[], local: LocalAddresses): void {
    if (this.kernel) {
      this.kernel.apply(kernelIpcacheDeltas(deltas), local);
      return;
    }
    // In the order KernelIpcache.apply writes them.
    for (const d of this.barrier.order(kernelIpcacheDeltas(deltas), this.ipcache, local)) this.written(d);
    this.barrier.written(local);
  }

  /** One ipcache write made: the addresses under its prefix resolve again (by the kernel's lookup, with one). */
  private written(d: IpcacheDelta): void {
    if (d.op === 'delete') this.ipcache.delete(d.prefix);
    else this.ipcache.set(d.prefix, d.identity);
    const c = parseCidr(d.prefix);
    const moved = ADDRESSES.flatMap((a, i) => (cidrContainsIp(c, a.ip) ? [i] : []));
    for (const i of moved) {
      const a = ADDRESSES[i]!;
      const modelled = this.resolve(a);
      const kernel = this.kernel ? (this.kernel.lookup(a.ip) ?? WORLD) : modelled;
      if (kernel !== modelled) this.kernelDisagreements++;
      this.identityOf[i] = kernel;
    }
    this.step(moved.flatMap((i) => FLOWS_OF[i]!));
  }

  /** One intermediate state: the flows it may have changed keep their lowest rank seen. */
  private step(flows: readonly number[]): void {
    this.totals.steps++;
    for (const i of flows) {
      const r = this.rank(FLOWS[i]!);
      if (r !== undefined && r < this.lowest[i]!) (this.lowest[i] = r), this.dirty.add(i);
    }
  }

  /** Writes one transaction in `order`, checking every flow against the old and the new state. */
  transaction(engine: Engine, cs: ChangeSet, before: ReadonlySet<string>, order: Order): void {
    this.sides = new Set([...before, ...engine.endpoints()]);
    this.sideMemo.clear();
    const old = FLOWS.map((f) => this.rank(f));
    this.lowest = old.map((r) => r ?? 2);
    this.dirty.clear();
    const created = new Set(cs.endpointsAdded);
    const local = localEndpointAddresses(engine, created);
    if (order === 'before the maps') this.writeIpcache(cs.ipcache, local);
    applyChangeSet(this.stepped, cs, order === 'between phases' ? () => this.writeIpcache(cs.ipcache, local) : undefined);
    if (order === 'after the maps') this.writeIpcache(cs.ipcache, local);
    for (const i of this.dirty) {
      const o = old[i]!;
      const n = this.rank(FLOWS[i]!)!;
      if (this.lowest[i]! < Math.min(o, n)) {
        this.totals.violations++;
        const f = FLOWS[i]!;
        this.totals.example ??= `${ADDRESSES[f.src]!.ip.text} -> ${ADDRESSES[f.dst]!.ip.text} ${JSON.stringify(PROBES[f.probe])}: rank ${this.lowest[i]} between old ${o} and new ${n}`;
      }
    }
  }
}
