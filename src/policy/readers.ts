import { IpAddress, parseIp } from '../model/cidr.js';
import { ContainerPort, isValidPortName, MAX_PORT } from '../model/ports.js';
import { absent, at, join, Reader } from './reader.js';
import { checkLabels } from './selector.js';

/** Readers for the pieces of pods and namespaces that scenarios and traces share. */

/** A label map, validated as the Kubernetes API validates labels. */
export function readLabels(r: Reader, v: unknown, path: string): Record<string, string> {
  const labels = r.stringMap(v, path);
  checkLabels(r, labels, path);
  return labels;
}

export function readIp(r: Reader, v: unknown, path: string): IpAddress {
  const s = r.nonEmptyString(v, path);
  try {
    return parseIp(s);
  } catch (e) {
    return r.fail(path, (e as Error).message);
  }
}

/** A protocol name from a list, ignoring case (`tcp` is `TCP`). */
export function readProtocol<T extends string>(r: Reader, v: unknown, path: string, allowed: readonly T[]): T {
  const hit = typeof v === 'string' ? allowed.find((p) => p.toLowerCase() === v.toLowerCase()) : undefined;
  return hit ?? r.oneOf(v, path, allowed);
}

/** A port number, also written as a numeric string (`"80"`), as manifests often do. */
export function readPortNumber(r: Reader, v: unknown, path: string, min: number, max: number): number {
  return r.intInRange(typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v, path, min, max);
}

/** A pod's container ports (`[{name?, port, protocol?}]`); shared with the trace format. */
export function readContainerPorts(r: Reader, v: unknown, path: string): ContainerPort[] {
  return lastNamedPortWins(readPorts(r, v, path));
}

/**
 * A pod's named ports as Cilium keeps them: Endpoint.SetK8sMetadata adds each container port to
 * one NamedPortMap keyed by name alone (`npm[name] = pp`, pkg/policy/types), so when two ports
 * share a name (Kubernetes allows it across containers) the last one is the name's only port. The
 * earlier ones keep their number and protocol and lose the name, so no rule resolves the name to them.
 */
export function lastNamedPortWins(ports: ContainerPort[]): ContainerPort[] {
  const last = new Map<string, number>();
  ports.forEach((p, i) => {
    if (p.name !== undefined) last.set(p.name, i);
  });
  if (last.size === ports.filter((p) => p.name !== undefined).length) return ports;
  return ports.map((p, i) => (p.name === undefined || last.get(p.name) === i ? p : { port: p.port, protocol: p.protocol }));
}

function readPorts(r: Reader, v: unknown, path: string): ContainerPort[] {
  return (r.optArray(v, path) ?? []).map((p, i): ContainerPort => {
    const ppath = at(path, i);
    const po = r.object(p, ppath, ['name', 'port', 'protocol']);
    const pname = r.optString(po.name, join(ppath, 'name'));
    if (pname !== undefined && !isValidPortName(pname)) r.fail(join(ppath, 'name'), `"${pname}" is not a valid port name (IANA_SVC_NAME)`);
    const port = readPortNumber(r, po.port, join(ppath, 'port'), 1, MAX_PORT);
    const protocol = absent(po.protocol) ? 'TCP' : readProtocol(r, po.protocol, join(ppath, 'protocol'), ['TCP', 'UDP', 'SCTP'] as const);
    // Literals, not a spread: V8 gave each spread-built port its own hidden class (~300 B a pod).
    return pname !== undefined ? { name: pname, port, protocol } : { port, protocol };
  });
}

/** `ips`: one or two addresses, at most one per family (as a pod's `status.podIPs`). */
export function readPodIps(r: Reader, v: unknown, path: string): IpAddress[] {
  const list = r.array(v, path);
  if (list.length < 1 || list.length > 2) r.fail(path, `a pod has 1 or 2 addresses (one per family), not ${list.length}`);
  const ips = list.map((x, i) => readIp(r, x, at(path, i)));
  if (ips.length === 2 && ips[0]!.family === ips[1]!.family) r.fail(at(path, 1), `a second ${ips[0]!.family} address; a pod has at most one per family`);
  return ips;
}
