// The testbed's probe tool (native, not BPF). Enters a network namespace by path, then either
//   probe client NETNS_PATH PROTO ADDR PORT TIMEOUT_MS   exit 0: answered, 1: no answer, 2: error
//   probe oneway SRC_NETNS DST_NETNS PROTO ADDR PORT TIMEOUT_MS  (see oneway())
//   probe loop   NETNS_PATH PROTO ADDR PORT TIMEOUT_MS PACE_US  client attempts until killed (see loop())
//   probe bench  NETNS_PATH ADDR PORT SECONDS              UDP request/response: rate and RTT (see bench())
//   probe flood  NETNS_PATH DST_NETNS ADDR PORT SECONDS    UDP flood, counted where it arrives (see flood())
//   probe serve  NETNS_PATH PROTO:PORT...                 listens (TCP accept+close, UDP echo) until killed
//   probe frame  SRC_NETNS DST_NETNS DST_MAC HEX TIMEOUT_MS  one hand-made Ethernet frame (see frame())
// ICMP: PORT is the echo type (8 or 128); an echo through a datagram ICMP socket.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <linux/bpf.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/ip_icmp.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#ifndef IPPROTO_SCTP
#define IPPROTO_SCTP 132
#endif

static int enter(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || setns(fd, CLONE_NEWNET) < 0) {
		perror(path);
		return -1;
	}
	close(fd);
	return 0;
}

static int addr_of(const char *text, int port, struct sockaddr_storage *ss, socklen_t *len)
{
	memset(ss, 0, sizeof(*ss));
	struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
	if (inet_pton(AF_INET, text, &a4->sin_addr) == 1) {
		a4->sin_family = AF_INET;
		a4->sin_port = htons(port);
		*len = sizeof(*a4);
		return AF_INET;
	}
	if (inet_pton(AF_INET6, text, &a6->sin6_addr) == 1) {
		a6->sin6_family = AF_INET6;
		a6->sin6_port = htons(port);
		*len = sizeof(*a6);
		return AF_INET6;
	}
	return -1;
}

static int wait_for(int fd, short events, int timeout)
{
	struct pollfd p = { .fd = fd, .events = events };
	return poll(&p, 1, timeout) == 1 ? p.revents : 0;
}

static int client_fd(int fd, int type, int icmp, int port, const struct sockaddr_storage *ss, socklen_t len, int timeout);

static int client(const char *proto, const char *addr, int port, int timeout)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int icmp = !strcmp(proto, "ICMP");
	int family = addr_of(addr, icmp ? 0 : port, &ss, &len);
	if (family < 0)
		return 2;
	int type = !strcmp(proto, "UDP") || icmp ? SOCK_DGRAM : SOCK_STREAM;
	int p = !strcmp(proto, "SCTP") ? IPPROTO_SCTP : icmp ? (family == AF_INET ? IPPROTO_ICMP : IPPROTO_ICMPV6) : 0;
	int fd = socket(family, type | SOCK_NONBLOCK, p);
	if (fd < 0) {
		perror("socket");
		return 2;
	}
	int r = client_fd(fd, type, icmp, port, &ss, len, timeout);
	close(fd);
	return r;
}

static int client_fd(int fd, int type, int icmp, int port, const struct sockaddr_storage *ssp, socklen_t len, int timeout)
{
	struct sockaddr_storage ss = *ssp;
	if (type == SOCK_STREAM) {
		if (connect(fd, (struct sockaddr *)&ss, len) == 0)
			return 0;
		if (errno != EINPROGRESS)
			return 1;
		if (!(wait_for(fd, POLLOUT, timeout) & POLLOUT))
			return 1;
		int err = 0;
		socklen_t el = sizeof(err);
		getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el);
		return err == 0 ? 0 : 1;
	}
	unsigned char msg[64] = { 0 };
	size_t n = 5;
	if (icmp) {
		msg[0] = port; // echo request type; the kernel fills id and checksum
		n = 16;
	} else {
		memcpy(msg, "probe", 5);
	}
	if (connect(fd, (struct sockaddr *)&ss, len) < 0 || send(fd, msg, n, 0) < 0)
		return 1;
	if (!(wait_for(fd, POLLIN, timeout) & POLLIN))
		return 1;
	return recv(fd, msg, sizeof(msg), 0) > 0 ? 0 : 1;
}

static long long now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1000000000LL + t.tv_nsec;
}

// Connections attempted back to back (one every PACE_US at most) until killed or orphaned: one
// line per attempt, "START_NS END_NS STATUS" on CLOCK_MONOTONIC (Node's process.hrtime clock).
static int loop(const char *proto, const char *addr, int port, int timeout, int pace_us)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	pid_t parent = getppid();
	while (getppid() == parent) {
		long long t0 = now_ns();
		int r = client(proto, addr, port, timeout);
		if (r == 2)
			return 2;
		printf("%lld %lld %d\n", t0, now_ns(), r);
		usleep(pace_us);
	}
	return 0;
}

static int cmp_ll(const void *a, const void *b)
{
	long long x = *(const long long *)a, y = *(const long long *)b;
	return x < y ? -1 : x > y;
}

// UDP request/response ping-pong for SECONDS: prints round trips per second, then the mean, median
// and 99th percentile round-trip time in us.
static int bench(const char *addr, int port, int seconds)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int family = addr_of(addr, port, &ss, &len);
	int fd = socket(family, SOCK_DGRAM, 0);
	if (family < 0 || fd < 0 || connect(fd, (struct sockaddr *)&ss, len) < 0)
		return 2;
	size_t cap = 1 << 20, n = 0;
	long long *rtt = malloc(cap * sizeof(*rtt));
	long long t0 = now_ns(), t = t0, end = t0 + seconds * 1000000000LL;
	char buf[64] = "bench";
	while (t < end && n < cap) {
		long long s0 = t;
		if (send(fd, buf, 5, 0) < 0 || !(wait_for(fd, POLLIN, 1000) & POLLIN) || recv(fd, buf, sizeof(buf), 0) <= 0)
			return 1;
		t = now_ns();
		rtt[n++] = t - s0;
	}
	qsort(rtt, n, sizeof(*rtt), cmp_ll);
	double elapsed = (t - t0) / 1e9;
	printf("%.0f %.2f %.2f %.2f\n", n / elapsed, elapsed * 1e6 / n, rtt[n / 2] / 1e3, rtt[n * 99 / 100] / 1e3);
	return 0;
}

// A UDP flood from this namespace to ADDR:PORT in DST_NS for SECONDS (sendmmsg, 18-byte payloads:
// minimum-size 60-byte frames), received by a socket opened in DST_NS and counted. Prints packets
// sent, packets received, seconds sent for, and this process's CPU seconds.
static int flood(const char *dst_ns, const char *addr, int port, int seconds)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int family = addr_of(addr, port, &ss, &len);
	int self = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	if (family < 0 || self < 0 || enter(dst_ns) < 0)
		return 2;
	int rx = socket(AF_INET6, SOCK_DGRAM | SOCK_NONBLOCK, 0);
	int zero = 0, big = 32 << 20;
	setsockopt(rx, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
	setsockopt(rx, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof(big));
	struct sockaddr_in6 a = { .sin6_family = AF_INET6, .sin6_port = htons(port), .sin6_addr = in6addr_any };
	if (rx < 0 || bind(rx, (struct sockaddr *)&a, sizeof(a)) < 0 || setns(self, CLONE_NEWNET) < 0)
		return 2;
	int tx = socket(family, SOCK_DGRAM, 0);
	if (tx < 0 || connect(tx, (struct sockaddr *)&ss, len) < 0)
		return 2;
	enum { BATCH = 64 };
	static char payload[BATCH][64];
	static struct mmsghdr msgs[BATCH];
	static struct iovec iov[BATCH];
	for (int i = 0; i < BATCH; i++) {
		iov[i].iov_base = payload[i];
		iov[i].iov_len = 18;
		msgs[i].msg_hdr.msg_iov = &iov[i];
		msgs[i].msg_hdr.msg_iovlen = 1;
	}
	// BPF programs' run time and run count are kept while this fd is open (bpftool prog show
	// reads them): the program's own cost per packet, whatever the scheduler does.
	union bpf_attr stats = { .enable_stats = { .type = BPF_STATS_RUN_TIME } };
	int stats_fd = syscall(__NR_bpf, BPF_ENABLE_STATS, &stats, sizeof(stats));
	if (stats_fd < 0)
		perror("BPF_ENABLE_STATS");
	long long sent = 0, received = 0, t0 = now_ns(), end = t0 + seconds * 1000000000LL, t = t0;
	// One process sends and drains in turn, so the receive socket never overflows unseen.
	while (t < end) {
		int r = sendmmsg(tx, msgs, BATCH, 0);
		if (r > 0)
			sent += r;
		int got;
		while ((got = recvmmsg(rx, msgs, BATCH, MSG_DONTWAIT, NULL)) > 0)
			received += got;
		t = now_ns();
	}
	double elapsed = (t - t0) / 1e9;
	for (int idle = 0; idle < 20;) {
		int got = recvmmsg(rx, msgs, BATCH, MSG_DONTWAIT, NULL);
		if (got > 0) {
			received += got;
			idle = 0;
		} else {
			idle++;
			usleep(5000);
		}
	}
	// CPU time of this process (user + system; softirq work done in its context is system time
	// unless the kernel accounts irq time apart): packets per CPU second are less exposed to the
	// neighbours that share the CPU than packets per wall-clock second.
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	double cpu = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
	printf("%lld %lld %.3f %.3f\n", sent, received, elapsed, cpu);
	return 0;
}

static unsigned short csum(const unsigned char *p, size_t n)
{
	unsigned long sum = 0;
	for (size_t i = 0; i + 1 < n; i += 2)
		sum += (p[i] << 8) | p[i + 1];
	if (n & 1)
		sum += p[n - 1] << 8;
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return htons(~sum & 0xffff);
}

// One packet of PROTO from SRC to ADDR, seen (or not) arriving in DST: for ICMP types that are no
// echo request, and for SCTP on kernels without it. A raw socket in DST receives a copy of every
// packet of the protocol delivered there.
static int oneway(const char *dst_ns, const char *proto, const char *addr, int port, int timeout)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int family = addr_of(addr, 0, &ss, &len);
	if (family < 0)
		return 2;
	int sctp = !strcmp(proto, "SCTP");
	int p = sctp ? IPPROTO_SCTP : family == AF_INET ? IPPROTO_ICMP : IPPROTO_ICMPV6;
	int self = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	if (self < 0 || enter(dst_ns) < 0)
		return 2;
	int rx = socket(family, SOCK_RAW | SOCK_NONBLOCK, p);
	if (rx < 0 || setns(self, CLONE_NEWNET) < 0)
		return 2;
	int tx = socket(family, SOCK_RAW, p);
	if (tx < 0)
		return 2;
	unsigned char pkt[32] = { 0 };
	size_t n;
	unsigned short tag = getpid() & 0xffff;
	if (sctp) {
		unsigned short sp = htons(40000 + tag % 20000), dp = htons(port);
		memcpy(pkt, &sp, 2);
		memcpy(pkt + 2, &dp, 2);
		pkt[12] = 1; // INIT chunk
		pkt[15] = 20;
		n = 32;
	} else {
		pkt[0] = port;
		memcpy(pkt + 4, &tag, 2);
		n = 16;
		if (family == AF_INET) {
			unsigned short c = csum(pkt, n);
			memcpy(pkt + 2, &c, 2);
		}
	}
	if (sendto(tx, pkt, n, 0, (struct sockaddr *)&ss, len) < 0)
		return 1;
	for (;;) {
		if (!(wait_for(rx, POLLIN, timeout) & POLLIN))
			return 1;
		unsigned char buf[2048];
		ssize_t r = recv(rx, buf, sizeof(buf), 0);
		if (r <= 0)
			continue;
		unsigned char *l4 = buf;
		if (family == AF_INET) {
			if (r < 20)
				continue;
			l4 = buf + (buf[0] & 0xf) * 4;
		}
		if (l4 + n <= buf + r && !memcmp(l4, pkt, sctp ? 4 : 1) && (sctp || !memcmp(l4 + 4, &tag, 2)))
			return 0;
	}
}

// One Ethernet frame, sent on SRC's eth0 as given: DST_MAC, eth0's own address, then HEX (the
// EtherType and everything after it), for packets no socket writes (extension headers, VLAN
// tags, fragments). Exit 0 if a frame ending with the same last 8 bytes arrives on DST's eth0
// (the hex should end with a tag of its own), 1 if none does within TIMEOUT_MS.
static int frame(const char *dst_ns, const char *mac, const char *hex, int timeout)
{
	unsigned char f[1514], *d = f;
	size_t len = strlen(hex) / 2 + 12;
	if (strlen(hex) % 2 || len > sizeof(f) || len < 12 + 2 + 8)
		return 2;
	if (sscanf(mac, "%hhx:%hhx:%hhx:%hhx:%hhx:%hhx", d, d + 1, d + 2, d + 3, d + 4, d + 5) != 6)
		return 2;
	for (size_t i = 12; i < len; i++)
		if (sscanf(hex + 2 * (i - 12), "%2hhx", f + i) != 1)
			return 2;
	int self = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	if (self < 0 || enter(dst_ns) < 0)
		return 2;
	int rx = socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK, htons(ETH_P_ALL));
	struct sockaddr_ll at = { .sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL), .sll_ifindex = if_nametoindex("eth0") };
	if (rx < 0 || bind(rx, (struct sockaddr *)&at, sizeof(at)) < 0 || setns(self, CLONE_NEWNET) < 0)
		return 2;
	int tx = socket(AF_PACKET, SOCK_RAW, 0);
	struct ifreq ifr = { 0 };
	strcpy(ifr.ifr_name, "eth0");
	if (tx < 0 || ioctl(tx, SIOCGIFHWADDR, &ifr) < 0)
		return 2;
	memcpy(f + 6, ifr.ifr_hwaddr.sa_data, 6);
	struct sockaddr_ll to = { .sll_family = AF_PACKET, .sll_ifindex = if_nametoindex("eth0"), .sll_halen = 6 };
	memcpy(to.sll_addr, f, 6);
	if (sendto(tx, f, len, 0, (struct sockaddr *)&to, sizeof(to)) < 0) {
		perror("sendto");
		return 2;
	}
	for (;;) {
		if (!(wait_for(rx, POLLIN, timeout) & POLLIN))
			return 1;
		unsigned char buf[2048];
		struct sockaddr_ll from;
		socklen_t fl = sizeof(from);
		ssize_t r = recvfrom(rx, buf, sizeof(buf), 0, (struct sockaddr *)&from, &fl);
		// DST's own packets (an ICMP error quoting the frame) are no arrival.
		if (r >= 8 && from.sll_pkttype != PACKET_OUTGOING && !memcmp(buf + r - 8, f + len - 8, 8))
			return 0;
	}
}

static int serve(int argc, char **argv)
{
	struct pollfd fds[256];
	int n = 0;
	for (int i = 0; i < argc && n < 256; i++) {
		char proto[8];
		int port;
		if (sscanf(argv[i], "%7[A-Z]:%d", proto, &port) != 2)
			return 2;
		int udp = !strcmp(proto, "UDP"), sctp = !strcmp(proto, "SCTP");
		int fd = socket(AF_INET6, udp ? SOCK_DGRAM : SOCK_STREAM, sctp ? IPPROTO_SCTP : 0);
		if (fd < 0)
			continue; // SCTP without kernel support: nothing listens, the probe says so
		int zero = 0, one = 1;
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		struct sockaddr_in6 a = { .sin6_family = AF_INET6, .sin6_port = htons(port), .sin6_addr = in6addr_any };
		if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || (!udp && listen(fd, 128) < 0)) {
			perror(argv[i]);
			return 2;
		}
		fds[n].fd = fd;
		fds[n].events = POLLIN;
		fds[n].revents = udp; // remembered until the first poll
		n++;
	}
	int is_udp[256];
	for (int i = 0; i < n; i++)
		is_udp[i] = fds[i].revents;
	// Listening: the caller may probe as soon as this returns. The child serves until killed.
	pid_t child = fork();
	if (child != 0) {
		printf("%d\n", (int)child);
		return child > 0 ? 0 : 2;
	}
	setsid();
	int devnull = open("/dev/null", O_RDWR);
	dup2(devnull, 0);
	dup2(devnull, 1);
	dup2(devnull, 2);
	for (;;) {
		if (poll(fds, n, -1) < 0)
			continue;
		for (int i = 0; i < n; i++) {
			if (!(fds[i].revents & POLLIN))
				continue;
			if (is_udp[i]) {
				char buf[512];
				struct sockaddr_storage from;
				socklen_t fl = sizeof(from);
				ssize_t r = recvfrom(fds[i].fd, buf, sizeof(buf), 0, (struct sockaddr *)&from, &fl);
				if (r > 0)
					sendto(fds[i].fd, buf, r, 0, (struct sockaddr *)&from, fl);
			} else {
				int c = accept(fds[i].fd, 0, 0);
				if (c >= 0)
					close(c);
			}
		}
	}
}

int main(int argc, char **argv)
{
	if (argc < 3 || enter(argv[2]) < 0)
		return 2;
	if (!strcmp(argv[1], "client") && argc == 7)
		return client(argv[3], argv[4], atoi(argv[5]), atoi(argv[6]));
	if (!strcmp(argv[1], "loop") && argc == 8)
		return loop(argv[3], argv[4], atoi(argv[5]), atoi(argv[6]), atoi(argv[7]));
	if (!strcmp(argv[1], "flood") && argc == 7)
		return flood(argv[3], argv[4], atoi(argv[5]), atoi(argv[6]));
	if (!strcmp(argv[1], "bench") && argc == 6)
		return bench(argv[3], atoi(argv[4]), atoi(argv[5]));
	if (!strcmp(argv[1], "oneway") && argc == 8)
		return oneway(argv[3], argv[4], argv[5], atoi(argv[6]), atoi(argv[7]));
	if (!strcmp(argv[1], "frame") && argc == 7)
		return frame(argv[3], argv[4], argv[5], atoi(argv[6]));
	if (!strcmp(argv[1], "serve"))
		return serve(argc - 3, argv + 3);
	fprintf(stderr, "usage: probe client NETNS PROTO ADDR PORT TIMEOUT_MS | probe serve NETNS PROTO:PORT...\n");
	return 2;
}
