"""Tune what the core decides from data, on photos the weights never trained on.

* temperature scaling, fitted on the validation split, so probabilities are honest;
* the quality bounds, set just below what real skin photos show;
* the "not recognised" rule (:mod:`.recognition`): the subspace size, and whether a
  skin/non-skin discriminant joins the distance, chosen on the ``tune`` non-skin photos,
  with thresholds rejecting at most the given share of validation skin photos *of each
  photo type* (camera photos are in-distribution too, and users send camera photos);
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
import time
from pathlib import Path
from typing import Any

import numpy as np

from . import data as dataset
from .. import novelty, phototype, quality, triage
from ..backends import KerasBackend
from ..imaging import Preprocessing
from ..labels import LABELS
from ..manifest import manifest_path_for, new_manifest, read_manifest, write_manifest
from ..metrics import fit_temperature, softmax_with_temperature
from . import recognition, referral
from .negatives import non_skin_images
from .scoring import load_images, score

THRESHOLD_GRID = np.round(np.arange(0.60, 0.0, -0.005), 3)


def referred_at_each_threshold(probabilities: np.ndarray, rejected: np.ndarray) -> np.ndarray:
    """Which photos are referred at each grid threshold: (grid, photos), computed once per calibration."""
    return np.array([referral.referred(referral.levels(probabilities, {**triage.DEFAULT_THRESHOLDS,
                                                                       "urgent_malignant_probability": float(t)}),
                                       rejected)
                     for t in THRESHOLD_GRID])


def threshold_table(referred: np.ndarray, truth: np.ndarray, types: list[str]) -> list[dict[str, Any]]:
    """Referral of malignant and benign photos at every candidate threshold, per photo type."""
    groups = {"all": np.ones(len(truth), dtype=bool),
              **{kind: np.array([t == kind for t in types]) for kind in dataset.PHOTO_TYPES}}
    rows = []
    for threshold, is_referred in zip(THRESHOLD_GRID, referred):
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
        rates = [row[kind]["malignant_referral"] for kind in dataset.PHOTO_TYPES
                 if kind in row and row[kind]["malignant_referral"] is not None]
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
    true_kinds, predicted = np.array(true_types), np.array(predicted_types)
    malignant, benign = np.isin(truth, referral.MALIGNANT_IDS), np.isin(truth, referral.BENIGN_IDS)

    def counts(photos: np.ndarray, read_as: str) -> np.ndarray:
        """Photos of ``photos`` read as ``read_as`` and referred: (grid, true photo type)."""
        return np.stack([(referred & (photos & (predicted == read_as) & (true_kinds == kind))).sum(axis=1)
                         for kind in dataset.PHOTO_TYPES], axis=1)

    # Indexed (clinical threshold, dermoscopic threshold, true photo type).
    malignant_referred = counts(malignant, "clinical")[:, None, :] + counts(malignant, "dermoscopic")[None, :, :]
    benign_referred = counts(benign, "clinical")[:, None, :] + counts(benign, "dermoscopic")[None, :, :]
    malignant_totals = np.array([np.sum(malignant & (true_kinds == k)) for k in dataset.PHOTO_TYPES])
    benign_totals = np.array([np.sum(benign & (true_kinds == k)) for k in dataset.PHOTO_TYPES])
    present = malignant_totals > 0
    feasible = np.all(malignant_referred[..., present] / malignant_totals[present] >= target, axis=2)
    if not feasible.any():
        return None
    grid = np.asarray(THRESHOLD_GRID)
    _, _, i, j = min((benign_referred[i, j].sum(), -grid[i] - grid[j], i, j) for i, j in zip(*np.nonzero(feasible)))

    def rates(referred_count: np.ndarray, totals: np.ndarray) -> dict[str, float]:
        return {kind: round(float(n / total), 4)
                for kind, n, total in zip(dataset.PHOTO_TYPES, referred_count, totals) if total}

    return {"thresholds": {"clinical": float(grid[i]), "dermoscopic": float(grid[j])},
            "malignant_referral": rates(malignant_referred[i, j], malignant_totals),
            "benign_referral": rates(benign_referred[i, j], benign_totals)}


def quality_bounds(figures: list[dict[str, float]]) -> dict[str, float]:
    """Bounds that reject at most ~0.5% of real skin photos, never stricter than the defaults need."""
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


def calibrate(model_path: Path, data: Path, split_file: Path, *, referral_target: float = 0.95,
              skin_rejection: float = 0.025, train_limit: int | None = None,
              version: str | None = None) -> dict[str, Any]:
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

    split["train"] = dataset.camera_first_subset(split["train"], train_limit, seed=0)

    def scored(part: str):
        samples = split[part]
        result = score(backend, preprocessing, load_images(data, [s.path for s in samples], preprocessing.size))
        return result, np.array([s.label for s in samples]), [s.image_type for s in samples]

    print("scoring training, validation and non-skin (tune) photos", flush=True)
    train, y_train, train_types = scored("train")
    val, y_val, val_types = scored("val")
    tune_photos = non_skin_images("tune")
    negatives = score(backend, preprocessing, (image for _, image in tune_photos))

    temperature = fit_temperature(y_val, val.raw)
    val_probabilities = softmax_with_temperature(val.raw, temperature)

    rules = quality_bounds(train.figures + val.figures)
    skin_problems = np.array([quality.problem(f, rules) is not None for f in val.figures])
    negative_problems = np.array([quality.problem(f, rules) is not None for f in negatives.figures])
    type_masks = [np.array([t == kind for t in val_types]) for kind in dataset.PHOTO_TYPES]
    type_masks = [m for m in type_masks if m.any()] or [np.ones(len(y_val), dtype=bool)]

    usable_by_type = [m & ~skin_problems if (m & ~skin_problems).any() else m for m in type_masks]
    ood, tune_figures = recognition.choose_rule(train.features, y_train, len(LABELS), val.features, usable_by_type,
                                                negatives.features, [name for name, _ in tune_photos],
                                                negative_problems, skin_rejection)
    skin_rejected = skin_problems | novelty.NoveltyScorer(ood).is_novel(val.features)

    referred = referred_at_each_threshold(val_probabilities, skin_rejected)
    table = threshold_table(referred, y_val, val_types)
    urgent = choose_urgent_threshold(table, referral_target)
    thresholds = {**triage.DEFAULT_THRESHOLDS, "urgent_malignant_probability": urgent}
    chosen = next(row for row in table if row["threshold"] == urgent)

    photo_type_rule, by_type, val_predicted = None, None, []
    is_dermoscopic = np.array([t == phototype.DERMOSCOPIC for t in train_types])
    if is_dermoscopic.any() and not is_dermoscopic.all():
        photo_type_rule = phototype.fit(train.features, is_dermoscopic)
        val_predicted = phototype.PhotoTypeScorer(photo_type_rule).kinds(val.features)
        by_type = choose_thresholds_by_photo_type(referred, y_val, val_types, val_predicted, referral_target)
    if by_type:
        thresholds[triage.BY_PHOTO_TYPE] = by_type["thresholds"]
    photo_type_summary = {
        "rule": "Fisher discriminant on pooled features, fitted on train" if photo_type_rule else
                "none: the training photos are of one type",
        "val_recognised_as_own_type": {kind: round(float(np.mean([p == kind for p, t in zip(val_predicted, val_types)
                                                                   if t == kind])), 4)
                                       for kind in dataset.PHOTO_TYPES if kind in val_types and val_predicted},
        "urgent_thresholds": by_type,
    }

    summary = {
        "fitted_on": {"temperature": "val", "triage": "val", "quality": "train+val",
                      "novelty_centroids": "train" if not train_limit else f"train (up to {train_limit}, every camera photo)", "novelty_threshold": "val + non-skin tune"},
        "temperature": round(temperature, 4),
        "referral_definition": "urgent or soon, and not rejected as not recognised",
        "referral_target": referral_target,
        "urgent_threshold_rule": "shared threshold: the highest meeting the target on every photo type; "
                                 "per predicted photo type: the pair meeting it on every true type with "
                                 "the fewest benign referrals",
        "photo_type": photo_type_summary,
        "val_referral": chosen,
        "val_skin_rejected": {
            "all": float(skin_rejected.mean()),
            **{kind: float(skin_rejected[np.array([t == kind for t in val_types])].mean())
               for kind in dataset.PHOTO_TYPES if kind in val_types}},
        "tune_non_skin_rejected": max(tune_figures.values()),
        "not_recognised_candidates": tune_figures,
        "not_recognised_rule": f"distance in a {ood['dims']}-dimension subspace"
                               + (" or the skin/non-skin discriminant" if "discriminant" in ood else ""),
        "threshold_table": [row for row in table if row["threshold"] in (0.5, 0.4, 0.3, 0.25, 0.2, 0.15, 0.1,
                                                                           0.075, 0.05, 0.025, urgent)],
        "calibrated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    manifest.update({
        "calibration": {"temperature": round(temperature, 4), "summary": summary},
        "triage": thresholds,
        "quality": rules,
        "ood": ood,
    })
    if by_type:
        manifest["photo_type"] = photo_type_rule
    else:
        manifest.pop("photo_type", None)
    write_manifest(manifest, manifest_file)
    model_path.with_name(model_path.stem + ".calibration.json").write_text(
        json.dumps({**summary, "threshold_table": table}, indent=1) + "\n")
    print(json.dumps({k: v for k, v in summary.items() if k != "threshold_table"}, indent=1), flush=True)
    return summary
