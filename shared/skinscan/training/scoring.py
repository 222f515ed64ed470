"""Run a model over many photos at once: the shared loop of calibration and evaluation."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from collections.abc import Iterable

import numpy as np
from PIL import Image

from .. import quality
from ..backends import Backend
from ..companion import Companion
from ..imaging import Preprocessing, decode, square_pixels


@dataclass
class Scored:
    features: np.ndarray        # (n, d) pooled features
    raw: np.ndarray             # (n, 9) uncalibrated softmax (averaged with the companion's, when there is one)
    figures: list[dict[str, float]]  # quality measurements per photo


def score(backend: Backend, preprocessing: Preprocessing, images: Iterable[Image.Image],
          batch_size: int = 32, companion: Companion | None = None) -> Scored:
    """Every photo's features, probabilities and quality figures, as the classifier would compute them."""
    features: list[np.ndarray] = []
    raw: list[np.ndarray] = []
    figures: list[dict[str, float]] = []
    batch: list[np.ndarray] = []
    companion_batch: list[np.ndarray] = []

    def flush() -> None:
        if batch:
            f, p = backend.run(preprocessing.normalize(np.stack(batch).astype(np.float32)))
            if companion is not None:
                p = companion.blend(p, np.stack(companion_batch))
            features.append(f)
            raw.append(p)
            batch.clear()
            companion_batch.clear()

    for image in images:
        figures.append(quality.measure(image))
        batch.append(square_pixels(image, preprocessing.size))
        if companion is not None:
            companion_batch.append(companion.pixels(image))
        if len(batch) == batch_size:
            flush()
    flush()
    return Scored(np.concatenate(features), np.concatenate(raw), figures)


def load_images(root: Path, paths: Iterable[str], size_hint: int) -> Iterable[Image.Image]:
    for path in paths:
        yield decode((Path(root) / path).read_bytes(), draft_size=max(2 * size_hint, 512))
