"""Is this photo like the skin photos the model was trained on?

The network has no "none of these" output (the seed's NONE label), so a
photo of a cat would still get a disease name. Instead we measure how far
the photo's pooled DenseNet features lie from every class's training
centroid, in a whitened subspace of the within-class covariance (a
Mahalanobis distance). Photos farther than the calibrated threshold are
reported as not recognised.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def fit(features: np.ndarray, labels: np.ndarray, n_classes: int, dims: int = 32,
        shrinkage: float = 1e-3) -> dict[str, Any]:
    """Fit the projection and class centroids on in-distribution training features."""
    features = features.astype(np.float64)
    centre = features.mean(axis=0)
    centroids = np.stack([features[labels == c].mean(axis=0) if np.any(labels == c) else centre
                          for c in range(n_classes)])
    within = features - centroids[labels]
    covariance = within.T @ within / max(1, len(features) - n_classes)
    covariance += shrinkage * np.trace(covariance) / len(covariance) * np.eye(len(covariance))
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)
    order = np.argsort(eigenvalues)[::-1][:dims]
    projection = (eigenvectors[:, order] / np.sqrt(eigenvalues[order])).T
    return {
        "method": "mahalanobis-subspace",
        "projection": projection.astype(np.float32).round(6).tolist(),
        "centroids": (centroids @ projection.T).astype(np.float32).round(5).tolist(),
    }


class NoveltyScorer:
    """Scores features; higher means less like the training photos."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.projection = np.asarray(spec["projection"], dtype=np.float32)
        self.centroids = np.asarray(spec["centroids"], dtype=np.float32)
        self.threshold = float(spec.get("threshold", np.inf))

    def score(self, features: np.ndarray) -> np.ndarray:
        projected = np.atleast_2d(features).astype(np.float32) @ self.projection.T
        distances = ((projected[:, None, :] - self.centroids[None]) ** 2).mean(axis=2)
        return distances.min(axis=1)

    def is_novel(self, features: np.ndarray) -> np.ndarray:
        return self.score(features) > self.threshold
