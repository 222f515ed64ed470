#!/usr/bin/env bash
# Train the full skinscan recipe on a lent GPU machine and leave the model in $OUT in < 16 MiB parts.
#
#   bash infra/gpu/train_on_device.sh            # the real run: ends within DEADLINE_S (default 520 s)
#   bash infra/gpu/train_on_device.sh --smoke    # 2 tiny epochs: checks the whole path in about a minute
#   bash infra/gpu/train_on_device.sh -- --no-style-augmentation   # extra flags for `skinscan.training.gpu train`
#
# Needs (carried from the session's machine, see infra/gpu/README.md):
#   runs/gpu/pack.npz   train+val photos (python -m skinscan.training.pack)
#   runs/gpu/wheels/    keras, namex, optree wheels (the image has torch, numpy, pillow, h5py, rich, absl, ml-dtypes)
# Environment: OUT (what comes back; default runs/gpu/out), PACK, WORK, PYTHON, DEADLINE_S,
#   TAG (names this run's log/JSON in $OUT: several runs in one call), KEEP_MODEL=0 (ablation arms: bring back
#   only <TAG>.training.json and the log, not the model parts).
set -uo pipefail

START=$(date +%s)
REPO=$(cd "$(dirname "$0")/../.." && pwd)
cd "$REPO"
OUT=${OUT:-$REPO/runs/gpu/out}
PACK=${PACK:-runs/gpu/pack.npz}
WORK=${WORK:-/tmp/skinscan-gpu}
PY=${PYTHON:-python3}
DEADLINE_S=${DEADLINE_S:-520}
TAG=${TAG:-}
KEEP_MODEL=${KEEP_MODEL:-1}
LOG=$OUT/train${TAG:+-$TAG}.log
SMOKE=0
EXTRA=()
while [ $# -gt 0 ]; do
  case "$1" in
    --smoke) SMOKE=1 ;;
    --) shift; EXTRA+=("$@"); break ;;
    *) EXTRA+=("$1") ;;
  esac
  shift
done
mkdir -p "$OUT"
rm -rf "$WORK"
mkdir -p "$WORK"
MODEL=$WORK/skinscan-densenet121.h5

main() {
  echo "== skinscan GPU run $(date -u +%FT%TZ) smoke=$SMOKE deadline ${DEADLINE_S}s tag=${TAG:-none} args: ${EXTRA[*]:-}"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
  [ -f "$PACK" ] || { echo "missing $PACK (carry it)"; return 2; }

  # 1. Keras 3 and its two missing dependencies, from the carried wheels (pip picks the optree build
  #    matching this Python: cp311/cp312/cp313 are carried; the device image had Python 3.12.3).
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/skinscan-site \
      --find-links runs/gpu/wheels keras namex optree || { echo "wheel install failed"; return 3; }
  export PYTHONPATH=/tmp/skinscan-site:$REPO/shared${PYTHONPATH:+:$PYTHONPATH}
  export KERAS_BACKEND=torch PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
  "$PY" -c "import sys, torch, keras, numpy, PIL, h5py; print('python', sys.version.split()[0], 'torch', torch.__version__, \
'cuda', torch.cuda.is_available(), 'keras', keras.__version__, keras.backend.backend(), 'numpy', numpy.__version__)" \
      || return 4

  # 2. Train, inside a hard deadline (the run tool's limit is 600 s; start-up and the final save come off it).
  local args=(--pack "$PACK" --work "$WORK" --out "$MODEL" --deadline $((START + DEADLINE_S)))
  if [ "$SMOKE" = 1 ]; then
    # the real run's path (probe included), a few steps long
    args+=(--probe-warm-steps 1 --probe-steps 2 --max-epochs 2 --min-epochs 1 --steps-per-epoch 2
           --batch-size 8 --pairs 2 --val-limit 24 --workers 2 --verbose 2)
  fi
  local left=$((START + DEADLINE_S + 25 - $(date +%s)))
  timeout -s INT -k 15 "$left" "$PY" -m skinscan.training.gpu train "${args[@]}" "${EXTRA[@]}"
  local rc=$?
  echo "== training exited $rc after $(( $(date +%s) - START ))s"

  # 3. Cut short? Export the best checkpoint instead.
  if [ ! -s "$MODEL" ] && [ -f "$WORK/skinscan-densenet121.checkpoints/state.json" -o \
       -f "$WORK/skinscan-densenet121.checkpoints/last.weights.h5" ]; then
    local size
    size=$("$PY" -c "import json,numpy as n; z=n.load('$PACK'); print(json.loads(str(z['info_json']))['size'])")
    "$PY" -m skinscan.training.gpu export --checkpoints "$WORK/skinscan-densenet121.checkpoints" \
        --out "$MODEL" --image-size "$size" || echo "export failed"
  fi
  [ -s "$MODEL" ] || { echo "no model was written"; return 5; }

  # 4. What comes back: the .h5 in < 16 MiB parts, the JSON files, SHA256SUMS (this log is already in $OUT).
  if [ "$KEEP_MODEL" = 0 ]; then
    cp "$WORK/skinscan-densenet121.training.json" "$OUT/${TAG:-run}.training.json" || return 6
    echo "== done in $(( $(date +%s) - START ))s; training exit $rc (figures only: $OUT/${TAG:-run}.training.json)"
    return 0
  fi
  cp "$WORK/skinscan-densenet121.checkpoints/state.json" "$WORK/skinscan-densenet121.state.json" 2>/dev/null
  "$PY" -m skinscan.training.gpu bundle --model "$MODEL" --out "$OUT" \
      "$WORK/skinscan-densenet121.json" "$WORK/skinscan-densenet121.training.json" \
      "$WORK/skinscan-densenet121.state.json" || return 6
  echo "== done in $(( $(date +%s) - START ))s; training exit $rc"
  ls -l "$OUT"
  return 0
}

main 2>&1 | tee "$LOG"
exit "${PIPESTATUS[0]}"
