#!/usr/bin/env bash
# The full benchmark: the comparison tables (also as JSON and CSV) and SVG plots under a
# results folder, then the criterion micro-benchmarks. Extra arguments go to ring-bench.
#   scripts/bench.sh                 # default run, results/<date>/
#   OUT=/tmp/r scripts/bench.sh --rounds 9
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-results/$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$out"
cargo build --release -p ring-bench
bin=target/release/ring-bench
"$bin" --json "$out/results.json" --plot "$out" "$@" | tee "$out/results.txt"
echo "tables: $out/results.txt, JSON: $out/results.json, plots: $out/*.svg"
cargo bench -p ring-bench --bench rings -- --quiet 2>&1 | tee "$out/criterion.txt"
