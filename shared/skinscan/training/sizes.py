"""Which input size should serving use? Measured on validation photos, per photo type.

A network trained on random crops sees lesions larger than a centred photo
shows them; serving at a somewhat larger size than training often recovers
that (Touvron et al. 2019, "Fixing the train-test resolution discrepancy").
The choice is made on the validation split, never on test.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..imaging import Preprocessing
from . import data as dataset
from .architecture import with_input_size
from .train import figures_by_type


def compare_sizes(model_path: Path, data: Path, split_file: Path, sizes: list[int],
                  limit: int | None = None) -> list[dict[str, Any]]:
    import keras

    model = keras.models.load_model(model_path, compile=False)
    samples = dataset.camera_first_subset(dataset.load_split(split_file, data)["val"], limit, seed=0)
    labels = np.array([s.label for s in samples])
    types = [s.photo_type for s in samples]
    rows = []
    for size in sizes:
        network = model if size == model.input_shape[1] else with_input_size(model, size)
        pixels, _ = dataset.load_pixels(data, samples, size)
        probabilities = network.predict(Preprocessing(size).normalize(pixels.astype(np.float32)),
                                        batch_size=64, verbose=0)
        rows.append({"size": size, "photos": len(samples), **figures_by_type(probabilities, labels, types)})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def save_at_size(model_path: Path, size: int, out: Path) -> Path:
    """Save the network at ``size`` with a manifest that keeps the training record.

    Calibration must run again on the new file: its thresholds belong to the
    probabilities at the new size.
    """
    import keras

    from ..manifest import manifest_path_for, new_manifest, read_manifest, write_manifest

    model = keras.models.load_model(model_path, compile=False)
    out = Path(out)
    with_input_size(model, size).save(out, include_optimizer=False)
    old = read_manifest(manifest_path_for(model_path))
    version = old["version"].replace(f"-{model.input_shape[1]}px-", f"-{size}px-")
    write_manifest(new_manifest(out, Preprocessing(size).to_dict(), version, training=old.get("training")),
                   manifest_path_for(out))
    return out
