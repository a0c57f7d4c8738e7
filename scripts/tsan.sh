#!/usr/bin/env bash
# ThreadSanitizer over the threaded stress test (ring/tests/threads.rs) on the stable toolchain.
#
# -Zsanitizer needs RUSTC_BOOTSTRAP=1 on stable and an explicit --target. The standard library
# is the prebuilt, uninstrumented one (rebuilding it needs rust-src and -Zbuild-std, which a
# stable toolchain without network access cannot get), hence -Cunsafe-allow-abi-mismatch; the
# test avoids libtest and std channels, whose uninstrumented internals TSan would report.
# Checked to bite: weakening the SPSC publish store to Relaxed is reported as a data race on the
# payload copy.
#
# SHMRING_THREADS_MESSAGES (default 50000 here) sets messages per producer.
set -euo pipefail
cd "$(dirname "$0")/.."
target="$(rustc -vV | sed -n 's/^host: //p')"
export RUSTC_BOOTSTRAP=1
export RUSTFLAGS="-Zsanitizer=thread -Cunsafe-allow-abi-mismatch=sanitizer ${RUSTFLAGS:-}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target/tsan}"
export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 ${TSAN_OPTIONS:-}"
export SHMRING_THREADS_MESSAGES="${SHMRING_THREADS_MESSAGES:-50000}"
cargo test -p shmring --target "$target" --test threads "$@"
