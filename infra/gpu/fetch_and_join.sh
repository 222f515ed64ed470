#!/usr/bin/env bash
# Join the model parts that came back from the GPU machine, check them, and say what to run next.
#
#   bash infra/gpu/fetch_and_join.sh FILES_AT [DEST]
#
# Run it from the repository root, with the pack that was carried still in runs/gpu/pack.npz (the split
# file beside the model is taken from it: the photos training saw, and the test photos it never saw).
# FILES_AT: the folder where the run tool left the files from $OUT (its reply's files_at).
# DEST: where to put the joined model and its JSON files (default runs/gpu/model).
set -euo pipefail

SRC=${1:?usage: fetch_and_join.sh FILES_AT [DEST]}
DEST=${2:-runs/gpu/model}
NAME=skinscan-densenet121.h5
PY=${PYTHON:-.venv/bin/python}
PACK=${PACK:-runs/gpu/pack.npz}
mkdir -p "$DEST"

# The files may lie in FILES_AT itself or one folder down (…/out/).
PART0=$(find "$SRC" -maxdepth 3 -name "$NAME.part-000" | head -1)
[ -n "$PART0" ] || { echo "no $NAME.part-000 under $SRC"; exit 1; }
DIR=$(dirname "$PART0")
echo "parts from $DIR:"
ls -l "$DIR"

cat "$DIR/$NAME".part-* > "$DEST/$NAME"
for f in SHA256SUMS skinscan-densenet121.json skinscan-densenet121.training.json \
         skinscan-densenet121.state.json train.log; do
  [ -f "$DIR/$f" ] && cp "$DIR/$f" "$DEST/"
done
( cd "$DEST" && grep " $NAME\$" SHA256SUMS | sha256sum -c - ) || { echo "sha256 MISMATCH: do not use $DEST/$NAME"; exit 1; }
( cd "$DEST" && grep -v "part-\|train.log\| $NAME\$" SHA256SUMS | sha256sum -c --quiet - ) \
  || echo "warning: a JSON file differs from what the device wrote"

# The split beside the model, and the manifest's sha256 must describe the joined file (or serving refuses it).
"$PY" - "$DEST" "$PACK" <<'EOF'
import hashlib, json, sys
from pathlib import Path
import numpy as np
dest, pack = Path(sys.argv[1]), Path(sys.argv[2])
if pack.exists():
    with np.load(pack, allow_pickle=False) as z:
        info, split = json.loads(str(z["info_json"])), str(z["split_json"])
    (dest / "skinscan-densenet121.split.json").write_text(split)
    print(f"split from {pack} ({info['photos']} photos packed at {info['size']}px, "
          f"source split sha256 {info['split_sha256'][:12]}...) -> {dest}/skinscan-densenet121.split.json")
else:
    print(f"no {pack}: copy the split file the pack was built from to {dest}/skinscan-densenet121.split.json")
manifest = json.loads((dest / "skinscan-densenet121.json").read_text())
digest = hashlib.sha256((dest / "skinscan-densenet121.h5").read_bytes()).hexdigest()
print("manifest sha256 matches the joined .h5:", manifest["sha256"] == digest)
training = dest / "skinscan-densenet121.training.json"
if training.exists():
    t = json.loads(training.read_text())
    print("epochs run", t.get("epochs_run"), "of", t.get("total_epochs"), "| best epoch", t.get("best_epoch"),
          "|", t.get("best_val"), "| seconds", t.get("seconds"), "|", t.get("hardware"))
    print("gpu:", json.dumps(t.get("gpu", {}).get("probe")), t.get("gpu", {}).get("device"))
EOF

# The same .h5 under TensorFlow Keras must answer the fixed check batch as it did under torch on the device.
if [ -f "$DEST/skinscan-densenet121.training.json" ]; then
  TF_CPP_MIN_LOG_LEVEL=3 KERAS_BACKEND=tensorflow "$PY" -m skinscan.training.gpu verify --model "$DEST/$NAME" \
      --training-json "$DEST/skinscan-densenet121.training.json" || echo "warning: backends disagree (see above)"
fi

cat <<EOF

Joined: $DEST/$NAME (sha256 checked). Next, on this machine (TensorFlow venv):
  .venv/bin/python -c "import keras; m = keras.models.load_model('$DEST/$NAME', compile=False); print(m.count_params())"
  .venv/bin/skinscan calibrate --model $DEST/$NAME --data ../shared/data/skin9
  .venv/bin/skinscan optimize  --model $DEST/$NAME --data ../shared/data/skin9
  .venv/bin/skinscan evaluate  --model $DEST/$NAME --data ../shared/data/skin9 --part val
  .venv/bin/skinscan evaluate  --model $DEST/$NAME --data ../shared/data/skin9 --part test
then compare with the CPU model, and if it wins: publish it and update the card (hardware: the GPU line of
$DEST/skinscan-densenet121.training.json, training seconds, epochs, the pack's size/quality).
EOF
