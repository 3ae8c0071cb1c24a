import { Command, InvalidArgumentError, Option } from 'commander';
import { join } from 'node:path';
import type { Agent } from '../agent/agent.js';
import type { MapBackend } from '../backend/backend.js';
import { BpfBackend, DEFAULT_PIN_DIR } from '../backend/bpf.js';
import { KernelIpcache } from '../backend/ipcache.js';
import { MemoryBackend } from '../backend/memory.js';
import { ALLOW_LOCALHOST_VALUES, DEFAULT_ALLOW_LOCALHOST, type AllowLocalhost } from '../model/localhost.js';

interface AgentCliOptions {
  node: string;
  watch: string[];
  identities: 'local' | 'external' | 'etcd';
  etcd?: string;
  backend: 'memory' | 'bpf';
  pinDir: string;
  ipcache: boolean;
  metricsAddr?: string;
  exitAtEof?: boolean;
  json?: boolean;
  allowLocalhost: 'auto' | AllowLocalhost;
  enableNodeSelectorLabels?: boolean;
  cidrGroups?: boolean;
  enableL7Proxy: boolean;
  enableIcmpRules: boolean;
  enableNonDefaultDenyPolicies: boolean;
  enableIpv4: boolean;
  enableIpv6: boolean;
  warmUp: boolean;
}

/** Cilium's boolean agent flags take `--flag=false` (Go's pflag); commander gives the text. */
function boolFlag(text: string): boolean {
  if (text === 'true') return true;
  if (text === 'false') return false;
  throw new InvalidArgumentError('expected true or false');
}

/** Where the agent writes (stdout: the summary; stderr: logs and the metrics address). */
export interface AgentIo {
  out(s: string): void;
  err(s: string): void;
}

const EXIT_BAD_INPUT = 2;
/** The maps do not hold the engine's policy at the end: the last write and its retries failed (sysexits EX_IOERR). */
const EXIT_MAPS_BEHIND = 74;
/** Cilium's `bpf-policy-map-full-reconciliation-interval` default: the maps are read back and repaired this often. */
const FULL_RECONCILE_MS = 15 * 60_000;

/** Adds `distill agent` to the program; `done` gets its exit code when the agent stops. */
export function registerAgent(program: Command, io: AgentIo, done: (exit: number) => void): void {
  program
    .command('agent')
    .description('Run as a node agent: read Kubernetes watch streams, write the node endpoints\' policy maps')
    .addOption(new Option('--node <name>', 'this node: pods whose spec.nodeName is it are the local endpoints').makeOptionMandatory())
    .addOption(new Option('--watch <file...>', 'watch stream (kubectl get --watch --output-watch-events -o json), - for stdin; one per resource type').makeOptionMandatory())
    .addOption(new Option('--identities <source>', 'where identity numbers come from').choices(['local', 'external', 'etcd']).default('local'))
    .option('--etcd <url>', 'etcd URL for --identities etcd (cluster identities in Cilium\'s kvstore layout)')
    .addOption(new Option('--backend <kind>', 'where policy maps are written').choices(['memory', 'bpf']).default('memory'))
    .addOption(new Option('--pin-dir <dir>', 'bpffs directory for --backend bpf (maps go to <dir>/agent)').default(DEFAULT_PIN_DIR))
    .option('--no-ipcache', 'with --backend bpf: leave the ipcache (<dir>/agent/ipcache4, ipcache6) to another writer')
    .option('--metrics-addr <host:port>', 'serve /metrics and /healthz there')
    .option('--exit-at-eof', 'exit when every stream has ended, printing a summary (with --identities etcd, once every pod the streams name has an identity in etcd: remote pods wait for their own nodes\' agents); exit code 74 when the maps are behind the policy after failed writes, 2 when a stream ended after a watch ERROR or inside a List without its relist')
    .option('--json', 'the summary as one JSON object, with every local endpoint\'s map')
    .option('--no-warm-up', 'skip the warm-up after the first transaction (scratch engines run the churn paths once before /healthz reports ready)')
    .addOption(new Option('--allow-localhost <mode>', 'whether the local host reaches its endpoints whatever the policy (Cilium\'s allow-localhost; auto = always under Kubernetes)').choices(['auto', ...ALLOW_LOCALHOST_VALUES]).default('auto'))
    .option('--cidr-groups', 'a --watch stream carries every CiliumCIDRGroup (there may be none yet): cidrGroupRef/cidrGroupSelector peers read from the start (else once a group, a typed List or a bookmark of the kind arrived; before, and while a group cannot be read, they are enforced fail-closed)')
    .option('--enable-node-selector-labels', 'read CiliumNetworkPolicy toNodes/fromNodes (Cilium\'s enable-node-selector-labels; without it they are enforced fail-closed)')
    .option('--enable-l7-proxy <bool>', 'Cilium\'s enable-l7-proxy: with false a Cilium policy with L7 rules is invalid (skipped), as Cilium refuses it', boolFlag, true)
    .option('--enable-icmp-rules <bool>', 'Cilium\'s enable-icmp-rules: with false a Cilium policy with icmps is invalid (skipped)', boolFlag, true)
    .option('--enable-ipv4 <bool>', 'Cilium\'s enable-ipv4 (Helm ipv4.enabled, default true); with --enable-ipv6 true the agent is dual-stack: outside addresses are reserved:world-ipv4 / world-ipv6, not reserved:world', boolFlag, true)
    .option('--enable-ipv6 <bool>', 'Cilium\'s enable-ipv6 (default false, as Helm\'s ipv6.enabled: Cilium\'s default install is IPv4 only, single-stack)', boolFlag, false)
    .option('--enable-non-default-deny-policies <bool>', 'Cilium\'s enable-non-default-deny-policies (Helm enableNonDefaultDenyPolicies): with false enableDefaultDeny is ignored and every rule isolates its direction', boolFlag, true)
    .action((opts: AgentCliOptions) => {
      runAgent(opts, io).then(done, (e: Error) => {
        io.err(`error: ${e.message}\n`);
        done(EXIT_BAD_INPUT);
      });
    });
}

/** The agent's maps under <pin-dir>/agent (and the ipcache unless --no-ipcache), or memory. */
function openAgentMaps(opts: AgentCliOptions): { backend: MapBackend; ipcache: KernelIpcache | undefined } {
  const backend: MapBackend = opts.backend === 'bpf' ? new BpfBackend({ pinDir: join(opts.pinDir, 'agent') }) : new MemoryBackend();
  try {
    // Opened, not fresh: a restart reads back what is pinned and writes only the difference.
    return { backend, ipcache: backend instanceof BpfBackend && opts.ipcache ? new KernelIpcache(backend.pinDir) : undefined };
  } catch (e) {
    backend.close();
    throw e;
  }
}

/** The agent's modules, loaded when it runs: etcd's gRPC client, pino and prom-client cost every other command's start-up (docs/benchmarks.md, perf25). */
async function agentModules() {
  const [{ pino }, { Registry }, { Agent }, { EtcdIdentitySource }, { summary }, { settleIdentities }] = await Promise.all([
    import('pino'),
    import('prom-client'),
    import('../agent/agent.js'),
    import('../agent/etcd-identities.js'),
    import('../agent/summary.js'),
    import('../agent/settle.js'),
  ]);
  return { pino, Registry, Agent, EtcdIdentitySource, summary, settleIdentities };
}

/** DISTILL_LOG_LEVEL (default info), checked here: pino's own refusal names neither the variable nor the levels (finding 2304). */
function logLevel(given: string | undefined, levels: readonly string[]): string {
  if (given === undefined || given === '') return 'info';
  const level = given.toLowerCase();
  if (level !== 'silent' && !levels.includes(level)) throw new Error(`DISTILL_LOG_LEVEL: "${given}" is not a log level (one of: ${[...levels, 'silent'].join(', ')})`);
  return level;
}

async function runAgent(opts: AgentCliOptions, io: AgentIo): Promise<number> {
  const { pino, Registry, Agent, EtcdIdentitySource, summary, settleIdentities } = await agentModules();
  const { backend, ipcache } = openAgentMaps(opts);
  const logger = pino({ level: logLevel(process.env.DISTILL_LOG_LEVEL, Object.keys(pino.levels.values)) }, pino.destination(2));
  if ((opts.identities === 'etcd') !== (opts.etcd !== undefined)) throw new Error('--identities etcd and --etcd <url> go together');
  // Cilium's daemon refuses this too (daemon/cmd/daemon_main.go: "Either IPv4 or IPv6 addressing must be enabled").
  if (!opts.enableIpv4 && !opts.enableIpv6) throw new Error('--enable-ipv4 false and --enable-ipv6 false: one address family must be enabled');
  const source = opts.etcd !== undefined ? new EtcdIdentitySource({ url: opts.etcd, node: opts.node, logger }) : undefined;
  const agent = new Agent({
    node: opts.node,
    watch: opts.watch,
    backend,
    ...(ipcache ? { ipcache } : {}),
    logger,
    registry: new Registry(),
    exitAtEof: opts.exitAtEof === true,
    warmUp: opts.warmUp,
    fullReconcileMs: FULL_RECONCILE_MS,
    identities: opts.identities === 'etcd' ? 'external' : opts.identities,
    // Cilium's daemon turns `auto` into `always` when it runs with Kubernetes, which the agent always does.
    allowLocalhost: opts.allowLocalhost === 'auto' ? DEFAULT_ALLOW_LOCALHOST : opts.allowLocalhost,
    // option.Config.IsDualStack(): both families enabled.
    stack: opts.enableIpv4 && opts.enableIpv6 ? 'dual' : 'single',
    ...(opts.enableNodeSelectorLabels === true ? { nodeSelectorLabels: true } : {}),
    ...(opts.cidrGroups === true ? { cidrGroups: true } : {}),
    ...(opts.enableL7Proxy ? {} : { l7Proxy: false }),
    ...(opts.enableIcmpRules ? {} : { icmpRules: false }),
    ...(opts.enableNonDefaultDenyPolicies ? {} : { nonDefaultDenyPolicies: false }),
    ...(source ? { identitySource: source } : {}),
    ...(opts.metricsAddr !== undefined ? { metricsAddr: opts.metricsAddr } : {}),
    // A log line as every other (README: logs are JSON lines on stderr), keeping the words scripts look for (finding 2300).
    onListening: (addr) => logger.info({ addr, url: `http://${addr}/metrics` }, `metrics on http://${addr}/metrics`),
  });
  const onTerm = (): void => void agent.stop();
  process.once('SIGTERM', onTerm);
  process.once('SIGINT', onTerm);
  source?.start();
  try {
    await agent.run();
    if (source && !agent.stopped) await settleIdentities(agent, source, logger);
    if (opts.exitAtEof && !agent.stopped) io.out(summary(agent, backend, opts.json === true, source));
  } finally {
    process.off('SIGTERM', onTerm);
    process.off('SIGINT', onTerm);
    await agent.stop();
    await source?.close();
  }
  return agentExit(agent, opts, io);
}

/** How the agent ended: 0, bad input (an unreadable stream, or events lost at EOF), or maps behind. */
function agentExit(agent: Agent, opts: AgentCliOptions, io: AgentIo): number {
  // A stream that could not be read (missing file, cut-off or malformed JSON) is bad input; its error is logged.
  if (agent.summary.unreadableStreams > 0) return EXIT_BAD_INPUT;
  const behind = agent.mapsBehind;
  if (behind !== undefined) {
    io.err(`error: the maps are behind the policy: writing them failed (${behind})\n`);
    return EXIT_MAPS_BEHIND;
  }
  // --exit-at-eof: a stream that ended after an ERROR or inside a paged List, without the relist, lost what came meanwhile (1341).
  const lost = opts.exitAtEof === true ? agent.mirror.streamsAwaitingRelist() : [];
  if (lost.length === 0) return 0;
  io.err(`error: ${lost.join(', ')}: ended after a watch ERROR or inside a List, without a relist: events may be lost, the maps hold the state from before\n`);
  return EXIT_BAD_INPUT;
}
