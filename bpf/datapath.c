// SPDX-License-Identifier: GPL-2.0
// distill's endpoint datapath: a tc program on the host side of a pod's veth that enforces the
// policy map distill writes (src/backend/encoding.ts has the layout; the lookup rule is
// pickWinner in src/model/mapstate.ts). Compiled once; per endpoint the loader reuses the
// endpoint's pinned maps by name (ELF templating), so no per-endpoint compilation.
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/in.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

// Address families for bpf_fib_lookup (sys/socket.h is no BPF header).
#define AF_INET 2
#define AF_INET6 10
#define DIR_INGRESS 0
#define DIR_EGRESS 1
#define WORLD_IDENTITY 2
// An address the writer is moving to a new identity (src/backend/ipcache-content.ts
// TRANSITION_IDENTITY): dropped both ways before any policy lookup.
#define TRANSITION_IDENTITY 0xffffffffu
#define VERDICT_PASS 0
#define VERDICT_DROP 1
#define VERDICT_REDIRECT 2
// Bits of identity + direction in a policy key; protocol and port follow.
#define ID_DIR_BITS 40
#define FULL_KEY_BITS (ID_DIR_BITS + 8 + 16)
// skb->mark for a redirected packet: Cilium's "to proxy" magic in the upper half, the port below.
#define MARK_TO_PROXY 0x0200

struct policy_key {
	__u32 prefixlen;
	__u32 identity;
	__u8 direction;
	__u8 protocol;
	__be16 port;
};

struct policy_value {
	__be16 proxy_port;
	__u8 flags; // bit 0 deny; bits 3-7 protocol+port prefix bits of the key
	__u8 auth;
	__u32 precedence;
	__u32 cookie;
};

// Replaced at load time by the endpoint's pinned LPM map (its capacity comes from the pin).
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct policy_key);
	__type(value, struct policy_value);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} policy SEC(".maps");

struct ipcache4_key {
	__u32 prefixlen;
	__u8 addr[4];
};
struct ipcache6_key {
	__u32 prefixlen;
	__u8 addr[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct ipcache4_key);
	__type(value, __u32);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} ipcache4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct ipcache6_key);
	__type(value, __u32);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} ipcache6 SEC(".maps");

// Connection tracking, so replies of an allowed flow pass. Keyed by the interface and the
// direction a flow was first seen in, so one endpoint's entry never opens another's policy.
struct ct_key {
	__u8 saddr[16];
	__u8 daddr[16];
	__u16 sport;
	__u16 dport;
	__u32 ifindex;
	__u8 proto;
	__u8 direction;
	__u8 pad[2];
};

// A tracked flow, as Cilium's struct ct_entry keeps it (bpf/lib/common.h): its deadline, the TCP
// flags seen each way and whether each way sent FIN or RST. Index 0: the opening direction.
struct ct_entry {
	__u64 expires; // bpf_ktime_get_ns(); an entry past it is a miss
	__u8 flags_seen[2];
	__u8 closing[2];
	__u8 seen_non_syn;
	__u8 pad[3];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct ct_key);
	__type(value, struct ct_entry);
	__uint(max_entries, 65536);
} ct SEC(".maps");

// Conntrack lifetimes in seconds, written by the loader (src/datapath/loader.ts); 0 is Cilium's
// default: bpf-ct-timeout-regular-tcp-syn 60, -tcp 8000, -tcp-fin 10, -any 60.
struct ct_lifetimes {
	__u32 syn;
	__u32 tcp;
	__u32 close;
	__u32 any;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct ct_lifetimes);
	__uint(max_entries, 1);
} ct_lifetimes SEC(".maps");

// Per endpoint: the L4 fields of IPv4 datagrams whose first fragment was seen, so later fragments
// (which carry no L4 header) are decided as their first was. Cilium's ipv4_frag_datagrams map.
struct frag4_key {
	__u8 saddr[4];
	__u8 daddr[4];
	__be16 id;
	__u8 proto;
	__u8 pad;
};

struct frag_l4 {
	__u16 sport;
	__u16 dport;
	__u8 icmp_type;
	__u8 is_reply;
	__u8 tcp_flags;
	__u8 proto; // IPv6: the L4 protocol (the first fragment may carry more headers before it)
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct frag4_key);
	__type(value, struct frag_l4);
	__uint(max_entries, 8192);
} frag4 SEC(".maps");

// The same for IPv6 (Cilium's cilium_ipv6_frag_datagrams, bpf/lib/ipv6.h ipv6_handle_fragmentation):
// keyed by the addresses, the fragment header's identification and next header.
struct frag6_key {
	__u8 saddr[16];
	__u8 daddr[16];
	__be32 id;
	__u8 proto;
	__u8 pad[3];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct frag6_key);
	__type(value, struct frag_l4);
	__uint(max_entries, 8192);
} frag6 SEC(".maps");

// Per endpoint: packets of each verdict, index direction * 3 + verdict.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 6);
} counters SEC(".maps");

struct flow {
	__u8 saddr[16];
	__u8 daddr[16];
	__u8 proto;
	__u8 v6;
	__u16 sport; // network order; ICMP: echo id
	__u16 dport; // network order; ICMP: type (host order, see parse_l4)
	__u8 icmp_type;
	__u8 is_reply; // TCP without SYN: never the start of a flow
	__u8 tcp_flags;
	__u8 hop_limit; // IPv6
	__u32 l4_off; // ICMP: where its header starts (0: a later fragment, no header)
	__u32 l4_end; // ICMP: where its datagram ends
};

#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04
#define TCP_ACK 0x10

// The L4 fields at `off`, read only from the IP datagram, which ends at `limit` (the frame may
// go on: the kernel trims it to the IP length before anyone reads the L4 header). A first
// fragment too short for them is dropped: its flags would be read from bytes no receiver sees.
static __always_inline int parse_l4(struct __sk_buff *skb, __u32 off, __u32 limit, struct flow *f)
{
	void *data = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;
	int ported = f->proto == IPPROTO_TCP || f->proto == IPPROTO_UDP || f->proto == IPPROTO_SCTP;
	int icmp = f->proto == IPPROTO_ICMP || f->proto == IPPROTO_ICMPV6;
	// Bytes read: the ports, TCP up to its flags, ICMP its first 8 (type to echo id).
	__u32 need = f->proto == IPPROTO_TCP ? 14 : ported ? 4 : 8;
	if ((ported || icmp) && off + need > limit)
		return -1;
	if (ported) {
		__u16 *ports = data + off;
		if ((void *)(ports + 2) > end)
			return -1;
		f->sport = ports[0];
		f->dport = ports[1];
		if (f->proto == IPPROTO_TCP) {
			__u8 *flags = data + off + 13;
			if ((void *)(flags + 1) > end)
				return -1;
			// SYN without ACK opens a flow; anything else must belong to a tracked one.
			f->tcp_flags = *flags;
			f->is_reply = !((*flags & TCP_SYN) && !(*flags & TCP_ACK));
		}
		return 0;
	}
	if (icmp) {
		__u8 *h = data + off;
		if ((void *)(h + 8) > end)
			return -1;
		f->icmp_type = h[0];
		f->sport = *(__u16 *)(h + 4);
		f->dport = 0;
		f->l4_off = off;
		f->l4_end = limit;
		// Every ICMP type is decided by policy (by type), unless it answers a tracked echo.
		return 0;
	}
	return 0;
}

// A fragment header met while skipping IPv6 extension headers.
#define FRAG_NONE 0
#define FRAG_FIRST 1 // offset 0, more fragments: carries the L4 header
#define FRAG_LATER 2 // offset > 0: no L4 header
struct frag6 {
	__be32 id;
	__u8 nexthdr;
	__u8 kind;
};

// The offset of the L4 header behind IPv6 extension headers, its protocol in *proto; -1 to drop.
// As Cilium (bpf/lib/ipv6.h ipv6_hdrlen_offset): at most IPV6_MAX_HEADERS hop-by-hop, routing,
// authentication, destination options and fragment headers, no "no next header". A later
// fragment stops at its fragment header (what follows is payload); an atomic fragment (offset 0,
// no more fragments) is no fragment. Every header must lie inside the datagram, which ends at
// `limit`: bytes past it are frame padding the kernel trims, and a first fragment whose chain runs
// on there is one Linux accepts (finding 895) and reassembles with the chain of its later fragments.
#define IPV6_MAX_HEADERS 4
static __always_inline int ipv6_skip_ext(struct __sk_buff *skb, __u8 nh, int off, __u32 limit, __u8 *proto, struct frag6 *fr)
{
#pragma unroll
	for (int i = 0; i < IPV6_MAX_HEADERS; i++) {
		__u8 h[8]; // every extension header is at least 8 bytes long
		if (nh != 0 && nh != 43 && nh != 44 && nh != 51 && nh != 60) {
			if (nh == 59)
				return -1;
			*proto = nh;
			return off;
		}
		if ((__u32)off + sizeof(h) > limit || bpf_skb_load_bytes(skb, off, h, sizeof(h)) < 0)
			return -1;
		if (nh == 44) {
			__u16 frag = h[2] << 8 | h[3];
			if ((frag & 0xfff9) && fr->kind != FRAG_NONE)
				return -1; // a second fragment header
			if (frag & 0xfff9) {
				fr->nexthdr = h[0];
				__builtin_memcpy(&fr->id, h + 4, 4);
				fr->kind = (frag & 0xfff8) ? FRAG_LATER : FRAG_FIRST;
			}
			if (fr->kind == FRAG_LATER)
				return off;
		}
		off += nh == 44 ? 8 : nh == 51 ? (h[1] + 2) * 4 : (h[1] + 1) * 8;
		if ((__u32)off > limit)
			return -1;
		nh = h[0];
	}
	return -1;
}

static __always_inline void frag_save(struct frag_l4 *l4, const struct flow *f)
{
	l4->sport = f->sport;
	l4->dport = f->dport;
	l4->icmp_type = f->icmp_type;
	l4->is_reply = f->is_reply;
	l4->tcp_flags = f->tcp_flags;
	l4->proto = f->proto;
}

static __always_inline void frag_load(struct flow *f, const struct frag_l4 *l4)
{
	f->sport = l4->sport;
	f->dport = l4->dport;
	f->icmp_type = l4->icmp_type;
	f->is_reply = l4->is_reply;
	f->tcp_flags = l4->tcp_flags;
}

// Where the IP datagram starting with a length field of `len` at `start` ends. 0 is the length of
// a BIG TCP GSO packet (and of a jumbogram): the frame's end then (the kernel drops any other).
static __always_inline __u32 ip_end(struct __sk_buff *skb, __u32 start, __u32 len)
{
	return len ? start + len : skb->len;
}

// The L4 fields of an IPv4 packet: from its header, or for a later fragment from the map its
// first fragment filled; a later fragment of no first one seen is dropped (Cilium: DROP_FRAG_NOT_FOUND).
static __always_inline int parse_ipv4_l4(struct __sk_buff *skb, struct iphdr *ip, struct flow *f)
{
	__u16 frag = bpf_ntohs(ip->frag_off);
	struct frag4_key fk = { .id = ip->id, .proto = ip->protocol };
	__builtin_memcpy(fk.saddr, &ip->saddr, 4);
	__builtin_memcpy(fk.daddr, &ip->daddr, 4);
	if (frag & 0x1fff) {
		struct frag_l4 *l4 = bpf_map_lookup_elem(&frag4, &fk);
		if (!l4)
			return -1;
		frag_load(f, l4);
		return 0;
	}
	__u32 l4 = sizeof(struct ethhdr) + ip->ihl * 4;
	__u32 limit = ip_end(skb, sizeof(struct ethhdr), bpf_ntohs(ip->tot_len));
	// A first fragment counts in 8-byte units: the receiver drops the rest of its payload
	// (ip_frag_queue: `end &= ~7`) and takes those bytes from the next fragment (finding 1160).
	if ((frag & 0x2000) && limit > l4)
		limit = l4 + ((limit - l4) & ~7U);
	if (parse_l4(skb, l4, limit, f) < 0)
		return -1;
	if (frag & 0x2000) {
		struct frag_l4 l4;
		frag_save(&l4, f);
		bpf_map_update_elem(&frag4, &fk, &l4, BPF_ANY);
	}
	return 0;
}

// The same for IPv6: a first fragment registers its L4 fields, a later one takes them (with the
// protocol), an orphan later fragment is dropped.
static __always_inline int parse_ipv6_l4(struct __sk_buff *skb, struct ipv6hdr *ip6, struct flow *f)
{
	struct frag6 fr = {};
	__u32 limit = ip_end(skb, sizeof(struct ethhdr) + sizeof(*ip6), bpf_ntohs(ip6->payload_len));
	int off = ipv6_skip_ext(skb, ip6->nexthdr, sizeof(struct ethhdr) + sizeof(*ip6), limit, &f->proto, &fr);
	if (off < 0)
		return -1;
	struct frag6_key fk = { .id = fr.id, .proto = fr.nexthdr };
	__builtin_memcpy(fk.saddr, f->saddr, 16);
	__builtin_memcpy(fk.daddr, f->daddr, 16);
	if (fr.kind == FRAG_LATER) {
		struct frag_l4 *l4 = bpf_map_lookup_elem(&frag6, &fk);
		if (!l4)
			return -1;
		frag_load(f, l4);
		f->proto = l4->proto;
		return 0;
	}
	if (parse_l4(skb, off, limit, f) < 0)
		return -1;
	if (fr.kind == FRAG_FIRST) {
		struct frag_l4 l4;
		frag_save(&l4, f);
		bpf_map_update_elem(&frag6, &fk, &l4, BPF_ANY);
	}
	return 0;
}

static __always_inline int parse(struct __sk_buff *skb, struct flow *f)
{
	void *data = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end)
		return -1;
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);
		if ((void *)(ip + 1) > end)
			return -1;
		__builtin_memcpy(f->saddr, &ip->saddr, 4);
		__builtin_memcpy(f->daddr, &ip->daddr, 4);
		f->proto = ip->protocol;
		return parse_ipv4_l4(skb, ip, f);
	}
	if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);
		if ((void *)(ip6 + 1) > end)
			return -1;
		__builtin_memcpy(f->saddr, &ip6->saddr, 16);
		__builtin_memcpy(f->daddr, &ip6->daddr, 16);
		f->v6 = 1;
		f->hop_limit = ip6->hop_limit;
		return parse_ipv6_l4(skb, ip6, f);
	}
	// ARP is the link's own business; any other EtherType is dropped, as Cilium's endpoint
	// programs do (DROP_UNKNOWN_L3): a VLAN-tagged frame here is one the kernel stripped a tag
	// from already and may strip another from after tc, then route the IP packet inside.
	return eth->h_proto == bpf_htons(ETH_P_ARP) ? 1 : -1;
}

static __always_inline __u32 identity_of(const __u8 *addr, int v6)
{
	__u32 *id;
	if (v6) {
		struct ipcache6_key k = { .prefixlen = 128 };
		__builtin_memcpy(k.addr, addr, 16);
		id = bpf_map_lookup_elem(&ipcache6, &k);
	} else {
		struct ipcache4_key k = { .prefixlen = 32 };
		__builtin_memcpy(k.addr, addr, 4);
		id = bpf_map_lookup_elem(&ipcache4, &k);
	}
	return id ? *id : WORLD_IDENTITY;
}

static __always_inline struct policy_value *policy_lookup(__u32 identity, __u8 dir, __u8 proto, __u16 port)
{
	struct policy_key k = { .prefixlen = FULL_KEY_BITS, .identity = identity, .direction = dir, .protocol = proto, .port = bpf_htons(port) };
	return bpf_map_lookup_elem(&policy, &k);
}

// pickWinner: higher precedence, then the more specific protocol+port match, then the
// identity-specific entry.
static __always_inline struct policy_value *pick(struct policy_value *s, struct policy_value *w)
{
	if (!s)
		return w;
	if (!w)
		return s;
	if (s->precedence != w->precedence)
		return s->precedence > w->precedence ? s : w;
	if ((s->flags >> 3) != (w->flags >> 3))
		return (s->flags >> 3) > (w->flags >> 3) ? s : w;
	return s;
}

static __always_inline void count(__u32 dir, __u32 verdict)
{
	__u32 idx = dir * 3 + verdict;
	__u64 *c = bpf_map_lookup_elem(&counters, &idx);
	if (c)
		__sync_fetch_and_add(c, 1);
}

static __always_inline void ct_fill(struct ct_key *k, const struct flow *f, __u32 ifindex, __u8 dir, int reverse)
{
	__builtin_memset(k, 0, sizeof(*k));
	__builtin_memcpy(k->saddr, reverse ? f->daddr : f->saddr, 16);
	__builtin_memcpy(k->daddr, reverse ? f->saddr : f->daddr, 16);
	int icmp = f->proto == IPPROTO_ICMP || f->proto == IPPROTO_ICMPV6;
	if (icmp) {
		// The echo id names the flow both ways; a reply (0 / 129) answers a request (8 / 128).
		k->sport = f->sport;
		k->dport = !reverse ? f->icmp_type : f->icmp_type == 0 ? 8 : f->icmp_type == 129 ? 128 : 0xffff;
	} else {
		k->sport = reverse ? f->dport : f->sport;
		k->dport = reverse ? f->sport : f->dport;
	}
	k->ifindex = ifindex;
	k->proto = f->proto;
	k->direction = dir;
}

#define NS_PER_SEC 1000000000ULL

static __always_inline __u64 lifetime_ns(__u32 configured, __u32 cilium_default)
{
	return (__u64)(configured ? configured : cilium_default) * NS_PER_SEC;
}

// Cilium's ACTION_CREATE on a closing entry (bpf/lib/conntrack.h __ct_lookup): a SYN (no FIN, no
// RST) on a flow with a closed way starts a new flow, "CT_NEW so that the caller creates a new
// entry": not a reply, and the entry starts over (flags and lifetime of a new flow).
static __always_inline int ct_reopens(const struct ct_entry *e, const struct flow *f)
{
	return f->proto == IPPROTO_TCP && (f->tcp_flags & (TCP_SYN | TCP_FIN | TCP_RST)) == TCP_SYN && (e->closing[0] || e->closing[1]);
}

// Cilium's ct_update_timeout and ACTION_CLOSE (bpf/lib/conntrack.h), for a packet of a tracked flow
// in its opening direction (way 0) or a reply (way 1). A TCP entry lives CT_SYN_TIMEOUT until a
// segment without SYN is seen, then CT_CONNECTION_LIFETIME_TCP; any other CT_CONNECTION_LIFETIME_NONTCP;
// every packet renews it. FIN or RST closes its way (an RST before both SYNs, both ways); once both
// ways are closed the entry lives CT_CLOSE_TIMEOUT and packets no longer renew it, until a SYN
// reopens it.
static __always_inline void ct_touch(struct ct_entry *e, const struct flow *f, int way, __u64 now)
{
	__u32 zero = 0;
	struct ct_lifetimes *cfg = bpf_map_lookup_elem(&ct_lifetimes, &zero);
	struct ct_lifetimes l = {};
	if (cfg)
		l = *cfg;
	if (f->proto != IPPROTO_TCP) {
		e->expires = now + lifetime_ns(l.any, 60);
		return;
	}
	__u8 fl = f->tcp_flags;
	if (ct_reopens(e, f)) {
		e->closing[0] = e->closing[1] = 0;
		e->flags_seen[0] = e->flags_seen[1] = 0;
		e->seen_non_syn = 0;
	}
	int alive = !(e->closing[0] && e->closing[1]);
	e->seen_non_syn |= !(fl & TCP_SYN);
	e->flags_seen[way] |= fl;
	if (alive)
		e->expires = now + (e->seen_non_syn ? lifetime_ns(l.tcp, 8000) : lifetime_ns(l.syn, 60));
	if (!(fl & (TCP_FIN | TCP_RST)))
		return;
	if ((fl & TCP_RST) && !((e->flags_seen[0] & TCP_SYN) && (e->flags_seen[1] & TCP_SYN)))
		e->closing[0] = e->closing[1] = 1;
	else
		e->closing[way] = 1;
	if (alive && e->closing[0] && e->closing[1])
		e->expires = now + lifetime_ns(l.close, 10);
}

// A tracked flow, or 0: an expired entry is a miss and is removed (what Cilium's conntrack GC does
// to it at its next run).
static __always_inline struct ct_entry *ct_get(struct ct_key *k, __u64 now)
{
	struct ct_entry *e = bpf_map_lookup_elem(&ct, k);
	if (e && e->expires < now) {
		bpf_map_delete_elem(&ct, k);
		return 0;
	}
	return e;
}

// Whether the packet's source is routed back through `iif`, the interface it came in on. From the
// pod (iif: its veth) this is the pod's own address: Cilium drops a pod's packet from any other
// source (bpf_lxc.c is_valid_lxc_src_ip, DROP_INVALID_SIP): the receiver would decide on the
// identity of an address the pod does not own. To the pod (iif: where the router received it) it
// keeps a packet from outside from claiming a local endpoint's address (finding 790); Cilium's
// bpf_host.c has no such check and trusts the network.
static __always_inline int source_came_in_on(struct __sk_buff *skb, const struct flow *f, __u32 iif)
{
	struct bpf_fib_lookup p = { .family = f->v6 ? AF_INET6 : AF_INET, .ifindex = iif };
	if (f->v6)
		__builtin_memcpy(p.ipv6_dst, f->saddr, 16);
	else
		__builtin_memcpy(&p.ipv4_dst, f->saddr, 4);
	long r = bpf_fib_lookup(skb, &p, sizeof(p), BPF_FIB_LOOKUP_DIRECT | BPF_FIB_LOOKUP_SKIP_NEIGH);
	return r == BPF_FIB_LKUP_RET_SUCCESS && p.ifindex == iif;
}

// ICMP errors quote the packet they answer behind their 8-byte header. IPv4: destination
// unreachable, time exceeded, parameter problem (Cilium's TUPLE_F_RELATED types, bpf/lib/conntrack.h
// ct_extract_ports4); IPv6: the RFC 4443 errors 1-4.
static __always_inline int icmp_error(const struct flow *f)
{
	if (!f->l4_off)
		return 0;
	if (f->proto == IPPROTO_ICMP && !f->v6)
		return f->icmp_type == 3 || f->icmp_type == 11 || f->icmp_type == 12;
	return f->proto == IPPROTO_ICMPV6 && f->v6 && f->icmp_type >= 1 && f->icmp_type <= 4;
}

// The packet an ICMP error quotes, as a flow: a whole IP header of the error's family (IPv4 not a
// later fragment; IPv6 without extension headers) and 8 bytes of TCP, UDP, SCTP or ICMP, all
// inside the error's datagram. -1 otherwise.
static __always_inline int parse_quoted(struct __sk_buff *skb, const struct flow *f, struct flow *in)
{
	__u32 off = f->l4_off + 8;
	// Small loads straight into `in`: this runs in a subprogram whose stack adds to enforce's.
	__u8 h[12];
	if (bpf_skb_load_bytes(skb, off, h, sizeof(h)) < 0)
		return -1;
	if (f->v6) {
		if (h[0] >> 4 != 6 || bpf_skb_load_bytes(skb, off + 8, in->saddr, 16) < 0 || bpf_skb_load_bytes(skb, off + 24, in->daddr, 16) < 0)
			return -1;
		in->proto = h[6];
		in->v6 = 1;
		off += sizeof(struct ipv6hdr);
	} else {
		if (h[0] >> 4 != 4 || (h[0] & 0xf) < 5 || ((h[6] << 8 | h[7]) & 0x1fff) || bpf_skb_load_bytes(skb, off + 12, in->saddr, 4) < 0 || bpf_skb_load_bytes(skb, off + 16, in->daddr, 4) < 0)
			return -1;
		in->proto = h[9];
		off += (h[0] & 0xf) * 4;
	}
	if (off + 8 > f->l4_end || bpf_skb_load_bytes(skb, off, h, 8) < 0)
		return -1;
	if (in->proto == IPPROTO_TCP || in->proto == IPPROTO_UDP || in->proto == IPPROTO_SCTP) {
		__builtin_memcpy(&in->sport, h, 2);
		__builtin_memcpy(&in->dport, h + 2, 2);
		return 0;
	}
	if (in->proto == (f->v6 ? IPPROTO_ICMPV6 : IPPROTO_ICMP)) {
		in->icmp_type = h[0];
		__builtin_memcpy(&in->sport, h + 4, 2);
		return 0;
	}
	return -1;
}

static __always_inline int same_addr(const __u8 *a, const __u8 *b)
{
	int same = 1;
#pragma unroll
	for (int i = 0; i < 16; i++)
		same &= a[i] == b[i];
	return same;
}

// An ICMP error between the two ends of a flow this endpoint tracks, quoting a packet of that flow,
// passes without policy (Cilium's CT_RELATED: bpf_lxc.c skips policy for it as for replies). The
// quoted packet went the other way: from the error's receiver to its sender. Cilium relates any of
// these error types between two addresses with a tracked flow (the ICMP entry ct_create4/6 add);
// distill asks for the quoted flow itself, so an error from a third address (a router on the path)
// is still decided by policy, as it is in Cilium.
static __noinline int icmp_related(struct __sk_buff *skb, const struct flow *f, __u32 ifindex, __u8 dir, __u64 now)
{
	struct flow in = {};
	struct ct_key k;
	if (!icmp_error(f) || parse_quoted(skb, f, &in) < 0)
		return 0;
	if (!same_addr(in.saddr, f->daddr) || !same_addr(in.daddr, f->saddr))
		return 0;
	// The quoted packet opened (or continued) a flow tracked the other way, or replied to one
	// tracked this way.
	ct_fill(&k, &in, ifindex, dir ^ 1, 0);
	if (ct_get(&k, now))
		return 1;
	ct_fill(&k, &in, ifindex, dir, 1);
	return ct_get(&k, now) != 0;
}

// Neighbour solicitation and advertisement are the link's own business, as ARP is for IPv4, and
// skip policy when they stay on the pod's link: hop limit 255 (RFC 4861 7.1: a forwarded one has
// less, and is decided by policy like any packet) and, from the pod, a link-scoped destination or
// one of the router's own addresses. Cilium (bpf/lib/icmp6.h icmp6_ndp_handle, from bpf_lxc.c
// __tail_handle_ipv6) answers a pod's NS for the router or an endpoint itself and drops others;
// router solicitation and advertisement and redirects are decided by policy, as in Cilium.
static __always_inline int nd_exempt(struct __sk_buff *skb, const struct flow *f, __u8 dir, __u32 ifindex)
{
	if (!f->v6 || f->proto != IPPROTO_ICMPV6 || (f->icmp_type != 135 && f->icmp_type != 136) || f->hop_limit != 255)
		return 0;
	if (dir == DIR_INGRESS || f->daddr[0] == 0xff || (f->daddr[0] == 0xfe && (f->daddr[1] & 0xc0) == 0x80))
		return 1;
	// Full lookup (the local table is not the main one): "not forwarded" is the router's own address.
	struct bpf_fib_lookup p = { .family = AF_INET6, .ifindex = ifindex };
	__builtin_memcpy(p.ipv6_src, f->saddr, 16);
	__builtin_memcpy(p.ipv6_dst, f->daddr, 16);
	return bpf_fib_lookup(skb, &p, sizeof(p), BPF_FIB_LOOKUP_SKIP_NEIGH) == BPF_FIB_LKUP_RET_NOT_FWDED;
}

// The L4 protocols Cilium's conntrack tracks: TCP, UDP, SCTP and the family's own ICMP. Any other
// (GRE, IPIP, ESP, VRRP, ICMP inside IPv6...) is dropped before policy, whatever an L3 allow says:
// bpf/lib/conntrack.h ct_lookup4/ct_lookup6 return DROP_CT_UNKNOWN_PROTO ("Can't handle extension
// headers yet") unless `enable-extended-ip-protocols` (1.18+, off by default) is set. Passed, a
// tunnel packet from an L3-allowed peer carried an inner packet of any source and port past the
// receiving pod's policy (attack finding 2480).
static __always_inline int tracked_l4(const struct flow *f)
{
	if (f->proto == IPPROTO_TCP || f->proto == IPPROTO_UDP || f->proto == IPPROTO_SCTP)
		return 1;
	return f->proto == (f->v6 ? IPPROTO_ICMPV6 : IPPROTO_ICMP);
}

static __always_inline int enforce(struct __sk_buff *skb, __u8 dir)
{
	struct flow f = {};
	// Read before parsing: clang may otherwise load it through a moved context pointer, which
	// the verifier refuses.
	__u32 ifindex = skb->ifindex;
	// The host's own packets (0) have no interface they came in on.
	__u32 iif = dir == DIR_EGRESS ? ifindex : skb->ingress_ifindex;
	int r = parse(skb, &f);
	if (r < 0) {
		count(dir, VERDICT_DROP);
		return TC_ACT_SHOT;
	}
	if (r > 0 || nd_exempt(skb, &f, dir, ifindex))
		return TC_ACT_OK;
	if (!tracked_l4(&f)) {
		count(dir, VERDICT_DROP);
		return TC_ACT_SHOT;
	}
	if (iif && !source_came_in_on(skb, &f, iif)) {
		count(dir, VERDICT_DROP);
		return TC_ACT_SHOT;
	}
	struct ct_key k;
	__u64 now = bpf_ktime_get_ns();
	if (icmp_related(skb, &f, ifindex, dir, now))
		return TC_ACT_OK;
	// Replies of a flow this endpoint's policy allowed (seen the other way on this interface).
	ct_fill(&k, &f, ifindex, dir ^ 1, 1);
	struct ct_entry *e = ct_get(&k, now);
	if (e && !ct_reopens(e, &f)) {
		ct_touch(e, &f, 1, now);
		return TC_ACT_OK;
	}
	// A TCP segment without SYN must belong to a tracked flow, and is decided by policy again, as
	// Cilium decides CT_ESTABLISHED packets (only replies skip policy): a policy that stops
	// allowing a flow stops its open connections too.
	ct_fill(&k, &f, ifindex, dir, 0);
	e = ct_get(&k, now);
	if (f.is_reply && !e) {
		count(dir, VERDICT_DROP);
		return TC_ACT_SHOT;
	}
	// Ingress: the peer sent the packet; egress: the peer receives it.
	__u32 peer = identity_of(dir == DIR_INGRESS ? f.saddr : f.daddr, f.v6);
	if (peer == TRANSITION_IDENTITY) {
		count(dir, VERDICT_DROP);
		return TC_ACT_SHOT;
	}
	int icmp = f.proto == IPPROTO_ICMP || f.proto == IPPROTO_ICMPV6;
	__u16 port = icmp ? f.icmp_type : bpf_ntohs(f.dport);
	struct policy_value *s = policy_lookup(peer, dir, f.proto, port);
	struct policy_value *w = peer == 0 ? 0 : policy_lookup(0, dir, f.proto, port);
	// Destination port 0 starts no flow: the maps have no key of their own for it (a `port: "0"`
	// range is keyed from 1, src/policy/cilium-ports.ts), where Cilium's deny of 0..end covers it
	// (PortRangeToMaskedPorts): a packet no socket can bind for but a raw socket reads (finding 2484).
	struct policy_value *v = !icmp && port == 0 ? 0 : pick(s, w);
	// Only TCP and UDP reach a proxy: Cilium's TPROXY rules are tcp and udp only, and BPF TPROXY's
	// assign_socket drops the rest (DROP_PROXY_UNKNOWN_PROTO), e.g. SCTP on a DNS rule's ANY port.
	int proxy_unknown_proto = v && v->proxy_port && f.proto != IPPROTO_TCP && f.proto != IPPROTO_UDP;
	if (!v || (v->flags & 1) || proxy_unknown_proto) {
		count(dir, VERDICT_DROP);
		return TC_ACT_SHOT;
	}
	// Passes are counted once per flow, at its first packet (or a SYN reopening a closed one): the
	// testbed reads a probe's verdict from the counters, and an earlier connection's closing
	// segments must not count as its own.
	int first = !e || ct_reopens(e, &f);
	if (e) {
		ct_touch(e, &f, 0, now);
	} else {
		struct ct_entry fresh = {};
		ct_touch(&fresh, &f, 0, now);
		bpf_map_update_elem(&ct, &k, &fresh, BPF_ANY);
	}
	if (v->proxy_port) {
		// The L7 proxy is out of scope: the packet is marked for it, counted, and passed on.
		skb->mark = ((__u32)bpf_ntohs(v->proxy_port) << 16) | MARK_TO_PROXY;
		if (first)
			count(dir, VERDICT_REDIRECT);
		return TC_ACT_OK;
	}
	if (first)
		count(dir, VERDICT_PASS);
	return TC_ACT_OK;
}

// tc ingress of the host-side veth: packets the pod sends, its egress policy.
SEC("tc")
int from_endpoint(struct __sk_buff *skb)
{
	return enforce(skb, DIR_EGRESS);
}

// tc egress of the host-side veth: packets to the pod, its ingress policy.
SEC("tc")
int to_endpoint(struct __sk_buff *skb)
{
	return enforce(skb, DIR_INGRESS);
}

char LICENSE[] SEC("license") = "GPL";
