"""Tune what the core decides from data, on photos the weights never trained on.

* temperature scaling, fitted on the validation split, so probabilities are honest;
* the malignant-escalation threshold: the highest one that still refers the
  target share of validation melanomas and carcinomas (urgent or soon);
* the quality bounds, set just below what real skin photos show;
* the novelty rule: the feature subspace size and distance threshold that
  reject the most ``tune`` non-skin photos while rejecting at most the given
  share of validation skin photos.

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
from ..labels import BENIGN, LABELS, MALIGNANT
from ..manifest import manifest_path_for, new_manifest, read_manifest, write_manifest
from ..metrics import fit_temperature, softmax_with_temperature
from .negatives import non_skin_images
from .scoring import load_images, score

MALIGNANT_IDS = [LABELS.index(label) for label in MALIGNANT]
BENIGN_IDS = [LABELS.index(label) for label in BENIGN]


def referral_rates(probabilities: np.ndarray, truth: np.ndarray, thresholds: dict[str, Any]) -> dict[str, float]:
    """Share of malignant and of benign photos that triage sends to urgent/soon."""
    referred = np.array([
        triage.recommend(dict(zip(LABELS, map(float, p))), thresholds)["level"] in triage.REFERRAL_LEVELS
        for p in probabilities])
    malignant = np.isin(truth, MALIGNANT_IDS)
    benign = np.isin(truth, BENIGN_IDS)
    return {"malignant_referral": float(referred[malignant].mean()) if malignant.any() else float("nan"),
            "benign_referral": float(referred[benign].mean()) if benign.any() else float("nan")}


def choose_urgent_threshold(probabilities: np.ndarray, truth: np.ndarray, target: float) -> float:
    """The highest malignant-probability threshold that meets the referral target."""
    for threshold in np.round(np.arange(0.60, 0.0, -0.005), 3):
        rules = {**triage.DEFAULT_THRESHOLDS, "urgent_malignant_probability": float(threshold)}
        if referral_rates(probabilities, truth, rules)["malignant_referral"] >= target:
            return float(threshold)
    return 0.005


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
    keys = ("split_counts", "train_class_counts", "epochs_run", "best_epoch", "best_val", "seconds",
            "seconds_per_step")
    return {key: summary[key] for key in keys if key in summary} | {
        "recipe": {k: summary["config"][k] for k in ("image_size", "batch_size", "learning_rate", "weight_decay",
                                                     "dropout", "label_smoothing", "class_weight_power", "seed")
                   if k in summary.get("config", {})}}


def calibrate(model_path: Path, data: Path, split_file: Path, *, referral_target: float = 0.97,
              skin_rejection: float = 0.03, version: str | None = None) -> dict[str, Any]:
    model_path = Path(model_path)
    backend = KerasBackend(model_path)
    preprocessing = Preprocessing(size=backend.input_size)
    split = dataset.load_split(split_file)
    manifest_file = manifest_path_for(model_path)
    manifest = (read_manifest(manifest_file) if manifest_file.exists()
                else new_manifest(model_path, preprocessing.to_dict(), version or model_path.stem))
    manifest.update(new_manifest(model_path, preprocessing.to_dict(), version or manifest["version"],
                                 training=manifest.get("training") or training_summary(model_path)))
    if manifest.get("fast_path", {}).get("derived_from") != manifest["sha256"]:
        manifest.pop("fast_path", None)  # derived from other weights: derive it again after calibrating

    def scored(part: str):
        samples = split[part]
        result = score(backend, preprocessing, load_images(data, [s.path for s in samples], preprocessing.size))
        return result, np.array([s.label for s in samples])

    print("scoring training, validation and non-skin (tune) photos", flush=True)
    train, y_train = scored("train")
    val, y_val = scored("val")
    negatives = score(backend, preprocessing, (image for _, image in non_skin_images("tune")))

    temperature = fit_temperature(y_val, val.raw)
    val_probabilities = softmax_with_temperature(val.raw, temperature)
    urgent = choose_urgent_threshold(val_probabilities, y_val, referral_target)
    thresholds = {**triage.DEFAULT_THRESHOLDS, "urgent_malignant_probability": urgent}

    rules = quality_bounds(train.figures + val.figures)
    skin_problems = np.array([quality.problem(f, rules) is not None for f in val.figures])
    negative_problems = np.array([quality.problem(f, rules) is not None for f in negatives.figures])

    best = None
    for dims in (8, 16, 32, 64, 128):
        spec = novelty.fit(train.features, y_train, len(LABELS), dims=dims)
        scorer = novelty.NoveltyScorer(spec)
        val_scores = scorer.score(val.features)
        usable = val_scores[~skin_problems] if (~skin_problems).any() else val_scores
        threshold = float(np.quantile(usable, 1 - skin_rejection))
        rejected = negative_problems | (scorer.score(negatives.features) > threshold)
        candidate = (float(rejected.mean()), -dims, {**spec, "threshold": round(threshold, 5), "dims": dims})
        print(f"novelty dims {dims:3d}: tune non-skin rejected {candidate[0]:.3f}", flush=True)
        if best is None or candidate[:2] > best[:2]:
            best = candidate
    ood = best[2]
    skin_rejected = skin_problems | (novelty.NoveltyScorer(ood).score(val.features) > ood["threshold"])

    summary = {
        "fitted_on": {"temperature": "val", "triage": "val", "quality": "train+val",
                      "novelty_centroids": "train", "novelty_threshold": "val + non-skin tune"},
        "temperature": round(temperature, 4),
        "val_referral": referral_rates(val_probabilities, y_val, thresholds),
        "val_skin_rejected": float(skin_rejected.mean()),
        "tune_non_skin_rejected": best[0],
        "referral_target": referral_target,
        "calibrated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    manifest.update({
        "calibration": {"temperature": round(temperature, 4), "summary": summary},
        "triage": thresholds,
        "quality": rules,
        "ood": ood,
    })
    write_manifest(manifest, manifest_file)
    print(json.dumps(summary, indent=1), flush=True)
    return summary
