"""Is this photo like the skin photos the model was trained on?

The network has no "none of these" output (the seed's NONE label), so a
photo of a cat would still get a disease name. Instead we measure how far
the photo's pooled DenseNet features lie from every class's training
centroid, in a whitened subspace of the within-class covariance (a
Mahalanobis distance). Photos farther than the calibrated threshold are
reported as not recognised.

Distance alone lets through everyday photos that share a dermoscopic
image's layout (a coffee cup seen from above, a retina). Where calibration
finds it pays on held-out non-skin photos, a second rule is added: a linear
"skin or not" direction fitted on skin photos against the ``tune`` non-skin
photos. A photo is not recognised when either rule says so.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .linear import fisher_discriminant, linear_score


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


def fit_discriminant(skin_features: np.ndarray, non_skin_features: np.ndarray) -> dict[str, Any]:
    """The "skin or not" direction: skin photos score about -1, the non-skin examples +1."""
    features = np.concatenate([skin_features, non_skin_features])
    is_non_skin = np.r_[np.zeros(len(skin_features), dtype=bool), np.ones(len(non_skin_features), dtype=bool)]
    return fisher_discriminant(features, is_non_skin)


class NoveltyScorer:
    """Scores features; higher means less like the training photos."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.projection = np.asarray(spec["projection"], dtype=np.float32)
        self.centroids = np.asarray(spec["centroids"], dtype=np.float32)
        self.threshold = float(spec.get("threshold", np.inf))
        self.discriminant = spec.get("discriminant")

    def score(self, features: np.ndarray) -> np.ndarray:
        projected = np.atleast_2d(features).astype(np.float32) @ self.projection.T
        distances = ((projected[:, None, :] - self.centroids[None]) ** 2).mean(axis=2)
        nearest: np.ndarray = distances.min(axis=1)
        return nearest

    def non_skin_score(self, features: np.ndarray) -> np.ndarray:
        """The discriminant's score (higher: less like skin); -inf everywhere without one."""
        if not self.discriminant:
            return np.full(len(np.atleast_2d(features)), -np.inf)
        return linear_score(self.discriminant, features)

    def is_novel(self, features: np.ndarray) -> np.ndarray:
        novel = self.score(features) > self.threshold
        if self.discriminant:
            novel |= self.non_skin_score(features) > float(self.discriminant["threshold"])
        return novel
