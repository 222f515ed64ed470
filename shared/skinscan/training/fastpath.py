"""Derive the fast serving form of a model (LiteRT flatbuffer) and prove it matches.

The ``.h5`` stays the canonical artifact. Serving it through Keras costs a
TensorFlow import (~2 s) and ~0.1-0.3 s per photo on two cores; the same
graph as a LiteRT flatbuffer runs in ~25 ms (float32) with a runtime a tenth
of TensorFlow's size. The derived file is accepted only after it agrees with
the ``.h5`` on real photos, and its sha256 goes into the manifest so serving
can trust it without TensorFlow.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from ..imaging import Preprocessing
from ..manifest import CompanionEntry, Manifest, manifest_path_for, read_manifest, sha256_file, write_manifest

KINDS = ("litert-float32", "litert-int8")
PROBABILITY_TOLERANCE = {"litert-float32": 1e-4, "litert-int8": 0.05}


def fast_path_for(model_path: str | Path, kind: str) -> Path:
    path = Path(model_path)
    return path.with_name(path.stem + (".int8.tflite" if kind == "litert-int8" else ".tflite"))


def convert(model_path: Path, kind: str = "litert-float32") -> bytes:
    """Convert the ``.h5`` to a LiteRT flatbuffer answering ``[features | probabilities]``."""
    import keras
    import tensorflow as tf

    from ..backends import with_features

    model = with_features(keras.models.load_model(model_path, compile=False))
    size = model.input_shape[1]

    def serve(batch):
        features, probabilities = model(batch, training=False)
        return tf.concat([features, probabilities], axis=1)

    with tempfile.TemporaryDirectory() as folder:
        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint("serve", serve, input_signature=[tf.TensorSpec([1, size, size, 3], tf.float32)])
        archive.write_out(folder, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(folder)
        if kind == "litert-int8":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]  # int8 weights, float activations
        return converter.convert()


def agreement(model_path: Path, fast_file: Path, batches: Iterable[np.ndarray]) -> dict[str, Any]:
    """Compare the fast form with Keras on pre-processed photos: top-1 and probabilities."""
    from ..backends import KerasBackend, LiteRTBackend

    keras_backend, fast_backend = KerasBackend(model_path), LiteRTBackend(fast_file)
    same_top1, worst, count = 0, 0.0, 0
    for batch in batches:
        _, reference = keras_backend.run(batch)
        _, fast = fast_backend.run(batch)
        same_top1 += int((reference.argmax(1) == fast.argmax(1)).sum())
        worst = max(worst, float(np.abs(reference - fast).max()))
        count += len(batch)
    return {"images": count, "top1_agreement": same_top1 / max(count, 1), "max_abs_difference": worst}


def derive_file(model_path: Path, batches: Iterable[np.ndarray], kind: str = "litert-float32",
                min_agreement: float = 0.99) -> dict[str, Any]:
    """Write the fast form of one ``.h5`` beside it and check it; the record says whether it was accepted
    (a rejected file is removed)."""
    if kind not in KINDS:
        raise ValueError(f"kind is one of {KINDS}")
    model_path = Path(model_path)
    target = fast_path_for(model_path, kind)
    target.write_bytes(convert(model_path, kind))
    check = agreement(model_path, target, batches)
    tolerance = PROBABILITY_TOLERANCE[kind]
    accepted = check["top1_agreement"] >= (1.0 if kind == "litert-float32" else min_agreement) \
        and check["max_abs_difference"] <= tolerance
    record = {"kind": kind, "file": target.name, "sha256": sha256_file(target), "bytes": target.stat().st_size,
              "verified": {**check, "tolerance": tolerance, "accepted": accepted}}
    if not accepted:
        target.unlink()
    return record


def derive(model_path: Path, batches: Iterable[np.ndarray], kind: str = "litert-float32",
           min_agreement: float = 0.99, *, companion: bool = False) -> dict[str, Any]:
    """Write the model's fast form beside it and record it in the manifest, if it agrees.

    ``companion``: the same for the manifest's companion (:mod:`skinscan.companion`), whose own fast
    form goes into its own entry.
    """
    model_path = Path(model_path)
    manifest_file = manifest_path_for(model_path)
    manifest = read_manifest(manifest_file)
    entry: Manifest | CompanionEntry = manifest["companion"] if companion else manifest
    h5 = model_path.with_name(entry["file"]) if companion else model_path
    record = derive_file(h5, batches, kind, min_agreement)
    if record["verified"]["accepted"]:
        entry["fast_path"] = {**record, "derived_from": sha256_file(h5)}
        write_manifest(manifest, manifest_file)
    return record


def sample_batches(preprocessing: Preprocessing, data: Path | None, split_file: Path | None, limit: int = 200,
                   seed: int = 0) -> Iterable[np.ndarray]:
    """Real held-out photos when available, otherwise generated skin-like images, pre-processed one by one."""
    if data and split_file and Path(split_file).exists():
        from . import data as dataset

        samples = dataset.load_split(split_file)["test"][:limit]
        pixels, _ = dataset.load_pixels(data, samples, preprocessing.size)
    else:
        rng = np.random.default_rng(seed)
        pixels = rng.integers(0, 256, (min(limit, 32), preprocessing.size, preprocessing.size, 3), dtype=np.uint8)
    for image in pixels:
        yield preprocessing.normalize(image.astype(np.float32))[np.newaxis]
