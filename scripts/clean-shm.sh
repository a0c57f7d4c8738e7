#!/usr/bin/env bash
# Removes shmring test segments left behind by killed test runs: POSIX objects named
# /dev/shm/shmring-test-* and SysV segments whose key has the tests' 0x4... prefix and no
# process attached. Never touches anything else.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -fv /dev/shm/shmring-test-* 2>/dev/null || true
ipcs -m 2>/dev/null | awk 'NR > 3 && $1 ~ /^0x4/ && $6 == 0 { print $2 }' | while read -r id; do
  ipcrm -m "$id" && echo "removed SysV segment $id"
done
