"""The labelled photo folders: discovery, a lesion-grouped split, loading.

A dataset is a folder with one sub-folder per label (spelled as in
``LABELS``). When the folder has a ``METADATA.csv`` (skin9 v2 does), every
photo also carries its lesion id, photo type (clinical or dermoscopic) and
skin tone class. Several photos can show one lesion, so the split assigns
whole *lesions* to train, validation or test: a lesion seen in training never
reappears in a figure. The split is written to a JSON file of relative paths
so that evaluation later uses exactly the photos training never saw.
"""

from __future__ import annotations

import csv
import json
import random
from collections import Counter, defaultdict
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..contract import PHOTO_TYPES as PHOTO_TYPES  # the wire's photo types; the trainer reads them here
from ..imaging import ImageError, decode, square_pixels
from ..labels import LABELS

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
SPLITS = ("train", "val", "test")
METADATA_FILE = "METADATA.csv"
SOURCES_FILE = "SOURCES.csv"
# skin9's README: v2 added HAM10000 and MILK10k from these mirrors; every other photo is the seed's
# own (v1) archive, whatever its METADATA source says (many v1 photos are HAM10000 images too).
V2_MIRRORS = {"mmalek06/bounding-box-detection-ham1000": "HAM10000", "pbanavara/milk10k": "MILK10k"}
SEED_ARCHIVE = "seed archive"


@dataclass(frozen=True)
class Sample:
    path: str  # relative to the dataset root, e.g. "Melanoma/ISIC_0000.jpg"
    label: int
    lesion_id: str = ""  # empty: every photo is its own lesion
    photo_type: str = ""  # "clinical" (a camera), "dermoscopic" or unknown (""); the CSV's image_type
    skin_tone: int | None = None

    @property
    def group(self) -> str:
        return self.lesion_id or self.path


def read_metadata(root: Path) -> dict[str, dict[str, str]]:
    """``METADATA.csv`` keyed by relative path; empty when the folder has none."""
    path = Path(root) / METADATA_FILE
    if not path.exists():
        return {}
    with path.open(newline="") as handle:
        return {f"{row['class']}/{row['file']}": row for row in csv.DictReader(handle)}


def _with_metadata(sample: Sample, row: dict[str, str] | None) -> Sample:
    if not row:
        return sample
    tone = row.get("skin_tone_class", "")
    return replace(sample, lesion_id=row.get("lesion_id", ""), photo_type=row.get("image_type", ""),
                   skin_tone=int(tone) if tone.strip() else None)


def discover(root: Path) -> list[Sample]:
    """Every image under ``root/<label>/``, in a stable order, with its metadata when known."""
    root = Path(root)
    missing = [label for label in LABELS if not (root / label).is_dir()]
    if len(missing) == len(LABELS):
        raise FileNotFoundError(f"{root} has none of the label folders {list(LABELS)}")
    metadata = read_metadata(root)
    samples = []
    for index, label in enumerate(LABELS):
        folder = root / label
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
                relative = f"{label}/{path.name}"
                samples.append(_with_metadata(Sample(relative, index), metadata.get(relative)))
    return samples


def stratified_split(samples: list[Sample], seed: int = 42, fractions: tuple[float, float] = (0.15, 0.15),
                     train_only: set[str] | frozenset[str] = frozenset()) -> dict[str, list[Sample]]:
    """Assign whole lesions to splits, stratified by class and by which photo types a lesion has.

    Lesions are grouped into strata (majority class x photo types present, e.g.
    "Melanoma with a clinical and a dermoscopic photo"); each stratum is
    shuffled with ``seed`` and cut in the given (val, test) fractions, so every
    split has the same mix of classes *and* photo styles.
    """
    rng = random.Random(seed)
    lesions: dict[str, list[Sample]] = defaultdict(list)
    for sample in samples:
        lesions[sample.group].append(sample)
    strata: dict[tuple[int, str], list[str]] = defaultdict(list)
    for group, members in sorted(lesions.items()):
        label = Counter(s.label for s in members).most_common(1)[0][0]
        types = "+".join(sorted({s.photo_type for s in members}))
        strata[(label, types)].append(group)
    split: dict[str, list[Sample]] = {name: [] for name in SPLITS}
    for key in sorted(strata):
        groups = strata[key]
        rng.shuffle(groups)
        n = len(groups)
        n_val = max(1, round(n * fractions[0])) if n >= 3 else 0
        n_test = max(1, round(n * fractions[1])) if n >= 3 else 0
        free = [g for g in groups if g not in train_only]
        if 0 < len(free) < n_val + n_test:
            # Lesions held in train (a warm start's) left too few for both: share the rest between
            # validation and test instead of giving validation all of it and test none.
            n_val = round(len(free) * fractions[0] / sum(fractions))
            n_test = len(free) - n_val
        groups = free + [g for g in groups if g in train_only]
        for position, group in enumerate(groups):
            part = ("train" if group in train_only else
                    "val" if position < n_val else "test" if position < n_val + n_test else "train")
            split[part] += lesions[group]
    return {name: sorted(split[name], key=lambda s: (s.label, s.path)) for name in SPLITS}


def save_split(split: dict[str, list[Sample]], path: Path, seed: int, note: str | None = None) -> None:
    payload = {"seed": seed, "labels": list(LABELS), "grouped_by": "lesion_id",
               "stratified_by": ["class", "photo types of the lesion"], **({"note": note} if note else {}),
               **{name: [s.path for s in split[name]] for name in SPLITS}}
    Path(path).write_text(json.dumps(payload, indent=1) + "\n")


def load_split(path: Path, root: Path | None = None) -> dict[str, list[Sample]]:
    """The stored split; with ``root``, each sample also carries that folder's metadata."""
    payload = json.loads(Path(path).read_text())
    index = {label: i for i, label in enumerate(payload["labels"])}
    metadata = read_metadata(root) if root else {}
    return {name: [_with_metadata(Sample(p, index[p.split("/", 1)[0]]), metadata.get(p)) for p in payload[name]]
            for name in SPLITS}


def load_pixels(root: Path, samples: list[Sample], size: int) -> tuple[np.ndarray, np.ndarray]:
    """Decode every sample exactly as serving does; uint8 (N, size, size, 3) and labels."""
    images = np.zeros((len(samples), size, size, 3), dtype=np.uint8)
    for i, sample in enumerate(samples):
        images[i] = decode_sample(root, sample, size)
    return images, np.array([s.label for s in samples], dtype=np.int64)


def decode_sample(root: Path, sample: Sample, size: int) -> np.ndarray:
    try:
        return square_pixels(decode((Path(root) / sample.path).read_bytes(), draft_size=size * 2), size)
    except ImageError as error:
        raise ImageError(error.code, f"{sample.path}: {error.message}") from None


def photo_sources(root: Path) -> dict[str, str]:
    """Which collection each photo came from (``SOURCES.csv``), keyed by relative path; empty without it."""
    path = Path(root) / SOURCES_FILE
    if not path.exists():
        return {}
    with path.open(newline="") as handle:
        return {f"{row['class']}/{row['file']}": V2_MIRRORS.get(row["source_repository"], SEED_ARCHIVE)
                for row in csv.DictReader(handle)}


def class_counts(samples: list[Sample]) -> dict[str, int]:
    counts = Counter(s.label for s in samples)
    return {label: counts.get(i, 0) for i, label in enumerate(LABELS)}


def type_counts(samples: list[Sample]) -> dict[str, int]:
    counts = Counter(s.photo_type or "unknown" for s in samples)
    return dict(sorted(counts.items()))


def camera_first_subset(samples: list[Sample], limit: int | None, seed: int) -> list[Sample]:
    """Every camera photo, then dermoscopic photos spread evenly over the classes, up to ``limit``.

    Camera photos are the scarce ones and the ones users send, so a smaller
    set for per-epoch validation or for fitting rules keeps them all.
    """
    if not limit or len(samples) <= limit:
        return samples
    camera = [s for s in samples if s.photo_type != "dermoscopic"]
    by_class: dict[int, list[Sample]] = defaultdict(list)
    for s in samples:
        if s.photo_type == "dermoscopic":
            by_class[s.label].append(s)
    per_class = max(1, max(0, limit - len(camera)) // max(1, len(by_class)))
    rng = np.random.default_rng(seed)
    chosen = []
    for label in sorted(by_class):
        members = by_class[label]
        picks = rng.choice(len(members), min(per_class, len(members)), replace=False)
        chosen += [members[i] for i in sorted(picks)]
    return camera + chosen
