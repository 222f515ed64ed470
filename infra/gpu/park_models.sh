#!/usr/bin/env bash
# Make room in what travels to the GPU machine, and put it back afterwards.
#
# The device tool copies the working tree (tracked + untracked-not-ignored files) plus the carried paths,
# 64 MiB in all. The shipped model's .h5 and .tflite alone are ~57 MB, which leaves no room for the pack.
# Training on the device never reads them, so for the length of the call they are emptied (copies kept
# outside the repo, with their sha256) and restored right after. Nothing is committed, stashed or checked out.
#
#   bash infra/gpu/park_models.sh check [CARRY...]   # what would travel, in MiB (default carry: runs/gpu/pack.npz runs/gpu/wheels)
#   bash infra/gpu/park_models.sh park               # empty every tracked file over 1 MiB, keep copies in $PARK_DIR
#   bash infra/gpu/park_models.sh restore            # put them back, verify sha256 (run it even if the call failed)
set -euo pipefail

cd "$(git rev-parse --show-toplevel)"
PARK_DIR=${PARK_DIR:-/work/gpu-parked}
LIST=$PARK_DIR/parked.sha256

travelling_bytes() {
  { git ls-files -z; git ls-files -z --others --exclude-standard; } \
    | (xargs -0 -r stat -c %s -- 2>/dev/null || true) | awk '{s += $1} END {print s + 0}'
}  # a tracked file deleted from the working tree is not counted (nor copied)

case "${1:-}" in
  check)
    shift
    carry=("$@")
    [ ${#carry[@]} -gt 0 ] || carry=(runs/gpu/pack.npz runs/gpu/wheels)
    tree=$(travelling_bytes)
    for c in "${carry[@]}"; do [ -e "$c" ] || echo "warning: $c does not exist"; done
    extra=$( (du -sbL "${carry[@]}" 2>/dev/null || true) | awk '{s += $1} END {print s + 0}')
    awk -v t="$tree" -v c="$extra" 'BEGIN {
      printf "working tree %.1f MiB + carried %.1f MiB = %.1f MiB of 64 MiB -> %s\n", t/2^20, c/2^20, (t+c)/2^20,
             (t + c < 63 * 2^20) ? "fits" : "TOO BIG (park the models first)" }'
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
    sed -n 2,13p "$0"
    exit 2
    ;;
esac
