import { IpAddress } from '../model/cidr.js';
import { NODE_PREFIX } from '../model/cluster.js';
import { addHeader, KAFKA_API_KEYS, L7Request } from '../model/l7.js';
import { FLOW_PROTOCOLS, FlowProtocol, flowPortRange } from '../model/ports.js';
import { checkObjectName } from '../policy/common.js';
import { absent, at, join, Reader } from '../policy/reader.js';
import { readIp, readPortNumber, readProtocol } from '../policy/readers.js';

/** A scenario step's probes (the flows, with the request each carries) and expectations (docs/scenarios.md). */

/** A probe: one flow, or (with `from`/`to` left out) every ordered pair of distinct pods. */
export interface Probe {
  readonly path: string;
  readonly from?: string;
  readonly to?: string;
  readonly port: number;
  readonly protocol: FlowProtocol;
  /** An HTTP request, Kafka request or DNS query the flow carries (judged by L7 proxies). */
  readonly request?: L7Request;
  /**
   * Set for `to: {ip: ...}`: `to` is then the address: a pod's (a dual-stack pod has two), or an
   * external created on first use.
   */
  readonly toIp?: IpAddress;
  /** `from: {ip: ...}`, as `toIp`. */
  readonly fromIp?: IpAddress;
}

/**
 * For probe `probe`: the listed pairs get the opposite verdict of every other pair (`deny`,
 * `allow`), or are the only pairs that reach an L7 proxy (`proxied`).
 */
export interface Expectation {
  readonly path: string;
  readonly probe: number;
  readonly listed: 'deny' | 'allow' | 'proxied';
  readonly pairs: readonly string[];
}

const PROBE_PROTOCOLS = FLOW_PROTOCOLS;

/** Headers as a map (`{X-Token: "yes"}`) or as Cilium writes them (`["X-Token: yes"]`). */
function readHeaders(r: Reader, v: unknown, path: string): Record<string, string> {
  if (!Array.isArray(v)) return r.stringMap(v, path);
  const out: Record<string, string> = Object.create(null) as Record<string, string>;
  v.forEach((item, i) => {
    const line = r.nonEmptyString(item, at(path, i));
    const colon = line.indexOf(':');
    if (colon <= 0) r.fail(at(path, i), `"${line}" is not "Name: value"`);
    addHeader(out, line.slice(0, colon).trim(), line.slice(colon + 1).trim());
  });
  return out;
}

/**
 * A Kafka request's API key: a name (`produce`), its number (0), or a role as shorthand for its
 * main call (`produce` → produce, `consume` → fetch).
 */
function readKafkaApiKey(r: Reader, k: Record<string, unknown>, path: string): string {
  if (!absent(k.role)) {
    if (!absent(k.apiKey)) r.fail(path, 'give apiKey or role, not both');
    return r.oneOf(k.role, join(path, 'role'), ['produce', 'consume'] as const) === 'produce' ? 'produce' : 'fetch';
  }
  if (typeof k.apiKey === 'number') {
    const name = KAFKA_API_KEYS[r.intInRange(k.apiKey, join(path, 'apiKey'), 0, KAFKA_API_KEYS.length - 1)];
    return name as string;
  }
  const apiKey = r.nonEmptyString(k.apiKey, join(path, 'apiKey')).toLowerCase();
  if (!KAFKA_API_KEYS.includes(apiKey)) r.fail(join(path, 'apiKey'), `"${apiKey}" is not a Kafka API key name (${KAFKA_API_KEYS.join(', ')})`);
  return apiKey;
}

function readRequest(r: Reader, o: Record<string, unknown>, path: string): L7Request | undefined {
  const present = (['http', 'kafka', 'dns'] as const).filter((k) => !absent(o[k]));
  if (present.length > 1) r.fail(path, `a probe carries one request, not ${present.join(' and ')}`);
  if (!absent(o.http)) {
    const p = join(path, 'http');
    const h = r.object(o.http, p, ['method', 'path', 'host', 'headers']);
    const host = r.optString(h.host, join(p, 'host'));
    const headers = absent(h.headers) ? undefined : readHeaders(r, h.headers, join(p, 'headers'));
    const method = absent(h.method) ? 'GET' : r.nonEmptyString(h.method, join(p, 'method'));
    const reqPath = absent(h.path) ? '/' : r.nonEmptyString(h.path, join(p, 'path'));
    return { http: { method, path: reqPath, ...(host !== undefined ? { host } : {}), ...(headers ? { headers } : {}) } };
  }
  if (!absent(o.kafka)) {
    const p = join(path, 'kafka');
    const k = r.object(o.kafka, p, ['apiKey', 'role', 'apiVersion', 'clientID', 'topic']);
    const apiKey = readKafkaApiKey(r, k, p);
    const apiVersion = absent(k.apiVersion) ? undefined : r.intInRange(typeof k.apiVersion === 'string' && /^\d+$/.test(k.apiVersion) ? Number(k.apiVersion) : k.apiVersion, join(p, 'apiVersion'), 0, 32767);
    const clientID = r.optString(k.clientID, join(p, 'clientID'));
    const topic = r.optString(k.topic, join(p, 'topic'));
    return { kafka: { apiKey, ...(apiVersion !== undefined ? { apiVersion } : {}), ...(clientID !== undefined ? { clientID } : {}), ...(topic !== undefined ? { topic } : {}) } };
  }
  if (!absent(o.dns)) {
    const p = join(path, 'dns');
    const d = r.object(o.dns, p, ['name']);
    return { dns: { name: r.nonEmptyString(d.name, join(p, 'name')) } };
  }
  return undefined;
}

export function readNodeName(r: Reader, v: unknown, path: string): string {
  const name = r.nonEmptyString(v, path);
  checkObjectName(r, name, path);
  return name;
}

/** `{ip: A.B.C.D}` or `{node: name}` (named `node:name`), else undefined (a plain name). */
function readProbeAddress(r: Reader, v: unknown, path: string): IpAddress | undefined {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return undefined;
  if (Object.hasOwn(v, 'node')) return undefined;
  return readIp(r, r.object(v, path, ['ip']).ip, join(path, 'ip'));
}

/** A probe end as a name: `{node: name}` → `node:name`, a string as it is. */
function readProbeName(r: Reader, v: unknown, path: string): string | undefined {
  if (typeof v === 'object' && v !== null && !Array.isArray(v)) return NODE_PREFIX + readNodeName(r, r.object(v, path, ['node']).node, join(path, 'node'));
  return r.optString(v, path);
}

export function readProbe(r: Reader, v: unknown, path: string): Probe {
  const o = r.object(v, path, ['from', 'to', 'port', 'protocol', 'http', 'kafka', 'dns']);
  const request = readRequest(r, o, path);
  const protocol = absent(o.protocol) ? 'TCP' : readProtocol(r, o.protocol, join(path, 'protocol'), PROBE_PROTOCOLS);
  const range = flowPortRange(protocol);
  const port = readPortNumber(r, o.port, join(path, 'port'), range.min, range.max);
  // `to: {ip: A.B.C.D}`: a pod's address (either of a dual-stack pod's), or an address outside
  // the cluster that no external names (e.g. one a DNS answer gave); the probe's pairs then name
  // it by the address. The same for `from`.
  const fromIp = readProbeAddress(r, o.from, join(path, 'from'));
  const toIp = readProbeAddress(r, o.to, join(path, 'to'));
  const from = fromIp ? fromIp.text : readProbeName(r, o.from, join(path, 'from'));
  const to = toIp ? toIp.text : readProbeName(r, o.to, join(path, 'to'));
  return { path, port, protocol, ...(from !== undefined ? { from } : {}), ...(to !== undefined ? { to } : {}), ...(fromIp ? { fromIp } : {}), ...(toIp ? { toIp } : {}), ...(request ? { request } : {}) };
}

export function readExpectation(r: Reader, v: unknown, path: string, probeCount: number): Expectation {
  const o = r.object(v, path, ['probe', 'deny', 'allow', 'proxied']);
  const probe = absent(o.probe) ? 0 : r.intInRange(o.probe, join(path, 'probe'), 0, Math.max(0, probeCount - 1));
  if (probeCount === 0) r.fail(path, 'the step has no probes to expect results of');
  const given = (['deny', 'allow', 'proxied'] as const).filter((k) => !absent(o[k]));
  if (given.length > 1) r.fail(path, `give one of deny, allow or proxied, not ${given.join(' and ')}`);
  const listed = given[0] ?? 'deny';
  const pairs = (r.optArray(o[listed], join(path, listed)) ?? []).map((x, i) => {
    const s = r.nonEmptyString(x, at(join(path, listed), i));
    if (!s.includes('->')) r.fail(at(join(path, listed), i), `"${s}" is not a from->to pair`);
    return s.replace(/\s+/g, '');
  });
  return { path, probe, listed, pairs };
}
