#!/usr/bin/env bash
# Multi-process soak (ring/tests/soak.rs): 3 producers and 2 consumers on one POSIX MPMC ring,
# SIGKILLed and restarted at random; every message accounted for, nothing left in /dev/shm.
# `cargo test` runs it for 3 s; this runs it (release build) for SHMRING_SOAK_SECS (default 300).
#   scripts/soak.sh            # 5 minutes
#   SHMRING_SOAK_SECS=3600 scripts/soak.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export SHMRING_SOAK_SECS="${SHMRING_SOAK_SECS:-300}"
cargo test -p shmring --release --test soak -- --nocapture "$@"
