import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { PROBE_TOOL } from '../../src/datapath/loader.js';
import { run } from '../../src/datapath/netns.js';
import type { Testbed } from '../../src/datapath/testbed.js';
import { parseIp } from '../../src/model/cidr.js';

/** Hand-made frames for bpf/probe.c `frame` (EtherType onwards), as in attacks-7c.test.ts. */
export const u16 = (n: number): number[] => [(n >> 8) & 0xff, n & 0xff];

/** An address's bytes in network order (4 for IPv4, 16 for IPv6). */
export function addr(text: string): number[] {
  const a = parseIp(text);
  const n = a.family === 'ipv4' ? 4 : 16;
  return Array.from({ length: n }, (_, i) => Number((a.value >> BigInt((n - 1 - i) * 8)) & 0xffn));
}

/** A frame's own tail: the probe recognises its arrival by its last 8 bytes. */
export const tag = (n = 8): number[] => [...randomBytes(n)];

/** The Internet checksum (RFC 1071) of `b`. */
export function csum(b: readonly number[]): number {
  let s = 0;
  for (let i = 0; i < b.length; i += 2) s += ((b[i] ?? 0) << 8) | (b[i + 1] ?? 0);
  while (s > 0xffff) s = (s & 0xffff) + (s >> 16);
  return ~s & 0xffff;
}

/** An IPv4 packet; `o.frag` is the flags-and-offset field (0x2000: more fragments; offset in 8-byte units), `o.id` the identification. */
export function ipv4(src: string, dst: string, proto: number, payload: readonly number[], o: { frag?: number; id?: number } = {}): number[] {
  const h = [0x45, 0, ...u16(20 + payload.length), ...u16(o.id ?? 0x1234), ...u16(o.frag ?? 0), 64, proto, 0, 0, ...addr(src), ...addr(dst)];
  const c = csum(h);
  h[10] = c >> 8;
  h[11] = c & 0xff;
  return [0x08, 0x00, ...h, ...payload];
}

export function ipv6(src: string, dst: string, next: number, payload: readonly number[]): number[] {
  return [0x86, 0xdd, 0x60, 0, 0, 0, ...u16(payload.length), next, 64, ...addr(src), ...addr(dst), ...payload];
}

export const TCP = { FIN: 0x01, SYN: 0x02, RST: 0x04, ACK: 0x10 } as const;

/** A TCP segment (no checksum: receivers drop it after the probe has seen it) and `tagLen` tag bytes. */
export const tcp = (sport: number, dport: number, flags: number, tagLen = 8): number[] => [...u16(sport), ...u16(dport), 0, 0, 0, 1, 0, 0, 0, 0, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0, ...tag(tagLen)];
export const udp = (sport: number, dport: number): number[] => [...u16(sport), ...u16(dport), ...u16(16), 0, 0, ...tag()];

/** An IPv6 fragment header: `offset` in 8-byte units, `more` fragments to come. */
export const fragmentHeader = (next: number, offset: number, more: boolean, id: number): number[] => [next, 0, ...u16((offset << 3) | (more ? 1 : 0)), ...u16(id >>> 16), ...u16(id & 0xffff)];

/** The MAC of the router's side of a node's veth: where the node's frames must go. */
function routerMac(b: Testbed, ip: string): string {
  const dev = (JSON.parse(run('ip', ['-n', b.router, '-j', 'route', 'get', ip])) as { dev: string }[])[0]?.dev as string;
  return (JSON.parse(run('ip', ['-n', b.router, '-j', 'link', 'show', dev])) as { address: string }[])[0]?.address as string;
}

/** Sends `frame` from `from`'s eth0 to the router; true if it arrives at `to`'s eth0. */
export function arrives(b: Testbed, from: string, to: string, frame: readonly number[]): boolean {
  const src = b.address(from, 'ipv4');
  const r = spawnSync(PROBE_TOOL, ['frame', src.netns, b.address(to, 'ipv4').netns, routerMac(b, src.ip), Buffer.from(frame).toString('hex'), '300'], { encoding: 'utf8' });
  if (r.status !== 0 && r.status !== 1) throw new Error(`probe frame failed (${r.status ?? 'signal'}): ${r.stderr}`);
  return r.status === 0;
}

/** Waits without spinning (the lifetimes under test are seconds of bpf_ktime_get_ns). */
export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
