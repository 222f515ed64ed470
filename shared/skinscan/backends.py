"""Ways to run the network. Each answers ``(features, probabilities)`` for a batch.

The ``.h5`` read by Keras is the canonical form; faster derived forms plug in
here without the rest of the package knowing.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .labels import LABELS
from .manifest import CompanionEntry, Manifest

N_CLASSES = len(LABELS)
# The pooled layer every skinscan network names so; its output feeds the novelty check.
FEATURES_LAYER = "features"


class Backend(Protocol):
    name: str

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


def with_features(model: Any) -> Any:
    """The same Keras network answering ``(features, probabilities)`` in one pass.

    The pooled features feed the out-of-distribution check, so a second
    forward pass is never needed. (Training builds networks with this layer
    name; serving only reads it, so the core never imports the training code.)
    """
    import keras

    return keras.Model(model.input, [model.get_layer(FEATURES_LAYER).output, model.output])


class KerasBackend:
    """The ``.h5`` through Keras: slow to import, always available where TF is."""

    name = "keras-h5"

    def __init__(self, model_path: str | Path) -> None:
        import keras

        model = keras.models.load_model(model_path, compile=False)
        self.model = model
        self.two_headed = with_features(model)
        self.input_size = int(model.input_shape[1])
        self._lock = threading.Lock()

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # Keras models are not documented as thread-safe; a lock costs nothing
        # on two cores, where parallel predicts would only fight for them.
        with self._lock:
            features, probabilities = self.two_headed.predict_on_batch(batch)
        return np.asarray(features), np.asarray(probabilities)


class LiteRTBackend:
    """The derived LiteRT flatbuffer: no TensorFlow import, ~10x faster on two cores.

    The flatbuffer answers one photo at a time as ``[features | probabilities]``.
    """

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.path = Path(path)
        self.name = "litert-int8" if self.path.name.endswith(".int8.tflite") else "litert-float32"
        self.interpreter = Interpreter(model_path=str(path), num_threads=threads or _threads())
        self.interpreter.allocate_tensors()
        self._input = self.interpreter.get_input_details()[0]["index"]
        self._output = self.interpreter.get_output_details()[0]["index"]
        self._lock = threading.Lock()

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rows = []
        with self._lock:  # one interpreter holds one set of tensors
            for image in batch:
                self.interpreter.set_tensor(self._input, image[np.newaxis].astype(np.float32))
                self.interpreter.invoke()
                rows.append(self.interpreter.get_tensor(self._output)[0].copy())
        joined = np.stack(rows)
        return joined[:, :-N_CLASSES], joined[:, -N_CLASSES:]


def _threads() -> int:
    import os

    return int(os.environ.get("SKINSCAN_THREADS") or min(4, os.cpu_count() or 1))


def litert_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("ai_edge_litert") is not None


def load_backend(model_path: str | Path, manifest: Manifest | CompanionEntry, preference: str = "auto") -> Backend:
    """The backend for a model (or the manifest's companion), after checking the file it will run.

    ``auto`` takes the manifest's verified fast form when its file is present,
    hashes to the manifest's value and the LiteRT runtime is installed;
    otherwise the ``.h5`` through Keras. ``keras`` and ``litert`` force one.
    Raises :class:`~skinscan.manifest.ManifestError` when no usable, verified
    file is there.
    """
    from .manifest import ManifestError, sha256_file, verify_model_file

    if preference not in ("auto", "keras", "litert"):
        raise ValueError(f"unknown backend {preference!r}")
    fast = manifest.get("fast_path")
    if (preference in ("auto", "litert") and fast and fast.get("derived_from") == manifest["sha256"]
            and litert_available()):
        fast_file = Path(model_path).with_name(fast["file"])
        if fast_file.is_file() and sha256_file(fast_file) == fast["sha256"]:
            return LiteRTBackend(fast_file)
    if preference == "litert":
        raise ManifestError("no verified fast form (or no LiteRT runtime) for this model")
    if not Path(model_path).is_file():
        raise ManifestError(f"model file not found: {model_path}")
    verify_model_file(model_path, manifest)
    try:
        return KerasBackend(model_path)
    except ImportError:
        raise ManifestError("this model needs Keras/TensorFlow (pip install skinscan[keras]), "
                            "or a verified fast form beside it") from None
