"""Ways to run the network. Each answers ``(features, probabilities)`` for a batch.

The ``.h5`` read by Keras is the canonical form; faster derived forms plug in
here without the rest of the package knowing.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Protocol

import numpy as np


class Backend(Protocol):
    name: str

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


class KerasBackend:
    """The ``.h5`` through Keras: slow to import, always available where TF is."""

    name = "keras-h5"

    def __init__(self, model_path: str | Path) -> None:
        import keras

        from .architecture import with_features

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


def load_backend(model_path: str | Path, manifest: dict, preference: str = "auto") -> Backend:
    """The fastest verified backend available for this model (``auto``), or the one asked for."""
    if preference not in ("auto", "keras"):
        raise ValueError(f"unknown backend {preference!r}")
    return KerasBackend(model_path)
