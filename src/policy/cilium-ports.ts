import { asciiToLower } from '../model/l7.js';
import { ALL_L4, FlowProtocol, ICMPV4_TYPES, ICMPV6_TYPES, isValidPortName, L4Match, MAX_PORT, RuleProtocol } from '../model/ports.js';
import type { Direction, L7Rules, PortClause } from '../model/rules.js';
import { absent, at, join, Reader } from './reader.js';
import type { ParseOptions } from './cilium-options.js';
import type { DirectionShape } from './cilium-shapes.js';
import { goPortNumber } from './go-port.js';
import { parseDnsRule, parseHttpRule, parseKafkaRule } from './cilium-l7.js';

/*
 * The L4 side of a Cilium rule: `toPorts` (ports, protocols, ranges, and which L7 rules may sit on
 * them) and `icmps`.
 */

/** The CRD's enum for `toPorts[].ports[].protocol` (case-sensitive; ICMP only through `icmps`). */
const CILIUM_PROTOCOLS = ['TCP', 'UDP', 'SCTP', 'ANY'] as const;

/**
 * Protocols without transport ports that Cilium 1.18+ takes in `toPorts` (cilium/cilium#39872:
 * VRRP, IGMP; #44459: GRE, IPIP, IPv6, ESP, AH; `isExtendedIPProtocol`, rule_validation.go). The
 * API server stores such a policy and Cilium enforces it; refused as invalid, the agent skipped
 * the whole policy (attack finding 711). "Not supported" gives it the fail-closed stand-in.
 */
const EXTENDED_IP_PROTOCOLS: readonly unknown[] = ['VRRP', 'IGMP', 'GRE', 'IPIP', 'IPv6', 'ESP', 'AH'];

/**
 * The port's protocol. An extended IP protocol defers its error (`Reader.unsupported`: Cilium takes
 * it, and an invalid field after it is the error, attack finding 1832) and reads as `ANY` meanwhile,
 * marked in `extendedProtocols` so that the checks Cilium makes of such ports are made.
 */
function parseProtocol(r: Reader, v: unknown, path: string): { protocol: RuleProtocol; extended?: string } {
  if (absent(v)) return { protocol: 'ANY' };
  if (EXTENDED_IP_PROTOCOLS.includes(v)) {
    r.unsupported(path, `"${String(v)}" (an IP protocol without ports, Cilium 1.18+) is not supported by distill`);
    return { protocol: 'ANY', extended: String(v) };
  }
  // The API server checks the CRD enum, case-sensitively, before Cilium's own (lenient) parser runs.
  return { protocol: r.oneOf(v, path, CILIUM_PROTOCOLS) };
}

/** The ports read with an extended IP protocol (read as ANY while their error is deferred), by the protocol's name. */
const extendedProtocols = new WeakMap<L4Match, string>();
/** Extended-protocol ports written without a port number. */
const withoutPort = new WeakSet<L4Match>();

/** Cilium's maxPorts and maxICMPFields (pkg/policy/api/rule_validation.go). */
const MAX_RULE_ITEMS = 40;

/** Ranges written as port "0" with an endPort: Cilium refuses L7 rules on them (PortRule.sanitize, haveZeroPort). */
const fromPortZero = new WeakSet<L4Match>();

function parsePortProtocol(r: Reader, v: unknown, path: string): L4Match {
  const o = r.object(v, path, ['port', 'endPort', 'protocol']);
  const { protocol, extended } = parseProtocol(r, o.protocol, join(path, 'protocol'));
  const l4 = parsePort(r, o, path, protocol, extended);
  if (extended !== undefined) extendedProtocols.set(l4, extended);
  return l4;
}

function parsePort(r: Reader, o: Record<string, unknown>, path: string, protocol: RuleProtocol, extended: string | undefined): L4Match {
  let port = 0;
  let named: string | undefined;
  // An extended protocol without a port: Cilium takes it with `enable-extended-ip-protocols` (the stand-in then
  // holds, attack finding 711), and it is no zero port for PortRule.sanitize's L7 check (isZero stays false).
  if ((absent(o.port) || o.port === '') && extended !== undefined) {
    if (!absent(o.endPort)) r.intInRange(o.endPort, join(path, 'endPort'), 0, MAX_PORT);
    const l4: L4Match = { kind: 'range', protocol, from: 0, to: 0 };
    withoutPort.add(l4);
    return l4;
  }
  // The CRD marks `port` required and Cilium's PortProtocol.Validate refuses an empty one.
  if (absent(o.port) || o.port === '') r.fail(join(path, 'port'), 'is required (Cilium: "port must be specified"; "0" means every port)');
  // The CRD types `port` as a string (no int-or-string): the API server refuses `port: 80`.
  if (typeof o.port === 'number') r.fail(join(path, 'port'), `${o.port} is a number: the CRD types port as a string, so the API server refuses it (quote it: "${o.port}")`);
  const raw = r.string(o.port, join(path, 'port'));
  // Cilium tries the service name first ("0x50" is a name), then strconv.ParseUint. iana.IsSvcName
  // is ASCII, so only ASCII letters fold: `toLowerCase` alone reads the Kelvin sign as `k` (finding 761).
  const folded = asciiToLower(raw);
  if (isValidPortName(folded)) {
    named = folded;
  } else {
    // PortProtocol.sanitize (rule_validation.go, 1.19: VRRP and IGMP; later `isExtendedIPProtocol`).
    if (extended !== undefined && raw !== '0') r.fail(join(path, 'port'), `port must be empty or 0 (Cilium refuses ${extended} with a port)`);
    port = goPortNumber(r, raw, join(path, 'port'));
  }
  if (!absent(o.endPort)) {
    const end = r.intInRange(o.endPort, join(path, 'endPort'), 0, MAX_PORT);
    // Cilium accepts it (PortProtocol.Validate checks numeric ports only) without defining the range
    // of a name: "not supported" lets the agent enforce a fail-closed stand-in (src/policy/stand-in.ts).
    if (named !== undefined) {
      r.unsupported(join(path, 'endPort'), 'with a named port is not supported by distill (Cilium defines no range of a name)');
      return { kind: 'named', protocol, name: named };
    }
    if (end !== 0 && port === 0) {
      // Cilium accepts it (PortProtocol.sanitize) and keys 0..end (l4.go toMapState,
      // PortRangeToMaskedPorts(0, end)); 0..65535 is the wildcard. Port 0 itself is no flow's
      // (probes start at 1) and `from: 0` reads as "every port" here, so the range starts at 1.
      const l4: L4Match = end === MAX_PORT ? { kind: 'range', protocol, from: 0, to: 0 } : { kind: 'range', protocol, from: 1, to: end };
      fromPortZero.add(l4);
      return l4;
    }
    if (end !== 0) {
      // Cilium accepts it and enforces the single port (PortRangeToMaskedPorts, pkg/policy/types:
      // "If the end port is equal to or less then the start port than the start port is returned").
      if (end > port) return { kind: 'range', protocol, from: port, to: end };
    }
  }
  if (named !== undefined) return { kind: 'named', protocol, name: named };
  return { kind: 'range', protocol, from: port, to: port };
}

/** The rule's `toPorts` or `icmps` as port clauses; with neither, every port and protocol (`hasL4` false). */
export function readPortClauses(r: Reader, o: Record<string, unknown>, path: string, shape: DirectionShape, options: ParseOptions): { ports: PortClause[]; hasL4: boolean } {
  const toPorts = r.optArray(o.toPorts, join(path, 'toPorts')) ?? [];
  const icmps = r.optArray(o.icmps, join(path, 'icmps')) ?? [];
  if (icmps.length > 0 && options.icmpRules === false) r.fail(join(path, 'icmps'), 'ICMP rules can only be applied when the "enable-icmp-rules" flag is set');
  if (toPorts.length > 0 && icmps.length > 0) r.fail(join(path, 'icmps'), 'may only be present without toPorts (define a separate rule for toPorts)');
  const ports: PortClause[] = [];
  toPorts.forEach((p, i) => ports.push(...parsePortRule(r, p, at(join(path, 'toPorts'), i), shape, options)));
  icmps.forEach((p, i) => ports.push(...parseIcmpRule(r, p, at(join(path, 'icmps'), i))));
  // Cilium's L3-only path (every port and protocol) needs an empty toPorts and icmps.
  const hasL4 = toPorts.length > 0 || icmps.length > 0;
  if (!hasL4) ports.push({ l4: ALL_L4 });
  return { ports, hasL4 };
}

function parsePortRule(r: Reader, v: unknown, path: string, shape: DirectionShape, options: ParseOptions): PortClause[] {
  const isDeny = shape.verdict === 'deny';
  const allowedKeys = isDeny ? ['ports'] : ['ports', 'rules', 'originatingTLS', 'terminatingTLS', 'serverNames', 'listener'];
  const o = r.object(v, path, allowedKeys);
  checkProxyFields(r, o, path, shape.direction, options);
  for (const u of ['originatingTLS', 'terminatingTLS', 'serverNames', 'listener']) {
    if (!absent(o[u])) r.unsupported(join(path, u), 'is not supported by distill');
  }
  const portsRaw = r.optArray(o.ports, join(path, 'ports')) ?? [];
  // Cilium refuses the policy (PortRule.Validate, PortDenyRule.Validate: maxPorts).
  if (portsRaw.length > MAX_RULE_ITEMS) r.fail(join(path, 'ports'), `too many ports, the max is ${MAX_RULE_ITEMS} (Cilium refuses the policy)`);
  const l4s = portsRaw.map((p, i) => parsePortProtocol(r, p, at(join(path, 'ports'), i)));
  const l7 = absent(o.rules) ? undefined : parseL7(r, o.rules, join(path, 'rules'), shape.direction, l4s, join(path, 'ports'));
  // A port rule without ports contributes no L4 filter at all (Cilium iterates its ports: none,
  // nothing added), so it allows nothing; the rule still makes the direction default-deny.
  return l4s.map((l4) => ({ l4, ...(l7 ? { l7 } : {}) }));
}

/**
 * What Cilium's `PortRule.Validate`/`sanitize` (rule_validation.go, in every version read) refuses
 * among the fields distill does not read: refused here too, so the agent skips the policy as Cilium does instead of enforcing a
 * stand-in whose remaining allows the cluster never enforces (attack findings 716, 717). Each check is
 * guarded by `!pr.Rules.IsEmpty()` (or `countL7Rules`, which skips empty ones), and `L7Rules.IsEmpty`
 * is `Len() == 0` (pkg/policy/api/l4.go, since cilium ca801ee2, 1.12): the lengths of `http`, `kafka`,
 * `dns` and `l7`, so `http: []` and a lone `l7proto` are no L7 rules there (attack finding 1766).
 */
function checkProxyFields(r: Reader, o: Record<string, unknown>, path: string, direction: Direction, options: ParseOptions): void {
  const rules = typeof o.rules === 'object' && o.rules !== null ? (o.rules as Record<string, unknown>) : undefined;
  const hasL7 = rules !== undefined && ['http', 'kafka', 'dns', 'l7'].some((k) => Array.isArray(rules[k]) && (rules[k] as unknown[]).length > 0);
  if (hasL7 && options.l7Proxy === false) r.fail(join(path, 'rules'), 'L7 policy is not supported since L7 proxy is not enabled');
  if (!absent(o.listener) && direction === 'ingress') r.fail(join(path, 'listener'), 'Listener is not allowed on ingress');
  if (!absent(o.listener) && hasL7) r.fail(join(path, 'listener'), 'Listener is not allowed with L7 rules');
  // Both checks are in `PortRule.sanitize` (older releases) and `PortRule.Validate` (main), so in 1.19
  // (attack finding 717). `serverNames: []` is no server name.
  const names = o.serverNames;
  if (Array.isArray(names) && names.length > 0 && hasL7 && absent(o.terminatingTLS)) r.fail(join(path, 'serverNames'), 'ServerNames are not allowed with L7 rules without TLS termination');
  if (Array.isArray(names) && names.includes('')) r.fail(join(path, 'serverNames'), 'Empty server name is not allowed');
}

/**
 * The CRD gives `rules` a `oneOf` of `http`, `kafka`, `dns` and `l7proto` (each L7Rules field carries
 * `+kubebuilder:validation:OneOf`, pkg/policy/api/l4.go, since cilium 17882e96, 1.16), so the API server
 * refuses a `rules` object with none or several of them (a null field is pruned first: `{http: null}` is
 * `{}`). Several, even as empty lists, and `l7` without `l7proto` the agent refuses too (rule_validation.go
 * `L7Rules.sanitize` counts non-nil lists): invalid. `{}` it reads as no L7 rules, and a policy stored
 * before 1.16 may still hold one: "not supported" makes the agent drop that allow (the stand-in, closed
 * either way) and the CLI refuse it (attack finding 1660).
 */
function checkL7Union(r: Reader, o: Record<string, unknown>, path: string): void {
  const set = (['http', 'kafka', 'dns', 'l7proto'] as const).filter((k) => !absent(o[k]));
  if (set.length > 1) r.fail(path, `multiple L7 protocol rule types in one rule (${set.join(', ')}): the CRD's oneOf and Cilium's L7Rules.sanitize refuse the policy`);
  if (set.length === 1) return;
  if (!absent(o.l7)) r.fail(join(path, 'l7'), 'may only be specified when a \'l7proto\' is also specified (the CRD\'s oneOf and Cilium\'s L7Rules.sanitize refuse the policy)');
  r.unsupported(path, 'sets none of http, kafka, dns, l7proto: the CRD\'s oneOf (Cilium 1.16+) refuses it, while the agent reads such a stored policy as no L7 rules; this is not supported by distill (omit `rules` for no L7 rules)');
}

function parseL7(r: Reader, v: unknown, path: string, direction: Direction, l4s: readonly L4Match[], portsPath: string): L7Rules | undefined {
  const o = r.object(v, path, ['http', 'kafka', 'dns', 'l7proto', 'l7']);
  checkL7Union(r, o, path);
  if (!absent(o.l7proto)) r.unsupported(join(path, 'l7proto'), 'is not supported by distill');
  if (!absent(o.l7)) r.unsupported(join(path, 'l7'), 'is not supported by distill');
  const present = (['http', 'kafka', 'dns'] as const).filter((k) => !absent(o[k]));
  for (const k of present) r.array(o[k], join(path, k));
  // Empty lists are no L7 rules at all: Cilium (L7Rules.IsEmpty) picks a parser only for a
  // non-empty list, so such a port rule is a plain allow, never redirected. A non-empty generic `l7`
  // list (not read: deferred above) gets Cilium's port checks all the same (attack finding 1767).
  if (present.every((k) => (o[k] as unknown[]).length === 0)) {
    if (Array.isArray(o.l7) && o.l7.length > 0) checkL7Ports(r, l4s, portsPath, false);
    return undefined;
  }
  const parser = present[0] as 'http' | 'kafka' | 'dns';
  if (parser === 'dns' && direction === 'ingress') r.fail(join(path, 'dns'), 'DNS rules are not allowed on ingress');
  if (parser === 'dns' && l4s.length === 0) r.fail(portsPath, 'a port (53) must be specified for DNS rules');
  checkL7Ports(r, l4s, portsPath, parser === 'dns');
  const list = r.array(o[parser], join(path, parser));
  const lpath = join(path, parser);
  switch (parser) {
    case 'http':
      return { parser, http: list.map((x, i) => parseHttpRule(r, x, at(lpath, i))) };
    case 'kafka':
      return { parser, kafka: list.map((x, i) => parseKafkaRule(r, x, at(lpath, i))) };
    case 'dns':
      return { parser, dns: list.map((x, i) => parseDnsRule(r, x, at(lpath, i))) };
  }
}

/** PortRule.sanitize's checks of the ports beside non-empty L7 rules (rule_validation.go). */
function checkL7Ports(r: Reader, l4s: readonly L4Match[], portsPath: string, dns: boolean): void {
  l4s.forEach((l4, i) => {
    if (l4.kind === 'range' && (l4.from === 0 || fromPortZero.has(l4)) && !withoutPort.has(l4)) r.fail(join(at(portsPath, i), 'port'), 'L7 rules can not be used when a port is 0');
    // cilium#34023 (PortProtocol.Validate, Cilium >= 1.17): "DNS rules do not support port ranges".
    if (dns && l4.kind === 'range' && l4.to > l4.from) r.fail(join(at(portsPath, i), 'endPort'), 'DNS rules do not support port ranges');
    if (!dns && l4.kind !== 'all' && l4.protocol !== 'TCP') {
      r.fail(join(at(portsPath, i), 'protocol'), `L7 rules can only apply to TCP (not ${extendedProtocols.get(l4) ?? l4.protocol}) except for DNS rules`);
    }
  });
}

/**
 * The CRD's type pattern (pkg/policy/api/icmp.go) lists "ExtendedEcho Reply", with a space, so the
 * API server refuses "ExtendedEchoReply" though Cilium's name tables have it (types 43 and 161).
 */
const CRD_PATTERN_MISSES_EXTENDED_ECHO_REPLY =
  '"ExtendedEchoReply" does not match the CRD\'s ICMP type pattern (it lists "ExtendedEcho Reply"): the API server refuses it; use 43 (IPv4) or 161 (IPv6)';

function parseIcmpRule(r: Reader, v: unknown, path: string): PortClause[] {
  const o = r.object(v, path, ['fields']);
  // `fields` is optional (the CRD and ICMPRule: +kubebuilder:validation:Optional): without it the rule's
  // GetPortRule is a PortRule with no ports, so the rule adds no L4 filter, as `fields: []` (attack finding 1301).
  const fields = r.optArray(o.fields, join(path, 'fields')) ?? [];
  // Cilium refuses the policy (ICMPRule.Validate: maxICMPFields).
  if (fields.length > MAX_RULE_ITEMS) r.fail(join(path, 'fields'), `too many types, the max is ${MAX_RULE_ITEMS} (Cilium refuses the policy)`);
  return fields.map((f, i) => {
    const fpath = at(join(path, 'fields'), i);
    const fo = r.object(f, fpath, ['type', 'family']);
    const family = absent(fo.family) ? 'IPv4' : r.oneOf(fo.family, join(fpath, 'family'), ['IPv4', 'IPv6'] as const);
    const protocol: FlowProtocol = family === 'IPv4' ? 'ICMP' : 'ICMPv6';
    let type: number;
    if (typeof fo.type === 'string' && !/^\d+$/.test(fo.type)) {
      if (fo.type === 'ExtendedEchoReply') r.fail(join(fpath, 'type'), CRD_PATTERN_MISSES_EXTENDED_ECHO_REPLY);
      const table = family === 'IPv4' ? ICMPV4_TYPES : ICMPV6_TYPES;
      const t = Object.hasOwn(table, fo.type) ? table[fo.type] : undefined;
      if (t === undefined) r.fail(join(fpath, 'type'), `"${fo.type}" is not an ${family} ICMP type name`);
      type = t;
    } else if (typeof fo.type === 'number' && Number.isInteger(fo.type) && (fo.type < 0 || fo.type > 255)) {
      // The CRD's pattern bounds only strings and ICMPRule.Validate checks no type: Cilium takes the
      // integer and keys a "port" no ICMP type has. "Not supported" makes the agent enforce a stand-in.
      r.unsupported(join(fpath, 'type'), `${fo.type} is no ICMP type (0 to 255): Cilium accepts it, which is not supported by distill`);
      type = 0;
    } else {
      // A numeric string must match the CRD's pattern (no leading zero, at most 255).
      if (typeof fo.type === 'string' && !/^(0|[1-9]\d{0,2})$/.test(fo.type)) r.fail(join(fpath, 'type'), `"${fo.type}" is not an ICMP type (the CRD's pattern: 0 to 255 without leading zeros)`);
      type = r.intInRange(typeof fo.type === 'string' ? Number(fo.type) : fo.type, join(fpath, 'type'), 0, 255);
    }
    return { l4: { kind: 'range', protocol, from: type, to: type } };
  });
}
