"""Tune what the core decides from data, on photos the weights never trained on.

* temperature scaling, fitted on the validation split, so probabilities are honest;
* the quality bounds, set just below what real skin photos show;
* the "not recognised" rule (:mod:`.recognition`): the subspace size, and whether a
  skin/non-skin discriminant joins the distance, chosen on the ``tune`` non-skin photos,
  with thresholds rejecting at most the given share of validation skin photos *of each
  photo type* (camera photos are in-distribution too, and users send camera photos);
* with a companion (``--companion teacher.h5``: :mod:`skinscan.companion`), every probability
  below is the pair's average, so the temperature and thresholds fit what is served;
* the photo-type rule (:mod:`skinscan.phototype`) and an urgent threshold per photo type;
* the malignant-escalation threshold: the highest one that still refers the
  target share of validation melanomas and carcinomas (urgent or soon) for
  camera *and* dermoscopic photos, with :mod:`.referral`'s definition
  (a rejected photo is not referred). The table per photo type is kept in
  the manifest so the card can show what each threshold costs in benign
  referrals.

The ``test`` split and the ``test`` negatives are left for :mod:`skinscan.training.evaluate`.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import data as dataset
from .. import novelty, phototype, quality, triage
from ..backends import KerasBackend
from ..companion import Companion
from ..imaging import Preprocessing
from ..labels import LABELS
from ..manifest import (CompanionEntry, manifest_path_for, new_manifest, read_companion, read_manifest,
                        write_manifest)
from ..metrics import fit_temperature, softmax_with_temperature
from . import recognition, referral
from .negatives import non_skin_images
from .scoring import Scored, load_images, score

THRESHOLD_GRID = np.round(np.arange(0.60, 0.0, -0.005), 3)


def referred_at_each_threshold(probabilities: np.ndarray, rejected: np.ndarray) -> np.ndarray:
    """Which photos are referred at each grid threshold: (grid, photos), computed once per calibration."""
    return np.array([referral.referred(referral.levels(probabilities, {**triage.DEFAULT_THRESHOLDS,
                                                                       "urgent_malignant_probability": float(t)}),
                                       rejected)
                     for t in THRESHOLD_GRID])


def threshold_table(referred: np.ndarray, truth: np.ndarray, photo_types: Sequence[str] | np.ndarray,
                    ) -> list[dict[str, Any]]:
    """Referral of malignant and benign photos at every candidate threshold, per photo type."""
    photo_types = np.asarray(photo_types)
    groups: dict[str, np.ndarray] = {"all": np.ones(len(truth), dtype=bool)}
    groups.update({photo_type: photo_types == photo_type for photo_type in dataset.PHOTO_TYPES})
    rows = []
    for threshold, is_referred in zip(THRESHOLD_GRID, referred, strict=True):
        row: dict[str, Any] = {"threshold": float(threshold)}
        for name, members in groups.items():
            if members.any():
                rates = referral.rates(is_referred[members], truth[members])
                row[name] = {k: (round(v, 4) if v is not None else None) for k, v in rates.items()}
        rows.append(row)
    return rows


def choose_urgent_threshold(table: list[dict[str, Any]], target: float) -> float:
    """The highest threshold at which every photo type present meets the malignant referral target."""
    for row in table:  # highest threshold first
        rates = [row[photo_type]["malignant_referral"] for photo_type in dataset.PHOTO_TYPES
                 if photo_type in row and row[photo_type]["malignant_referral"] is not None]
        if not rates:
            rates = [row["all"]["malignant_referral"] or 0.0]
        if min(rates) >= target:
            return row["threshold"]
    return float(THRESHOLD_GRID[-1])


def choose_thresholds_by_photo_type(referred: np.ndarray, truth: np.ndarray, true_types: list[str],
                                    predicted_types: list[str], target: float) -> dict[str, Any] | None:
    """One urgent threshold per *predicted* photo type, meeting the target on every *true* type.

    ``referred`` is :func:`referred_at_each_threshold`'s matrix. Every pair of grid thresholds is
    tried; among the pairs that refer at least ``target`` of the malignant photos of each true type
    (the photo-type rule's mistakes included), the one that refers the fewest benign photos wins,
    then the higher thresholds. None if no pair does.
    """
    true_photo_types, predicted = np.array(true_types), np.array(predicted_types)
    malignant, benign = np.isin(truth, referral.MALIGNANT_IDS), np.isin(truth, referral.BENIGN_IDS)

    def counts(photos: np.ndarray, read_as: str) -> np.ndarray:
        """Photos of ``photos`` read as ``read_as`` and referred: (grid, true photo type)."""
        return np.stack([(referred & (photos & (predicted == read_as) & (true_photo_types == true))).sum(axis=1)
                         for true in dataset.PHOTO_TYPES], axis=1)

    # Indexed (clinical threshold, dermoscopic threshold, true photo type).
    malignant_referred = counts(malignant, "clinical")[:, None, :] + counts(malignant, "dermoscopic")[None, :, :]
    benign_referred = counts(benign, "clinical")[:, None, :] + counts(benign, "dermoscopic")[None, :, :]
    malignant_totals = np.array([np.sum(malignant & (true_photo_types == t)) for t in dataset.PHOTO_TYPES])
    benign_totals = np.array([np.sum(benign & (true_photo_types == t)) for t in dataset.PHOTO_TYPES])
    present = malignant_totals > 0
    feasible = np.all(malignant_referred[..., present] / malignant_totals[present] >= target, axis=2)
    if not feasible.any():
        return None
    grid = np.asarray(THRESHOLD_GRID)
    _, _, i, j = min((benign_referred[i, j].sum(), -grid[i] - grid[j], i, j)
                     for i, j in zip(*np.nonzero(feasible), strict=True))

    def rates(referred_count: np.ndarray, totals: np.ndarray) -> dict[str, float]:
        return {photo_type: round(float(n / total), 4)
                for photo_type, n, total in zip(dataset.PHOTO_TYPES, referred_count, totals, strict=True) if total}

    return {"thresholds": {"clinical": float(grid[i]), "dermoscopic": float(grid[j])},
            "malignant_referral": rates(malignant_referred[i, j], malignant_totals),
            "benign_referral": rates(benign_referred[i, j], benign_totals)}


def fit_quality(figures: list[dict[str, float]]) -> dict[str, float]:
    """Quality bounds that reject at most ~0.5% of real skin photos, never stricter than the defaults need."""
    def low(key: str) -> float:
        return float(np.percentile([f[key] for f in figures], 0.5))

    def high(key: str) -> float:
        return float(np.percentile([f[key] for f in figures], 99.5))

    return {
        "min_side": int(min(quality.DEFAULT_QUALITY["min_side"], 0.7 * low("min_side"))),
        "min_brightness": round(min(quality.DEFAULT_QUALITY["min_brightness"], 0.7 * low("brightness")), 2),
        "max_brightness": round(max(quality.DEFAULT_QUALITY["max_brightness"], min(254.0, high("brightness") + 20)), 2),
        "min_sharpness": round(0.7 * low("sharpness"), 3),
        "min_colourfulness": round(0.7 * low("colourfulness"), 3),
        "analysis_size": quality.DEFAULT_QUALITY["analysis_size"],
    }


@dataclass(frozen=True)
class Part:
    """One split as calibration sees it: its scores, true labels and photo types, each built once."""

    scored: Scored
    labels: np.ndarray
    photo_types: np.ndarray  # "clinical", "dermoscopic" or "" (unknown), per photo

    def masks(self) -> list[np.ndarray]:
        """One mask per photo type present (or one for all photos when none is known)."""
        masks = [self.photo_types == photo_type for photo_type in dataset.PHOTO_TYPES]
        return [m for m in masks if m.any()] or [np.ones(len(self.labels), dtype=bool)]


@dataclass(frozen=True)
class Recognition:
    rule: dict[str, Any]              # the manifest's "ood"
    tune_rejected: dict[str, float]   # non-skin tune photos rejected, per candidate rule
    val_rejected: np.ndarray          # validation skin photos the chosen rule (with the quality rules) rejects


def fit_recognition(train: Part, val: Part, negatives: Scored, negative_names: list[str],
                    quality_rules: dict[str, Any], skin_rejection: float) -> Recognition:
    """The "not recognised" rule (:mod:`.recognition`), chosen on the tune non-skin photos."""
    skin_problems = np.array([quality.problem(f, quality_rules) is not None for f in val.scored.figures])
    negative_problems = np.array([quality.problem(f, quality_rules) is not None for f in negatives.figures])
    usable_by_type = [m & ~skin_problems if (m & ~skin_problems).any() else m for m in val.masks()]
    rule, tune_rejected = recognition.choose_rule(train.scored.features, train.labels, len(LABELS),
                                                  val.scored.features, usable_by_type, negatives.features,
                                                  negative_names, negative_problems, skin_rejection)
    return Recognition(rule, tune_rejected, skin_problems | novelty.NoveltyScorer(rule).is_novel(val.scored.features))


@dataclass(frozen=True)
class UrgentThreshold:
    threshold: float
    table: list[dict[str, Any]]   # referral at every candidate threshold, per photo type
    chosen: dict[str, Any]        # the table's row at ``threshold``


def fit_urgent_threshold(referred: np.ndarray, val: Part, target: float) -> UrgentThreshold:
    """The shared urgent threshold: the highest meeting the referral target on every photo type."""
    table = threshold_table(referred, val.labels, val.photo_types)
    threshold = choose_urgent_threshold(table, target)
    return UrgentThreshold(threshold, table, next(row for row in table if row["threshold"] == threshold))


@dataclass(frozen=True)
class PhotoTypeRule:
    rule: dict[str, Any] | None                # the manifest's "photo_type"; None: one type only
    thresholds: dict[str, Any] | None          # choose_thresholds_by_photo_type's answer
    summary: dict[str, Any]


def fit_photo_type_rule(train: Part, val: Part, referred: np.ndarray, target: float) -> PhotoTypeRule:
    """The camera/dermoscope rule, and an urgent threshold per predicted photo type (when one meets it)."""
    is_dermoscopic = train.photo_types == phototype.DERMOSCOPIC
    rule = thresholds = None
    predicted = np.array([], dtype=str)
    if is_dermoscopic.any() and not is_dermoscopic.all():
        rule = phototype.fit(train.scored.features, is_dermoscopic)
        predicted = np.array(phototype.PhotoTypeScorer(rule).photo_types(val.scored.features))
        thresholds = choose_thresholds_by_photo_type(referred, val.labels, list(val.photo_types), list(predicted),
                                                     target)
    summary = {
        "rule": "Fisher discriminant on pooled features, fitted on train" if rule else
                "none: the training photos are of one type",
        "val_recognised_as_own_type": {
            photo_type: round(float(np.mean(predicted[val.photo_types == photo_type] == photo_type)), 4)
            for photo_type in dataset.PHOTO_TYPES if len(predicted) and (val.photo_types == photo_type).any()},
        "urgent_thresholds": thresholds,
    }
    return PhotoTypeRule(rule, thresholds, summary)


def training_summary(model_path: Path) -> dict[str, Any]:
    """The headline of the ``.training.json`` that ``skinscan train`` wrote beside the model."""
    path = model_path.with_name(model_path.stem + ".training.json")
    if not path.exists():
        return {}
    summary = json.loads(path.read_text())
    keys = ("split_counts", "split_photo_types", "train_class_counts", "epochs_run", "total_epochs",
            "best_epoch", "best_val", "seconds", "hardware")
    return {key: summary[key] for key in keys if key in summary} | {
        "recipe": {k: summary["config"][k] for k in ("image_size", "batch_size", "learning_rate", "weight_decay",
                                                     "dropout", "label_smoothing", "class_power", "clinical_share",
                                                     "pairs_per_batch", "consistency", "seed")
                   if k in summary.get("config", {})}}


def place_companion(model_path: Path, companion_path: Path, weight: float) -> CompanionEntry:
    """The companion's manifest entry, its files copied beside the model (where serving looks for them)."""
    entry = read_companion(manifest_path_for(companion_path), weight)
    if companion_path.resolve().parent != model_path.resolve().parent:
        shutil.copyfile(companion_path, model_path.with_name(entry["file"]))
    return entry


def calibrate(model_path: Path, data: Path, split_file: Path, *, referral_target: float = 0.95,
              skin_rejection: float = 0.025, train_limit: int | None = None,
              version: str | None = None, companion: Path | None = None,
              companion_weight: float = 0.5) -> dict[str, Any]:
    """Fit every rule (one ``fit_*`` each) on train, validation and the tune non-skin photos, and
    write them into the model's manifest. A ``companion`` joins the manifest first; one already
    there stays (and is verified again)."""
    model_path = Path(model_path)
    backend = KerasBackend(model_path)
    preprocessing = Preprocessing(size=backend.input_size)
    split = dataset.load_split(split_file, data)
    manifest_file = manifest_path_for(model_path)
    manifest = (read_manifest(manifest_file) if manifest_file.exists()
                else new_manifest(model_path, preprocessing.to_dict(), version or model_path.stem))
    manifest.update(new_manifest(model_path, preprocessing.to_dict(), version or manifest["version"],
                                 training=manifest.get("training") or training_summary(model_path)))
    if manifest.get("fast_path", {}).get("derived_from") != manifest["sha256"]:
        manifest.pop("fast_path", None)  # derived from other weights: derive it again after calibrating
    if companion is not None:
        manifest["companion"] = place_companion(model_path, Path(companion), companion_weight)
    pair = Companion.load(model_path, manifest, "keras")

    split["train"] = dataset.camera_first_subset(split["train"], train_limit, seed=0)

    def scored(part: str) -> Part:
        samples = split[part]
        result = score(backend, preprocessing, load_images(data, [s.path for s in samples], preprocessing.size),
                       companion=pair)
        return Part(result, np.array([s.label for s in samples]), np.array([s.photo_type for s in samples]))

    print("scoring training, validation and non-skin (tune) photos", flush=True)
    train, val = scored("train"), scored("val")
    tune_photos = non_skin_images("tune")
    negatives = score(backend, preprocessing, (image for _, image in tune_photos))

    temperature = fit_temperature(val.labels, val.scored.raw)
    rules = fit_quality(train.scored.figures + val.scored.figures)
    recognised = fit_recognition(train, val, negatives, [name for name, _ in tune_photos], rules, skin_rejection)
    referred = referred_at_each_threshold(softmax_with_temperature(val.scored.raw, temperature),
                                          recognised.val_rejected)
    urgent = fit_urgent_threshold(referred, val, referral_target)
    by_type = fit_photo_type_rule(train, val, referred, referral_target)

    thresholds = {**triage.DEFAULT_THRESHOLDS, "urgent_malignant_probability": urgent.threshold}
    if by_type.thresholds:
        thresholds[triage.BY_PHOTO_TYPE] = by_type.thresholds["thresholds"]
    ood = recognised.rule
    summary = {
        "fitted_on": {"temperature": "val", "triage": "val", "quality": "train+val",
                      "novelty_centroids": "train" if not train_limit else
                                           f"train (up to {train_limit}, every camera photo)",
                      "novelty_threshold": "val + non-skin tune"},
        "temperature": round(temperature, 4),
        "probabilities": "the DenseNet121's" if pair is None else
                         f"the DenseNet121's averaged with the {manifest['companion']['role']}'s "
                         f"({manifest['companion']['architecture']}, weight {pair.weight})",
        "referral_definition": "urgent or soon, and not rejected as not recognised",
        "referral_target": referral_target,
        "urgent_threshold_rule": "shared threshold: the highest meeting the target on every photo type; "
                                 "per predicted photo type: the pair meeting it on every true type with "
                                 "the fewest benign referrals",
        "photo_type": by_type.summary,
        "val_referral": urgent.chosen,
        "val_skin_rejected": {"all": float(recognised.val_rejected.mean())} | {
            photo_type: float(recognised.val_rejected[val.photo_types == photo_type].mean())
            for photo_type in dataset.PHOTO_TYPES if (val.photo_types == photo_type).any()},
        "tune_non_skin_rejected": max(recognised.tune_rejected.values()),
        "not_recognised_candidates": recognised.tune_rejected,
        "not_recognised_rule": f"distance in a {ood['dims']}-dimension subspace"
                               + (" or the skin/non-skin discriminant" if "discriminant" in ood else ""),
        "threshold_table": [row for row in urgent.table
                            if row["threshold"] in (0.5, 0.4, 0.3, 0.25, 0.2, 0.15, 0.1, 0.075, 0.05, 0.025,
                                                    urgent.threshold)],
        "calibrated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    manifest.update({
        "calibration": {"temperature": round(temperature, 4), "summary": summary},
        "triage": thresholds,
        "quality": rules,
        "ood": ood,
    })
    if by_type.thresholds and by_type.rule:
        manifest["photo_type"] = by_type.rule
    else:
        manifest.pop("photo_type", None)
    write_manifest(manifest, manifest_file)
    model_path.with_name(model_path.stem + ".calibration.json").write_text(
        json.dumps({**summary, "threshold_table": urgent.table}, indent=1) + "\n")
    print(json.dumps({k: v for k, v in summary.items() if k != "threshold_table"}, indent=1), flush=True)
    return summary
