#!/usr/bin/env bash
# Datapath benchmark: one UDP request/response flow between two namespaces through a router
# namespace, (a) without a program, (b) with the endpoint program and a policy map of 1,000 and
# (c) 16,000 entries, all in one run. Prints round trips/s (2 packets each through the program)
# and mean round-trip time. Needs root; everything it makes carries its pid and is removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-5}
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
build/bpf/probe serve /run/netns/$b UDP:9000 > /dev/null
run() { build/bpf/probe bench /run/netns/$a 10.250.0.2 9000 "$secs"; }
lpm() { bpftool map create "$1" type lpm_trie key "$2" value "$3" entries 65536 name "$4" flags 1; }
lpm "$root/ipcache4" 8 4 ipcache4
lpm "$root/ipcache6" 20 4 ipcache6
bpftool map create "$root/ct" type lru_hash key 44 value 4 entries 65536 name ct
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
attach() { # n
  local dir="$root/ep$1"
  [ -d "$dir" ] || { mkdir -p "$dir"; bpftool prog loadall build/bpf/datapath.o "$dir/prog" type classifier map name policy pinned "$root/pol_$1" \
    map name ipcache4 pinned "$root/ipcache4" map name ipcache6 pinned "$root/ipcache6" map name ct pinned "$root/ct" pinmaps "$dir/maps"; }
  nsenter --net=/run/netns/$r tc filter replace dev v1 ingress prio 1 handle 1 bpf da pinned "$dir/prog/from_endpoint"
  nsenter --net=/run/netns/$r tc filter replace dev v1 egress prio 1 handle 1 bpf da pinned "$dir/prog/to_endpoint"
}
policy 1000
policy 16000
echo "map entries  round-trips/s  mean RTT (us)"
nsenter --net=/run/netns/$r tc qdisc add dev v1 clsact
attach 1000
attach 16000
# Interleaved rounds, so machine load shifts hit every configuration alike.
for round in 1 2 3; do
  nsenter --net=/run/netns/$r tc filter del dev v1 ingress
  nsenter --net=/run/netns/$r tc filter del dev v1 egress
  echo "none         $(run)"
  attach 1000
  echo "1000         $(run)"
  attach 16000
  echo "16000        $(run)"
done
# Evidence the program decided those packets: its verdict counters, and the map sizes.
for n in 1000 16000; do
  echo "program with $n-entry map ($(bpftool -j map dump pinned "$root/pol_$n" | grep -o '"key"' | wc -l) entries): pass/drop/redirect egress $(bpftool -j map dump pinned "$root/ep$n/maps/counters" | grep -o '"formatted":{"key":[0-9]*,"value":[0-9]*' | sed -n '4,6p' | sed 's/.*://' | paste -sd/)"
done
