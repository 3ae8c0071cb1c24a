#!/usr/bin/env bash
# ELF templating, measured: N endpoints loaded from the one compiled object (their maps bound at
# load time) against N endpoints each compiled and then loaded. Needs root; pins only under its
# own /sys/fs/bpf/distill-bench-load-<pid> dir, removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-20}
root=/sys/fs/bpf/distill-bench-load-$$
work=$(mktemp -d)
trap 'rm -rf "$root" "$work"' EXIT
mkdir -p "$root"
bash bpf/build.sh
multiarch=$(gcc -print-multiarch 2>/dev/null || echo "$(uname -m)-linux-gnu")
lpm() { bpftool map create "$1" type lpm_trie key "$2" value "$3" entries 1024 name "$4" flags 1; }
lpm "$root/ipcache4" 8 4 ipcache4
lpm "$root/ipcache6" 20 4 ipcache6
bpftool map create "$root/ct" type lru_hash key 44 value 4 entries 65536 name ct
for i in $(seq 1 "$n"); do lpm "$root/pol_$i" 12 12 distill_policy; done
load() { # object, endpoint, tag
  mkdir -p "$root/ep$2-$3"
  bpftool prog loadall "$1" "$root/ep$2-$3/prog" type classifier \
    map name policy pinned "$root/pol_$2" map name ipcache4 pinned "$root/ipcache4" \
    map name ipcache6 pinned "$root/ipcache6" map name ct pinned "$root/ct" pinmaps "$root/ep$2-$3/maps"
}
ms() { date +%s%N; }
t0=$(ms)
for i in $(seq 1 "$n"); do load build/bpf/datapath.o "$i" t; done
t1=$(ms)
for i in $(seq 1 "$n"); do
  clang -O2 -g -target bpf -I"/usr/include/$multiarch" -c bpf/datapath.c -o "$work/ep$i.o"
  load "$work/ep$i.o" "$i" c
done
t2=$(ms)
echo "endpoints: $n"
echo "templated (load only):  $(( (t1 - t0) / n / 1000000 )) ms per endpoint"
echo "compiled per endpoint:  $(( (t2 - t1) / n / 1000000 )) ms per endpoint"
