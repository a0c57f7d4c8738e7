#!/usr/bin/env bash
# A/B of two ring-bench binaries in alternating runs, so the VM's regime of the minute hits
# both alike (docs/benchmarks.md, "Small messages"): A, B, A, B, ... Prints each run's rows.
#   cp target/release/ring-bench /tmp/rb-a   # build, copy; change; build, copy to /tmp/rb-b
#   scripts/ab.sh /tmp/rb-a /tmp/rb-b 3 --transports shmring-spsc,rtrb --sizes 8,64 \
#     --latency-sizes 8 --rounds 3 --mixes none --idle-ms 0
set -euo pipefail
if [ $# -lt 3 ]; then
  echo "usage: $0 BINARY_A BINARY_B PAIRS [ring-bench arguments...]" >&2
  exit 2
fi
a=$1 b=$2 pairs=$3
shift 3
for i in $(seq 1 "$pairs"); do
  for bin in "$a" "$b"; do
    echo "== $bin, run $i"
    # The table rows only: a transport name, then figures (not the memory table's).
    "$bin" "$@" 2>/dev/null | grep -E '^(shmring|rtrb|crossbeam|iceoryx2|raw-spin|pipe)' | grep -v '+'
  done
done
