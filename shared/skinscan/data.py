"""The labelled photo folders: discovery, a seeded stratified split, loading.

A dataset is a folder with one sub-folder per label (spelled as in
``LABELS``). The split is written to a JSON file of relative paths so that
evaluation later uses exactly the photos training never saw.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .imaging import ImageError, decode, square_pixels
from .labels import LABELS

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Sample:
    path: str  # relative to the dataset root, e.g. "Melanoma/ISIC_0000.jpg"
    label: int


def discover(root: Path) -> list[Sample]:
    """Every image under ``root/<label>/``, in a stable order."""
    root = Path(root)
    missing = [label for label in LABELS if not (root / label).is_dir()]
    if len(missing) == len(LABELS):
        raise FileNotFoundError(f"{root} has none of the label folders {list(LABELS)}")
    samples = []
    for index, label in enumerate(LABELS):
        folder = root / label
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
                samples.append(Sample(f"{label}/{path.name}", index))
    return samples


def stratified_split(samples: list[Sample], seed: int = 42,
                     fractions: tuple[float, float] = (0.15, 0.15)) -> dict[str, list[Sample]]:
    """Split every class in the same proportions (val, test fractions), seeded."""
    rng = random.Random(seed)
    split: dict[str, list[Sample]] = {name: [] for name in SPLITS}
    for index in range(len(LABELS)):
        members = [s for s in samples if s.label == index]
        rng.shuffle(members)
        n_val = max(1, round(len(members) * fractions[0])) if len(members) >= 3 else 0
        n_test = max(1, round(len(members) * fractions[1])) if len(members) >= 3 else 0
        split["val"] += members[:n_val]
        split["test"] += members[n_val:n_val + n_test]
        split["train"] += members[n_val + n_test:]
    return split


def save_split(split: dict[str, list[Sample]], path: Path, seed: int) -> None:
    payload = {"seed": seed, "labels": list(LABELS),
               **{name: [s.path for s in split[name]] for name in SPLITS}}
    Path(path).write_text(json.dumps(payload, indent=1) + "\n")


def load_split(path: Path) -> dict[str, list[Sample]]:
    payload = json.loads(Path(path).read_text())
    index = {label: i for i, label in enumerate(payload["labels"])}
    return {name: [Sample(p, index[p.split("/", 1)[0]]) for p in payload[name]] for name in SPLITS}


def load_pixels(root: Path, samples: list[Sample], size: int) -> tuple[np.ndarray, np.ndarray]:
    """Decode every sample exactly as serving does; uint8 (N, size, size, 3) and labels."""
    images = np.zeros((len(samples), size, size, 3), dtype=np.uint8)
    for i, sample in enumerate(samples):
        try:
            images[i] = square_pixels(decode((Path(root) / sample.path).read_bytes(),
                                             draft_size=size * 2), size)
        except ImageError as error:
            raise ImageError(error.code, f"{sample.path}: {error.message}") from None
    return images, np.array([s.label for s in samples], dtype=np.int64)


def class_counts(samples: list[Sample]) -> dict[str, int]:
    counts = Counter(s.label for s in samples)
    return {label: counts.get(i, 0) for i, label in enumerate(LABELS)}
