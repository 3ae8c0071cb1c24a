#!/usr/bin/env bash
# Builds the datapath object (once; endpoints get it by templating) and the testbed's probe tool.
# Run by `npm run build:bpf` (part of `npm test`); output in build/bpf/, never committed.
set -euo pipefail
cd "$(dirname "$0")/.."
out=build/bpf
mkdir -p "$out"
multiarch=$(gcc -print-multiarch 2>/dev/null || echo "$(uname -m)-linux-gnu")
clang -O2 -g -Wall -Werror -target bpf -I"/usr/include/$multiarch" -c bpf/datapath.c -o "$out/datapath.o"
clang -O2 -Wall -Werror bpf/probe.c -o "$out/probe"
