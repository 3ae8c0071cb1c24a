import { ChildProcess, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { applyChangeSet, MapBackend } from '../backend/backend.js';
import { BpfBackend, pinName } from '../backend/bpf.js';
import { backendLookup } from '../backend/lookup.js';
import { Engine, EngineOptions } from '../engine/engine.js';
import type { ChangeSet } from '../engine/events.js';
import { ALL_LOCAL } from '../harness/cluster-sync.js';
import { EngineDecider } from '../harness/engine-decider.js';
import { IpAddress, IpFamily, parseIp } from '../model/cidr.js';
import { ClusterState, NODE_PREFIX, podIps } from '../model/cluster.js';
import { Flow, FlowDecision, resolveEndpoint } from '../model/flow.js';
import type { IdentityId } from '../model/identity.js';
import { reconcile } from '../node/restart.js';
import { IpcacheSource, kernelIpcacheContent } from '../backend/ipcache-content.js';
import { KernelIpcache } from '../backend/ipcache.js';
import { scrubConntrack } from './conntrack.js';
import { attachEndpoint, createCtMap, CtLifetimes, endpointPinDir, loadEndpoint, PROBE_TOOL, readCounters, VerdictCounts } from './loader.js';
import { addNetns, deleteNetns, inNs, listNetns, netnsPath, run } from './netns.js';

export const TESTBED_PIN_PREFIX = '/sys/fs/bpf/distill-testbed-';
export const TESTBED_NETNS_PREFIX = 'dtb-';
const GATEWAY4 = '169.254.1.1';
const GATEWAY6 = 'fe80::1';

/** A pod or an external, as built: its namespace and the router side of its veth. */
interface Node {
  readonly ns: string;
  readonly ifname: string;
  readonly ip: IpAddress;
  /**
   * An address of the other family: a dual-stack pod's second address, else the testbed's own,
   * so a v4-only pod can still reach a v6 peer.
   */
  readonly alt: IpAddress;
  /** The dual-stack pod's second address, when `alt` is it. */
  readonly givenAlt: string | undefined;
  readonly serverPid: number;
  /** Pods only: where its programs are pinned, and the policy map (inode) they were loaded with. */
  epDir?: string;
  policyIno?: number;
}

export interface TestbedOptions {
  /** How long a probe waits for an answer. */
  readonly timeoutMs?: number;
  /** Every (protocol, port) a probe may use, so each namespace listens on them: `TCP:80`. */
  readonly listen: ReadonlySet<string>;
  /** How a transaction reaches the maps (default `applyChangeSet`); tests write it step by step. */
  readonly write?: (backend: MapBackend, cs: ChangeSet, betweenPhases: () => void) => void;
  /** Conntrack lifetimes (default Cilium's); tests shorten them to see entries expire. */
  readonly ctLifetimes?: CtLifetimes;
  /**
   * The scenario's engine options (`scenarioEngineOptions`: `allowLocalhost`, `dnsProxy`); the engine
   * judges each DNS answer of the runner's trail with them (attack finding 1900).
   */
  readonly engineOptions?: Pick<EngineOptions, 'allowLocalhost' | 'dns' | 'stack'>;
}

/** Where a testbed run's policy maps are pinned (a separate policy process opens them there). */
export function policyPinDir(pinRoot: string): string {
  return join(pinRoot, 'policy');
}

/**
 * One scenario's cluster on this machine: a router namespace, a namespace per pod and external
 * with a veth into the router; pods' router-side veths carry the endpoint program, which enforces
 * the policy maps the engine writes through the bpf backend. Names carry a random run id.
 */
export class Testbed {
  readonly id = randomBytes(4).toString('hex');
  readonly pinRoot = `${TESTBED_PIN_PREFIX}${this.id}`;
  readonly router = `${TESTBED_NETNS_PREFIX}${this.id}-r`;
  readonly timeoutMs: number;
  private readonly listen: readonly string[];
  private readonly backend: BpfBackend;
  private readonly ipcache: KernelIpcache;
  private readonly engine: Engine;
  private readonly decider: EngineDecider;
  private readonly nodes = new Map<string, Node>();
  private nextIndex = 0;
  private built: ClusterState | undefined;
  private readonly sctp = existsSync('/proc/net/sctp');
  probes = 0;
  private readonly watchdog: ChildProcess;
  private readonly write: (backend: MapBackend, cs: ChangeSet, betweenPhases: () => void) => void;
  /** The state `decide` is bringing the maps to: the ipcache follows it between the write phases. */
  private target: ClusterState | undefined;
  /** Set once the maps were handed to another process: this one writes no more. */
  private released = false;
  private closed = false;

  constructor(options: TestbedOptions) {
    this.timeoutMs = options.timeoutMs ?? 150;
    this.write = options.write ?? ((b, cs, between) => void applyChangeSet(b, cs, between));
    this.listen = [...options.listen].sort();
    mkdirSync(this.pinRoot, { recursive: false });
    this.watchdog = startWatchdog(this.id);
    try {
      this.backend = new BpfBackend({ pinDir: policyPinDir(this.pinRoot) });
      this.ipcache = KernelIpcache.fresh(this.pinRoot);
      createCtMap(this.pinRoot, options.ctLifetimes);
      addNetns(this.router, true);
      this.engine = new Engine({ mapCapacity: this.backend.capacity, ...options.engineOptions });
      reconcile(this.engine, this.backend);
      this.decider = this.makeDecider();
    } catch (e) {
      this.close();
      throw e;
    }
  }

  private makeDecider(): EngineDecider {
    const backend = this.backend;
    return new EngineDecider(
      this.engine,
      ALL_LOCAL,
      (cs) => this.write(backend, cs, () => this.target && this.ipcache.sync(this.ipcacheFor(this.target))),
      (ep, peer, dir, proto, port) => backendLookup(backend, ep, peer, dir, proto, port)?.entry,
    );
  }

  /**
   * Hands the pinned maps to a policy process of their own (`distill testbed-agent`): this one
   * closes its maps and drops the pin-dir lock. Namespaces, programs, filters and pins stay, and
   * so does enforcement, until close(); the run's lifetime remains this process's.
   */
  releaseMaps(): void {
    this.released = true;
    this.backend.close();
    this.ipcache.close();
  }

  /** Where a built node's namespace is, and the address a probe of `family` reaches it at. */
  address(name: string, family: 'ipv4' | 'ipv6'): { netns: string; ip: string } {
    const n = this.node(name);
    return { netns: netnsPath(n.ns), ip: (n.ip.family === family ? n.ip : n.alt).text };
  }

  /** Brings the maps through a scenario step's states in order (the runner's trail: DNS answers judged in place, finding 1875). */
  private syncThrough(states: readonly ClusterState[]): void {
    if (this.released) throw new Error(`testbed ${this.id}: its maps were handed to another process`);
    this.target = states[states.length - 1];
    this.decider.syncThrough(states);
  }

  /** The flow decided by real packets; the engine's decision supplies the explanation. */
  readonly decide = Object.assign((state: ClusterState, flow: Flow): FlowDecision => this.decideFlow(state, flow), {
    syncThrough: (states: readonly ClusterState[]): void => this.syncThrough(states),
  });

  private decideFlow(state: ClusterState, flow: Flow): FlowDecision {
    if (this.released) throw new Error(`testbed ${this.id}: its maps were handed to another process`);
    this.target = state;
    const engineSays = this.decider.decide(state, flow);
    if (state !== this.built) this.build(state);
    const from = this.endpoint(state, flow.from);
    const to = this.endpoint(state, flow.to);
    const [src, dst] = [from.node, to.node];
    const before = [src, dst].map((n) => (n.epDir ? readCounters(n.epDir) : undefined));
    const l4 = this.probe(src, dst, flow, to.address?.family ?? from.address?.family);
    const after = [src, dst].map((n) => (n.epDir ? readCounters(n.epDir) : undefined));
    const redirected = redirects(before[0], after[0], 'egress') || redirects(before[1], after[1], 'ingress');
    const proxied = l4 && redirected;
    // The L7 proxy is not part of the testbed: a redirected request keeps the engine's L7 verdict.
    const allowed = l4 && (!proxied || engineSays.allowed);
    return { ...engineSays, allowed, proxied };
  }

  /** The node a flow's endpoint is, as the model resolves it (a pod also by one of its addresses, or by an external's). */
  private endpoint(state: ClusterState, name: string): { node: Node; address?: IpAddress } {
    const e = resolveEndpoint(state, name);
    return { node: this.node(e.name), ...(e.kind === 'pod' && e.address ? { address: e.address } : {}) };
  }

  private node(name: string): Node {
    const n = this.nodes.get(name);
    if (!n) throw new Error(`testbed: ${name} was not built`);
    return n;
  }

  /** Brings namespaces, programs and the ipcache in line with a cluster state. */
  private build(state: ClusterState): void {
    const wanted = new Map<string, { ip: IpAddress; alt?: IpAddress | undefined }>();
    // Who holds an address, as resolveEndpoint decides: a node before a pod, a pod before an external.
    const taken = new Set<string>();
    const take = (what: string, ips: readonly IpAddress[]): void => {
      if (ips.length > 2 || (ips.length === 2 && ips[0]?.family === ips[1]?.family)) throw new Error(`testbed: ${what}: at most one address of each family`);
      for (const a of ips) if (taken.has(a.text)) throw new Error(`testbed: ${what} shares an address with another node, which the testbed cannot build`);
      for (const a of ips) taken.add(a.text);
    };
    for (const node of state.nodes?.values() ?? []) {
      take(`node ${node.name}`, node.ips);
      if (node.ips[0]) wanted.set(NODE_PREFIX + node.name, { ip: node.ips[0], alt: node.ips[1] });
    }
    const nodeAddresses = new Set(taken);
    for (const [key, pod] of state.pods) {
      if (podIps(pod).some((a) => nodeAddresses.has(a.text))) throw new Error(`testbed: pod ${key} has a node's address (a host-network pod), which the testbed cannot build`);
      // Two pods on one address: both are built, and the last written (the ipcache's owner) gets the route.
      wanted.set(key, { ip: pod.ip, alt: pod.ips?.[1] });
      for (const a of podIps(pod)) taken.add(a.text);
    }
    // An external at a node's or a pod's address is that node or pod: the packets go there.
    for (const [name, ext] of state.externals) if (!taken.has(ext.ip.text)) wanted.set(name, { ip: ext.ip });
    for (const [name, n] of this.nodes) {
      const w = wanted.get(name);
      if (w === undefined || w.ip.text !== n.ip.text || w.alt?.text !== n.givenAlt) this.removeNode(name);
    }
    const added = [...wanted].filter(([name]) => !this.nodes.has(name));
    for (const [name, w] of added) this.addNode(name, w.ip, w.alt);
    for (const key of state.pods.keys()) this.loadPod(key);
    // Only now the router's side of a new veth goes up and routes to it: a pod's link carries
    // nothing before its program is attached (finding 1161).
    for (const [name] of added) this.connect(name);
    this.ipcache.sync(this.ipcacheFor(state));
    this.built = state;
  }

  /** The ipcache for a state: the engine's (ipcacheContent) plus each built node's made-up second address. */
  private ipcacheFor(state: ClusterState): Map<string, IdentityId> {
    const content = ipcacheContent(this.engine, state);
    for (const [name, n] of this.nodes) {
      const pod = state.pods.get(name);
      const id = pod ? this.engine.identityOfPod(name) : this.engine.identityOfIp(n.ip);
      if (id !== undefined) content.set(hostPrefix(n.alt), id);
    }
    return content;
  }

  private addNode(name: string, ip: IpAddress, given: IpAddress | undefined): void {
    const i = this.nextIndex++;
    const ns = `${TESTBED_NETNS_PREFIX}${this.id}-${i}`;
    const ifname = `v${i}`;
    const alt = given ?? alternateAddress(ip, i);
    // As Cilium at an endpoint's first regeneration: flows tracked with its addresses belonged to another.
    scrubConntrack(this.pinRoot, [ip, alt]);
    addNetns(ns, false);
    run('ip', ['-n', this.router, 'link', 'add', ifname, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns]);
    const addrs = [ip, alt];
    inNs(this.router, 'sh', ['-c', [`ip addr add ${GATEWAY4}/32 dev ${ifname}`, `ip -6 addr add ${GATEWAY6}/64 dev ${ifname} nodad`].join(' && ')]);
    inNs(ns, 'sh', ['-c', [
      'ip link set eth0 up',
      ...addrs.map((a) => (a.family === 'ipv6' ? `ip -6 addr add ${a.text}/128 dev eth0 nodad` : `ip addr add ${a.text}/32 dev eth0`)),
      `ip route add ${GATEWAY4} dev eth0 scope link`,
      `ip route add default via ${GATEWAY4} dev eth0`,
      `ip -6 route add default via ${GATEWAY6} dev eth0`,
    ].join(' && ')]);
    const server = runTool(['serve', netnsPath(ns), ...this.listen]);
    if (server.status !== 0) throw new Error(`testbed: probe server in ${ns} failed: ${server.stderr}`);
    this.nodes.set(name, { ns, ifname, ip, alt, givenAlt: given?.text, serverPid: Number(server.stdout.trim()) });
  }

  /** Brings the router's side of a node's veth up and routes the node's addresses to it. */
  private connect(name: string): void {
    const n = this.node(name);
    inNs(this.router, 'sh', ['-c', [
      `ip link set ${n.ifname} up`,
      // replace, not add: a removed node's veth (and its route) lives on until its killed server has exited.
      ...[n.ip, n.alt].map((a) => `ip ${a.family === 'ipv6' ? '-6 ' : ''}route replace ${a.text} dev ${n.ifname}`),
    ].join(' && ')]);
  }

  /** Loads (or, when the engine re-created its policy map, reloads) a pod's endpoint program. */
  private loadPod(key: string): void {
    const n = this.node(key);
    const policyPin = join(this.backend.pinDir, pinName(key));
    const ino = statSync(policyPin).ino;
    if (n.policyIno === ino) return;
    const fresh = n.epDir === undefined;
    if (n.epDir) rmSync(n.epDir, { recursive: true, force: true });
    n.epDir = endpointPinDir(this.pinRoot, this.nextIndex++);
    loadEndpoint(this.pinRoot, n.epDir, policyPin);
    attachEndpoint(this.router, n.ifname, n.epDir, fresh);
    n.policyIno = ino;
  }

  private removeNode(name: string): void {
    const n = this.node(name);
    killQuietly(n.serverPid);
    deleteNetns(n.ns);
    if (n.epDir) rmSync(n.epDir, { recursive: true, force: true });
    // As Cilium when an endpoint goes (leaveLocked): no flow of its addresses outlives it.
    scrubConntrack(this.pinRoot, [n.ip, n.alt]);
    this.nodes.delete(name);
  }

  /** One real connection (or, where none can be made, one packet seen arriving). */
  private probe(src: Node, dst: Node, flow: Flow, named: IpFamily | undefined): boolean {
    this.probes++;
    const echo = (flow.protocol === 'ICMP' && flow.port === 8) || (flow.protocol === 'ICMPv6' && flow.port === 128);
    const connection = flow.protocol === 'TCP' || flow.protocol === 'UDP' || (flow.protocol === 'SCTP' && this.sctp) || echo;
    const proto = flow.protocol === 'ICMPv6' ? 'ICMP' : flow.protocol;
    // ICMP and ICMPv6 name their family; TCP, UDP and SCTP go to the family of the address the
    // flow named a pod by, else to the address the peer has.
    const family = flow.protocol === 'ICMP' ? 'ipv4' : flow.protocol === 'ICMPv6' ? 'ipv6' : (named ?? dst.ip.family);
    const to = dst.ip.family === family ? dst.ip : dst.alt;
    const args = connection
      ? ['client', netnsPath(src.ns), proto, to.text, String(flow.port), String(this.timeoutMs)]
      : ['oneway', netnsPath(src.ns), netnsPath(dst.ns), proto, to.text, String(flow.port), String(this.timeoutMs)];
    const r = runTool(args);
    if (r.status !== 0 && r.status !== 1) throw new Error(`testbed: probe ${args.join(' ')} failed (exit ${r.status ?? 'none'}): ${r.stderr}`);
    return r.status === 0;
  }

  /** Removes everything this run made. Safe to call twice and after a partial set-up. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.watchdog.pid !== undefined) killQuietly(this.watchdog.pid);
    for (const n of this.nodes.values()) killQuietly(n.serverPid);
    this.nodes.clear();
    removeRun(this.id);
    if (!this.released) {
      try {
        this.ipcache?.close();
      } catch {
        // already closed
      }
      try {
        this.backend?.close();
      } catch {
        // already closed
      }
    }
    rmSync(this.pinRoot, { recursive: true, force: true });
  }
}

/**
 * Runs the probe tool. A failure to start it (EAGAIN on a loaded machine) is retried: it says
 * nothing about the network, unlike the tool's own exit status.
 */
function runTool(args: readonly string[]): { status: number | null; stdout: string; stderr: string } {
  let last: Error | undefined;
  for (let attempt = 0; attempt < 5; attempt++) {
    const r = spawnSync(PROBE_TOOL, args, { encoding: 'utf8' });
    if (!r.error) return { status: r.status, stdout: r.stdout, stderr: r.stderr };
    last = r.error;
  }
  throw new Error(`testbed: cannot run ${PROBE_TOOL} ${args.join(' ')}: ${last?.message ?? 'unknown error'}`);
}

/** The testbed's own address of the other family for node `i` (CGNAT / ULA ranges). */
function alternateAddress(ip: IpAddress, i: number): IpAddress {
  return ip.family === 'ipv4' ? parseIp(`fd00:d157::${(i + 1).toString(16)}`) : parseIp(`100.64.${(i + 1) >> 8}.${(i + 1) & 0xff}`);
}

function hostPrefix(ip: IpAddress): string {
  return `${ip.text}/${ip.family === 'ipv4' ? 32 : 128}`;
}

function redirects(before: VerdictCounts | undefined, after: VerdictCounts | undefined, dir: 'ingress' | 'egress'): boolean {
  return before !== undefined && after !== undefined && after[dir].redirect > before[dir].redirect;
}

function killQuietly(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // gone already
  }
}

/**
 * A detached shell that removes the run once this process is gone, however it went (an uncaught
 * error, a signal, kill -9): synchronous probing keeps Node's own signal handlers from running.
 */
function startWatchdog(id: string): ChildProcess {
  const script = [
    `while kill -0 ${process.pid} 2>/dev/null; do sleep 0.2; done`,
    `for ns in $(ip netns list | awk '{print $1}' | grep '^${TESTBED_NETNS_PREFIX}${id}-'); do ip netns pids "$ns" | xargs -r kill -9; ip netns del "$ns"; done`,
    `rm -rf '${TESTBED_PIN_PREFIX}${id}'`,
  ].join('\n');
  const child = spawn('sh', ['-c', script], { detached: true, stdio: 'ignore' });
  child.unref();
  return child;
}

/** Deletes every namespace and pin of a run id (its veths go with their namespaces). */
function removeRun(id: string): void {
  for (const ns of listNetns(`${TESTBED_NETNS_PREFIX}${id}-`)) {
    try {
      for (const pid of run('ip', ['netns', 'pids', ns]).split('\n').filter((l) => l !== '')) killQuietly(Number(pid));
      deleteNetns(ns);
    } catch {
      // raced with another removal
    }
  }
  rmSync(`${TESTBED_PIN_PREFIX}${id}`, { recursive: true, force: true });
}

/**
 * What the kernel ipcache must hold for a testbed's cluster state: the engine's
 * (`kernelIpcacheContent`), and each external's address with its identity as the engine resolves it.
 */
export function ipcacheContent(engine: IpcacheSource & { identityOfIp(ip: IpAddress): IdentityId }, state: ClusterState): Map<string, IdentityId> {
  const out = kernelIpcacheContent(engine);
  for (const ext of state.externals.values()) out.set(hostPrefix(ext.ip), engine.identityOfIp(ext.ip));
  return out;
}
