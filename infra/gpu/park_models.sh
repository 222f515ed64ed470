#!/usr/bin/env bash
# Make room in what travels to the GPU machine, and put it back afterwards.
#
# The device tool copies the working tree (tracked + untracked-not-ignored files) plus the carried paths,
# 64 MiB in all. The shipped model's .h5 and .tflite alone are ~57 MB, which leaves no room for the pack.
# Training on the device never reads them (the warm start travels as runs/gpu/init-student.pt), so for the
# length of the call they are emptied (copies kept outside the repo, with their sha256) and restored right
# after. Nothing is committed, stashed or checked out.
#
#   bash infra/gpu/park_models.sh check [CARRY...]   # what would travel, in MiB (default carry: the three below)
#   bash infra/gpu/park_models.sh room [CARRY...]    # MiB left for the pack once parked, beside these carried paths
#   bash infra/gpu/park_models.sh park               # empty every tracked file over 1 MiB, keep copies in $PARK_DIR
#   bash infra/gpu/park_models.sh restore            # put them back, verify sha256 (run it even if the call failed)
set -euo pipefail

cd "$(git rev-parse --show-toplevel)"
PARK_DIR=${PARK_DIR:-/work/gpu-parked}
LIST=$PARK_DIR/parked.sha256

LIMIT_MIB=63  # of the tool's 64 MiB: a margin for what changes before the call
DEFAULT_CARRY=(runs/gpu/pack.npz runs/gpu/wheels runs/gpu/init-student.pt)

travelling_bytes() {  # $1 = parked: as if every tracked file over 1 MiB were emptied
  { git ls-files -z; git ls-files -z --others --exclude-standard; } \
    | (xargs -0 -r stat -c %s -- 2>/dev/null || true) \
    | awk -v parked="${1:-}" '{ if (parked == "" || $1 <= 1048576) s += $1 } END {print s + 0}'
}  # a tracked file deleted from the working tree is not counted (nor copied)

carried_bytes() {
  [ $# -gt 0 ] || { echo 0; return; }  # (du with no path would measure the whole checkout)
  (du -sbL "$@" 2>/dev/null || true) | awk '{s += $1} END {print s + 0}'
}

case "${1:-}" in
  check)
    shift
    carry=("$@")
    [ ${#carry[@]} -gt 0 ] || carry=("${DEFAULT_CARRY[@]}")
    tree=$(travelling_bytes)
    for c in "${carry[@]}"; do [ -e "$c" ] || echo "warning: $c does not exist"; done
    extra=$(carried_bytes "${carry[@]}")
    awk -v t="$tree" -v p="$(travelling_bytes parked)" -v c="$extra" -v l="$LIMIT_MIB" 'BEGIN {
      verdict = (t + c < l * 2^20) ? "fits" : (p + c < l * 2^20) ? "fits once parked (park first)" : "TOO BIG"
      printf "working tree %.1f MiB + carried %.1f MiB = %.1f MiB of 64 MiB -> %s\n", t/2^20, c/2^20, (t+c)/2^20,
             verdict }'
    ;;
  room)
    shift
    awk -v t="$(travelling_bytes parked)" -v c="$(carried_bytes "$@")" -v l="$LIMIT_MIB" \
        'BEGIN { printf "%.1f\n", (l * 2^20 - t - c) / 2^20 }'
    ;;
  park)
    if [ -s "$LIST" ]; then echo "already parked (see $LIST); restore first"; exit 1; fi
    mkdir -p "$PARK_DIR"
    : > "$LIST"
    git ls-files -z | while IFS= read -r -d '' f; do
      if [ -f "$f" ] && [ "$(stat -c %s -- "$f")" -gt 1048576 ]; then
        mkdir -p "$PARK_DIR/$(dirname "$f")"
        cp -p -- "$f" "$PARK_DIR/$f"
        (cd "$PARK_DIR" && sha256sum -- "$f") >> "$LIST"
        : > "$f"
        echo "parked $f"
      fi
    done
    (cd "$PARK_DIR" && sha256sum -c --quiet parked.sha256) || { echo "copy check failed: run restore"; exit 1; }
    echo "parked $(wc -l < "$LIST") files in $PARK_DIR. RESTORE right after the device call: $0 restore"
    ;;
  restore)
    [ -s "$LIST" ] || { echo "nothing parked"; exit 0; }
    while read -r sum f; do
      cp -p -- "$PARK_DIR/$f" "$f"
      echo "$sum  $f" | sha256sum -c --quiet - || { echo "RESTORE FAILED for $f (copy kept in $PARK_DIR)"; exit 1; }
      echo "restored $f"
    done < "$LIST"
    rm -rf -- "$PARK_DIR"
    git status --short
    ;;
  *)
    sed -n 2,15p "$0"
    exit 2
    ;;
esac
