"""Measure a model on photos it never trained on, the way the product uses it.

Everything goes through the served path: the manifest's pre-processing,
temperature, triage thresholds, quality bounds and novelty rule. Figures:
top-1, balanced and top-4 accuracy, per-class precision/recall/F1, a
confusion matrix (PNG), expected calibration error, referral of malignant and
benign photos, and how often non-skin and real skin photos are rejected.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from . import data as dataset
from .calibrate import BENIGN_IDS, MALIGNANT_IDS
from ..classifier import Classifier
from ..labels import LABELS
from ..metrics import (balanced_accuracy, confusion_matrix, expected_calibration_error, per_class,
                      softmax_with_temperature, top_k_accuracy)
from .negatives import non_skin_images
from .scoring import load_images, score
from ..triage import REFERRAL_LEVELS


def classification_report(truth: np.ndarray, probabilities: np.ndarray) -> dict[str, Any]:
    predicted = probabilities.argmax(axis=1)
    n = len(LABELS)
    return {
        "count": int(len(truth)),
        "top1_accuracy": float(np.mean(predicted == truth)),
        "balanced_accuracy": balanced_accuracy(truth, predicted, n),
        "top4_accuracy": top_k_accuracy(truth, probabilities, 4),
        "expected_calibration_error": expected_calibration_error(truth, probabilities),
        "per_class": {label: row for label, row in zip(LABELS, per_class(truth, predicted, n))},
        "confusion_matrix": confusion_matrix(truth, predicted, n).tolist(),
    }


def evaluate(model_path: Path, data: Path, split_file: Path | None = None, part: str = "test",
             out_dir: Path | None = None) -> dict[str, Any]:
    classifier = Classifier.load(model_path, backend="keras")
    samples = dataset.load_split(split_file)[part] if split_file else dataset.discover(data)
    truth = np.array([s.label for s in samples])
    size = classifier.preprocessing.size
    skin = score(classifier.backend, classifier.preprocessing, load_images(data, [s.path for s in samples], size))
    probabilities = softmax_with_temperature(skin.raw, classifier.temperature)
    report = classification_report(truth, probabilities)
    report["expected_calibration_error_uncalibrated"] = expected_calibration_error(truth, skin.raw)

    skin_rejected = classifier.rejected(skin.figures, skin.features)
    levels = np.array([classifier.result_from_probabilities(p)["recommendation"]["level"] for p in probabilities])
    referred = np.isin(levels, list(REFERRAL_LEVELS)) & ~skin_rejected
    malignant, benign = np.isin(truth, MALIGNANT_IDS), np.isin(truth, BENIGN_IDS)
    negatives = score(classifier.backend, classifier.preprocessing,
                      (image for _, image in non_skin_images("test")))
    report.update({
        "model": classifier.model_info,
        "data": str(data), "split": part if split_file else "all photos in the folder",
        "malignant_referral": float(referred[malignant].mean()) if malignant.any() else None,
        "benign_referral": float(referred[benign].mean()) if benign.any() else None,
        "skin_rejected": float(skin_rejected.mean()),
        "non_skin_rejected": float(classifier.rejected(negatives.figures, negatives.features).mean()),
        "non_skin_count": int(len(negatives.raw)),
        "triage_levels": {level: int((levels == level).sum()) for level in sorted(set(levels))},
    })
    if out_dir:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "evaluation.json").write_text(json.dumps(report, indent=1) + "\n")
        (out_dir / "evaluation.txt").write_text(text_report(report))
        plot_confusion(np.array(report["confusion_matrix"]), out_dir / "confusion_matrix.png")
    return report


def text_report(report: dict[str, Any]) -> str:
    lines = [
        f"model {report['model']['version']} on {report['count']} photos ({report['split']})",
        f"top-1 accuracy      {report['top1_accuracy']:.3f}",
        f"balanced accuracy   {report['balanced_accuracy']:.3f}",
        f"top-4 accuracy      {report['top4_accuracy']:.3f}",
        f"ECE (calibrated)    {report['expected_calibration_error']:.3f}   "
        f"(uncalibrated {report['expected_calibration_error_uncalibrated']:.3f})",
        f"malignant referral  {report['malignant_referral']:.3f}   (Melanoma + SCC sent to urgent/soon)",
        f"benign referral     {report['benign_referral']:.3f}   (benign classes sent to urgent/soon)",
        f"non-skin rejected   {report['non_skin_rejected']:.3f}   ({report['non_skin_count']} test negatives)",
        f"skin rejected       {report['skin_rejected']:.3f}",
        "",
        f"{'class':28s} {'precision':>9s} {'recall':>7s} {'f1':>6s} {'n':>4s}",
    ]
    for label, row in report["per_class"].items():
        lines.append(f"{label:28s} {row['precision']:9.3f} {row['recall']:7.3f} {row['f1']:6.3f} {row['support']:4d}")
    return "\n".join(lines) + "\n"


def plot_confusion(matrix: np.ndarray, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 7), dpi=100)
    axes.imshow(matrix, cmap="Blues")
    axes.set_xticks(range(len(LABELS)), LABELS, rotation=45, ha="right", fontsize=8)
    axes.set_yticks(range(len(LABELS)), LABELS, fontsize=8)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    for (i, j), value in np.ndenumerate(matrix):
        axes.text(j, i, str(value), ha="center", va="center",
                  color="white" if value > matrix.max() / 2 else "black", fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
