#!/usr/bin/env bash
# Back here after the device call: join the parts, check every sha256, and export the student as the seed's .h5.
#
#   bash infra/gpu/fetch_and_join.sh FILES_AT [DEST] [--no-export]
#
# FILES_AT: where the run tool left the files from $OUT (its reply's files_at; SHA256SUMS may lie a folder or two
# down). DEST (default runs/gpu/back) then holds teacher/ and student/ (best.pt, state.json: run folders that
# `skinscan train --teacher` and `skinscan export` read), device.log, the split the runs used
# (skinscan-densenet121.split.json, from the carried pack) and, unless --no-export, skinscan-densenet121.h5 with
# its manifest, written by `skinscan export` only if it answers like the PyTorch network on real photos.
# Run it from the repository root with the pack that travelled still in runs/gpu/pack.npz (PACK=...).
set -euo pipefail

EXPORT=1
ARGS=()
for arg in "$@"; do
  if [ "$arg" = --no-export ]; then EXPORT=0; else ARGS+=("$arg"); fi
done
SRC=${ARGS[0]:?usage: fetch_and_join.sh FILES_AT [DEST] [--no-export]}
DEST=${ARGS[1]:-runs/gpu/back}
PY=${PYTHON:-.venv/bin/python}
PACK=${PACK:-runs/gpu/pack.npz}
DATA=${DATA:-../shared/data/skin9}
SPLIT=$DEST/skinscan-densenet121.split.json

SUMS=$(find "$SRC" -maxdepth 3 -name SHA256SUMS | head -1)
[ -n "$SUMS" ] || { echo "no SHA256SUMS under $SRC: did the device run reach its bundling step? (see its output)"; exit 1; }
mkdir -p "$DEST"
cp -r --no-preserve=mode "$(dirname "$SUMS")"/. "$DEST"/  # the tool's copies are read-only
"$PY" -m skinscan.training.gpu join "$DEST" || { echo "sha256 MISMATCH: do not use $DEST"; exit 1; }

"$PY" - "$DEST" "$PACK" "$SPLIT" <<'EOF'
import json, sys
from pathlib import Path
import numpy as np
dest, pack, split = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
if pack.exists():
    with np.load(pack, allow_pickle=False) as z:
        info = json.loads(str(z["info_json"]))
        split.write_text(str(z["split_json"]))
    print(f"split: from {pack} ({info['photos']} photos packed at {info['size']}px, {info['codec']} q{info['quality']}) "
          f"-> {split}")
else:
    print(f"warning: no {pack}: `skinscan export` falls back to the shipped model's split")
for role in ("teacher", "student"):
    state_file = dest / role / "state.json"
    if not state_file.exists():
        print(f"{role}: no state.json came back")
        continue
    state = json.loads(state_file.read_text())
    print(f"{role}: {state['epoch']} of {state['total_epochs']} epochs, best epoch {state.get('best_epoch')}: "
          f"{state.get('best_val')}; {state.get('seconds')} s training; {state.get('hardware')}")
EOF

[ "$EXPORT" = 1 ] || { echo "joined and checked: $DEST (export skipped)"; exit 0; }
SPLIT_ARGS=()
[ -f "$SPLIT" ] && SPLIT_ARGS=(--split "$SPLIT")
"$PY" -m skinscan.cli export "$DEST/student/best.pt" --out "$DEST/skinscan-densenet121.h5" --data "$DATA" \
    "${SPLIT_ARGS[@]}"
cat <<EOF

Next, here (TensorFlow venv):
  .venv/bin/skinscan calibrate --model $DEST/skinscan-densenet121.h5 --data $DATA
  .venv/bin/skinscan optimize  --model $DEST/skinscan-densenet121.h5 --data $DATA
  .venv/bin/skinscan evaluate  --model $DEST/skinscan-densenet121.h5 --data $DATA --part val
then compare with the shipped model on validation per photo type; the CPU can go on from the same runs:
  .venv/bin/skinscan train --role student --out <new run> --init-model $DEST/student/best.pt --teacher $DEST/teacher/best.pt
EOF
