import { AllowLocalhost, ALLOW_LOCALHOST_VALUES } from '../model/localhost.js';
import { STACK_MODES, type StackMode } from '../model/identity.js';
import { IpAddress } from '../model/cidr.js';
import { NodeEndpointAddresses, nodeEndpointsOf } from '../model/cluster.js';
import { ContainerPort, MAX_PORT } from '../model/ports.js';
import { Policy, POLICY_KINDS, PolicyRef } from '../model/rules.js';
import { checkNamespaceName, checkObjectName } from '../policy/common.js';
import { parseCidrGroup } from '../policy/cidr-group.js';
import type { CidrGroup } from '../model/cidr-group.js';
import { ciliumAgentOptions, parseManifest, type CiliumAgentOptions } from '../policy/manifest.js';
import { samePriorityWarnings } from '../policy/clusternetworkpolicy.js';
import { absent, at, join, Reader } from '../policy/reader.js';
import { readContainerPorts, readIp, readLabels, readPodIps, readPortNumber, readProtocol } from '../policy/readers.js';
import { DEFAULT_DNS_CACHE_OPTIONS, DnsCacheOptions, fqdnSyntaxError, MAX_DNS_TTL } from '../model/fqdn.js';
import { DNS_TRANSPORTS, type DnsTransport } from '../model/fqdn-events.js';
import { derivedLabelDetail, derivedLabelKeys, FILTERED_NAMESPACE_LABEL_DETAIL, filteredNamespaceLabelKeys } from '../model/labels.js';
import { loadYaml, loadYamlDocuments } from '../policy/yaml.js';
import { ManifestError } from '../policy/errors.js';
import { Expectation, Probe, readExpectation, readNodeName, readProbe } from './probes.js';

interface PodSpec {
  readonly namespace: string;
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly ip?: IpAddress;
  /** A dual-stack pod's addresses (`ips: [10.0.0.5, fd00::5]`), the first its primary. */
  readonly ips?: readonly IpAddress[];
  readonly serviceAccount: string;
  readonly ports: readonly ContainerPort[];
}

/** One change to the cluster; `path` locates it in the scenario file for error messages. */
export type Change = { readonly path: string } & (
  | { readonly op: 'addNamespace'; readonly name: string; readonly labels: Readonly<Record<string, string>> }
  | { readonly op: 'deleteNamespace'; readonly name: string }
  | { readonly op: 'setNamespaceLabels'; readonly name: string; readonly labels: Readonly<Record<string, string>> }
  | { readonly op: 'addPod'; readonly pod: PodSpec }
  | { readonly op: 'deletePod'; readonly key: string }
  | { readonly op: 'setPodLabels'; readonly key: string; readonly labels: Readonly<Record<string, string>> }
  | { readonly op: 'addExternal'; readonly name: string; readonly ip: IpAddress }
  | ({ readonly op: 'addNode'; readonly name: string; readonly ips: readonly IpAddress[]; readonly local: boolean; readonly labels?: Readonly<Record<string, string>> } & NodeEndpointAddresses)
  | { readonly op: 'deleteNode'; readonly name: string }
  /** The API server's addresses (the backends of default/kubernetes), replacing the last set. */
  | { readonly op: 'setApiServer'; readonly addresses: readonly IpAddress[] }
  | { readonly op: 'apply'; readonly policy: Policy }
  | { readonly op: 'delete'; readonly ref: PolicyRef }
  /** `apply` of a CiliumCIDRGroup manifest: created or replaced. */
  | { readonly op: 'applyCidrGroup'; readonly group: CidrGroup }
  | { readonly op: 'deleteCidrGroup'; readonly name: string }
  | { readonly op: 'dnsResponse'; readonly answer: DnsAnswerSpec }
  | { readonly op: 'advanceTime'; readonly seconds: number }
);

/**
 * A DNS answer to a pod's query (`toFQDNs`): learnt only when the pod's DNS proxy sees and allows
 * the query; `server` (a pod or an external), `port` (default 53) and `protocol` (UDP, the default,
 * or TCP) name the query's flow.
 */
interface DnsAnswerSpec {
  readonly pod: string;
  readonly name: string;
  readonly ips: readonly IpAddress[];
  readonly ttl: number;
  readonly server?: { readonly to: string; readonly port: number; readonly protocol?: DnsTransport };
}

/** Seconds; TTLs and clock steps are whole seconds, like DNS TTLs. */
const MAX_SECONDS = 2 ** 31 - 1;

interface Step {
  readonly changes: readonly Change[];
  readonly probes: readonly Probe[];
  readonly expect: readonly Expectation[];
}

export interface Scenario {
  readonly source: string;
  /** Accepted but worth saying: pod labels dropped from identities (`source path: detail`). */
  readonly warnings: readonly string[];
  readonly description?: string;
  /** Namespaces, pods, externals and policies, as changes applied before step 0. */
  readonly setup: readonly Change[];
  readonly steps: readonly Step[];
  /** The DNS proxy's options (`dnsProxy: {minTtl, maxIpsPerHostname}`); Cilium's defaults when absent. */
  readonly dnsProxy?: DnsCacheOptions;
  /** Cilium's `allow-localhost` agent option (`always` | `policy`); absent = `always`, Cilium's default. */
  readonly allowLocalhost?: AllowLocalhost;
  /** Cilium's IP stack mode (`single` | `dual`: enable-ipv4 and enable-ipv6 both set); absent = `single`, Cilium's default install. */
  readonly stack?: StackMode;
}

function readPodKey(r: Reader, v: unknown, path: string): { namespace: string; name: string; key: string } {
  const s = r.nonEmptyString(v, path);
  const parts = s.split('/');
  if (parts.length !== 2 || parts[0] === '' || parts[1] === '') r.fail(path, `"${s}" is not namespace/name`);
  const [namespace, name] = parts as [string, string];
  checkNamespaceName(r, namespace, path);
  checkObjectName(r, name, path);
  return { namespace, name, key: s };
}

function readNamespace(r: Reader, v: unknown, path: string): { name: string; labels: Record<string, string> } {
  const o = r.object(v, path, ['name', 'labels']);
  const name = r.nonEmptyString(o.name, join(path, 'name'));
  checkNamespaceName(r, name, join(path, 'name'));
  return { name, labels: readLabels(r, o.labels, join(path, 'labels')) };
}

function readPod(r: Reader, v: unknown, path: string): PodSpec {
  const o = r.object(v, path, ['name', 'labels', 'ip', 'ips', 'serviceAccount', 'ports']);
  const { namespace, name } = readPodKey(r, o.name, join(path, 'name'));
  const ports = readContainerPorts(r, o.ports, join(path, 'ports'));
  const serviceAccount = r.optString(o.serviceAccount, join(path, 'serviceAccount')) ?? 'default';
  // Kubernetes' ValidateServiceAccountName (a DNS subdomain), checked here as the engine checks it, so a
  // scenario is refused whatever it probes (attack finding 1542). "": no service account (a mirror pod, 2460).
  if (serviceAccount !== '') checkObjectName(r, serviceAccount, join(path, 'serviceAccount'));
  if (!absent(o.ip) && !absent(o.ips)) r.fail(join(path, 'ips'), 'give ip or ips, not both');
  const ips = absent(o.ips) ? undefined : readPodIps(r, o.ips, join(path, 'ips'));
  const ip = ips ? ips[0] : absent(o.ip) ? undefined : readIp(r, o.ip, join(path, 'ip'));
  return {
    namespace,
    name,
    labels: readLabels(r, o.labels, join(path, 'labels')),
    ...(ip ? { ip } : {}),
    ...(ips && ips.length > 1 ? { ips } : {}),
    serviceAccount,
    ports,
  };
}

function readPolicy(r: Reader, v: unknown, path: string, agent: CiliumAgentOptions): Policy {
  // Scenarios are read by the oracle too: toFQDNs is parsed here, and the engine's harness refuses it.
  return parseManifest(v, `${r.source}#${path}`, { fqdn: true, cidrGroups: true, ...agent });
}

/** An `apply` (or `policies` item): a policy, or a CiliumCIDRGroup object. */
function readApply(r: Reader, v: unknown, path: string, agent: CiliumAgentOptions): Change {
  const kind = typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>).kind : undefined;
  if (kind === 'CiliumCIDRGroup') return { path, op: 'applyCidrGroup', group: parseCidrGroup(v, `${r.source}#${path}`) };
  return { path, op: 'apply', policy: readPolicy(r, v, path, agent) };
}

function readChange(r: Reader, v: unknown, path: string, agent: CiliumAgentOptions): Change {
  const ops = ['apply', 'delete', 'addPod', 'deletePod', 'setPodLabels', 'addNamespace', 'deleteNamespace', 'setNamespaceLabels', 'addExternal', 'addNode', 'deleteNode', 'setApiServer', 'dnsResponse', 'advanceTime'];
  const o = r.object(v, path, ops);
  const keys = Object.keys(o);
  if (keys.length !== 1) r.fail(path, `a change has exactly one of: ${ops.join(', ')}`);
  const op = keys[0] as string;
  const p = join(path, op);
  switch (op) {
    case 'apply':
      return readApply(r, o.apply, p, agent);
    case 'delete': {
      const d = r.object(o.delete, p, ['kind', 'namespace', 'name']);
      const kind = r.oneOf(d.kind, join(p, 'kind'), [...POLICY_KINDS, 'CiliumCIDRGroup']);
      const name = r.nonEmptyString(d.name, join(p, 'name'));
      if (kind === 'CiliumCIDRGroup') {
        if (!absent(d.namespace)) r.fail(join(p, 'namespace'), 'a CiliumCIDRGroup is cluster-scoped: it has no namespace');
        return { path: p, op: 'deleteCidrGroup', name };
      }
      if (kind === 'CiliumClusterwideNetworkPolicy' || kind === 'ClusterNetworkPolicy') {
        if (!absent(d.namespace)) r.fail(join(p, 'namespace'), `a ${kind} is cluster-scoped: it has no namespace`);
        return { path: p, op, ref: { kind, name } };
      }
      const namespace = r.optString(d.namespace, join(p, 'namespace')) ?? 'default';
      return { path: p, op, ref: { kind, namespace, name } };
    }
    case 'addPod':
      return { path: p, op, pod: readPod(r, o.addPod, p) };
    case 'deletePod':
      return { path: p, op, key: readPodKey(r, o.deletePod, p).key };
    case 'setPodLabels': {
      const s = r.object(o.setPodLabels, p, ['pod', 'labels']);
      return { path: p, op, key: readPodKey(r, s.pod, join(p, 'pod')).key, labels: readLabels(r, s.labels, join(p, 'labels')) };
    }
    case 'addNamespace': {
      const ns = readNamespace(r, o.addNamespace, p);
      return { path: p, op, name: ns.name, labels: ns.labels };
    }
    case 'deleteNamespace':
      return { path: p, op, name: r.nonEmptyString(o.deleteNamespace, p) };
    case 'setNamespaceLabels': {
      const s = r.object(o.setNamespaceLabels, p, ['namespace', 'labels']);
      return { path: p, op, name: r.nonEmptyString(s.namespace, join(p, 'namespace')), labels: readLabels(r, s.labels, join(p, 'labels')) };
    }
    case 'dnsResponse':
      return { path: p, op, answer: readDnsAnswer(r, o.dnsResponse, p) };
    case 'advanceTime':
      return { path: p, op, seconds: r.intInRange(o.advanceTime, p, 0, MAX_SECONDS) };
    case 'addNode':
      return { path: p, op, ...readNode(r, o.addNode, p) };
    case 'deleteNode':
      return { path: p, op, name: readNodeName(r, o.deleteNode, p) };
    case 'setApiServer':
      return { path: p, op, addresses: readApiServer(r, o.setApiServer, p) };
    default: {
      const e = r.object(o.addExternal, p, ['name', 'ip']);
      return { path: p, op: 'addExternal', name: r.nonEmptyString(e.name, join(p, 'name')), ip: readIp(r, e.ip, join(p, 'ip')) };
    }
  }
}

function readDnsAnswer(r: Reader, v: unknown, path: string): DnsAnswerSpec {
  const o = r.object(v, path, ['pod', 'name', 'ips', 'ttl', 'server', 'port', 'protocol']);
  const pod = readPodKey(r, o.pod, join(path, 'pod')).key;
  const name = r.nonEmptyString(o.name, join(path, 'name'));
  const error = fqdnSyntaxError('matchName', name);
  if (error !== undefined) r.fail(join(path, 'name'), error);
  const ips = r.array(o.ips, join(path, 'ips')).map((ip, i) => readIp(r, ip, at(join(path, 'ips'), i)));
  // A DNS TTL is 32 bits unsigned (RFC 1035 §3.2.1; Cilium keeps the record's uint32 TTL).
  const ttl = r.intInRange(o.ttl, join(path, 'ttl'), 0, MAX_DNS_TTL);
  if (absent(o.server) && !absent(o.port)) r.fail(join(path, 'port'), 'needs a server');
  if (absent(o.server) && !absent(o.protocol)) r.fail(join(path, 'protocol'), 'needs a server');
  if (absent(o.server)) return { pod, name, ips, ttl };
  const to = r.nonEmptyString(o.server, join(path, 'server'));
  const port = absent(o.port) ? 53 : readPortNumber(r, o.port, join(path, 'port'), 1, MAX_PORT);
  // UDP is left implicit, as the engine's events leave it.
  const protocol = absent(o.protocol) ? 'UDP' : readProtocol(r, o.protocol, join(path, 'protocol'), DNS_TRANSPORTS);
  return { pod, name, ips, ttl, server: { to, port, ...(protocol === 'TCP' ? { protocol } : {}) } };
}

/**
 * `{name, ips: [..], local?, health?: [..], ingress?: [..], labels?: {..}}`: a node and its addresses; `local` marks
 * the agent's own node (`host`); `health`, `ingress`: its health endpoint's and Ingress's addresses;
 * `labels`: the Node's labels (ClusterNetworkPolicy `nodes` peers select on them).
 */
function readNode(r: Reader, v: unknown, path: string): { name: string; ips: IpAddress[]; local: boolean; labels?: Record<string, string> } & NodeEndpointAddresses {
  const o = r.object(v, path, ['name', 'ips', 'local', 'health', 'ingress', 'labels']);
  const name = readNodeName(r, o.name, join(path, 'name'));
  const ips = r.array(o.ips, join(path, 'ips')).map((x, i) => readIp(r, x, at(join(path, 'ips'), i)));
  if (ips.length === 0) r.fail(join(path, 'ips'), 'a node needs at least one address');
  const local = absent(o.local) ? false : r.boolean(o.local, join(path, 'local'));
  const more = (f: 'health' | 'ingress'): IpAddress[] => (absent(o[f]) ? [] : r.array(o[f], join(path, f)).map((x, i) => readIp(r, x, at(join(path, f), i))));
  const labels = absent(o.labels) ? undefined : readLabels(r, o.labels, join(path, 'labels'));
  return { name, ips, local, ...nodeEndpointsOf({ health: more('health'), ingress: more('ingress') }), ...(labels ? { labels } : {}) };
}

/**
 * `{addresses: [..]}`: the backend addresses of the default/kubernetes Service, which Cilium labels
 * `reserved:kube-apiserver` (docs/scenarios.md). An empty list is known and empty.
 */
function readApiServer(r: Reader, v: unknown, path: string): IpAddress[] {
  const o = r.object(v, path, ['addresses']);
  const list = r.array(o.addresses, join(path, 'addresses'));
  return list.map((x, i) => readIp(r, x, at(join(path, 'addresses'), i)));
}

/** Parses a scenario file; every error names the file and the field path. */
/**
 * Why a file that is not a scenario was given as one, when it is Kubernetes manifests (every document
 * an object with a `kind`, or a list of Cilium rules): an operator's easy mix-up, whose error named a
 * scenario field or the yaml package's "use YAML.parseAllDocuments()" (attack finding 2123).
 */
function manifestInstead(text: string, source: string): string | undefined {
  let docs: unknown[];
  try {
    docs = loadYamlDocuments(text, source).map((d) => d.value).filter((v) => v !== null && v !== undefined);
  } catch {
    return undefined;
  }
  const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
  const ciliumRules = (d: unknown): boolean => Array.isArray(d) && d.length > 0 && d.every((x) => isObject(x) && (Object.hasOwn(x, 'endpointSelector') || Object.hasOwn(x, 'nodeSelector')));
  if (docs.length === 0 || !docs.every((d) => (isObject(d) && typeof d.kind === 'string') || ciliumRules(d))) return undefined;
  const kinds = [...new Set(docs.map((d) => (isObject(d) ? String(d.kind) : 'a list of Cilium rules')))].join(', ');
  return `this is a manifest file (${kinds}), not a distill scenario: a scenario gives pods and lists manifests under \`policies:\` (docs/scenarios.md); trace and plan apply manifest files on a scenario with -f, and \`distill validate ${source}\` checks them`;
}

export function parseScenario(text: string, source: string): Scenario {
  try {
    return readScenarioText(text, source);
  } catch (e) {
    if (!(e instanceof ManifestError) || e.source !== source || (e.fieldPath !== '' && !/^(apiVersion|kind|metadata|spec|items)$/.test(e.fieldPath))) throw e;
    const hint = manifestInstead(text, source);
    if (hint === undefined) throw e;
    throw new ManifestError(source, '', hint);
  }
}

function readScenarioText(text: string, source: string): Scenario {
  const r = new Reader(source);
  const doc = loadYaml(text, source);
  const o = r.object(doc, '', ['description', 'dnsProxy', 'allowLocalhost', 'stack', 'nodeSelectorLabels', 'l7Proxy', 'icmpRules', 'nonDefaultDenyPolicies', 'namespaces', 'nodes', 'apiServer', 'pods', 'externals', 'policies', 'steps']);
  const dp = r.optObject(o.dnsProxy, 'dnsProxy', ['minTtl', 'maxIpsPerHostname']);
  const dnsProxy: DnsCacheOptions | undefined = dp && {
    minTtl: absent(dp.minTtl) ? DEFAULT_DNS_CACHE_OPTIONS.minTtl : r.intInRange(dp.minTtl, 'dnsProxy.minTtl', 0, MAX_SECONDS),
    maxIpsPerHostname: absent(dp.maxIpsPerHostname) ? DEFAULT_DNS_CACHE_OPTIONS.maxIpsPerHostname : r.intInRange(dp.maxIpsPerHostname, 'dnsProxy.maxIpsPerHostname', 0, 1_000_000),
  };
  const description = r.optString(o.description, 'description');
  // Cilium's agent options that change how policies read (cilium.ts CiliumAgentOptions):
  // enable-node-selector-labels, enable-l7-proxy, enable-icmp-rules, enable-non-default-deny-policies.
  const agent = ciliumAgentOptions({
    nodeSelectorLabels: r.optBoolean(o.nodeSelectorLabels, 'nodeSelectorLabels') ?? false,
    l7Proxy: r.optBoolean(o.l7Proxy, 'l7Proxy') ?? true,
    icmpRules: r.optBoolean(o.icmpRules, 'icmpRules') ?? true,
    nonDefaultDenyPolicies: r.optBoolean(o.nonDefaultDenyPolicies, 'nonDefaultDenyPolicies') ?? true,
  });
  const setup: Change[] = [];
  (r.optArray(o.namespaces, 'namespaces') ?? []).forEach((n, i) => {
    const ns = readNamespace(r, n, at('namespaces', i));
    setup.push({ path: at('namespaces', i), op: 'addNamespace', name: ns.name, labels: ns.labels });
  });
  (r.optArray(o.externals, 'externals') ?? []).forEach((e, i) => {
    const path = at('externals', i);
    const eo = r.object(e, path, ['name', 'ip']);
    const name = r.nonEmptyString(eo.name, join(path, 'name'));
    if (name.includes('/')) r.fail(join(path, 'name'), 'external names may not contain "/" (that is how pods are named)');
    setup.push({ path, op: 'addExternal', name, ip: readIp(r, eo.ip, join(path, 'ip')) });
  });
  (r.optArray(o.nodes, 'nodes') ?? []).forEach((n, i) => setup.push({ path: at('nodes', i), op: 'addNode', ...readNode(r, n, at('nodes', i)) }));
  if (!absent(o.apiServer)) setup.push({ path: 'apiServer', op: 'setApiServer', addresses: readApiServer(r, o.apiServer, 'apiServer') });
  (r.optArray(o.pods, 'pods') ?? []).forEach((p, i) => setup.push({ path: at('pods', i), op: 'addPod', pod: readPod(r, p, at('pods', i)) }));
  (r.optArray(o.policies, 'policies') ?? []).forEach((p, i) => setup.push(readApply(r, p, at('policies', i), agent)));
  const steps = (r.optArray(o.steps, 'steps') ?? []).map((s, i): Step => {
    const path = at('steps', i);
    const so = r.object(s, path, ['changes', 'probes', 'expect']);
    const changes = (r.optArray(so.changes, join(path, 'changes')) ?? []).map((c, j) => readChange(r, c, at(join(path, 'changes'), j), agent));
    const probes = (r.optArray(so.probes, join(path, 'probes')) ?? []).map((p, j) => readProbe(r, p, at(join(path, 'probes'), j)));
    const expect = (r.optArray(so.expect, join(path, 'expect')) ?? []).map((e, j) => readExpectation(r, e, at(join(path, 'expect'), j), probes.length));
    return { changes, probes, expect };
  });
  const warnings = [...derivedLabelWarnings(source, [...setup, ...steps.flatMap((st) => st.changes)]), ...tierPriorityWarnings(source, setup, steps)];
  const allowLocalhost = absent(o.allowLocalhost) ? undefined : (r.oneOf(o.allowLocalhost, 'allowLocalhost', ALLOW_LOCALHOST_VALUES) as AllowLocalhost);
  const stack = absent(o.stack) ? undefined : (r.oneOf(o.stack, 'stack', STACK_MODES) as StackMode);
  return { source, warnings, ...(description !== undefined ? { description } : {}), setup, steps, ...(dnsProxy ? { dnsProxy } : {}), ...(allowLocalhost ? { allowLocalhost } : {}), ...(stack ? { stack } : {}) };
}

/** Pod labels in a label space distill derives itself, and namespace labels Cilium's filter drops: accepted, dropped from the identity, said. */
function derivedLabelWarnings(source: string, changes: readonly Change[]): string[] {
  const out: string[] = [];
  for (const c of changes) {
    const labels = c.op === 'addPod' ? c.pod.labels : c.op === 'setPodLabels' ? c.labels : undefined;
    const path = `${c.path}.labels`;
    for (const k of labels ? derivedLabelKeys(labels) : []) {
      out.push(`${source} ${join(path, k)}: ${derivedLabelDetail(k)}`);
    }
    const nsLabels = c.op === 'addNamespace' || c.op === 'setNamespaceLabels' ? c.labels : undefined;
    for (const k of nsLabels ? filteredNamespaceLabelKeys(nsLabels) : []) out.push(`${source} ${join(path, k)}: ${FILTERED_NAMESPACE_LABEL_DETAIL}`);
  }
  return out;
}

/** Same-tier, same-priority ClusterNetworkPolicies alive together at setup or after some step. */
function tierPriorityWarnings(source: string, setup: readonly Change[], steps: readonly Step[]): string[] {
  const live = new Map<string, Policy>();
  const out = new Set<string>();
  for (const changes of [setup, ...steps.map((s) => s.changes)]) {
    for (const c of changes) {
      if (c.op === 'apply' && c.policy.tiered) live.set(c.policy.ref.name, c.policy);
      if (c.op === 'delete' && c.ref.kind === 'ClusterNetworkPolicy') live.delete(c.ref.name);
    }
    for (const w of samePriorityWarnings([...live.values()].sort((a, b) => (a.ref.name < b.ref.name ? -1 : 1)), source)) out.add(`${source} ${w.path}: ${w.detail}`);
  }
  return [...out];
}
