import type { Engine } from '../../src/engine/engine.js';

/**
 * x/a's verdict on a DNS query for `name` to `server` on 53/UDP: undefined when no entry admits the flow, true for a
 * plain allow, else the proxy's (dns-filters-31a.test.ts, dns-filters-31d.test.ts).
 */
export function dnsVerdict(e: Engine, server: string, name: string): boolean | undefined {
  const id = e.identityOfPod(server)!;
  const port = e.lookup('x/a', id, 'egress', 17, 53)?.entry.proxyPort;
  if (port === undefined) return undefined;
  return port === 0 || (e.l7Verdict('x/a', port, id, { dns: { name } }, 53)?.allowed ?? false);
}

/** x/a's L7 rows by the server's pod name among `names` (identity numbers depend on the order pods came in). */
export function namedRows(e: Engine, names: readonly string[]): unknown[] {
  const byId = new Map(names.map((n) => [e.identityOfPod(`kube-system/${n}`), n]));
  return e.l7Table('x/a').map((r) => [byId.get(r.peer) ?? r.peer, r.policy]).sort((a, b) => String(a[0]).localeCompare(String(b[0])));
}
