import { existsSync, mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { bpf, BPF_CMD, BpfError, closeFd, NativeBuffer } from '../backend/bpf-syscall.js';
import { ipcachePinPath } from '../backend/ipcache.js';
import { netnsPath, run } from './netns.js';
import { ctPinPath } from './conntrack.js';

const BUILD_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '../../build/bpf');
/** Built once by bpf/build.sh; every endpoint loads this same object. */
export const DATAPATH_OBJECT = join(BUILD_DIR, 'datapath.o');
export const PROBE_TOOL = join(BUILD_DIR, 'probe');

/** What of bpf/build.sh's output is missing (the npm package ships none of it), or null when the testbed has it all. */
export function datapathBuildMissing(): string | null {
  const missing = [DATAPATH_OBJECT, PROBE_TOOL].filter((f) => !existsSync(f));
  if (missing.length === 0) return null;
  return `${missing.join(' and ')} not built: run 'bash bpf/build.sh' in a clone of distill (npm test runs it; the npm package does not ship the datapath)`;
}

/** Conntrack lifetimes in seconds (struct ct_lifetimes in bpf/datapath.c). */
export interface CtLifetimes {
  /** A TCP flow that has seen only SYNs (Cilium's bpf-ct-timeout-regular-tcp-syn). */
  readonly syn: number;
  /** A TCP flow that has seen a segment without SYN (bpf-ct-timeout-regular-tcp). */
  readonly tcp: number;
  /** A TCP flow closed both ways by FIN or RST (bpf-ct-timeout-regular-tcp-fin). */
  readonly close: number;
  /** Any other flow (bpf-ct-timeout-regular-any). */
  readonly any: number;
}

/** Cilium's defaults (daemon/cmd/daemon_main.go since cilium/cilium#27665: 60 s, 8000 s, 10 s, 60 s). */
const CILIUM_CT_LIFETIMES: CtLifetimes = { syn: 60, tcp: 8000, close: 10, any: 60 };

function ctLifetimesPin(pinRoot: string): string {
  return join(pinRoot, 'ct_lifetimes');
}

/**
 * The shared connection-tracking map (struct ct_key in bpf/datapath.c is 44 bytes, struct
 * ct_entry 16) and the lifetimes its entries get, written once here.
 */
export function createCtMap(pinRoot: string, lifetimes: CtLifetimes = CILIUM_CT_LIFETIMES): void {
  run('bpftool', ['map', 'create', ctPinPath(pinRoot), 'type', 'lru_hash', 'key', '44', 'value', '16', 'entries', '65536', 'name', 'ct']);
  const pin = ctLifetimesPin(pinRoot);
  run('bpftool', ['map', 'create', pin, 'type', 'array', 'key', '4', 'value', '16', 'entries', '1', 'name', 'ct_lifetimes']);
  const value = Buffer.alloc(16);
  [lifetimes.syn, lifetimes.tcp, lifetimes.close, lifetimes.any].forEach((s, i) => {
    if (!Number.isInteger(s) || s < 1 || s > 0xffffffff) throw new Error(`conntrack lifetime ${s}: a whole number of seconds, at least 1`);
    value.writeUInt32LE(s, i * 4);
  });
  run('bpftool', ['map', 'update', 'pinned', pin, 'key', '0', '0', '0', '0', 'value', ...[...value].map(String)]);
}

/** Where one endpoint's programs and its own maps (the verdict counters) are pinned. */
export function endpointPinDir(pinRoot: string, endpointIndex: number): string {
  return join(pinRoot, `ep${endpointIndex}`);
}

/**
 * ELF templating: loads the one compiled object for an endpoint, its map references bound at load
 * time to that endpoint's pinned policy map and the shared ipcache and ct maps (bpftool's
 * `map name X pinned P` reuses the pinned map instead of creating one). Nothing is compiled here.
 */
export function loadEndpoint(pinRoot: string, dir: string, policyPin: string, object = DATAPATH_OBJECT): void {
  mkdirSync(dir, { recursive: true });
  run('bpftool', [
    'prog', 'loadall', object, join(dir, 'prog'), 'type', 'classifier',
    'map', 'name', 'policy', 'pinned', policyPin,
    'map', 'name', 'ipcache4', 'pinned', ipcachePinPath(pinRoot, 'ipv4'),
    'map', 'name', 'ipcache6', 'pinned', ipcachePinPath(pinRoot, 'ipv6'),
    'map', 'name', 'ct', 'pinned', ctPinPath(pinRoot),
    'map', 'name', 'ct_lifetimes', 'pinned', ctLifetimesPin(pinRoot),
    'pinmaps', join(dir, 'maps'),
  ]);
}

/** tc in a namespace without `ip netns exec`, whose fresh /sys would hide the bpffs pins. */
function tcIn(ns: string, args: readonly string[]): void {
  run('nsenter', [`--net=${netnsPath(ns)}`, 'tc', ...args]);
}

/**
 * Attaches an endpoint's programs to the host side of its veth: tc ingress sees what the pod
 * sends (its egress policy), tc egress what it receives (its ingress policy). `replace`, so a
 * reload swaps programs without a moment of no filter.
 */
export function attachEndpoint(ns: string, ifname: string, dir: string, fresh: boolean): void {
  if (fresh) tcIn(ns, ['qdisc', 'add', 'dev', ifname, 'clsact']);
  tcIn(ns, ['filter', 'replace', 'dev', ifname, 'ingress', 'prio', '1', 'handle', '1', 'bpf', 'da', 'pinned', join(dir, 'prog', 'from_endpoint')]);
  tcIn(ns, ['filter', 'replace', 'dev', ifname, 'egress', 'prio', '1', 'handle', '1', 'bpf', 'da', 'pinned', join(dir, 'prog', 'to_endpoint')]);
}

const VERDICTS = ['pass', 'drop', 'redirect'] as const;
type Verdict = (typeof VERDICTS)[number];

/** Packets per verdict and direction an endpoint's program counted. */
export interface VerdictCounts {
  readonly ingress: Record<Verdict, bigint>;
  readonly egress: Record<Verdict, bigint>;
}

/** Reads an endpoint's pinned counters map (an array of 6 u64: direction * 3 + verdict). */
export function readCounters(dir: string): VerdictCounts {
  const attr = new NativeBuffer(128);
  const path = new NativeBuffer(4096);
  const key = new NativeBuffer(4);
  const value = new NativeBuffer(8);
  let fd = -1;
  try {
    Buffer.from(`${join(dir, 'maps', 'counters')}\0`).copy(path.buf);
    attr.buf.writeBigUInt64LE(path.address, 0);
    const g = bpf(BPF_CMD.OBJ_GET, attr);
    if (g.ret < 0) throw new BpfError('OBJ_GET', g.errno, join(dir, 'maps', 'counters'));
    fd = g.ret;
    const read = (i: number): bigint => {
      attr.buf.fill(0);
      key.buf.writeUInt32LE(i, 0);
      attr.buf.writeUInt32LE(fd, 0);
      attr.buf.writeBigUInt64LE(key.address, 8);
      attr.buf.writeBigUInt64LE(value.address, 16);
      const r = bpf(BPF_CMD.MAP_LOOKUP_ELEM, attr);
      if (r.ret < 0) throw new BpfError('MAP_LOOKUP_ELEM', r.errno, `counters ${i}`);
      return value.buf.readBigUInt64LE(0);
    };
    const side = (d: number): Record<Verdict, bigint> => ({ pass: read(d * 3), drop: read(d * 3 + 1), redirect: read(d * 3 + 2) });
    return { ingress: side(0), egress: side(1) };
  } finally {
    if (fd >= 0) closeFd(fd);
    for (const b of [attr, path, key, value]) b.free();
  }
}
