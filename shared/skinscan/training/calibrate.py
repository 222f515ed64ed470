"""Tune what the core decides from data, on photos the weights never trained on.

* temperature scaling, fitted on the validation split, so probabilities are honest;
* the quality bounds, set just below what real skin photos show;
* the novelty rule: the feature subspace size and distance threshold that
  reject the most ``tune`` non-skin photos while rejecting at most the given
  share of validation skin photos *of each photo type* (camera photos are
  in-distribution too, and users send camera photos);
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
from .. import novelty, quality, triage
from ..backends import KerasBackend
from ..imaging import Preprocessing
from ..labels import LABELS
from ..manifest import manifest_path_for, new_manifest, read_manifest, write_manifest
from ..metrics import fit_temperature, softmax_with_temperature
from . import referral
from .negatives import non_skin_images
from .scoring import load_images, score

THRESHOLD_GRID = np.round(np.arange(0.60, 0.0, -0.005), 3)


def threshold_table(probabilities: np.ndarray, truth: np.ndarray, rejected: np.ndarray,
                    types: list[str]) -> list[dict[str, Any]]:
    """Referral of malignant and benign photos at every candidate threshold, per photo type."""
    groups = {"all": np.ones(len(truth), dtype=bool),
              **{kind: np.array([t == kind for t in types]) for kind in dataset.PHOTO_TYPES}}
    rows = []
    for threshold in THRESHOLD_GRID:
        rules = {**triage.DEFAULT_THRESHOLDS, "urgent_malignant_probability": float(threshold)}
        is_referred = referral.referred(referral.levels(probabilities, rules), rejected)
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
    train, y_train, _ = scored("train")
    val, y_val, val_types = scored("val")
    negatives = score(backend, preprocessing, (image for _, image in non_skin_images("tune")))

    temperature = fit_temperature(y_val, val.raw)
    val_probabilities = softmax_with_temperature(val.raw, temperature)

    rules = quality_bounds(train.figures + val.figures)
    skin_problems = np.array([quality.problem(f, rules) is not None for f in val.figures])
    negative_problems = np.array([quality.problem(f, rules) is not None for f in negatives.figures])
    type_masks = [np.array([t == kind for t in val_types]) for kind in dataset.PHOTO_TYPES]
    type_masks = [m for m in type_masks if m.any()] or [np.ones(len(y_val), dtype=bool)]

    best = None
    for dims in (8, 16, 32, 64, 128, 256):
        spec = novelty.fit(train.features, y_train, len(LABELS), dims=dims)
        scorer = novelty.NoveltyScorer(spec)
        val_scores = scorer.score(val.features)
        # The loosest of the per-type cut-offs, so no photo type loses more than its share.
        threshold = max(float(np.quantile(val_scores[m & ~skin_problems] if (m & ~skin_problems).any()
                                          else val_scores[m], 1 - skin_rejection)) for m in type_masks)
        rejected = negative_problems | (scorer.score(negatives.features) > threshold)
        candidate = (float(rejected.mean()), -dims, {**spec, "threshold": round(threshold, 5), "dims": dims})
        print(f"novelty dims {dims:3d}: tune non-skin rejected {candidate[0]:.3f}", flush=True)
        if best is None or candidate[:2] > best[:2]:
            best = candidate
    ood = best[2]
    skin_rejected = skin_problems | (novelty.NoveltyScorer(ood).score(val.features) > ood["threshold"])

    table = threshold_table(val_probabilities, y_val, skin_rejected, val_types)
    urgent = choose_urgent_threshold(table, referral_target)
    thresholds = {**triage.DEFAULT_THRESHOLDS, "urgent_malignant_probability": urgent}
    chosen = next(row for row in table if row["threshold"] == urgent)

    summary = {
        "fitted_on": {"temperature": "val", "triage": "val", "quality": "train+val",
                      "novelty_centroids": "train" if not train_limit else f"train (up to {train_limit}, every camera photo)", "novelty_threshold": "val + non-skin tune"},
        "temperature": round(temperature, 4),
        "referral_definition": "urgent or soon, and not rejected as not recognised",
        "referral_target": referral_target,
        "urgent_threshold_rule": "highest threshold meeting the target on every photo type",
        "val_referral": chosen,
        "val_skin_rejected": {
            "all": float(skin_rejected.mean()),
            **{kind: float(skin_rejected[np.array([t == kind for t in val_types])].mean())
               for kind in dataset.PHOTO_TYPES if kind in val_types}},
        "tune_non_skin_rejected": best[0],
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
    write_manifest(manifest, manifest_file)
    model_path.with_name(model_path.stem + ".calibration.json").write_text(
        json.dumps({**summary, "threshold_table": table}, indent=1) + "\n")
    print(json.dumps({k: v for k, v in summary.items() if k != "threshold_table"}, indent=1), flush=True)
    return summary
