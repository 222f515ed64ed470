"""Measure a model on photos it never trained on, the way the product uses it.

Everything goes through the served path: the manifest's pre-processing,
temperature, triage thresholds, quality bounds and novelty rule. Figures:
top-1, balanced and top-4 accuracy, per-class precision/recall/F1, confusion
matrices (PNG), expected calibration error, referral of malignant and benign
photos (:mod:`.referral`'s definition), and how often non-skin and real skin
photos are rejected — for all photos, and again **per photo type** (camera /
dermoscopic) and **per skin tone class** where the metadata knows it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..classifier import Classifier
from ..labels import LABELS
from ..metrics import (balanced_accuracy, confusion_matrix, expected_calibration_error, per_class, roc_auc,
                       softmax_with_temperature, top_k_accuracy)
from . import data as dataset
from . import referral
from .negatives import non_skin_images
from .scoring import load_images, score

HEADLINE = ("count", "top1_accuracy", "balanced_accuracy", "top4_accuracy", "malignant_referral",
            "benign_referral", "skin_rejected")


def classification_report(truth: np.ndarray, probabilities: np.ndarray) -> dict[str, Any]:
    predicted = probabilities.argmax(axis=1)
    n = len(LABELS)
    return {
        "count": int(len(truth)),
        "top1_accuracy": float(np.mean(predicted == truth)),
        "balanced_accuracy": balanced_accuracy(truth, predicted, n),
        "top4_accuracy": top_k_accuracy(truth, probabilities, 4),
        "expected_calibration_error": expected_calibration_error(truth, probabilities),
        "per_class": {label: row for label, row in zip(LABELS, per_class(truth, predicted, n), strict=True)},
        "confusion_matrix": confusion_matrix(truth, predicted, n).tolist(),
    }


def malignant_auc(truth: np.ndarray, probabilities: np.ndarray) -> float | None:
    """Melanoma and SCC photos against the benign classes' photos, ranked by the malignant probability."""
    scored = np.isin(truth, referral.MALIGNANT_IDS + referral.BENIGN_IDS)
    return roc_auc(referral.malignant_probability(probabilities)[scored],
                   np.isin(truth[scored], referral.MALIGNANT_IDS))


def group_report(truth: np.ndarray, probabilities: np.ndarray, is_referred: np.ndarray,
                 rejected: np.ndarray) -> dict[str, Any]:
    """The headline figures and confusion matrix for one group of photos."""
    report = classification_report(truth, probabilities)
    report.update(referral.rates(is_referred, truth))
    report["malignant_auc"] = malignant_auc(truth, probabilities)
    report["skin_rejected"] = float(rejected.mean())
    return report


def photo_groups(samples: list[dataset.Sample], data: Path) -> dict[str, np.ndarray]:
    """Masks of the groups every figure is reported for: photo type, source and skin tone class."""
    photo_types = np.array([s.photo_type for s in samples])
    groups: dict[str, np.ndarray] = {photo_type: photo_types == photo_type for photo_type in dataset.PHOTO_TYPES}
    sources = dataset.photo_sources(data)
    for source in sorted({sources[s.path] for s in samples if s.path in sources}):
        groups[f"source: {source}"] = np.array([sources.get(s.path) == source for s in samples])
    for tone in sorted({s.skin_tone for s in samples if s.skin_tone is not None}):
        groups[f"skin_tone_{tone}"] = np.array([s.skin_tone == tone for s in samples])
    return groups


def network_report(truth: np.ndarray, probabilities: np.ndarray, groups: dict[str, np.ndarray]) -> dict[str, Any]:
    """What a network alone scores, before any serving rule: accuracy figures and the malignant AUC."""
    def figures(t: np.ndarray, p: np.ndarray) -> dict[str, Any]:
        return {**classification_report(t, p), "malignant_auc": malignant_auc(t, p)}

    return {**figures(truth, probabilities),
            "by_group": {name: figures(truth[m], probabilities[m]) for name, m in groups.items() if m.any()}}


def evaluate(model_path: Path, data: Path, split_file: Path | None = None, part: str = "test",
             out_dir: Path | None = None) -> dict[str, Any]:
    classifier = Classifier.load(model_path, backend="keras")
    samples = dataset.load_split(split_file, data)[part] if split_file else dataset.discover(data)
    truth = np.array([s.label for s in samples])
    size = classifier.preprocessing.size
    skin = score(classifier.backend, classifier.preprocessing, load_images(data, [s.path for s in samples], size),
                 companion=classifier.companion)
    probabilities = softmax_with_temperature(skin.raw, classifier.temperature)

    rejected = classifier.rejected(skin.figures, skin.features)
    predicted = classifier.photo_types(skin.features)
    levels = referral.levels(probabilities, [classifier.thresholds_for(photo_type) for photo_type in predicted])
    is_referred = referral.referred(levels, rejected)

    report = group_report(truth, probabilities, is_referred, rejected)
    report["expected_calibration_error_uncalibrated"] = expected_calibration_error(truth, skin.raw)
    groups = photo_groups(samples, data)
    if classifier.photo_type:
        read_as = np.array(predicted)
        report["photo_type_recognised"] = {
            photo_type: float(np.mean(read_as[members] == photo_type))
            for photo_type, members in groups.items() if photo_type in dataset.PHOTO_TYPES and members.any()}
    report["by_group"] = {name: group_report(truth[members], probabilities[members], is_referred[members],
                                             rejected[members])
                          for name, members in groups.items() if members.any()}

    negatives = score(classifier.backend, classifier.preprocessing,
                      (image for _, image in non_skin_images("test")))  # rejection reads the DenseNet121 alone
    report.update({
        "model": classifier.model_info.to_wire(),
        "data": str(data), "split": part if split_file else "all photos in the folder",
        "referral_definition": "urgent or soon, and not rejected as not recognised",
        "non_skin_rejected": float(classifier.rejected(negatives.figures, negatives.features).mean()),
        "non_skin_count": int(len(negatives.raw)),
        "triage_levels": {level: int((levels[~rejected] == level).sum()) for level in sorted(set(levels))}
        | {"retake": int(rejected.sum())},
    })
    if out_dir:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "evaluation.json").write_text(json.dumps(report, indent=1) + "\n")
        (out_dir / "evaluation.txt").write_text(text_report(report))
        plot_confusion(np.array(report["confusion_matrix"]), out_dir / "confusion_matrix.png")
        for photo_type in dataset.PHOTO_TYPES:
            if photo_type in report["by_group"]:
                plot_confusion(np.array(report["by_group"][photo_type]["confusion_matrix"]),
                               out_dir / f"confusion_matrix_{photo_type}.png", title=f"{photo_type} photos")
    return report


def _figure(value: float | None) -> str:
    return "   -  " if value is None else f"{value:6.3f}"


def text_report(report: dict[str, Any]) -> str:
    lines = [
        f"model {report['model']['version']} ({report['model']['backend']}) on {report['count']} photos "
        f"({report['split']})",
        f"ECE (calibrated)    {report['expected_calibration_error']:.3f}   "
        f"(uncalibrated {report['expected_calibration_error_uncalibrated']:.3f})",
        f"non-skin rejected   {report['non_skin_rejected']:.3f}   ({report['non_skin_count']} test negatives)",
        *(["photo type told right: " + ", ".join(f"{photo_type} {share:.3f}" for photo_type, share in
                                                    report["photo_type_recognised"].items())]
          if "photo_type_recognised" in report else []),
        "referral: Melanoma + SCC (malignant) or benign classes sent to urgent/soon; rejected = not referred",
        "AUC: malignant vs benign photos ranked by the malignant probability (threshold-free)",
        "",
        f"{'photos':22s} {'n':>5s} {'top-1':>6s} {'bal.':>6s} {'top-4':>6s} {'malig.':>6s} {'benign':>6s} "
        f"{'reject':>6s} {'AUC':>6s}",
    ]
    rows = {"all": report, **report.get("by_group", {})}
    for name, row in rows.items():
        lines.append(f"{name:22s} {row['count']:5d} {_figure(row['top1_accuracy'])} "
                     f"{_figure(row['balanced_accuracy'])} {_figure(row['top4_accuracy'])} "
                     f"{_figure(row['malignant_referral'])} {_figure(row['benign_referral'])} "
                     f"{_figure(row['skin_rejected'])} {_figure(row.get('malignant_auc'))}")
    lines += ["", f"{'class':28s} {'precision':>9s} {'recall':>7s} {'f1':>6s} {'n':>5s}"]
    for label, row in report["per_class"].items():
        lines.append(f"{label:28s} {row['precision']:9.3f} {row['recall']:7.3f} {row['f1']:6.3f} {row['support']:5d}")
    return "\n".join(lines) + "\n"


def plot_confusion(matrix: np.ndarray, path: Path, title: str | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 7), dpi=100)
    axes.imshow(matrix, cmap="Blues")
    axes.set_xticks(range(len(LABELS)), LABELS, rotation=45, ha="right", fontsize=8)
    axes.set_yticks(range(len(LABELS)), LABELS, fontsize=8)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    if title:
        axes.set_title(title)
    for (i, j), value in np.ndenumerate(matrix):
        axes.text(j, i, str(value), ha="center", va="center",
                  color="white" if value > matrix.max() / 2 else "black", fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
