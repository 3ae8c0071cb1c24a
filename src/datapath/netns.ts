import { execFileSync } from 'node:child_process';

/** Runs `ip`/`tc`/`bpftool`, throwing with the command line and its stderr on failure. */
export function run(cmd: string, args: readonly string[]): string {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    const stderr = (e as { stderr?: string }).stderr ?? '';
    throw new Error(`${cmd} ${args.join(' ')} failed: ${stderr.trim() || (e as Error).message}`);
  }
}

/** Runs a command inside a named network namespace. */
export function inNs(ns: string, cmd: string, args: readonly string[]): string {
  return run('ip', ['netns', 'exec', ns, cmd, ...args]);
}

export function netnsPath(ns: string): string {
  return `/run/netns/${ns}`;
}

/** Namespaces whose name starts with `prefix` (so cleanup finds everything of one run). */
export function listNetns(prefix: string): string[] {
  return run('ip', ['netns', 'list'])
    .split('\n')
    .map((l) => l.split(' ')[0] ?? '')
    .filter((n) => n.startsWith(prefix));
}

/** A fresh namespace with loopback up, sysctls for the testbed, and ICMP echo sockets allowed. */
export function addNetns(ns: string, forwarding: boolean): void {
  run('ip', ['netns', 'add', ns]);
  inNs(ns, 'ip', ['link', 'set', 'lo', 'up']);
  const sysctls = ['net.ipv4.ping_group_range=0 2147483647', 'net.ipv4.icmp_ratelimit=0', 'net.ipv6.icmp.ratelimit=0', 'net.ipv4.conf.all.rp_filter=0', 'net.ipv4.conf.default.rp_filter=0', 'net.ipv6.conf.all.accept_dad=0', 'net.ipv6.conf.default.accept_dad=0'];
  if (forwarding) sysctls.push('net.ipv4.ip_forward=1', 'net.ipv6.conf.all.forwarding=1');
  inNs(ns, 'sysctl', ['-q', '-w', ...sysctls]);
}

export function deleteNetns(ns: string): void {
  run('ip', ['netns', 'del', ns]);
}
