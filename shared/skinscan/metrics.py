"""Classification and calibration figures, in numpy only (no sklearn needed)."""

from __future__ import annotations

import numpy as np


def confusion_matrix(truth: np.ndarray, predicted: np.ndarray, n_classes: int) -> np.ndarray:
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(truth), np.asarray(predicted)), 1)
    return matrix


def balanced_accuracy(truth: np.ndarray, predicted: np.ndarray, n_classes: int) -> float:
    """Mean recall over the classes present in ``truth``."""
    matrix = confusion_matrix(truth, predicted, n_classes)
    support = matrix.sum(axis=1)
    present = support > 0
    return float(np.mean(np.diag(matrix)[present] / support[present]))


def top_k_accuracy(truth: np.ndarray, probabilities: np.ndarray, k: int) -> float:
    top = np.argsort(-probabilities, axis=1)[:, :k]
    return float(np.mean([t in row for t, row in zip(truth, top, strict=True)]))


def per_class(truth: np.ndarray, predicted: np.ndarray, n_classes: int) -> list[dict[str, float]]:
    matrix = confusion_matrix(truth, predicted, n_classes)
    rows = []
    for c in range(n_classes):
        tp = matrix[c, c]
        precision = tp / matrix[:, c].sum() if matrix[:, c].sum() else 0.0
        recall = tp / matrix[c].sum() if matrix[c].sum() else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        rows.append({"precision": float(precision), "recall": float(recall), "f1": float(f1),
                     "support": int(matrix[c].sum())})
    return rows


def roc_auc(scores: np.ndarray, positive: np.ndarray) -> float | None:
    """Area under the ROC curve: the chance a random positive scores above a random negative.

    Threshold-free, so it shows how much room a triage threshold has. Ties count half (average
    ranks, the Mann-Whitney U form). ``None`` when either side is empty.
    """
    scores, positive = np.asarray(scores, dtype=np.float64), np.asarray(positive, dtype=bool)
    n_positive, n_negative = int(positive.sum()), int((~positive).sum())
    if not n_positive or not n_negative:
        return None
    values, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    first_rank = np.cumsum(counts) - counts + 1
    ranks = (first_rank + (counts - 1) / 2.0)[inverse]
    u = ranks[positive].sum() - n_positive * (n_positive + 1) / 2.0
    return float(u / (n_positive * n_negative))


def expected_calibration_error(truth: np.ndarray, probabilities: np.ndarray, bins: int = 15) -> float:
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == truth
    edges = np.linspace(0.0, 1.0, bins + 1)
    error = 0.0
    for low, high in zip(edges[:-1], edges[1:], strict=True):
        members = (confidence > low) & (confidence <= high)
        if members.any():
            error += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    return float(error)


def softmax_with_temperature(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """Re-temper softmax outputs: log-probabilities are logits up to a constant."""
    logits = np.log(np.clip(probabilities, 1e-12, 1.0)) / temperature
    logits -= logits.max(axis=-1, keepdims=True)
    exp = np.exp(logits)
    tempered: np.ndarray = exp / exp.sum(axis=-1, keepdims=True)
    return tempered


def fit_temperature(truth: np.ndarray, probabilities: np.ndarray) -> float:
    """The temperature that minimises validation negative log-likelihood (grid + refine)."""
    def nll(t: float) -> float:
        p = softmax_with_temperature(probabilities, t)
        return float(-np.mean(np.log(p[np.arange(len(truth)), truth] + 1e-12)))

    grid = np.exp(np.linspace(np.log(0.25), np.log(8.0), 121))
    best = min(grid, key=nll)
    fine = np.linspace(best * 0.95, best * 1.05, 41)
    return float(min(fine, key=nll))
