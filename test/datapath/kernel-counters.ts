import { run } from '../../src/datapath/netns.js';
import type { Testbed } from '../../src/datapath/testbed.js';

/** A testbed node's IP counters, /proc/net/snmp (as `Udp.InDatagrams`, `Tcp.InErrs`) and /proc/net/snmp6, read inside its namespace. */
export function nodeCounters(bed: Testbed, node: string): Map<string, number> {
  const read = (file: string): string[] => run('nsenter', [`--net=${bed.address(node, 'ipv6').netns}`, 'cat', file]).split('\n').filter((l) => l !== '');
  const out = new Map<string, number>();
  for (const l of read('/proc/net/snmp6')) {
    const [k, v] = l.split(/\s+/);
    out.set(k ?? '', Number(v));
  }
  // snmp: a line of names, then a line of values, per group ("Udp: InDatagrams NoPorts ...").
  const lines = read('/proc/net/snmp');
  for (let i = 0; i + 1 < lines.length; i += 2) {
    const [names, values] = [(lines[i] ?? '').split(/\s+/), (lines[i + 1] ?? '').split(/\s+/)];
    const group = (names[0] ?? '').replace(':', '');
    names.slice(1).forEach((n, j) => out.set(`${group}.${n}`, Number(values[j + 1])));
  }
  return out;
}

/** How much each of `keys` grew in `node`'s counters while `f` ran. */
export function counterGrowth(bed: Testbed, node: string, keys: readonly string[], f: () => unknown): number[] {
  const before = nodeCounters(bed, node);
  f();
  const after = nodeCounters(bed, node);
  return keys.map((k) => (after.get(k) ?? 0) - (before.get(k) ?? 0));
}
