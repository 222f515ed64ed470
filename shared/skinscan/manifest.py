"""The JSON manifest that travels beside every ``.h5``.

It is the contract between training and serving: labels and their order,
the input size and pre-processing, the calibrated temperature, the triage
thresholds, the out-of-distribution rule, and the sha256 of the weights file.
Serving reads all of these from here and never hard-codes them.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, NotRequired, TypedDict, cast

from .labels import LABELS

MANIFEST_FORMAT = 1


class Manifest(TypedDict):
    """The manifest's shape. A TypedDict, not a class: it is JSON that training writes and edits
    section by section, and serving reads; the sections' own shapes belong to their readers
    (:class:`~skinscan.imaging.Preprocessing`, :mod:`.triage`, :mod:`.novelty`, :mod:`.phototype`)."""

    format: int
    name: NotRequired[str]
    version: str
    file: NotRequired[str]
    bytes: NotRequired[int]
    sha256: str
    architecture: NotRequired[str]
    labels: list[str]
    preprocessing: dict[str, Any]
    calibration: dict[str, Any]
    triage: dict[str, Any]  # thresholds, and the urgent threshold by photo type
    quality: NotRequired[dict[str, Any]]
    ood: dict[str, Any]  # the "not recognised" rule
    photo_type: NotRequired[dict[str, Any]]  # the photo-type rule (clinical or dermoscopic)
    training: NotRequired[dict[str, Any]]
    fast_path: NotRequired[dict[str, Any]]  # the verified LiteRT form, derived from sha256
    companion: NotRequired["CompanionEntry"]  # a second network answering with this one (issue 18)


class CompanionEntry(TypedDict):
    """A second network whose probabilities are averaged with the DenseNet121's (``manifest["companion"]``).

    It has its own file, hash, input size and pre-processing, and may have its own verified fast form;
    it lives beside the model (locally and in the bucket). The DenseNet121 stays the model: its
    features alone decide "not recognised" and the photo type, and its sha256 names the pair.
    """

    role: str           # "teacher": the ImageNet network the DenseNet121 was distilled from
    architecture: str
    file: str
    bytes: NotRequired[int]
    sha256: str
    preprocessing: dict[str, Any]
    weight: float       # its share of the averaged probabilities, in (0, 1)
    training: NotRequired[dict[str, Any]]
    fast_path: NotRequired[dict[str, Any]]


class ManifestError(ValueError):
    """The manifest is missing, malformed or does not match its model."""


def manifest_path_for(model_path: str | Path) -> Path:
    path = Path(model_path)
    return path.with_name(path.stem + ".json")


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(path: str | Path) -> Manifest:
    try:
        manifest: object = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ManifestError(f"manifest not found: {path}") from None
    except (OSError, json.JSONDecodeError) as error:
        raise ManifestError(f"manifest unreadable: {path}: {error}") from None
    return validate(manifest)


def validate(manifest: object) -> Manifest:
    """The manifest, checked: raises :class:`ManifestError` where it is not one."""
    if not isinstance(manifest, dict):
        raise ManifestError("manifest is not a JSON object")
    if manifest.get("format") != MANIFEST_FORMAT:
        raise ManifestError(f"manifest format {manifest.get('format')!r} is not {MANIFEST_FORMAT}")
    if tuple(manifest.get("labels", ())) != LABELS:
        raise ManifestError("manifest labels differ from the nine skinscan labels in order or spelling")
    for key in ("version", "sha256", "preprocessing", "calibration", "triage", "ood"):
        if key not in manifest:
            raise ManifestError(f"manifest has no {key!r}")
    if not _is_digest(manifest["sha256"]):
        raise ManifestError("manifest sha256 is not a hex digest")
    if manifest.get("fast_path") is not None:
        _check_file_entry(manifest["fast_path"], "fast_path")
    if manifest.get("companion") is not None:
        _check_companion(manifest["companion"])
    return cast(Manifest, manifest)


def _check_file_entry(entry: object, where: str) -> None:
    """A file the manifest names: a plain name beside it, and its sha256.

    The name is joined to the model's folder and S3 key (store, backends, publish): only a plain
    file name beside the manifest, never a path that climbs out of the cache or the bucket prefix.
    """
    name = entry.get("file") if isinstance(entry, dict) else None
    if not (isinstance(name, str) and name == Path(name).name and name not in ("", ".", "..")
            and "\\" not in name):
        raise ManifestError(f"manifest {where}.file is not a plain file name beside the manifest")
    if not _is_digest(cast(dict[str, Any], entry).get("sha256")):
        raise ManifestError(f"manifest {where}.sha256 is not a hex digest")


def _check_companion(companion: object) -> None:
    _check_file_entry(companion, "companion")
    entry = cast(dict[str, Any], companion)
    if entry.get("fast_path") is not None:
        _check_file_entry(entry["fast_path"], "companion.fast_path")
    weight = entry.get("weight")
    if not (isinstance(weight, (int, float)) and not isinstance(weight, bool) and 0.0 < weight < 1.0):
        raise ManifestError("manifest companion.weight is not a share between 0 and 1")
    preprocessing = entry.get("preprocessing")
    if not (isinstance(preprocessing, dict) and {"size", "mean", "std"} <= preprocessing.keys()):
        raise ManifestError("manifest companion.preprocessing has no size, mean and std")


def _is_digest(value: object) -> bool:
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def read_companion(path: str | Path, weight: float) -> CompanionEntry:
    """The entry a companion's export wrote beside it (``teacher.json`` for ``teacher.h5``), with its share.

    The entry is checked like a manifest's ``companion`` section, and the file against its sha256.
    """
    path = Path(path)
    try:
        entry: object = json.loads(path.read_text())
    except FileNotFoundError:
        raise ManifestError(f"companion entry not found: {path}") from None
    except (OSError, json.JSONDecodeError) as error:
        raise ManifestError(f"companion entry unreadable: {path}: {error}") from None
    if not isinstance(entry, dict) or entry.get("role") != "teacher":
        raise ManifestError(f"{path} is not a teacher's entry (skinscan export of a teacher checkpoint writes one)")
    entry = {**entry, "weight": weight}
    _check_companion(entry)
    companion = cast(CompanionEntry, entry)
    verify_model_file(path.with_name(companion["file"]), companion)
    return companion


def write_manifest(manifest: Manifest | dict[str, Any], path: str | Path) -> None:
    validate(manifest)
    Path(path).write_text(json.dumps(manifest, indent=1, sort_keys=False) + "\n")


def verify_model_file(model_path: str | Path, entry: Manifest | CompanionEntry) -> str:
    """Return the file's sha256, or raise if it is not the file the manifest (or its companion entry) describes."""
    actual = sha256_file(model_path)
    if actual != entry["sha256"]:
        raise ManifestError(
            f"{Path(model_path).name}: sha256 {actual[:12]}… does not match the manifest's {entry['sha256'][:12]}…; "
            "refusing to serve a file that is not the published model"
        )
    return actual


def new_manifest(model_path: str | Path, preprocessing: dict[str, Any], version: str,
                 **extra: Any) -> Manifest:
    """A manifest for a freshly written model, before calibration tunes it.

    The defaults are conservative: no temperature change, a low malignant
    threshold (refer early), and no novelty rule until one is fitted.
    """
    from .quality import DEFAULT_QUALITY
    from .triage import DEFAULT_THRESHOLDS

    path = Path(model_path)
    manifest: dict[str, Any] = {
        "format": MANIFEST_FORMAT,
        "name": "skinscan-densenet121",
        "version": version,
        "file": path.name,
        "bytes": path.stat().st_size,
        "sha256": sha256_file(path),
        "architecture": "DenseNet121 -> GlobalAveragePooling2D -> Dropout -> Dense(9, softmax)",
        "labels": list(LABELS),
        "preprocessing": preprocessing,
        "calibration": {"temperature": 1.0},
        "triage": dict(DEFAULT_THRESHOLDS),
        "quality": dict(DEFAULT_QUALITY),
        "ood": {"method": "none"},
    }
    manifest.update(extra)
    return cast(Manifest, manifest)
