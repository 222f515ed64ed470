"""The companion: a second network whose probabilities are averaged with the DenseNet121's.

Issue 18, item 4: the ImageNet teacher the DenseNet121 was distilled from answers beside it when
validation shows the pair beats the DenseNet121 alone. The DenseNet121 stays the model: it always
runs, and its pooled features alone decide "not recognised" and the photo type, so the companion
only changes *which* condition and *how likely*. Its file is checked against the manifest exactly
like the DenseNet121's, and it may have its own verified fast form.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .backends import Backend, load_backend
from .imaging import Preprocessing, square_pixels
from .manifest import Manifest


@dataclass(frozen=True)
class Companion:
    backend: Backend
    preprocessing: Preprocessing  # its own: input size and normalisation differ from the DenseNet121's
    weight: float                 # its share of the averaged probabilities

    @classmethod
    def load(cls, model_path: str | Path, manifest: Manifest, preference: str = "auto") -> Companion | None:
        """The manifest's companion, verified and loaded from beside the model; None when it names none."""
        entry = manifest.get("companion")
        if entry is None:
            return None
        backend = load_backend(Path(model_path).with_name(entry["file"]), entry, preference)
        return cls(backend, Preprocessing.from_dict(entry["preprocessing"]), float(entry["weight"]))

    def pixels(self, image: Image.Image) -> np.ndarray:
        """The photo as this network sees it (square uint8 RGB at its size)."""
        return square_pixels(image, self.preprocessing.size)

    def blend(self, probabilities: np.ndarray, pixels: np.ndarray) -> np.ndarray:
        """The DenseNet121's ``probabilities`` averaged with this network's answer for the same photos."""
        inputs = self.preprocessing.normalize(np.asarray(pixels, dtype=np.float32)).astype(np.float32)
        _, theirs = self.backend.run(inputs)
        blended: np.ndarray = (1.0 - self.weight) * probabilities + self.weight * theirs
        return blended
