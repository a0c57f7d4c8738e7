#!/usr/bin/env bash
# Model-checks the ring algorithms with loom (stable toolchain, heap backend).
# LOOM_MAX_PREEMPTIONS (default 2 in the tests) trades depth for time.
set -euo pipefail
cd "$(dirname "$0")/.."
RUSTFLAGS="--cfg loom ${RUSTFLAGS:-}" CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target/loom}" \
    cargo test -p shmring --release --test loom "$@"
