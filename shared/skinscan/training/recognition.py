"""Choosing the "not recognised" rule on photos the network never trained on.

Candidates: the class-centroid distance (:mod:`skinscan.novelty`) in subspaces of
several sizes, alone or joined by the linear "skin or not" discriminant. Every
candidate's thresholds are set on the validation split so that no photo type loses
more than ``skin_rejection`` of its real skin photos; candidates are then compared by
how many ``tune`` non-skin photos they reject. The discriminant is fitted on ``tune``
photos itself, so its figure comes from grouped cross-validation: each fold's photos
are judged by a discriminant that never saw them, nor another crop of the same photo.
Ties go to the candidate that loses the fewest validation skin photos.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .. import novelty
from ..linear import linear_score

SUBSPACE_SIZES = (8, 16, 32, 64, 128, 256)


def source_folds(names: Sequence[str], folds: int = 5) -> np.ndarray:
    """A fold per non-skin photo; every crop of one source photo shares its fold."""
    sources = [name.split("#")[0] for name in names]
    order = {source: i for i, source in enumerate(dict.fromkeys(sources))}
    return np.array([order[source] % folds for source in sources])


def distance_threshold(val_scores: np.ndarray, type_masks: list[np.ndarray], share: float) -> float:
    """The loosest of the per-photo-type cut-offs, so no photo type loses more than ``share``."""
    return max(float(np.quantile(val_scores[m], 1 - share)) for m in type_masks)


def union_thresholds(distance: np.ndarray, non_skin: np.ndarray, type_masks: list[np.ndarray],
                     share: float) -> tuple[float, float]:
    """Both rules at one quantile, the strictest at which their union keeps every type within ``share``."""
    for level in np.arange(1 - share, 1.0, 0.0005):
        cuts = (max(float(np.quantile(distance[m], level)) for m in type_masks),
                max(float(np.quantile(non_skin[m], level)) for m in type_masks))
        rejected = (distance > cuts[0]) | (non_skin > cuts[1])
        if all(rejected[m].mean() <= share for m in type_masks):
            return cuts
    return float(distance.max()), float(non_skin.max())


def choose_rule(train_features: np.ndarray, train_labels: np.ndarray, n_classes: int,
                val_features: np.ndarray, type_masks: list[np.ndarray],
                tune_features: np.ndarray, tune_names: Sequence[str], tune_unusable: np.ndarray,
                skin_rejection: float) -> tuple[dict[str, Any], dict[str, float]]:
    """The rule rejecting the most ``tune`` non-skin photos; ``type_masks`` select usable validation photos."""
    folds = source_folds(tune_names)
    usable = np.any(type_masks, axis=0)
    # Discriminant scores do not depend on the subspace size: (validation, tune) per held-out fold.
    fold_scores = {}
    for fold in np.unique(folds):
        discriminant = novelty.fit_discriminant(train_features, tune_features[folds != fold])
        fold_scores[fold] = (linear_score(discriminant, val_features), linear_score(discriminant, tune_features))
    full_discriminant = novelty.fit_discriminant(train_features, tune_features)
    full_val_scores = linear_score(full_discriminant, val_features)
    figures: dict[str, float] = {}
    best = None
    for dims in SUBSPACE_SIZES:
        spec = novelty.fit(train_features, train_labels, n_classes, dims=dims)
        scorer = novelty.NoveltyScorer(spec)
        val_distance, tune_distance = scorer.score(val_features), scorer.score(tune_features)

        threshold = distance_threshold(val_distance, type_masks, skin_rejection)
        rejected = tune_unusable | (tune_distance > threshold)
        candidates = [(f"distance {dims}", float(rejected.mean()), val_distance > threshold,
                       {**spec, "threshold": round(threshold, 5), "dims": dims})]

        held_out = tune_unusable.copy()
        for fold, (val_scores, tune_scores) in fold_scores.items():
            members = folds == fold
            cuts = union_thresholds(val_distance, val_scores, type_masks, skin_rejection)
            held_out[members] |= (tune_distance[members] > cuts[0]) | (tune_scores[members] > cuts[1])
        cuts = union_thresholds(val_distance, full_val_scores, type_masks, skin_rejection)
        candidates.append((f"distance {dims} + discriminant", float(held_out.mean()),
                           (val_distance > cuts[0]) | (full_val_scores > cuts[1]),
                           {**spec, "threshold": round(cuts[0], 5), "dims": dims,
                            "discriminant": {**full_discriminant, "threshold": round(cuts[1], 5)}}))
        for name, rejected_share, val_rejected, rule in candidates:
            skin_lost = float(val_rejected[usable].mean())
            figures[name] = round(rejected_share, 4)
            print(f"not recognised: {name:32s} tune non-skin rejected {rejected_share:.3f}, "
                  f"validation skin rejected {skin_lost:.4f}", flush=True)
            # More non-skin rejected wins; then fewer skin photos lost; then the smaller subspace.
            key = (rejected_share, -skin_lost, -dims)
            if best is None or key > best[0]:
                best = (key, rule)
    assert best is not None, "SUBSPACE_SIZES is not empty"
    return best[1], figures
