#!/usr/bin/env bash
# Weakens each Release/Acquire (and each barrier of the wake-up protocol) the algorithms rely
# on, one at a time, and checks that the loom
# models then fail. Prints one line per mutation; exits non-zero if any mutation survives.
# Restores the sources afterwards (they must be committed or stashed first).
set -euo pipefail
cd "$(dirname "$0")/.."
git diff --quiet -- ring/src || { echo "ring/src has uncommitted changes; commit them first" >&2; exit 2; }
trap 'git checkout -- ring/src' EXIT

# file | exact line fragment | replacement | description | loom tests to run (a name filter)
mutations=(
  "ring/src/spsc.rs|.store(cursor.wrapping_add(1) as u32, Ordering::Release)|.store(cursor.wrapping_add(1) as u32, Ordering::Relaxed)|SPSC publish: slot seq store Release -> Relaxed|spsc_"
  "ring/src/spsc.rs|self.mem().tail().store(self.tail, Ordering::Release)|self.mem().tail().store(self.tail, Ordering::Relaxed)|SPSC release: tail store Release -> Relaxed|spsc_"
  "ring/src/spsc.rs|if mem.seq32(idx).load(Ordering::Acquire)|if mem.seq32(idx).load(Ordering::Relaxed)|SPSC consumer: slot seq load Acquire -> Relaxed|spsc_"
  "ring/src/spsc.rs|let tail = self.mem().tail().load(Ordering::Acquire)|let tail = self.mem().tail().load(Ordering::Relaxed)|SPSC producer: tail load Acquire -> Relaxed|spsc_"
  "ring/src/mpmc/producer.rs|.store(self.pos.wrapping_add(1), Ordering::Release)|.store(self.pos.wrapping_add(1), Ordering::Relaxed)|MPMC commit: seq store Release -> Relaxed|mpmc_"
  "ring/src/mpmc/consumer.rs|.store(pos.wrapping_add(mem.geometry().capacity), Ordering::Release)|.store(pos.wrapping_add(mem.geometry().capacity), Ordering::Relaxed)|MPMC release: seq store Release -> Relaxed|mpmc_"
  "ring/src/mpmc/producer.rs|let seq = mem.seq(idx).load(Ordering::Acquire)|let seq = mem.seq(idx).load(Ordering::Relaxed)|MPMC producer: seq load Acquire -> Relaxed|mpmc_"
  "ring/src/mpmc/consumer.rs|let seq = mem.seq(idx).load(Ordering::Acquire)|let seq = mem.seq(idx).load(Ordering::Relaxed)|MPMC consumer: seq load Acquire -> Relaxed|mpmc_"
  "ring/src/mpmc/producer.rs|Ordering::AcqRel,|Ordering::Relaxed,|MPMC producer: cursor CAS AcqRel -> Relaxed (success)|mpmc_"
  "ring/src/mpmc/consumer.rs|Ordering::AcqRel,|Ordering::Relaxed,|MPMC consumer: cursor CAS AcqRel -> Relaxed (success)|mpmc_"
  "ring/src/records/producer.rs|.store(word(mem, pos, MESSAGE, len), Ordering::Release)|.store(word(mem, pos, MESSAGE, len), Ordering::Relaxed)|records commit: header store Release -> Relaxed|records_"
  "ring/src/records/mod.rs|let w = mem.record_word(offset(mem, pos)).load(Ordering::Acquire)|let w = mem.record_word(offset(mem, pos)).load(Ordering::Relaxed)|records consumer: header load Acquire -> Relaxed|records_"
  "ring/src/records/consumer.rs|mem.tail().store(self.tail, Ordering::Release)|mem.tail().store(self.tail, Ordering::Relaxed)|records release: tail store Release -> Relaxed|records_"
  "ring/src/records/producer.rs|self.cached_tail = self.mem().tail().load(Ordering::Acquire)|self.cached_tail = self.mem().tail().load(Ordering::Relaxed)|records producer: tail load Acquire -> Relaxed|records_"
  "ring/src/records/producer.rs|self.record.claim().store(pos + 1, Ordering::Release)|self.record.claim().store(pos + 1, Ordering::Relaxed)|records claim record: store Release -> Relaxed|records_producer"
  "ring/src/records/recovery.rs|claims[entry] = mem.claim(entry).load(Ordering::Acquire)|claims[entry] = mem.claim(entry).load(Ordering::Relaxed)|records recovery: claim record load Acquire -> Relaxed|records_producer"
  "ring/src/sync.rs|pub(crate) fn light(_asymmetric: bool) {|pub(crate) fn light(_asymmetric: bool) { return;|wait: waker's barrier removed|loses_a_wake_up"
  "ring/src/sync.rs|pub(crate) fn heavy() -> bool {|pub(crate) fn heavy() -> bool { return true;|wait: sleeper's barrier removed|loses_a_wake_up"
  "ring/src/registry.rs|mem.attached(role).fetch_sub(1, Ordering::Release)|mem.attached(role).fetch_sub(1, Ordering::Relaxed)|disconnect: attached-count decrement Release -> Relaxed|blocking"
  "ring/src/registry.rs|mem.attached(self.role).load(Ordering::Acquire)|mem.attached(self.role).load(Ordering::Relaxed)|disconnect: attached-count load Acquire -> Relaxed|blocking"
)

survived=0
for m in "${mutations[@]}"; do
  IFS='|' read -r file from to what filter <<<"$m"
  git checkout -q -- ring/src
  grep -qF "$from" "$file" || { echo "MISSING  $what (pattern not found)"; survived=1; continue; }
  python3 - "$file" "$from" "$to" <<'PY'
import sys
path, a, b = sys.argv[1:]
s = open(path).read()
open(path, "w").write(s.replace(a, b))
PY
  if RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom timeout 900 \
      cargo test -q -p shmring --release --test loom "$filter" >/tmp/mutant.log 2>&1; then
    echo "SURVIVED $what"
    survived=1
  elif grep -q 'could not compile' /tmp/mutant.log; then
    echo "BUILD    $what (the mutant does not compile: fix its pattern)"
    survived=1
  else
    # Failed tests by name; a model that deadlocks can abort the whole binary (a panic while
    # unwinding), so also take the names of the threads that panicked.
    failed=$( (grep -E '^    [a-z_0-9]+$' /tmp/mutant.log; grep -oE '^[a-z_0-9]+ --- FAILED' /tmp/mutant.log | cut -d' ' -f1;
               grep -oE "^thread '[a-z_0-9]+'" /tmp/mutant.log | cut -d"'" -f2) \
      | tr -d ' ' | sort -u | paste -sd, - || true)
    echo "killed   $what  (failed: ${failed:-the test binary aborted})"
  fi
done
exit $survived
