#!/usr/bin/env bash
# Datapath benchmark: namespace A → router namespace → namespace B over veths, measured
# (a) without a program, (b) with the endpoint program on A's router-side veth and a policy map of
# 1,000 and (c) 16,000 entries. All in one run, alternating: each round measures every
# configuration (the order rotates between rounds), each measurement a fresh probe process:
#   flood: a UDP flood of minimum-size frames for SECS s, packets per second received in B
#          (every one passes the program's full lookup: UDP is never a tracked reply);
#          and the program's own run time per packet (BPF_ENABLE_STATS, held by the flood);
#   rr:    UDP request/response for SECS s, round trips/s and mean / p50 / p99 round-trip time.
# Usage: bash bpf/bench-datapath.sh [ROUNDS=5] [SECS=2] [OUT=bench/results/datapath.jsonl]
# Needs root; everything it makes carries its pid and is removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
secs=${2:-2}
out=${3:-bench/results/datapath.jsonl}
id=bench$$
root=/sys/fs/bpf/distill-testbed-$id
r=dtb-$id-r a=dtb-$id-a b=dtb-$id-b
cleanup() {
  for ns in $a $b; do ip netns pids $ns 2>/dev/null | xargs -r kill -9; done
  for ns in $r $a $b; do ip netns del $ns 2>/dev/null || true; done
  rm -rf "$root" "${batch:-}"
}
trap cleanup EXIT
bash bpf/build.sh
mkdir -p "$root"
for ns in $r $a $b; do ip netns add $ns; ip -n $ns link set lo up; done
ip netns exec $r sysctl -qw net.ipv4.ip_forward=1
i=0
for ns in $a $b; do
  i=$((i + 1))
  ip -n $r link add v$i type veth peer name eth0 netns $ns
  ip -n $r link set v$i up
  ip -n $r addr add 169.254.1.1/32 dev v$i
  ip -n $r route add 10.250.0.$i dev v$i
  ip -n $ns link set eth0 up
  ip -n $ns addr add 10.250.0.$i/32 dev eth0
  ip -n $ns route add 169.254.1.1 dev eth0 scope link
  ip -n $ns route add default via 169.254.1.1 dev eth0
done
# Client, server and flood on one CPU: a round trip is then two context switches on it, whatever
# the other CPU's neighbours do.
taskset -c 0 build/bpf/probe serve /run/netns/$b UDP:9000 > /dev/null
lpm() { bpftool map create "$1" type lpm_trie key "$2" value "$3" entries 65536 name "$4" flags 1; }
lpm "$root/ipcache4" 8 4 ipcache4
lpm "$root/ipcache6" 20 4 ipcache6
bpftool map create "$root/ct" type lru_hash key 44 value 16 entries 65536 name ct
# Cilium's conntrack lifetimes, as the loader writes them: SYN 60 s, established 8000 s, close 10 s, other 60 s.
bpftool map create "$root/ct_lifetimes" type array key 4 value 16 entries 1 name ct_lifetimes
bpftool map update pinned "$root/ct_lifetimes" key 0 0 0 0 value 60 0 0 0 0x40 0x1f 0 0 10 0 0 0 60 0 0 0
# A policy map of n entries: n-2 identity-specific TCP port entries of other peers, and allow-all
# for any peer both ways (the entry the flow's lookups find, after an identity-specific miss).
policy() { # n
  local n=$1 pin="$root/pol_$1" k
  lpm "$pin" 12 12 distill_policy
  batch=$(mktemp)
  for d in 00 01; do echo "map update pinned $pin key 0x28 0 0 0 0 0 0 0 0x$d 0 0 0 value 0 0 0 0 0 0 0 0 0 0 0 0" >> "$batch"; done
  for k in $(seq 1 $((n - 2))); do
    id=$((1000 + k))
    printf 'map update pinned %s key 0x40 0 0 0 %d %d %d 0 1 6 %d %d value 0 0 0x80 0 0 0 0 0 0 0 0 0\n' "$pin" $((id & 255)) $((id >> 8 & 255)) $((id >> 16)) $((k >> 8 & 255)) $((k & 255)) >> "$batch"
  done
  bpftool batch file "$batch" > /dev/null
  rm -f "$batch"
}
tcr() { nsenter --net=/run/netns/$r tc "$@"; }
configure() { # none | n
  if [ "$1" = none ]; then
    tcr filter del dev v1 ingress 2>/dev/null || true
    tcr filter del dev v1 egress 2>/dev/null || true
    return
  fi
  local dir="$root/ep$1"
  [ -d "$dir" ] || { mkdir -p "$dir"; bpftool prog loadall build/bpf/datapath.o "$dir/prog" type classifier map name policy pinned "$root/pol_$1" \
    map name ipcache4 pinned "$root/ipcache4" map name ipcache6 pinned "$root/ipcache6" map name ct pinned "$root/ct" map name ct_lifetimes pinned "$root/ct_lifetimes" pinmaps "$dir/maps"; }
  tcr filter replace dev v1 ingress prio 1 handle 1 bpf da pinned "$dir/prog/from_endpoint"
  tcr filter replace dev v1 egress prio 1 handle 1 bpf da pinned "$dir/prog/to_endpoint"
}
# Egress pass count of a configuration's program (counters index 3 = egress pass), and the run time
# and count of its from_endpoint program (kept while the flood holds BPF_ENABLE_STATS).
passes() { [ "$1" = none ] && echo 0 || bpftool -j map lookup pinned "$root/ep$1/maps/counters" key 3 0 0 0 | grep -o '"formatted":{"key":3,"value":[0-9]*' | sed 's/.*://'; }
runstats() { [ "$1" = none ] && echo "0 0" || bpftool -j prog show pinned "$root/ep$1/prog/from_endpoint" | grep -o '"run_time_ns":[0-9]*,"run_cnt":[0-9]*' | sed 's/"run_time_ns":\([0-9]*\),"run_cnt":\([0-9]*\)/\1 \2/' | grep . || echo "0 0"; }
policy 1000
policy 16000
tcr qdisc add dev v1 clsact
configure 1000
configure 16000
entries() { bpftool -j map dump pinned "$root/pol_$1" | grep -o '"key"' | wc -l; }
[ "$(entries 1000)" = 1000 ] && [ "$(entries 16000)" = 16000 ] || { echo "policy maps do not hold 1,000 and 16,000 entries" >&2; exit 1; }
mkdir -p "$(dirname "$out")"
commit=$(git rev-parse --short HEAD)$(git diff --quiet -- bpf || echo -dirty)
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')
meta="\"commit\":\"$commit\",\"node\":\"$(node --version)\",\"kernel\":\"$(uname -r)\",\"cpu\":\"$cpu\",\"cores\":$(nproc),\"date\":\"$(date -u +%FT%TZ)\""
configs=(none 1000 16000)
: > "$out"
for round in $(seq 1 "$rounds"); do
  for k in 0 1 2; do
    c=${configs[$(((round + k) % 3))]}
    configure "$c"
    p0=$(passes "$c")
    read -r ns0 n0 < <(runstats "$c")
    read -r sent received elapsed cpu < <(taskset -c 0 build/bpf/probe flood /run/netns/$a /run/netns/$b 10.250.0.2 9100 "$secs")
    read -r ns1 n1 < <(runstats "$c")
    p1=$(passes "$c")
    runs=$((n1 - n0))
    perpkt=$([ "$runs" -gt 0 ] && awk "BEGIN{printf \"%.1f\", ($ns1 - $ns0) / $runs}" || echo null)
    read -r rtps mean p50 p99 < <(taskset -c 0 build/bpf/probe bench /run/netns/$a 10.250.0.2 9000 "$secs")
    line="{$meta,\"round\":$round,\"config\":\"$c\",\"sent\":$sent,\"received\":$received,\"seconds\":$elapsed,\"cpuSeconds\":$cpu,\"ppsPerCpu\":$(awk "BEGIN{printf \"%.0f\", $received/$cpu}"),\"pps\":$(awk "BEGIN{printf \"%.0f\", $received/$elapsed}"),\"programPasses\":$((p1 - p0)),\"programRuns\":$runs,\"programNsPerPacket\":$perpkt,\"roundTripsPerSec\":$rtps,\"rttMeanUs\":$mean,\"rttP50Us\":$p50,\"rttP99Us\":$p99,\"load1\":$(cut -d' ' -f1 /proc/loadavg)}"
    echo "$line" >> "$out"
    echo "round $round $c: $received of $sent packets in ${elapsed}s, $rtps rt/s, RTT p50 ${p50}us" >&2
  done
done
node scripts/datapath-bench-summary.mjs "$out"
