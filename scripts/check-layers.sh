#!/usr/bin/env bash
# The floor-plan rule, checked: a module imports only modules declared before it in the crate
# root (lib.rs or main.rs). Derives each top-level module's references to other top-level
# modules from the sources (`crate::x`, `$crate::x`, `use crate::{x, y::z}`, and names the root
# re-exports with `pub use x::Name`), ignoring comments, and fails on any reference to a module
# declared later (which is also what any cycle needs).
#
# Usage: scripts/check-layers.sh [SRC_DIR ...]   (default: ring/src ring-bench/src)
# `--graph` first prints every module's imports, lowest layer first.
set -euo pipefail
cd "$(dirname "$0")/.."

graph=0
if [ "${1:-}" = "--graph" ]; then
  graph=1
  shift
fi
[ $# -gt 0 ] || set -- ring/src ring-bench/src

status=0
for src in "$@"; do
  root="$src/lib.rs"
  [ -f "$root" ] || root="$src/main.rs"
  [ -f "$root" ] || { echo "check-layers: no lib.rs or main.rs in $src" >&2; exit 2; }

  # Top-level modules in declaration order (file modules and inline ones).
  mapfile -t mods < <(
    sed -e 's://.*$::' "$root" |
      grep -oE '^[[:space:]]*(pub(\([a-z]+\))?[[:space:]]+)?mod[[:space:]]+[A-Za-z_][A-Za-z0-9_]*' |
      awk '{print $NF}'
  )
  # Names the root imports or re-exports, as "Name module" (`pub use module::{A, B}`, `use module::A`).
  reexports=$(
    sed -e 's://.*$::' "$root" | tr '\n' ' ' | { grep -oE '(pub(\([a-z]+\))? )?use [A-Za-z_][A-Za-z0-9_]*::(\{[^}]*\}|[A-Za-z_][A-Za-z0-9_]*)' || true; } |
      sed -E 's/^(pub(\([a-z]+\))? )?use ([A-Za-z_0-9]+)::\{?([^}]*)\}?$/\3 \4/' |
      awk '{m=$1; for (i=2;i<=NF;i++) { n=$i; gsub(/[,{} ]/,"",n); if (n!="") print n, m } }'
  )

  declare -A rank=()
  for i in "${!mods[@]}"; do rank[${mods[$i]}]=$i; done

  for i in "${!mods[@]}"; do
    m=${mods[$i]}
    files=()
    [ -f "$src/$m.rs" ] && files+=("$src/$m.rs")
    [ -d "$src/$m" ] && while IFS= read -r f; do files+=("$f"); done < <(find "$src/$m" -name '*.rs' | sort)
    if [ ${#files[@]} -eq 0 ]; then
      # An inline module: its body in the root file.
      body=$(awk -v m="$m" '
        $0 ~ "mod[[:space:]]+" m "[[:space:]]*\\{" { on=1; depth=0 }
        on { print; n=gsub(/\{/,"{"); c=gsub(/\}/,"}"); depth+=n-c; if (depth<=0 && n+c>0) exit }
      ' "$root")
    else
      body=$(cat "${files[@]}")
    fi
    # Strip comments (line comments, including doc comments), then collect referenced names.
    refs=$(
      printf '%s\n' "$body" | sed -e 's://.*$::' | tr '\n' ' ' |
        grep -oE '\$?crate::(\{[^}]*\}|[A-Za-z_][A-Za-z0-9_]*)' |
        sed -E 's/^\$?crate:://' |
        sed -E 's/^\{(.*)\}$/\1/' | tr ',' '\n' |
        sed -E 's/^[[:space:]]*//; s/::.*$//; s/[^A-Za-z0-9_].*$//' |
        grep -v '^$' | sort -u || true
    )
    deps=()
    declare -A said=()
    for r in $refs; do
      target=""
      if [ -n "${rank[$r]+x}" ]; then
        target=$r
      else
        target=$(awk -v n="$r" '$1==n {print $2; exit}' <<<"$reexports")
      fi
      [ -n "$target" ] && [ "$target" != "$m" ] || continue
      deps+=("$target")
      if [ "${rank[$target]}" -gt "$i" ] && [ -z "${said[$target]+x}" ]; then
        said[$target]=1
        echo "check-layers: $src: '$m' (layer $i) uses '$target' (layer ${rank[$target]}), declared after it in $(basename "$root")" >&2
        status=1
      fi
    done
    unset said
    if [ $graph -eq 1 ]; then
      printf '%s %2d %-12s -> %s\n' "$src" "$i" "$m" "$(printf '%s\n' "${deps[@]:-}" | sort -u | tr '\n' ' ')"
    fi
  done
  unset rank
done

if [ $status -eq 0 ]; then
  echo "check-layers: ok ($*)"
fi
exit $status
