"""A Fisher linear discriminant: one direction in feature space that splits two kinds of photo.

Closed form and numpy only, so the serving path needs nothing new. Two rules use it: telling
camera photos from dermoscope images (:mod:`.phototype`), and telling skin photos from
everyday non-skin images (:mod:`.novelty`).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def fisher_discriminant(features: np.ndarray, is_positive: np.ndarray, shrinkage: float = 0.1) -> dict[str, Any]:
    """Weights and bias scaling the negative kind's mean to -1 and the positive kind's to +1.

    The within-kind covariance is shrunk toward its average variance, because a few hundred
    photos cannot pin down a 1,024-dimension covariance.
    """
    features = np.asarray(features, dtype=np.float64)
    is_positive = np.asarray(is_positive, dtype=bool)
    if is_positive.all() or not is_positive.any():
        raise ValueError("a discriminant needs photos of both kinds")
    means = [features[~is_positive].mean(axis=0), features[is_positive].mean(axis=0)]
    within = np.concatenate([features[~is_positive] - means[0], features[is_positive] - means[1]])
    covariance = within.T @ within / max(1, len(features) - 2)
    covariance = (1 - shrinkage) * covariance + shrinkage * np.trace(covariance) / len(covariance) * np.eye(
        len(covariance))
    weights = np.linalg.solve(covariance, means[1] - means[0])
    low, high = float(means[0] @ weights), float(means[1] @ weights)
    scale = (high - low) / 2
    return {"weights": (weights / scale).astype(np.float32).round(7).tolist(),
            "bias": round(-(low + high) / 2 / scale, 6)}


def linear_score(spec: dict[str, Any], features: np.ndarray) -> np.ndarray:
    return np.atleast_2d(features).astype(np.float32) @ np.asarray(spec["weights"], dtype=np.float32) + float(
        spec["bias"])
